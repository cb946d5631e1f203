//! Per-user counts of things in flight (keyspace walks, connections of a client's
//! own), each bounded per user so no tenant can use up what every tenant shares.
//!
//! **Why a mutex.** A place is taken when a walk starts or a dedicated connection is
//! opened: rare next to GET / SET, which never come here. One short critical section
//! (a map lookup and an add) per such event is cheaper than keeping a sharded map.
//! The map holds only users with something in flight: an entry is removed when its
//! count returns to 0, so its size is bounded by the places held, not by the users
//! ever seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Places in flight per user.
#[derive(Default, Clone)]
pub struct PerUser(Arc<Mutex<HashMap<Arc<str>, usize>>>);

/// One place held by `user`; given back when dropped.
pub struct Held {
    map: PerUser,
    user: Arc<str>,
}

impl PerUser {
    /// Takes a place for `user` if it holds fewer than `max`; else `Err(held)`.
    pub fn try_hold(&self, user: &str, max: usize) -> Result<Held, usize> {
        let mut map = self.lock();
        let held = map.get(user).copied().unwrap_or(0);
        if held >= max {
            return Err(held);
        }
        let user: Arc<str> = match map.get_key_value(user) {
            Some((k, _)) => k.clone(),
            None => Arc::from(user),
        };
        map.insert(user.clone(), held + 1);
        Ok(Held {
            map: self.clone(),
            user,
        })
    }

    /// Places `user` holds now.
    pub fn held(&self, user: &str) -> usize {
        self.lock().get(user).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        if let Some(n) = map.get_mut(&*self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&*self.user);
            }
        }
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held({})", self.user)
    }
}

/// A keyspace walk's place, carried by the request until its reply is complete (a
/// cloned handle gives the place back when the last clone goes).
#[derive(Clone, Debug)]
pub struct WalkHold(#[allow(dead_code)] Arc<Held>);

impl WalkHold {
    pub fn new(held: Held) -> WalkHold {
        WalkHold(Arc::new(held))
    }
}

impl PartialEq for WalkHold {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for WalkHold {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_per_user_bounded_and_given_back() {
        let p = PerUser::default();
        let a1 = p.try_hold("a", 2).unwrap();
        let _a2 = p.try_hold("a", 2).unwrap();
        assert_eq!(p.try_hold("a", 2).unwrap_err(), 2);
        let _b = p.try_hold("b", 2).unwrap();
        drop(a1);
        assert_eq!(p.held("a"), 1);
        let _a3 = p.try_hold("a", 2).unwrap();
        drop(_b);
        assert_eq!(p.held("b"), 0);
        assert!(!p.lock().contains_key("b"), "emptied entries are removed");
    }
}
