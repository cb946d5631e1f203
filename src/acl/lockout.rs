//! Brute-force protection for password logins (AUTH, HELLO AUTH).
//!
//! **Per user and address.** Failures are counted per (user name, client address): past
//! `auth.max_failures` within `auth.failure_window_secs`, that user is refused from that
//! address for `auth.lockout_secs`. Other users behind the same address (a NAT, a host
//! running several services) keep logging in: one service's wrong password does not
//! lock its neighbours out.
//!
//! **Per address, whatever the name.** Every failure from an address, on a user name
//! that exists or not, also counts for the address: past
//! `auth.max_unknown_user_failures` within the window, the whole address is refused for
//! `auth.lockout_secs`. That stops one address spraying guesses over many user names,
//! which the per-user count alone never would. Known and unknown names move both
//! counters the same way, so no answer (and no lock) tells whether a name exists: had
//! only unknown names counted for the address, a probe name whose failure brought the
//! address lock would have been shown to be no user.
//!
//! **Addresses.** An IPv6 client is keyed by its /64 (one host usually holds a whole
//! /64, and would otherwise get unlimited guesses and fill the table); an IPv4-mapped
//! IPv6 address counts as the IPv4 address it is.
//!
//! **No extra guesses in parallel.** An attempt is counted when it is admitted, before
//! its password is checked, and given back if the password was right; both under one
//! lock, so a thousand connections guessing at once get `max_failures` guesses, not a
//! thousand. Only AUTH / HELLO AUTH come here, never ordinary requests, so a mutex is
//! fine; a panic while it was held (none is expected) does not disable logins for good:
//! the state is used as it was left.
//!
//! **Bounded.** At most `auth.lockout_max_entries` entries, each a fixed size: the user
//! name is kept as a keyed 64-bit hash, whatever length the client sent. A successful
//! login leaves no entry behind. When the table is full, expired entries go first, then
//! the oldest counters, then the oldest locks: an attacker with many names or addresses
//! cannot grow it, and must fill it with fresh entries to push a lock out early.

use crate::config::{AuthConfig, MAX_LOCKOUT_SECS};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Which limit refused an attempt, and for how long still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    pub wait: Duration,
    /// The whole address (`auth.max_unknown_user_failures`) rather than this user from it
    /// (`auth.max_failures`).
    pub address: bool,
}

impl Locked {
    /// The config option whose limit was reached.
    pub fn option(&self) -> &'static str {
        if self.address {
            "auth.max_unknown_user_failures"
        } else {
            "auth.max_failures"
        }
    }
}

/// An admitted attempt, already counted as a failure until [`Lockout::succeeded`] says
/// otherwise.
#[must_use]
pub struct Attempt {
    user: Option<Key>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    max_failures: u32,
    max_unknown: u32,
    window: Duration,
    lockout: Duration,
    max_entries: usize,
}

impl Settings {
    fn from(cfg: &AuthConfig) -> Settings {
        Settings {
            max_failures: cfg.max_failures,
            max_unknown: cfg.max_unknown_user_failures,
            // Bounded by config validation too: `now + lockout` never overflows.
            window: Duration::from_secs(cfg.failure_window_secs.min(MAX_LOCKOUT_SECS)),
            lockout: Duration::from_secs(cfg.lockout_secs.min(MAX_LOCKOUT_SECS)),
            max_entries: cfg.lockout_max_entries.max(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// A user name (hashed) from an address.
    User(IpAddr, u64),
    /// Failures from an address, whatever the user name.
    Address(IpAddr),
}

/// The address failures are counted for: an IPv6 address's /64, an IPv4-mapped IPv6
/// address as IPv4, an IPv4 address as itself.
pub(crate) fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
        }
    }

    fn wait(&self, now: Instant) -> Option<Duration> {
        self.locked_until.filter(|&u| u > now).map(|u| u - now)
    }

    /// Neither locked nor counting any more: forgettable.
    fn expired(&self, now: Instant, window: Duration) -> bool {
        self.wait(now).is_none() && now.duration_since(self.window_start) >= window
    }

    /// Starts a new window if the last one is over (a lock that ran out included).
    fn refresh(&mut self, now: Instant, window: Duration) {
        if self.expired(now, window) {
            *self = Entry::new(now);
        }
    }

    /// Counts a failure; locks when it reaches `max`.
    fn fail(&mut self, now: Instant, max: u32, lockout: Duration) {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= max {
            self.lock(now, lockout);
        }
    }

    fn lock(&mut self, now: Instant, lockout: Duration) {
        // lockout is at most a day (Settings): checked anyway, never a panic under the lock.
        self.locked_until = now.checked_add(lockout).or(Some(now));
        self.failures = 0;
        self.window_start = now;
    }
}

struct State {
    settings: Settings,
    entries: HashMap<Key, Entry>,
}

pub struct Lockout {
    state: Mutex<State>,
    /// Keys the user-name hash (an attacker cannot aim names at one entry).
    names: RandomState,
}

