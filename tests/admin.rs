//! The admin listener (`[admin]`): `/metrics`, `/healthz`, `/readyz`, `/topology`, the
//! bearer token, and `/readyz` through a master's death and its replica's promotion.
//!
//! The Prometheus recorder is process-global: every proxy of this binary renders the
//! same registry (the first proxy with `[admin]` installs it, later ones reuse it), so
//! the checks look for series, not exact totals.

use devcluster::{DevCluster, DevClusterOptions};
use redis::AsyncCommands;
use respgate::config::Config;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

/// Anti-hang bound on waiting for a state (not a latency assertion).
const EVENTUALLY: Duration = Duration::from_secs(60);

fn admin_config(seeds: &[SocketAddr], token: Option<&str>) -> Config {
    let mut config = support::test_config(seeds);
    config.admin.listen = Some("127.0.0.1:0".into());
    config.admin.token = token.map(str::to_string);
    config
}

/// Polls `path` until its status is `want`; the last answer on failure.
async fn eventually(addr: SocketAddr, path: &str, want: u16, what: &str) -> String {
    let start = Instant::now();
    loop {
        let (status, body) = support::http_get(addr, path, None).await;
        if status == want {
            return body;
        }
        assert!(
            start.elapsed() < EVENTUALLY,
            "{what}: {path} still {status} ({body:?}) after {EVENTUALLY:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_expose_per_command_requests_and_latency() {
    let proxy = support::start_proxy(admin_config(&support::shared_cluster_seeds(), None)).await;
    let admin = proxy.admin_addr().expect("the admin listener is up");
    let mut c = support::client(proxy.local_addr()).await;
    for i in 0..5 {
        let _: () = c.set(format!("admin:m:{i}"), i).await.unwrap();
        let _: Option<i32> = c.get(format!("admin:m:{i}")).await.unwrap();
    }
    let (status, body) = support::http_get(admin, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    let requests = body
        .lines()
        .find(|l| l.starts_with("respgate_command_requests_total{command=\"get\"}"))
        .unwrap_or_else(|| panic!("no GET request counter in:\n{body}"));
    let n: f64 = requests.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 5.0, "{requests}");
    // A true histogram, with the documented buckets.
    for le in ["0.00005", "0.001", "1", "+Inf"] {
        let bucket =
            format!("respgate_command_duration_seconds_bucket{{command=\"get\",le=\"{le}\"}}");
        assert!(body.contains(&bucket), "no {bucket} in:\n{body}");
    }
    assert!(body.contains("respgate_command_duration_seconds_count{command=\"get\"}"));
    // Only commands that were used have series: ~370 commands and subcommands with a
    // histogram each would be ~6,600 series per scrape.
    let commands = body
        .lines()
        .filter(|l| l.starts_with("respgate_command_requests_total{"))
        .count();
    assert!(commands < 60, "{commands} commands have series");
    let (status, body) = support::http_get(admin, "/healthz", None).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = support::http_get(admin, "/nowhere", None).await;
    assert_eq!(status, 404);
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(
        b"POST /metrics HTTP/1.1\r\nHost: r\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_token_is_required_when_set() {
    let token = "s3cr3t-admin-token";
    let proxy =
        support::start_proxy(admin_config(&support::shared_cluster_seeds(), Some(token))).await;
    let admin = proxy.admin_addr().unwrap();
    for path in ["/metrics", "/topology"] {
        assert_eq!(
            support::http_get(admin, path, None).await.0,
            401,
            "{path} without a token"
        );
        assert_eq!(
            support::http_get(admin, path, Some("wrong")).await.0,
            401,
            "{path}, wrong token"
        );
        let (status, body) = support::http_get(admin, path, Some(token)).await;
        assert_eq!(status, 200, "{path} with the token: {body}");
    }
    // Liveness and readiness need no secret (a kubelet's probe cannot send one).
    assert_eq!(support::http_get(admin, "/healthz", None).await.0, 200);
    let (status, body) = support::http_get(admin, "/readyz", Some("wrong")).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    proxy.shutdown().await;
}

/// Without the token a probe learns ready or not, never why (the reason names nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_gives_the_reason_only_with_the_token() {
    let token = "s3cr3t-admin-token";
    let mut config = admin_config(&["127.0.0.1:1".parse().unwrap()], Some(token));
    config.cluster.connect_timeout_ms = 200;
    support::use_workers();
    let proxy = respgate::server::Proxy::start(config).await.unwrap();
    let admin = proxy.admin_addr().unwrap();
    let (status, body) = support::http_get(admin, "/readyz", None).await;
    assert_eq!((status, body.as_str()), (503, "not ready\n"));
    let (status, body) = support::http_get(admin, "/readyz", Some(token)).await;
    assert_eq!(status, 503);
    assert!(body.starts_with("not ready: "), "{body}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn topology_lists_three_shards_covering_every_slot() {
    let proxy = support::start_proxy(admin_config(&support::shared_cluster_seeds(), None)).await;
    let (status, body) = support::http_get(proxy.admin_addr().unwrap(), "/topology", None).await;
    assert_eq!(status, 200, "{body}");
    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(t["known"], true);
    assert_eq!(t["covered_slots"], 16384);
    let shards = t["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3, "{body}");
    let masters = support::with_shared_cluster(|c| c.masters());
    for shard in shards {
        let master: SocketAddr = shard["master"].as_str().unwrap().parse().unwrap();
        assert!(masters.contains(&master), "{master} not in {masters:?}");
        assert!(!shard["slots"].as_array().unwrap().is_empty());
        let replicas = shard["replicas"].as_array().unwrap();
        assert_eq!(replicas.len(), 1, "{shard}");
        // Lag is measured only with replica reads enabled.
        assert!(replicas[0]["lag_ms"].is_null(), "{shard}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn topology_shows_replica_lag_and_eligibility_when_measured() {
    let mut config = admin_config(&support::shared_cluster_seeds(), None);
    config.replica_reads.default_policy = respgate::config::ReadPolicyKind::PreferReplica;
    config.replica_reads.max_lag_ms = 5_000;
    config.replica_reads.poll_interval_ms = 50;
    config.replica_reads.recover_ms = 100;
    let proxy = support::start_proxy(config).await;
    let admin = proxy.admin_addr().unwrap();
    let start = Instant::now();
    loop {
        let (status, body) = support::http_get(admin, "/topology", None).await;
        assert_eq!(status, 200, "{body}");
        let t: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(t["replica_lag_measured"], true);
        let replicas: Vec<&serde_json::Value> = t["shards"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["replicas"].as_array().unwrap())
            .collect();
        assert_eq!(replicas.len(), 3, "{body}");
        let measured = replicas
            .iter()
            .all(|r| r["lag_ms"].is_u64() && r["link"] == "up" && r["eligible"] == true);
        if measured {
            break;
        }
        assert!(start.elapsed() < EVENTUALLY, "lag never measured: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.shutdown().await;
}

/// Acceptance 3: `/readyz` is 503 while a killed master's slots are unserved, 200 again
/// once its replica took over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_a_master_kill_and_its_failover() {
    let mut cluster = DevCluster::start(DevClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    let proxy = support::start_proxy(admin_config(&cluster.seeds(), None)).await;
    let admin = proxy.admin_addr().unwrap();
    eventually(admin, "/readyz", 200, "before the kill").await;

    let victim = cluster.masters()[1];
    let replica = cluster.replicas_of(victim)[0];
    let victim_links = format!("respgate_backend_links_connected{{addr=\"{victim}\"}}");
    let links_up = |body: &str| sample(body, &victim_links).is_some_and(|n| n >= 1.0);
    // /readyz pings every master on its links: the victim's are open.
    let body = eventually(admin, "/metrics", 200, "a scrape").await;
    assert!(links_up(&body), "{victim_links} in:\n{body}");
    tokio::task::block_in_place(|| cluster.kill_node(victim));
    let why = eventually(admin, "/readyz", 503, "after the kill").await;
    assert!(why.starts_with("not ready: "), "{why}");
    eprintln!("after killing {victim}: {why}");
    // The lost links are counted out (the series stays while the node is in the
    // topology, or vanishes with it once the failover dropped it).
    let body = eventually(admin, "/metrics", 200, "a scrape").await;
    assert!(!links_up(&body), "{victim_links} after the kill:\n{body}");

    let body = eventually(admin, "/readyz", 200, "after the failover").await;
    assert_eq!(body, "ready\n");
    let (_, topology) = support::http_get(admin, "/topology", None).await;
    let t: serde_json::Value = serde_json::from_str(&topology).unwrap();
    let masters: Vec<&str> = t["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["master"].as_str().unwrap())
        .collect();
    assert!(
        masters.contains(&replica.to_string().as_str()),
        "{masters:?}"
    );
    assert!(
        !masters.contains(&victim.to_string().as_str()),
        "{masters:?}"
    );
    proxy.shutdown().await;
    tokio::task::block_in_place(|| cluster.shutdown());
}

/// Clients holding every admin connection (partial request heads, never finished) do not
/// shut a probe out: a new connection closes the oldest open one and is served.
#[tokio::test]
async fn held_connections_do_not_shut_probes_out() {
    let proxy = support::start_proxy(admin_config(&support::shared_cluster_seeds(), None)).await;
    let admin = proxy.admin_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    for path in ["/healthz", "/metrics"] {
        let (status, body) = support::http_get(admin, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    drop(held);
    proxy.shutdown().await;
}

/// A peer flooding the admin port with connections (opened and left half-sent, as fast
/// as it can) evicts its own: another address's probes, sent meanwhile, are all served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_does_not_cut_another_peers_probes() {
    let proxy = support::start_proxy(admin_config(&support::shared_cluster_seeds(), None)).await;
    let admin = proxy.admin_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut held = std::collections::VecDeque::new();
            let mut opened = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut s) = tokio::net::TcpStream::connect(admin).await {
                    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n").await;
                    held.push_back(s);
                    opened += 1;
                }
                if held.len() > 256 {
                    held.pop_front();
                }
            }
            opened
        }
    });
    // From 127.0.0.2: another peer address on the loopback network.
    for i in 0..20 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(admin).await.unwrap();
        // A slow client: the flood opens well over 64 connections meanwhile.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(b"Connection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut answer))
            .await
            .expect("an answer (anti-hang bound)");
        assert!(
            read.is_ok() && answer.starts_with("HTTP/1.1 200 "),
            "probe {i} during the flood: {read:?} {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let opened = flood.await.unwrap();
    assert!(opened > 64, "the flood opened only {opened} connections");
    proxy.shutdown().await;
}

/// Probes share one check while it is fresh (`/readyz` answers for a second): a burst of
/// probes, concurrent and one after another, costs each master about one PING per
/// second, not one per probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_probes_share_one_check_per_second() {
    let mut cluster = DevCluster::start(DevClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    let proxy = support::start_proxy(admin_config(&cluster.seeds(), None)).await;
    let admin = proxy.admin_addr().unwrap();
    eventually(admin, "/readyz", 200, "at start").await;
    let masters = cluster.masters();
    let pings = |node: SocketAddr| -> u64 {
        let info = std::process::Command::new("redis-cli")
            .args(["-p", &node.port().to_string(), "info", "commandstats"])
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&info.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    };
    let before: Vec<u64> = masters.iter().map(|&m| pings(m)).collect();
    let start = Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..40 {
        burst.spawn(async move { support::http_get(admin, "/readyz", None).await });
    }
    for (status, body) in burst.join_all().await {
        assert_eq!((status, body.as_str()), (200, "ready\n"));
    }
    for _ in 0..40 {
        let (status, _) = support::http_get(admin, "/readyz", None).await;
        assert_eq!(status, 200);
    }
    let elapsed = start.elapsed();
    // One check at the start of the burst, then at most one per second it lasted.
    let allowed = 1 + elapsed.as_secs() + 1;
    for (i, &m) in masters.iter().enumerate() {
        let sent = pings(m) - before[i];
        assert!(
            sent <= allowed,
            "master {m}: {sent} PINGs for 80 probes in {elapsed:?}"
        );
    }
    proxy.shutdown().await;
    tokio::task::block_in_place(|| cluster.shutdown());
}

/// The cluster metrics respgate collects (INFO ALL per node) are exported here under
/// redis_exporter's names: one `redis_memory_used_bytes` series per node of the 3+3
/// cluster, every node up, three masters online.
#[tokio::test]
async fn metrics_export_the_cluster_collected_from_every_node() {
    let mut config = admin_config(&support::shared_cluster_seeds(), None);
    config.admin.cluster_metrics_interval_secs = 1;
    let proxy = support::start_proxy(config).await;
    let admin = proxy.admin_addr().expect("the admin listener is up");
    let start = Instant::now();
    loop {
        let (status, body) = support::http_get(admin, "/metrics", None).await;
        assert_eq!(status, 200, "{body}");
        let nodes: std::collections::BTreeSet<&str> = body
            .lines()
            .filter(|l| l.starts_with("redis_memory_used_bytes{"))
            .filter_map(|l| l.split("addr=\"").nth(1)?.split('"').next())
            .collect();
        let up = body
            .lines()
            .filter(|l| l.starts_with("redis_up{") && l.ends_with(" 1"))
            .count();
        let masters = body
            .lines()
            .any(|l| l == "respgate_cluster_masters_online 3");
        if nodes.len() >= 6 && up >= 6 && masters {
            break;
        }
        assert!(
            start.elapsed() < EVENTUALLY,
            "after {EVENTUALLY:?}: {} nodes with memory, {up} up, masters online 3: {masters}\n{body}",
            nodes.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of the series `name{labels}` (exactly as rendered) in a scrape.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// respgate's own gauges sampled at scrape time (clients, the process byte budget, links
/// per node, lockout entries) and the refusals counted by kind.
#[tokio::test]
async fn metrics_sample_clients_buffers_links_and_count_refusals_by_kind() {
    let config = admin_config(&support::shared_cluster_seeds(), None);
    let limit = config.server.max_client_buffer_bytes;
    let proxy = support::start_proxy(config).await;
    let admin = proxy.admin_addr().unwrap();
    let mut c = support::client(proxy.local_addr()).await;
    for i in 0..6 {
        let _: () = c.set(format!("admin:s:{i}"), i).await.unwrap();
    }
    // EXEC without MULTI: refused by respgate itself, a "transaction" refusal.
    let refused: redis::RedisResult<()> = redis::cmd("EXEC").query_async(&mut c).await;
    assert!(refused.is_err());
    let (status, body) = support::http_get(admin, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    let get =
        |series: &str| sample(&body, series).unwrap_or_else(|| panic!("no {series} in:\n{body}"));
    assert!(get("respgate_error_replies_total{kind=\"transaction\"}") >= 1.0);
    assert!(get("respgate_connected_clients") >= 1.0);
    assert_eq!(get("respgate_client_buffer_limit_bytes"), limit as f64);
    assert!(get("respgate_client_buffer_bytes") >= 0.0);
    assert!(get("respgate_auth_lockout_entries") >= 0.0);
    assert_eq!(get("respgate_covered_slots"), 16384.0);
    let nodes = support::with_shared_cluster(|c| c.seeds());
    let links: Vec<f64> = nodes
        .iter()
        .map(|n| get(&format!("respgate_backend_links_connected{{addr=\"{n}\"}}")))
        .collect();
    // Six keys over three masters: at least one master's links are open.
    assert!(links.iter().any(|n| *n >= 1.0), "{links:?}");
    proxy.shutdown().await;
}
