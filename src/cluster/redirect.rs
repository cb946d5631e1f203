//! The one redirect policy: what a node's `-MOVED`, `-ASK`, `-TRYAGAIN`,
//! `-CLUSTERDOWN` or `-READONLY` reply means for the request that got it. Used by the session (client
//! requests and transactions), the shard pub/sub hub and the shared guard budgets.
//!
//! **Why a policy and not a parser.** A reply is data, not a signal, unless it provably
//! comes from the node's own routing. A script can return any error text
//! (`redis.error_reply('MOVED 0 10.9.9.9:6379')`), so:
//! - a redirection target is followed only when the topology names it
//!   ([`Cluster::known_node`]); an unknown address makes respgate refresh the topology
//!   and route by it again, so respgate's node credentials only ever go to nodes the
//!   cluster itself reported;
//! - a script's (EVAL, EVALSHA, FCALL, ...) reply is final, except a MOVED for the
//!   script's own slot that a topology refreshed after the reply confirms (the slot's
//!   owner is no longer the node that answered): only then can the node not have run
//!   it. A script's TRYAGAIN, CLUSTERDOWN or ASK reaches the client untouched, because
//!   re-sending could run the script, and its writes, again.
//!
//! **READONLY: a demoted master.** After a failover the old master is a replica; it
//! still answers MOVED for keys, but a keyless write (FLUSHDB, FLUSHALL, FUNCTION LOAD,
//! ... sent to every master by the slot of each shard) gets `-READONLY You can't write
//! against a read only replica.` until respgate's topology knows the new master. Redis
//! refuses such a command in `processCommand`, before running it (inside MULTI the
//! refusal flags the transaction and EXEC answers EXECABORT: nothing ran either), so a
//! plain command's READONLY is retried like TRYAGAIN: the topology is refreshed at once
//! and the request routed again by it, within the retry deadline. A script's READONLY
//! stays final (its code may have returned that text, or written before a refused
//! call); only the refresh is asked for.
use super::Cluster;

/// What a backend reply means for routing, by its text alone.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// `-MOVED slot host:port`: the slot lives elsewhere for good.
    Moved { slot: u16, addr: String },
    /// `-ASK slot host:port`: this one request goes elsewhere (slot being migrated).
    Ask { addr: String },
    /// `-TRYAGAIN` / `-CLUSTERDOWN`: retry shortly.
    Retryable,
    /// `-READONLY`: the node is a replica now (a demoted master); it ran nothing.
    ReadOnly,
    /// Anything else: give it to the client as it is.
    Final,
}

/// Classifies a reply; only error replies are looked at beyond their first byte.
#[inline]
pub fn classify_error(reply: &[u8]) -> ReplyKind {
    if reply.first() != Some(&b'-') {
        return ReplyKind::Final;
    }
    let line = &reply[1..reply.len().saturating_sub(2)];
    if line.starts_with(b"TRYAGAIN") || line.starts_with(b"CLUSTERDOWN") {
        return ReplyKind::Retryable;
    }
    if line.starts_with(b"READONLY ") {
        return ReplyKind::ReadOnly;
    }
    let (is_moved, rest) = if let Some(rest) = line.strip_prefix(b"MOVED ") {
        (true, rest)
    } else if let Some(rest) = line.strip_prefix(b"ASK ") {
        (false, rest)
    } else {
        return ReplyKind::Final;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.split(' ');
    let (Some(slot), Some(addr)) = (parts.next(), parts.next()) else {
        return ReplyKind::Final;
    };
    let Ok(slot) = slot.parse::<u16>() else {
        return ReplyKind::Final;
    };
    if slot >= super::slot::SLOTS as u16 {
        return ReplyKind::Final;
    }
    // Redis sends `:port` alone when the node does not know its own address.
    if addr.starts_with(':') {
        return ReplyKind::Final;
    }
    if is_moved {
        ReplyKind::Moved {
            slot,
            addr: addr.to_string(),
        }
    } else {
        ReplyKind::Ask {
            addr: addr.to_string(),
        }
    }
}

/// The slot and address of a `-MOVED slot host:port` reply.
pub fn moved_target(reply: &[u8]) -> Option<(u16, String)> {
    match classify_error(reply) {
        ReplyKind::Moved { slot, addr } => Some((slot, addr)),
        _ => None,
    }
}

/// Who may have produced a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A plain command: only the node's routing answers MOVED/ASK/TRYAGAIN/CLUSTERDOWN.
    Command,
    /// A script or function: its own code may have written any error.
    Script,
}

