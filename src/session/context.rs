//! What every session reads and no session owns: the cluster, the configured bounds,
//! and the shared registries (clients, pub/sub, users, guards, scripts). Built once by
//! the server and handed to each session as an `Arc`.

use super::dedicated;
use crate::clients;
use crate::cluster::Cluster;
use crate::protocol::scan::RequestLimits;
use std::sync::Arc;
use std::time::Duration;

/// Settings and shared state every session reads.
pub struct SessionContext {
    pub cluster: Arc<Cluster>,
    /// The configured per-client bounds.
    pub bounds: Bounds,
    /// The process-wide budget for client buffers (`max_client_buffer_bytes`).
    pub client_buffers: Arc<crate::budget::ClientBuffers>,
    /// Connected clients (for INFO's Proxy section).
    pub clients: std::sync::atomic::AtomicUsize,
    /// Bounds on clients' own backend connections (blocking commands, WATCH), for all
    /// and per user.
    pub dedicated: dedicated::Quota,
    /// The shared pub/sub subscription.
    pub pubsub: crate::pubsub::PubSubHub,
    /// Every connected client (CLIENT LIST / KILL).
    pub registry: clients::ClientRegistry,
    /// Users and their permissions (swapped on reload), lockout counters.
    pub security: Arc<crate::acl::Security>,
    /// `[replica_reads]`, when any read may go to a replica.
    pub read_policy: Option<Arc<crate::cluster::replicas::ReadPolicy>>,
    /// Guard rules and the TTL policy (swapped on reload).
    pub guards: Arc<crate::guards::Guards>,
    /// How scripts run under their caller's rules (mirrors rebuilt on reload).
    pub scripts: Arc<crate::scripts::Scripts>,
    /// CLIENT PAUSE: held sessions wait on it (`io/hold.rs`).
    pub pause: Arc<crate::pause::Pause>,
    /// `[compat]`: cross-slot commands computed or refused (swapped on reload).
    pub cross_slot: Arc<super::cross_slot::Settings>,
}

/// The configured bounds every session applies to its client: plain numbers from
/// `[server]` and `[cluster]`, apart from the shared state.
pub struct Bounds {
    pub limits: RequestLimits,
    /// Per-client byte bounds (`max_pending_reply_bytes`, `pubsub_queue_bytes`).
    pub output_limits: crate::budget::OutputLimits,
    pub max_pending: usize,
    /// `server.max_transaction_bytes`: bytes one transaction may queue.
    pub max_transaction: usize,
    /// `server.max_client_name_bytes`: the longest client name.
    pub max_client_name: usize,
    pub idle_timeout: Option<Duration>,
    pub stall_timeout: Duration,
    pub retry_deadline: Duration,
    pub max_redirects: u32,
    /// Messages a subscriber may have queued before it is disconnected.
    pub pubsub_queue: usize,
}
