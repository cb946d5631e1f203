//! Replication lag as the replica-read tracker (`cluster::replicas`) measures it, kept
//! on each node's handle so a read can check its replica without a lookup. Plain data:
//! the tracker writes it, the session reads it.

use crate::config::MAX_LAG_BOUNDS as MAX_BOUNDS;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};

/// What the tracker measured of one node (kept on its [`super::Node`]).
#[derive(Default)]
pub struct Lag {
    /// When this node last answered the tracker as a master (ms; 0: never).
    pub master_ok_ms: AtomicU64,
    /// When the tracker last failed to reach it as a master (ms; 0: never).
    pub master_fail_ms: AtomicU64,
    /// The newest heartbeat read from this node (0: none yet).
    pub heartbeat_ms: AtomicU64,
    pub link_up: AtomicBool,
    pub bytes_behind: AtomicU64,
    /// Per bound: when the node was last seen outside it.
    pub last_outside_ms: [AtomicU64; MAX_BOUNDS],
    /// Reads on this replica that were hedged (sent to the master too, see
    /// `session::hedge`) since it last answered the tracker's poll.
    pub hedge_strikes: AtomicU32,
}
