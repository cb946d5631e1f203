//! What shape of cluster to start.

use std::path::PathBuf;

/// How to shape a [`DevCluster`].
#[derive(Debug, Clone)]
pub struct DevClusterOptions {
    /// Number of masters; slots are split evenly over them as `redis-cli --cluster create` does.
    pub masters: usize,
    /// Replicas attached to each master.
    pub replicas_per_master: usize,
    /// Node `i` listens on `base_port + i`; `None` picks free loopback ports (what tests want).
    pub base_port: Option<u16>,
    /// Extra `redis.conf` directives, written after ours so they win.
    pub extra_config: Vec<(String, String)>,
    /// `appendonly yes` instead of no persistence at all.
    pub appendonly: bool,
    /// `cluster-node-timeout`; small so failover tests are quick.
    pub node_timeout_ms: u64,
    /// A TLS-only cluster: clients, the cluster bus and replication all speak TLS (the
    /// plain port is disabled). `None`: plain TCP.
    pub tls: Option<DevTls>,
}

/// PEM files for a TLS-only dev cluster. Each node uses `cert`/`key` both as its server
/// certificate and as its client certificate (cluster bus, replication), so `cert` must
/// be valid for `127.0.0.1` and for server and client authentication; nodes require
/// clients to present a certificate signed by `ca` (Redis's `tls-auth-clients yes`).
#[derive(Debug, Clone)]
pub struct DevTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Default for DevClusterOptions {
    fn default() -> Self {
        DevClusterOptions {
            masters: 3,
            replicas_per_master: 1,
            base_port: None,
            extra_config: Vec::new(),
            appendonly: false,
            node_timeout_ms: 2000,
            tls: None,
        }
    }
}
