//! Replica reads under a lag bound, against real clusters: the share of reads served by
//! replicas (counted on the nodes), a replica SIGSTOPped while writes go on (no read older
//! than the bound; reads move to the master and come back after SIGCONT), and
//! read-your-writes.

mod support;

use devcluster::{DevCluster, DevClusterOptions, Reply};
use respgate::config::{Config, ReadPolicyKind, ReadRuleConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

fn replica_config(cluster: &DevCluster, bound_ms: u64) -> Config {
    let mut c = test_config(&cluster.seeds());
    c.cluster.request_timeout_ms = 1000;
    c.replica_reads.poll_interval_ms = 50;
    c.replica_reads.recover_ms = 300;
    c.replica_reads.rules = vec![
        ReadRuleConfig {
            pattern: "session:*".into(),
            policy: ReadPolicyKind::Master,
            max_lag_ms: 1000,
            max_lag_bytes: 1 << 20,
        },
        ReadRuleConfig {
            pattern: "cache:*".into(),
            policy: ReadPolicyKind::PreferReplica,
            max_lag_ms: bound_ms,
            max_lag_bytes: 1 << 20,
        },
    ];
    c
}

fn private_cluster() -> DevCluster {
    DevCluster::start(DevClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"))
}

/// `calls=` of `cmdstat_<cmd>` in the node's INFO commandstats.
fn calls(cluster: &DevCluster, node: SocketAddr, cmd: &str) -> u64 {
    let Ok(Reply::Bulk(Some(info))) = cluster.command(node, &["INFO", "commandstats"]) else {
        panic!("INFO commandstats on {node}");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

fn reset_stats(cluster: &DevCluster) {
    for node in cluster.seeds() {
        assert!(matches!(
            cluster.command(node, &["CONFIG", "RESETSTAT"]),
            Ok(Reply::Simple(_))
        ));
    }
}

fn all_replicas(cluster: &DevCluster) -> Vec<SocketAddr> {
    cluster
        .masters()
        .into_iter()
        .flat_map(|m| cluster.replicas_of(m))
        .collect()
}

/// Waits until `f` holds (polling), or fails the test after `limit`.
async fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_reads_under_prefer_replica_are_served_by_replicas() {
    let cluster = tokio::task::block_in_place(private_cluster);
    let proxy = start_proxy(replica_config(&cluster, 500)).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    for i in 0..300 {
        let k = format!("cache:share:{i}");
        assert_eq!(c.command(&["SET", &k, &format!("v{i}")]).await, b"+OK\r\n");
    }
    // Replicas become eligible once their heartbeats show they are inside the bound
    // (and stayed there for recover_ms).
    tokio::time::sleep(Duration::from_millis(800)).await;
    tokio::task::block_in_place(|| reset_stats(&cluster));
    let mut wrong = 0;
    for round in 0..10 {
        for i in 0..300 {
            let k = format!("cache:share:{i}");
            let want = format!("${}\r\nv{i}\r\n", format!("v{i}").len());
            if c.command(&["GET", &k]).await != want.as_bytes() {
                wrong += 1;
            }
        }
        let _ = round;
    }
    assert_eq!(wrong, 0, "every value read back correctly");
    let (on_replicas, on_masters) = tokio::task::block_in_place(|| {
        let r: u64 = all_replicas(&cluster)
            .iter()
            .map(|n| calls(&cluster, *n, "get"))
            .sum();
        let m: u64 = cluster
            .masters()
            .iter()
            .map(|n| calls(&cluster, *n, "get"))
            .sum();
        (r, m)
    });
    // The tracker's own GETs of the heartbeat keys run on replicas too: subtract them
    // by counting only what exceeds the client's 3000 reads on the masters' side.
    eprintln!("GET calls: replicas {on_replicas}, masters {on_masters}");
    let client_on_masters = on_masters;
    let client_on_replicas = 3000 - client_on_masters.min(3000);
    assert!(
        client_on_replicas * 100 >= 3000 * 90,
        "{client_on_replicas} of 3000 reads on replicas (replicas saw {on_replicas} GETs)"
    );
    // INFO shows each replica's lag and eligibility, and where reads went.
    let info = String::from_utf8_lossy(&c.command(&["INFO", "proxy"]).await).into_owned();
    let served: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("replica_reads_served_by_replicas:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{info}"));
    assert!(served >= 2700, "{info}");
    assert_eq!(info.matches(",eligible=1").count(), 3, "{info}");
    assert!(
        info.contains("replica0:addr=") && info.contains(",link=up,"),
        "{info}"
    );
    // session:* reads stay on masters whatever the load.
    tokio::task::block_in_place(|| reset_stats(&cluster));
    for _ in 0..100 {
        c.command(&["GET", "session:share"]).await;
    }
    let on_masters: u64 = tokio::task::block_in_place(|| {
        cluster
            .masters()
            .iter()
            .map(|n| calls(&cluster, *n, "get"))
            .sum()
    });
    assert_eq!(on_masters, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_is_avoided_within_the_bound_and_used_again_after_sigcont() {
    const BOUND_MS: u64 = 500;
    let cluster = tokio::task::block_in_place(private_cluster);
    let proxy = start_proxy(replica_config(&cluster, BOUND_MS)).await;
    let addr = proxy.local_addr();
    let key = "cache:stop:{counter}";
    let master = cluster.master_for_slot(respgate::cluster::key_slot(key.as_bytes()));
    let replica = cluster.replicas_of(master)[0];

    // A writer stores the time of each write; readers check the age of what they read.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let epoch = Instant::now();
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut w = RawConn::connect(addr).await;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ms = epoch.elapsed().as_millis().to_string();
                assert_eq!(w.command(&["SET", key, &ms]).await, b"+OK\r\n");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut r = RawConn::connect(addr).await;
            let mut worst = 0u128;
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = epoch.elapsed().as_millis();
                let reply = r.command(&["GET", key]).await;
                let text = String::from_utf8_lossy(&reply).into_owned();
                let Some(v) = text.lines().nth(1).and_then(|v| v.parse::<u128>().ok()) else {
                    continue; // not written yet
                };
                worst = worst.max(sent.saturating_sub(v));
                reads += 1;
            }
            (worst, reads)
        })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let get_calls = |n| tokio::task::block_in_place(|| calls(&cluster, n, "get"));
    let before = get_calls(replica);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        get_calls(replica) > before + 20,
        "the replica serves reads before the stop"
    );

    tokio::task::block_in_place(|| cluster.pause_node(replica));
    // Within bound + one poll interval the shard's new reads go to the master: a fresh
    // client's read is answered at once (on the stopped replica it would wait for
    // request_timeout_ms, 1 s).
    tokio::time::sleep(Duration::from_millis(BOUND_MS + 50 + 20)).await;
    let mut fresh = RawConn::connect(addr).await;
    let asked = Instant::now();
    let reply = fresh.command(&["GET", key]).await;
    let took = asked.elapsed();
    assert!(reply.starts_with(b"$"), "{}", show(&reply));
    assert!(
        took < Duration::from_millis(300),
        "the read waited {took:?}: sent to the stopped replica?"
    );
    // The reads sent to it before that time out and go to the master too.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m0 = get_calls(master);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m1 = get_calls(master);
    assert!(
        m1 > m0 + 20,
        "reads moved to the master while the replica is stopped ({m0} -> {m1})"
    );

    tokio::task::block_in_place(|| cluster.resume_node(replica));
    // Eligible again once back inside the bound for recover_ms.
    let r0 = get_calls(replica);
    eventually("reads back on the replica", Duration::from_secs(10), || {
        get_calls(replica) > r0 + 50
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let (worst, reads) = reader.await.unwrap();
    eprintln!("{reads} reads, oldest value read {worst} ms after it was written");
    // A value is at most the bound old, plus the writer's period and scheduling slack.
    assert!(
        worst <= (BOUND_MS + 100) as u128,
        "a read returned a value {worst} ms old"
    );
    assert!(reads > 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_never_reads_stale_while_others_use_replicas() {
    let cluster = tokio::task::block_in_place(private_cluster);
    let mut config = replica_config(&cluster, 2000);
    config.replica_reads.read_your_writes = vec!["*".into()];
    let proxy = start_proxy(config).await;
    let addr = proxy.local_addr();
    // Another client's reads keep going to replicas meanwhile.
    let mut other = RawConn::connect(addr).await;
    assert_eq!(
        other.command(&["SET", "cache:ryw:other", "x"]).await,
        b"+OK\r\n"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    tokio::task::block_in_place(|| reset_stats(&cluster));
    let other_reads = tokio::spawn(async move {
        // A separate connection: no writes of its own, so it may read replicas.
        let mut o = RawConn::connect(addr).await;
        for _ in 0..2000 {
            assert_eq!(o.command(&["GET", "cache:ryw:other"]).await, b"$1\r\nx\r\n");
        }
    });
    let mut c = RawConn::connect(addr).await;
    let mut stale = 0;
    for i in 0..10_000 {
        let k = format!("cache:ryw:{}", i % 50);
        let v = i.to_string();
        assert_eq!(c.command(&["SET", &k, &v]).await, b"+OK\r\n");
        let got = c.command(&["GET", &k]).await;
        if got != format!("${}\r\n{v}\r\n", v.len()).as_bytes() {
            stale += 1;
        }
    }
    other_reads.await.unwrap();
    assert_eq!(stale, 0, "stale reads of the client's own writes");
    let on_replicas: u64 = tokio::task::block_in_place(|| {
        all_replicas(&cluster)
            .iter()
            .map(|n| calls(&cluster, *n, "get"))
            .sum()
    });
    assert!(
        on_replicas >= 1500,
        "other clients still read replicas ({on_replicas} GETs there)"
    );
}

/// What one client saw during the kill -9 run.
#[derive(Default)]
struct ClientLog {
    ok: u64,
    failed: Vec<(Duration, String)>,
    /// Longest single request.
    slowest: Duration,
    /// Successful requests after the kill (for writers: first one, since the kill).
    first_ok_after_kill: Option<Duration>,
}

/// kill -9 of a master under 50 clients (25 reading `cache:*` keys of its shard under
/// `prefer_replica`, 25 writing to its shard): reads keep working on the replica while
/// the shard has no master, writes fail only while nothing can take them and resume on
/// the promoted replica, no request outlives the retry deadline, respgate is not
/// restarted. The figures are printed for docs/ARCHITECTURE.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_master_under_50_clients_reads_keep_working_and_writes_resume() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let mut cluster = tokio::task::block_in_place(private_cluster);
    let mut config = replica_config(&cluster, 1000);
    config.cluster.retry_deadline_ms = 10_000;
    let deadline = Duration::from_millis(
        config.cluster.retry_deadline_ms + config.cluster.request_timeout_ms + 1000,
    );
    let proxy = start_proxy(config).await;
    let addr = proxy.local_addr();
    let victim = cluster.masters()[1];
    let replica = cluster.replicas_of(victim)[0];
    // A hash tag on the victim's shard.
    let tag = (0..)
        .map(|n| format!("v{n}"))
        .find(|t| cluster.master_for_slot(respgate::cluster::key_slot(t.as_bytes())) == victim)
        .unwrap();
    let mut setup = RawConn::connect(addr).await;
    for i in 0..25 {
        let k = format!("cache:{{{tag}}}:r{i}");
        assert_eq!(setup.command(&["SET", &k, "fresh"]).await, b"+OK\r\n");
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    for c in 0..50 {
        let (stop, killed_at, tag) = (stop.clone(), killed_at.clone(), tag.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = RawConn::connect(addr).await;
            let mut log = ClientLog::default();
            let reader = c < 25;
            let key = if reader {
                format!("cache:{{{tag}}}:r{c}")
            } else {
                format!("cache:{{{tag}}}:w{c}")
            };
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let start = Instant::now();
                let reply = if reader {
                    conn.command(&["GET", &key]).await
                } else {
                    conn.command(&["SET", &key, &n.to_string()]).await
                };
                let took = start.elapsed();
                log.slowest = log.slowest.max(took);
                let good = if reader {
                    reply == b"$5\r\nfresh\r\n"
                } else {
                    reply == b"+OK\r\n"
                };
                let kill = *killed_at.lock().unwrap();
                if good {
                    log.ok += 1;
                    if let Some(k) = kill {
                        if start > k && log.first_ok_after_kill.is_none() {
                            log.first_ok_after_kill = Some(start - k);
                        }
                    }
                } else {
                    let at = kill.map_or(Duration::ZERO, |k| start.saturating_duration_since(k));
                    log.failed
                        .push((at, String::from_utf8_lossy(&reply).into_owned()));
                }
                if reader {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            (reader, log)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The clock starts once the process is gone (SIGKILL sent and reaped).
    tokio::task::block_in_place(|| cluster.kill_node(victim));
    let kill_time = Instant::now();
    *killed_at.lock().unwrap() = Some(kill_time);
    eventually(
        "the replica to be promoted",
        Duration::from_secs(30),
        || tokio::task::block_in_place(|| cluster.masters().contains(&replica)),
    )
    .await;
    let promoted = kill_time.elapsed();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reads = (0u64, 0usize, Duration::ZERO);
    let mut writes = (0u64, 0usize, Duration::ZERO);
    let mut resumed = Duration::ZERO;
    let mut failures = Vec::new();
    for t in tasks {
        let (reader, log) = t.await.unwrap();
        let agg = if reader { &mut reads } else { &mut writes };
        agg.0 += log.ok;
        agg.1 += log.failed.len();
        agg.2 = agg.2.max(log.slowest);
        if !reader {
            resumed = resumed.max(log.first_ok_after_kill.expect("writes resumed"));
            assert!(
                log.failed.len() <= 1,
                "a writer lost more than its request in flight: {:?}",
                log.failed
            );
        }
        failures.extend(log.failed.into_iter().map(|f| (reader, f)));
    }
    eprintln!(
        "kill -9 under 50 clients: replica promoted after {promoted:?}; reads: {} ok, {} failed, slowest {:?}; writes: {} ok, {} failed, slowest {:?}, every writer ok again {:?} after the kill",
        reads.0, reads.1, reads.2, writes.0, writes.1, writes.2, resumed
    );
    for (reader, (at, what)) in failures.iter().take(10) {
        eprintln!(
            "  {} failed {at:?} after the kill: {}",
            if *reader { "read" } else { "write" },
            what.trim()
        );
    }
    assert_eq!(
        reads.1, 0,
        "reads under prefer_replica kept working: {failures:?}"
    );
    assert!(
        writes.2 < deadline && reads.2 < deadline,
        "no request hangs past the deadline"
    );
    assert!(
        writes.1 <= 25,
        "at most the writes in flight at the kill fail: {failures:?}"
    );
    // respgate carries on, no restart.
    let mut after = RawConn::connect(addr).await;
    assert_eq!(
        after
            .command(&["SET", &format!("cache:{{{tag}}}:after"), "1"])
            .await,
        b"+OK\r\n"
    );
}
