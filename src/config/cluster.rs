//! `[cluster]`: the Redis Cluster behind respgate, and the checks its settings allow
//! alone (seeds, password source, reply bound, timeouts).

use super::{invalid, Invalid, UpstreamTlsConfig};
use serde::Deserialize;
use std::time::Duration;

/// The Redis Cluster behind respgate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `host:port` of nodes to discover the cluster from; any may be down.
    pub seeds: Vec<String>,
    /// Multiplexed connections per backend node and worker thread, shared by that
    /// worker's clients.
    pub connections_per_node: usize,
    pub connect_timeout_ms: u64,
    /// A backend that has not answered its oldest request for this long is considered
    /// hung: the link is closed and the requests on it fail with an error.
    pub request_timeout_ms: u64,
    /// TRYAGAIN / CLUSTERDOWN / unreachable node: retried with backoff until this
    /// deadline (from the request's arrival), then the client gets the error.
    pub retry_deadline_ms: u64,
    /// MOVED / ASK redirections followed for one request before giving up.
    pub max_redirects: u32,
    /// Periodic topology refresh.
    pub refresh_interval_ms: u64,
    /// Refreshes triggered by MOVED or connection loss are at most this frequent.
    pub refresh_min_interval_ms: u64,
    /// Upstream `AUTH` user (omit for the `default` user).
    pub username: Option<String>,
    /// Upstream `AUTH` password. Prefer `password_env`.
    pub password: Option<String>,
    /// Name of an environment variable that holds the upstream password.
    pub password_env: Option<String>,
    /// TLS to the nodes (`[cluster.tls]`); absent: plain TCP.
    pub tls: Option<UpstreamTlsConfig>,
    /// Largest reply (or a transaction's replies together) respgate buffers from a node.
    /// A larger one is never buffered whole: the client gets an error naming this
    /// option and the rest of the reply is discarded as it arrives.
    pub max_reply_bytes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            seeds: vec!["127.0.0.1:7000".into()],
            connections_per_node: 1,
            connect_timeout_ms: 1000,
            request_timeout_ms: 5000,
            retry_deadline_ms: 3000,
            max_redirects: 5,
            refresh_interval_ms: 10_000,
            refresh_min_interval_ms: 100,
            username: None,
            password: None,
            password_env: None,
            tls: None,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

/// Redis's proto-max-bulk-len: the largest string a node stores, so any one value can
/// still be read whole.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 512 * 1024 * 1024;
/// Below this, respgate's own control-plane replies (`COMMAND`, `CLUSTER SHARDS`)
/// could be refused.
pub const MIN_MAX_REPLY_BYTES: usize = 1024 * 1024;

impl ClusterConfig {
    /// The upstream password, from the file or the environment.
    pub fn upstream_password(&self) -> Option<String> {
        super::secret(&self.password, &self.password_env)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn retry_deadline(&self) -> Duration {
        Duration::from_millis(self.retry_deadline_ms)
    }
}

/// Splits `host:port` (IPv6 as `[::1]:6379`).
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some((host, port))
}

impl ClusterConfig {
    /// Seeds, the password's source, the reply bound and the timeouts.
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.seeds.is_empty() {
            return Err(invalid(
                "cluster.seeds",
                "list at least one node, e.g. [\"10.0.0.1:6379\"]",
            ));
        }
        for (i, seed) in self.seeds.iter().enumerate() {
            if split_host_port(seed).is_none() {
                return Err(invalid(
                    &format!("cluster.seeds[{i}]"),
                    format!("{seed:?} is not host:port"),
                ));
            }
        }
        super::check_secret("cluster", "password", &self.password, &self.password_env)?;
        if self.max_reply_bytes < MIN_MAX_REPLY_BYTES {
            return Err(invalid(
                "cluster.max_reply_bytes",
                format!(
                    "must be at least {MIN_MAX_REPLY_BYTES} (1 MiB), got {}",
                    self.max_reply_bytes
                ),
            ));
        }
        for (key, ms) in [
            ("cluster.request_timeout_ms", self.request_timeout_ms),
            ("cluster.connect_timeout_ms", self.connect_timeout_ms),
        ] {
            if ms == 0 {
                return Err(invalid(key, "timeouts must be above 0"));
            }
        }
        Ok(())
    }
}
