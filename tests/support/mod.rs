//! Shared test fixtures: a real Redis Cluster and respgate in front of it.
//!
//! One cluster per test binary ([`shared_cluster`]), started on first use and stopped at
//! process exit; tests that break things (failover, migration, pauses) start a private
//! one with [`DevCluster::start`]. Each test starts its own in-process respgate on an
//! ephemeral port ([`start_proxy`]) and uses its own key prefix, so tests sharing the
//! cluster never see each other's keys.
#![allow(dead_code)]

use respgate::config::Config;
use respgate::devcluster::{DevCluster, DevClusterOptions};
use respgate::server::Proxy;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static SHARED: OnceLock<Mutex<Option<DevCluster>>> = OnceLock::new();

extern "C" fn stop_shared_cluster() {
    if let Some(m) = SHARED.get() {
        if let Ok(mut guard) = m.lock() {
            if let Some(mut c) = guard.take() {
                c.shutdown();
            }
        }
    }
}

/// Seeds of the cluster shared by every test in this binary. Fails the test (never
/// skips) when redis-server is missing.
pub fn shared_cluster_seeds() -> Vec<SocketAddr> {
    let m = SHARED.get_or_init(|| {
        let c = DevCluster::start(DevClusterOptions::default())
            .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
        // SAFETY: registering a plain extern "C" fn with atexit.
        unsafe {
            libc::atexit(stop_shared_cluster);
        }
        Mutex::new(Some(c))
    });
    m.lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .expect("shared cluster already stopped")
        .seeds()
}

/// Runs `f` with the shared cluster (for direct node access).
pub fn with_shared_cluster<T>(f: impl FnOnce(&DevCluster) -> T) -> T {
    shared_cluster_seeds();
    let guard = SHARED
        .get()
        .unwrap()
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    f(guard.as_ref().unwrap())
}

/// A configuration for a proxy on an ephemeral loopback port in front of `seeds`.
pub fn test_config(seeds: &[SocketAddr]) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.cluster.seeds = seeds.iter().map(|s| s.to_string()).collect();
    c
}

/// Starts respgate with `config` and waits until it has discovered the whole cluster.
pub async fn start_proxy(config: Config) -> Proxy {
    let proxy = Proxy::start(config).await.expect("respgate starts");
    proxy
        .wait_ready(Duration::from_secs(20))
        .await
        .expect("respgate discovers the cluster");
    proxy
}

/// respgate in front of the shared cluster, with default settings.
pub async fn proxy_for_shared() -> Proxy {
    start_proxy(test_config(&shared_cluster_seeds())).await
}

/// An async `redis` crate connection to `addr` (a plain single-node client, as services
/// use respgate).
pub async fn client(addr: SocketAddr) -> redis::aio::MultiplexedConnection {
    let c = redis::Client::open(format!("redis://{addr}/")).unwrap();
    c.get_multiplexed_async_connection().await.unwrap()
}

/// Sends raw bytes and reads until `expect_len` bytes arrived or the peer closed.
pub async fn raw_exchange(addr: SocketAddr, send: &[u8], wait: Duration) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(send).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}