/// What to do with a reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Re-send to this node of the topology (`asking`: behind `ASKING`); for MOVED,
    /// patch the slot map first.
    Follow {
        addr: String,
        asking: bool,
        moved_slot: Option<u16>,
    },
    /// Refresh the topology and route the request again by it after a backoff (retryable
    /// errors, READONLY from a demoted master, and redirections to addresses the
    /// topology does not name).
    RetryLater,
    /// A script's MOVED for its own slot: re-send only if a topology refreshed after
    /// this reply no longer gives the slot to the node that answered.
    Confirm { slot: u16 },
    /// The client gets the reply as it is.
    Final,
}

/// Decides what `reply` to a request routed by `slot` means.
pub fn decide(cluster: &Cluster, reply: &[u8], origin: Origin, slot: Option<u16>) -> Decision {
    let kind = classify_error(reply);
    match (origin, kind) {
        (_, ReplyKind::Final) => Decision::Final,
        (Origin::Command, ReplyKind::Retryable | ReplyKind::ReadOnly) => Decision::RetryLater,
        (Origin::Script, ReplyKind::ReadOnly) => {
            // Final as it is, but the topology is likely stale: learn the new master now.
            cluster.request_refresh();
            Decision::Final
        }
        (Origin::Command, ReplyKind::Moved { slot: moved, addr }) => {
            match cluster.known_node(&addr) {
                Some(_) => Decision::Follow {
                    addr,
                    asking: false,
                    moved_slot: Some(moved),
                },
                None => Decision::RetryLater,
            }
        }
        (Origin::Command, ReplyKind::Ask { addr }) => match cluster.known_node(&addr) {
            Some(_) => Decision::Follow {
                addr,
                asking: true,
                moved_slot: None,
            },
            None => Decision::RetryLater,
        },
        (Origin::Script, ReplyKind::Moved { slot: moved, .. }) if slot == Some(moved) => {
            Decision::Confirm { slot: moved }
        }
        (Origin::Script, _) => Decision::Final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_redirections() {
        assert_eq!(
            classify_error(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            ReplyKind::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            }
        );
        assert_eq!(
            classify_error(b"-ASK 3999 127.0.0.1:6381\r\n"),
            ReplyKind::Ask {
                addr: "127.0.0.1:6381".into()
            }
        );
        assert_eq!(
            classify_error(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
            ReplyKind::Retryable
        );
        assert_eq!(
            classify_error(b"-CLUSTERDOWN The cluster is down\r\n"),
            ReplyKind::Retryable
        );
        assert_eq!(
            classify_error(b"-READONLY You can't write against a read only replica.\r\n"),
            ReplyKind::ReadOnly
        );
        assert_eq!(classify_error(b"-READONLYX\r\n"), ReplyKind::Final);
        assert_eq!(classify_error(b"-ERR wrong type\r\n"), ReplyKind::Final);
        assert_eq!(classify_error(b"$5\r\nMOVED\r\n"), ReplyKind::Final);
        assert_eq!(
            classify_error(b"-MOVED 16384 127.0.0.1:6381\r\n"),
            ReplyKind::Final
        );
    }

    fn cluster() -> std::sync::Arc<Cluster> {
        Cluster::new(crate::config::ClusterConfig::default())
    }

    #[test]
    fn unknown_addresses_are_never_followed() {
        let c = cluster();
        let moved = b"-MOVED 0 10.9.9.9:6379\r\n";
        assert_eq!(
            decide(&c, moved, Origin::Command, Some(0)),
            Decision::RetryLater
        );
        let ask = b"-ASK 0 10.9.9.9:6379\r\n";
        assert_eq!(
            decide(&c, ask, Origin::Command, Some(0)),
            Decision::RetryLater
        );
    }

    #[test]
    fn a_commands_readonly_is_retried() {
        let c = cluster();
        let ro = b"-READONLY You can't write against a read only replica.\r\n";
        assert_eq!(
            decide(&c, ro, Origin::Command, Some(0)),
            Decision::RetryLater
        );
        assert_eq!(decide(&c, ro, Origin::Command, None), Decision::RetryLater);
    }

    #[test]
    fn a_scripts_errors_are_final_but_its_own_slots_moved() {
        let c = cluster();
        for reply in [
            &b"-TRYAGAIN x\r\n"[..],
            b"-CLUSTERDOWN x\r\n",
            b"-ASK 5 127.0.0.1:1\r\n",
            b"-MOVED 0 127.0.0.1:1\r\n",
            b"-READONLY You can't write against a read only replica.\r\n",
        ] {
            assert_eq!(decide(&c, reply, Origin::Script, Some(5)), Decision::Final);
        }
        assert_eq!(
            decide(&c, b"-MOVED 5 127.0.0.1:1\r\n", Origin::Script, Some(5)),
            Decision::Confirm { slot: 5 }
        );
        assert_eq!(
            decide(&c, b"-MOVED 5 127.0.0.1:1\r\n", Origin::Script, None),
            Decision::Final
        );
    }
}
