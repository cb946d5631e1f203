//! Connections of a client's own to a node (blocking commands, WATCH and what follows
//! it on the watched slot), and the two bounds on them.
//!
//! **Why two bounds.** Each such connection is a real socket and a client on the node,
//! held as long as the client blocks or watches. `server.max_dedicated_connections`
//! bounds them for the whole process; alone, it is a pool the first tenant to open
//! 1,000 `BLPOP k 0` empties for every other tenant. So each user also has a quota
//! (`server.max_dedicated_per_user`, or its own `max_dedicated_connections` in
//! `[[auth.users]]`): a tenant at its quota is refused, the others are not.
//!
//! **Refusals** name the limit that refused (per user or for all users) and what asked
//! for the connection ([`Pin`]). A refused WATCH leaves the client as if it had not
//! been sent (no slot watched: the slot's later commands go on the shared links), as
//! Redis leaves a client whose WATCH failed.
//!
//! **Cost.** A place is taken when a connection is opened (once per client and node),
//! never per request.

use crate::acl::User;
use crate::backend::{DedicatedLink, NodeIdentity};
use crate::guards::in_flight::{Held, PerUser};
use crate::protocol::refusal::Refusal;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What needs a connection of the client's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// A blocking command (BLPOP, XREAD BLOCK, ...).
    Blocking,
    /// WATCH, which pins the client to a connection for its slot.
    Watch,
    /// A command for the watched slot (or UNWATCH / DISCARD), on that connection.
    Watched,
    /// EXEC of a transaction whose keys are watched (MULTI pinned by WATCH).
    Exec,
    /// MONITOR: one connection to each master.
    Monitor,
}

impl Pin {
    /// The kind, as refusals name it.
    pub fn what(self) -> &'static str {
        match self {
            Pin::Blocking => "blocking command",
            Pin::Watch => "WATCH",
            Pin::Watched => "command on a WATCHed slot",
            Pin::Exec => "EXEC of a WATCHed transaction (MULTI pinned by WATCH)",
            Pin::Monitor => "MONITOR",
        }
    }
}

/// The bounds on clients' own connections.
pub struct Quota {
    global: Arc<Semaphore>,
    max_global: usize,
    per_user: PerUser,
    default_per_user: usize,
}

/// One connection's place in both bounds; given back when dropped.
pub struct Place {
    _user: Held,
    _global: OwnedSemaphorePermit,
}

impl Quota {
    /// `server.max_dedicated_connections`, `server.max_dedicated_per_user`.
    pub fn new(max_global: usize, default_per_user: usize) -> Quota {
        Quota {
            global: Arc::new(Semaphore::new(max_global)),
            max_global,
            per_user: PerUser::default(),
            default_per_user,
        }
    }

    /// A place for one more connection of a client of `user` (`name` when it has no
    /// user object), needed by `pin`; else the refusal naming the limit.
    pub fn take(&self, name: &str, user: Option<&User>, pin: Pin) -> Result<Place, Bytes> {
        let own = user.and_then(|u| u.max_dedicated);
        let max = own.unwrap_or(self.default_per_user);
        let held = self.per_user.try_hold(name, max).map_err(|held| {
            metrics::counter!("respgate_dedicated_refused_total", "limit" => "user").increment(1);
            let limit = match own {
                Some(n) => {
                    format!("max_dedicated_connections = {n} of user '{name}' in [[auth.users]]")
                }
                None => format!("server.max_dedicated_per_user = {max}"),
            };
            Refusal::DedicatedPerUser {
                what: pin.what(),
                user: name.to_string(),
                held,
                limit,
            }
            .reply()
        })?;
        let global = self.global.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("respgate_dedicated_refused_total", "limit" => "global").increment(1);
            Refusal::DedicatedGlobal {
                what: pin.what(),
                max: self.max_global,
            }
            .reply()
        })?;
        Ok(Place {
            _user: held,
            _global: global,
        })
    }
}

/// Why a connection of the client's own could not be had.
pub(super) enum DedicatedError {
    /// A bound on such connections refused it: this error reply is the client's.
    Refused(Bytes),
    /// Not a node of the topology.
    Other(String),
}

impl super::Session {
    /// This client's own connection to `addr`, opened on first use within the bounds
    /// on such connections (`server.max_dedicated_connections`, and per user).
    pub(super) fn dedicated_link(
        &mut self,
        addr: &str,
        identity: Option<&Arc<NodeIdentity>>,
        pin: Pin,
    ) -> Result<&DedicatedLink, DedicatedError> {
        // One link per node, kept while the client lives: a link with a command in
        // flight must not be dropped when the client's next blocking command goes to
        // another node.
        let resp3 = self.client.resp3;
        if let Some(i) = self
            .pipe
            .dedicated
            .iter()
            .position(|(l, _)| l.addr() == addr && l.resp3() == resp3 && l.runs_as(identity))
        {
            return Ok(&self.pipe.dedicated[i].0);
        }
        let permit = self
            .ctx
            .dedicated
            .take(
                self.client.auth.name(),
                self.client.auth.user().map(|u| &**u),
                pin,
            )
            .map_err(DedicatedError::Refused)?;
        if self.ctx.cluster.known_node(addr).is_none() {
            return Err(DedicatedError::Other(format!(
                "{addr} is not a node of the cluster's topology"
            )));
        }
        let link = self
            .ctx
            .cluster
            .dedicated_link(addr, resp3, identity.cloned());
        self.client
            .entry
            .dedicated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Arc::from(addr), link.backend_id()));
        self.pipe.dedicated.push((link, permit));
        Ok(&self.pipe.dedicated.last().expect("just pushed").0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Acl;

    fn text(b: &Bytes) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn a_user_at_its_quota_is_refused_others_are_not_and_the_refusal_names_the_limit() {
        let q = Quota::new(3, 2);
        let a1 = q.take("a", None, Pin::Blocking).unwrap();
        let _a2 = q.take("a", None, Pin::Blocking).unwrap();
        let e = q.take("a", None, Pin::Watch).err().unwrap();
        assert_eq!(
            text(&e),
            "-ERR respgate: WATCH refused: user 'a' already holds 2 connections of its own (blocking commands, WATCH), its limit (server.max_dedicated_per_user = 2)\r\n"
        );
        let _b = q.take("b", None, Pin::Watch).unwrap();
        // Global: 3 taken.
        let e = q.take("c", None, Pin::Exec).err().unwrap();
        assert!(
            text(&e).contains("EXEC of a WATCHed transaction (MULTI pinned by WATCH) refused: every connection of clients' own is taken (server.max_dedicated_connections = 3"),
            "{}",
            text(&e)
        );
        drop(a1);
        let _c = q.take("c", None, Pin::Blocking).unwrap();
        // A user's own quota replaces the default.
        let mut big = User::new("big", Acl::parse("on nopass ~* +@all").unwrap());
        big.max_dedicated = Some(1);
        let q = Quota::new(10, 5);
        let _x = q.take("big", Some(&big), Pin::Blocking).unwrap();
        let e = q.take("big", Some(&big), Pin::Blocking).err().unwrap();
        assert!(
            text(&e).contains("(max_dedicated_connections = 1 of user 'big' in [[auth.users]])"),
            "{}",
            text(&e)
        );
    }
}