impl Lockout {
    pub fn new(cfg: &AuthConfig) -> Lockout {
        Lockout {
            state: Mutex::new(State {
                settings: Settings::from(cfg),
                entries: HashMap::new(),
            }),
            names: RandomState::new(),
        }
    }

    /// New limits (reload); counts and locks in progress are kept.
    pub fn configure(&self, cfg: &AuthConfig) {
        self.state().settings = Settings::from(cfg);
    }

    /// Entries tracked now (a metric, and tests of the bound).
    pub fn tracked(&self) -> usize {
        self.state().entries.len()
    }

    /// The table, even if a panic left its mutex poisoned (entries are always in a
    /// usable state: at worst a count is off by one).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits an attempt to log in as `user` from `addr`, counting it as a failure until
    /// [`Lockout::succeeded`]; or says which limit refuses it, without the password
    /// being looked at. Whether the name exists is deliberately not asked.
    pub fn admit(&self, addr: IpAddr, user: &[u8]) -> Result<Attempt, Locked> {
        let now = Instant::now();
        let addr = client_key(addr);
        let mut state = self.state();
        let s = state.settings;
        let address = Key::Address(addr);
        if let Some(wait) = state.entries.get(&address).and_then(|e| e.wait(now)) {
            return Err(Locked {
                wait,
                address: true,
            });
        }
        let mut attempt = Attempt { user: None };
        if s.max_failures > 0 {
            let key = Key::User(addr, self.names.hash_one(user));
            let e = state.entry(key, now);
            e.refresh(now, s.window);
            if let Some(wait) = e.wait(now) {
                return Err(Locked {
                    wait,
                    address: false,
                });
            }
            if e.failures >= s.max_failures {
                // Attempts admitted in parallel already hold every guess left.
                e.lock(now, s.lockout);
                return Err(Locked {
                    wait: s.lockout,
                    address: false,
                });
            }
            e.failures += 1;
            attempt.user = Some(key);
        }
        Ok(attempt)
    }

    /// The password was right: the attempt is no failure (an entry left with nothing to
    /// count is dropped, so successful logins leave no trace).
    pub fn succeeded(&self, attempt: Attempt) {
        let Some(key) = attempt.user else { return };
        let mut state = self.state();
        if let Some(e) = state.entries.get_mut(&key) {
            e.failures = e.failures.saturating_sub(1);
            if e.failures == 0 && e.locked_until.is_none() {
                state.entries.remove(&key);
            }
        }
    }

    /// The attempt failed: locks the user at this address past `max_failures`, and the
    /// address past `max_unknown_user_failures` failures on any names.
    pub fn failed(&self, addr: IpAddr, attempt: Attempt) {
        let now = Instant::now();
        let addr = client_key(addr);
        let mut state = self.state();
        let s = state.settings;
        if let Some(key) = attempt.user {
            // Counted at admission; locked now if that was the last guess.
            if let Some(e) = state.entries.get_mut(&key) {
                if s.max_failures > 0 && e.failures >= s.max_failures && e.wait(now).is_none() {
                    e.lock(now, s.lockout);
                }
            }
        }
        if s.max_unknown > 0 {
            let e = state.entry(Key::Address(addr), now);
            e.refresh(now, s.window);
            e.fail(now, s.max_unknown, s.lockout);
        }
        metrics::gauge!("respgate_auth_lockout_entries").set(state.entries.len() as f64);
    }
}

impl State {
    /// `key`'s entry, created (making room first if the table is full) when missing.
    fn entry(&mut self, key: Key, now: Instant) -> &mut Entry {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.settings.max_entries {
            self.make_room(now);
        }
        self.entries.entry(key).or_insert_with(|| Entry::new(now))
    }

    /// Drops expired entries; if that is not enough, the least useful eighth of the
    /// table (counters before locks, oldest first), so the cost of a full table is paid
    /// once per many insertions, not on each.
    fn make_room(&mut self, now: Instant) {
        let window = self.settings.window;
        self.entries.retain(|_, e| !e.expired(now, window));
        let max = self.settings.max_entries;
        let keep = max - (max / 8).max(1);
        if self.entries.len() <= keep {
            return;
        }
        let excess = self.entries.len() - keep;
        let mut ranked: Vec<((bool, Instant), Key)> = self
            .entries
            .iter()
            .map(|(k, e)| ((e.wait(now).is_some(), e.window_start), *k))
            .collect();
        ranked.select_nth_unstable_by_key(excess - 1, |r| r.0);
        for (_, key) in &ranked[..excess] {
            self.entries.remove(key);
        }
        metrics::counter!("respgate_auth_lockout_evicted_total").increment(excess as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_table_still_serves_logins() {
        let lockout = std::sync::Arc::new(Lockout::new(&AuthConfig::default()));
        let l = lockout.clone();
        let _ = std::thread::spawn(move || {
            let _held = l.state.lock().unwrap();
            panic!("poison the lockout mutex");
        })
        .join();
        assert!(lockout.state.is_poisoned());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let attempt = lockout.admit(a, b"svc").unwrap();
        lockout.failed(a, attempt);
        assert_eq!(lockout.tracked(), 2);
    }
}
