//! Issue 14, acceptance 1: Debian's real Prometheus server scrapes a running respgate in
//! front of a 3+3 cluster, and its query API shows one `redis_memory_used_bytes` series
//! per node, data in respgate's request histogram, and `up == 1` for the respgate job.
//!
//! `/usr/bin/prometheus` comes from Debian's `prometheus` package (scripts/test.sh
//! installs it for promtool): the test fails when it is missing, it never skips. The
//! admin listener has a bearer token, so the scrape configuration's `authorization`
//! is exercised too.

use respgate::config::Config;
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Anti-hang bound on Prometheus answering and on the series showing up.
const EVENTUALLY: Duration = Duration::from_secs(30);
const TOKEN: &str = "prometheus-scrape-token";

/// The Prometheus server, killed (and reaped) when the test ends, passing or not.
struct PrometheusServer {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// Starts Prometheus scraping `target`'s `/metrics` every second with the bearer token.
fn start_prometheus(target: SocketAddr) -> PrometheusServer {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} is missing: install Debian's prometheus package (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: respgate\n    metrics_path: /metrics\n    \
         authorization:\n      type: Bearer\n      credentials: {TOKEN}\n    \
         static_configs:\n      - targets: ['{target}']\n"
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let addr = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {PROMETHEUS}: {e}"));
    PrometheusServer {
        child,
        addr,
        _dir: dir,
    }
}

impl PrometheusServer {
    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// One GET to Prometheus's HTTP API (HTTP/1.0, so the body is never chunked): the
    /// status, or `None` while it does not listen yet.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        let head = format!("GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n");
        s.write_all(head.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_string()))
    }

    /// The instant vector of `query`: each series' labels and value.
    async fn query(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let path = format!("/api/v1/query?query={}", urlencode(query));
        let Some((200, body)) = self.get(&path).await else {
            return Vec::new();
        };
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["status"], "success", "{query}: {body}");
        answer["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .map(|s| {
                        let v = s["value"][1].as_str().unwrap().parse().unwrap();
                        (s["metric"].clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Percent-encodes a query string value (everything but unreserved characters).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_respgate_and_sees_every_node() {
    let seeds = support::shared_cluster_seeds();
    let nodes: BTreeSet<String> = support::with_shared_cluster(|c| {
        c.masters()
            .into_iter()
            .flat_map(|m| std::iter::once(m).chain(c.replicas_of(m)))
            .map(|a| a.to_string())
            .collect()
    });
    assert_eq!(nodes.len(), 6, "a 3+3 cluster: {nodes:?}");
    let mut config: Config = support::test_config(&seeds);
    config.admin.listen = Some("127.0.0.1:0".into());
    config.admin.token = Some(TOKEN.into());
    config.admin.cluster_metrics_interval_secs = 1;
    let proxy = support::start_proxy(config).await;
    let admin = proxy.admin_addr().expect("the admin listener is up");
    let mut c = support::client(proxy.local_addr()).await;
    for i in 0..10 {
        let key = format!("prometheus:{i}");
        let _: () = redis::AsyncCommands::set(&mut c, &key, i).await.unwrap();
        let _: Option<i32> = redis::AsyncCommands::get(&mut c, &key).await.unwrap();
    }

    let prometheus = start_prometheus(admin);
    let start = Instant::now();
    while !matches!(prometheus.get("/-/ready").await, Some((200, _))) {
        assert!(
            start.elapsed() < EVENTUALLY,
            "Prometheus not ready after {EVENTUALLY:?}:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let start = Instant::now();
    loop {
        let memory = prometheus.query("redis_memory_used_bytes").await;
        let addrs: BTreeSet<String> = memory
            .iter()
            .filter_map(|(m, _)| m["addr"].as_str().map(str::to_string))
            .collect();
        let count = prometheus.query("count(redis_memory_used_bytes)").await;
        let requests = prometheus
            .query("sum(respgate_command_duration_seconds_count)")
            .await;
        let up = prometheus.query("up{job=\"respgate\"}").await;
        let done = count.first().map(|(_, v)| *v) == Some(6.0)
            && memory.len() == 6
            && addrs == nodes
            && requests.first().is_some_and(|(_, v)| *v >= 20.0)
            && up.len() == 1
            && up[0].1 == 1.0;
        if done {
            break;
        }
        assert!(
            start.elapsed() < EVENTUALLY,
            "after {EVENTUALLY:?}: count {count:?}, addrs {addrs:?} (want {nodes:?}), \
             requests {requests:?}, up {up:?}\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(prometheus);
    proxy.shutdown().await;
}
