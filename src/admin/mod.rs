//! The admin listener (`[admin]`): what operators, Prometheus and load balancers ask a
//! running respgate, over plain HTTP/1.1 on an address of its own, never on the client
//! port.
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition of everything recorded through `metrics` |
//! | `GET /healthz` | `200 ok`: the process is alive (no token needed) |
//! | `GET /readyz` | `200 ready` when respgate can serve every slot, else `503` and why |
//! | `GET /topology` | JSON: shards, their masters, replicas (lag, eligibility) and slots |
//!
//! Off unless `[admin] listen` is set: then, and only then, the Prometheus recorder is
//! installed ([`recorder`]); without it every `metrics` call of the data path stays a
//! no-op. With `token` set `/metrics` and `/topology` need `Authorization: Bearer
//! <token>` (compared in constant time). `/healthz` and `/readyz` stay open: a probe
//! should not fail when a secret is rotated, and a kubelet's httpGet probe cannot read
//! a token from a Secret at all; without the token `/readyz` gives its status code and
//! `not ready` but not the reason (which names nodes' addresses).
//!
//! Layer: above `cluster`, `backend` and `config` (it reads the topology and pings the
//! masters), below `server`, which binds it at start and stops it with the other
//! background tasks once the client listeners have drained. It never touches a session.
//! HTTP is hyper's (HTTP/1.1 only, one task per connection, bounded in number, header
//! read timeout): a scrape endpoint needs no more, and a hand-written parser would be
//! more code to trust on a port that may face a network.

mod conns;
mod http;
pub mod ready;
mod recorder;
mod sample;
mod topology;

pub use recorder::{idle_after, install as install_recorder};

use crate::cluster::replicas::ReadPolicy;
use crate::cluster::Cluster;
use crate::config::AdminConfig;
use crate::shutdown::Shutdown;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// The bearer token, kept as its SHA-256 digest: what a request's token is compared
/// with (hashed once here, not at every request).
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &[u8]) -> TokenDigest {
        use sha2::Digest as _;
        TokenDigest(sha2::Sha256::digest(token).into())
    }
}

/// What the admin endpoints read: the running proxy's parts.
pub struct AdminState {
    pub cluster: Arc<Cluster>,
    /// The replica-read policy, when enabled: replicas' lag and eligibility come from it.
    pub read_policy: Option<Arc<ReadPolicy>>,
    /// The client listeners are up while the level is `RUNNING`.
    pub shutdown: Arc<Shutdown>,
    pub metrics: PrometheusHandle,
    /// The bearer token every request but `/healthz` must carry (`None`: open).
    pub token: Option<TokenDigest>,
    /// `/readyz`'s last answer, shared by the probes that arrive while it is fresh.
    pub ready: ready::Cache,
    /// Sampled into gauges at scrape time ([`sample`]): the clients connected now (read
    /// from the sessions' count by `server`: this module does not import `session`),
    /// the process byte budget and the login lockout table.
    pub clients: Box<dyn Fn() -> usize + Send + Sync>,
    pub client_buffers: Arc<crate::budget::ClientBuffers>,
    pub security: Arc<crate::acl::Security>,
}

/// Binds `[admin] listen` (`None` when the admin listener is off), at start, so that a
/// port already in use is reported before anything else runs.
pub async fn bind(config: &AdminConfig) -> std::io::Result<Option<TcpListener>> {
    let Some(addr) = &config.listen else {
        return Ok(None);
    };
    TcpListener::bind(addr).await.map(Some).map_err(|e| {
        std::io::Error::new(e.kind(), format!("admin.listen {addr}: cannot listen: {e}"))
    })
}

/// Serves the admin endpoints on `listener` and keeps the recorder's histograms drained;
/// the handles stop both (the server aborts them with its background tasks).
pub fn spawn(listener: TcpListener, state: AdminState) -> Vec<AbortHandle> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, token = state.token.is_some(), "admin endpoint listening");
        if !addr.ip().is_loopback() && state.token.is_none() {
            tracing::warn!(%addr, "the admin endpoint is reachable from the network without a token: /topology shows the cluster's addresses to anyone who can connect; set [admin] token or token_env");
        }
    }
    sample::describe();
    let upkeep = tokio::spawn(recorder::upkeep(state.metrics.clone()));
    let server = tokio::spawn(http::serve(listener, Arc::new(state)));
    vec![upkeep.abort_handle(), server.abort_handle()]
}
