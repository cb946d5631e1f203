//! The node parameters respgate manages: CONFIG SET of any of them is refused.
//!
//! **Why.** CONFIG SET through respgate goes to every node (`config_set.rs`). Some
//! parameters decide how respgate reaches and authenticates to the nodes, or what the
//! cluster it routes for looks like; set on every node at once, one of them takes the
//! whole cluster away from respgate (a new `requirepass` fails every new backend
//! connection with NOAUTH, and the client's own `CONFIG SET requirepass ""` can no longer
//! get through to undo it). These are changed on the nodes and in respgate's config
//! together, by an operator, never through respgate. The refusal covers the whole
//! request (as Redis refuses a multi-parameter CONFIG SET as one), for admins too.
//!
//! **Which** (exact names, case-insensitive; Redis 7.0's `CONFIG GET *` names):
//! - how respgate reaches a node: `port`, `bind`, `bind-source-addr`, `unixsocket`,
//!   `unixsocketperm`, `protected-mode`, every `tls-*`;
//! - how it authenticates: `requirepass`, `aclfile` (the node users respgate mirrors);
//! - how nodes reach each other (replication feeds the replicas respgate reads from):
//!   `masterauth`, `masteruser`, `replicaof`/`slaveof` (REPLICAOF itself is refused too);
//! - the cluster respgate routes for: every `cluster-*` (announced addresses, ports,
//!   failover timing and coverage);
//! - where the nodes write their data: `dir`, `dbfilename`, `appendfilename`,
//!   `appenddirname` (with `dir` a client could make a node write its dump anywhere the
//!   node process may write, the classic way into a Redis host).
//!
//! Left alone: capacity and tuning (`maxclients`, `timeout`, `maxmemory*`, ...), which a
//! tenant admin legitimately changes and respgate survives (it reconnects).

use crate::protocol::refusal::Refusal;
use crate::protocol::Args;

/// Each managed name (or `prefix*`) and why respgate manages it.
const MANAGED: &[(&str, &str)] = &[
    ("requirepass", CUT_OFF),
    ("aclfile", CUT_OFF),
    ("port", REACH),
    ("bind", REACH),
    ("bind-source-addr", REACH),
    ("unixsocket", REACH),
    ("unixsocketperm", REACH),
    ("protected-mode", REACH),
    ("tls-*", REACH),
    ("masterauth", REPLICATION),
    ("masteruser", REPLICATION),
    ("replicaof", REPLICATION),
    ("slaveof", REPLICATION),
    ("cluster-*", CLUSTER),
    ("dir", FILES),
    ("dbfilename", FILES),
    ("appendfilename", FILES),
    ("appenddirname", FILES),
];

const CUT_OFF: &str = "it would cut respgate off from the cluster nodes";
const REACH: &str = "it changes how respgate reaches the cluster nodes";
const REPLICATION: &str = "it changes how replicas reach their masters";
const CLUSTER: &str = "it changes the cluster respgate routes for";
const FILES: &str = "it changes where the nodes write their data";

/// The refusal of `CONFIG SET p v [p v ...]` when it names a managed parameter (the
/// first one it names). A request of the wrong shape is left to the nodes' own error.
pub fn refusal(args: Args<'_>) -> Option<Refusal> {
    if args.len() < 4 || args.len() % 2 != 0 {
        return None;
    }
    args.iter().skip(2).step_by(2).find_map(|name| {
        let why = why_managed(name)?;
        Some(Refusal::ConfigManaged {
            parameter: String::from_utf8_lossy(name).into_owned(),
            why,
        })
    })
}

/// Why `name` is managed, if it is.
fn why_managed(name: &[u8]) -> Option<&'static str> {
    MANAGED.iter().find_map(|(pattern, why)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => {
                name.len() > prefix.len()
                    && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }
            None => name.eq_ignore_ascii_case(pattern.as_bytes()),
        };
        hit.then_some(*why)
    })
}

#[cfg(test)]
mod tests {
    use super::why_managed;

    #[test]
    fn managed_names_match_exactly_and_case_insensitively() {
        for name in [
            "requirepass",
            "REQUIREPASS",
            "Port",
            "tls-port",
            "cluster-announce-ip",
            "dir",
        ] {
            assert!(why_managed(name.as_bytes()).is_some(), "{name}");
        }
        for name in [
            "maxmemory-policy",
            "tls",
            "cluster",
            "dirx",
            "ports",
            "requirepass2",
        ] {
            assert!(why_managed(name.as_bytes()).is_none(), "{name}");
        }
    }
}
