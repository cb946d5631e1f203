//! A master replaced by its replica while clients run through respgate.
//!
//! Acceptance: clients see errors only for requests in flight at the moment the master went
//! away, then traffic resumes on its own (no respgate restart, no client reconnect).
//!
//! * `graceful_cluster_failover_is_invisible_to_clients`: `CLUSTER FAILOVER` on a replica is
//!   coordinated (the old master pauses writes, hands over, then answers MOVED), so clients
//!   must see no error at all.
//! * `killed_master_fails_only_requests_in_flight_then_traffic_resumes`: `kill -9` of a
//!   master; only requests in flight while it died may fail (with a clear error), at most
//!   one per one-request-at-a-time client; every later one is retried until the replica
//!   is promoted, no request hangs, and every client is back to all-OK on its own. Prints
//!   the numbers that go in the docs (failed requests, time from the kill to the first
//!   success on the failed shard).
//!
//! Each test runs against a private cluster of real redis-server processes
//! (`cluster-node-timeout` 2000 ms).

mod support;

use devcluster::{DevCluster, DevClusterOptions};
use respgate::config::Config;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 10;
/// Keys per client on each master (consecutive requests rotate over the shards).
const KEYS_PER_MASTER: usize = 5;
/// Anti-hang bound on any single client call (not a latency assertion).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Anti-hang bound on waiting for the cluster or the clients.
const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Requests every client completes before the failover starts.
const WARMUP_OPS: usize = 30;
/// Successful requests on the failed-over shard every client must make after the
/// promotion, and the length of the all-OK tail of each client's history.
const RESUMED_OPS: usize = 20;

/// Covers a kill -9 failover: ~2 s node timeout, FAIL agreement, 0.5-1.5 s election delay.
fn failover_config(cluster: &DevCluster) -> Config {
    let mut config = support::test_config(&cluster.seeds());
    config.cluster.retry_deadline_ms = 10_000;
    config
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Ok,
    /// An error reply (or transport error, or `HANG:` for an anti-hang timeout).
    Error(String),
    /// GET did not return what the SET just before it wrote.
    Mismatch {
        got: Option<String>,
        set_at: Instant,
    },
}

#[derive(Debug, Clone)]
struct Op {
    start: Instant,
    end: Instant,
    /// The key's slot is served by the master that is failed over.
    victim_shard: bool,
    what: String,
    outcome: Outcome,
}

#[derive(Default)]
struct Phase {
    warmed_up: AtomicUsize,
    /// Set once the replica is master and the cluster agrees.
    promoted: AtomicBool,
    stop: AtomicBool,
    /// Per client: successful requests on the victim's shard started after `promoted`.
    resumed: Vec<AtomicUsize>,
}

impl Phase {
    fn new() -> Arc<Phase> {
        Arc::new(Phase {
            resumed: (0..CLIENTS).map(|_| AtomicUsize::new(0)).collect(),
            ..Default::default()
        })
    }
}

/// One client, one request at a time: SET a key to a fresh value, GET it back; keys
/// rotate over every shard. Records every request.
async fn client_loop(
    proxy: SocketAddr,
    client: usize,
    keys: Vec<(String, bool)>,
    phase: Arc<Phase>,
) -> Vec<Op> {
    let mut con = support::client(proxy).await;
    let mut ops = Vec::new();
    let mut warmed_up = false;
    for i in 0.. {
        if phase.stop.load(Ordering::SeqCst) {
            break;
        }
        let (key, victim_shard) = &keys[i % keys.len()];
        let value = format!("c{client}-{i}");
        let after_promotion = phase.promoted.load(Ordering::SeqCst);

        let set_at = Instant::now();
        let set = redis::cmd("SET").arg(key).arg(&value).clone();
        let outcome = match support::call::<()>(&mut con, &set, CALL_TIMEOUT).await {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Error(e),
        };
        let set_ok = outcome == Outcome::Ok;
        ops.push(Op {
            start: set_at,
            end: Instant::now(),
            victim_shard: *victim_shard,
            what: format!("SET {key}"),
            outcome,
        });

        let get_at = Instant::now();
        let get = redis::cmd("GET").arg(key).clone();
        let outcome = match support::call::<Option<String>>(&mut con, &get, CALL_TIMEOUT).await {
            Ok(v) if !set_ok || v.as_deref() == Some(value.as_str()) => Outcome::Ok,
            Ok(got) => Outcome::Mismatch { got, set_at },
            Err(e) => Outcome::Error(e),
        };
        let get_ok = outcome == Outcome::Ok;
        ops.push(Op {
            start: get_at,
            end: Instant::now(),
            victim_shard: *victim_shard,
            what: format!("GET {key} (wrote {value:?})"),
            outcome,
        });

        if after_promotion && *victim_shard {
            let n = usize::from(set_ok) + usize::from(get_ok);
            phase.resumed[client].fetch_add(n, Ordering::SeqCst);
        }
        if !warmed_up && ops.len() >= WARMUP_OPS {
            warmed_up = true;
            phase.warmed_up.fetch_add(1, Ordering::SeqCst);
        }
    }
    ops
}

struct Setup {
    cluster: DevCluster,
    proxy: respgate::server::Proxy,
    victim: SocketAddr,
    replica: SocketAddr,
    /// A slot the victim serves.
    victim_slot: u16,
    phase: Arc<Phase>,
    clients: Vec<tokio::task::JoinHandle<Vec<Op>>>,
}

/// Private cluster, respgate, and [`CLIENTS`] clients running and warmed up.
async fn start_clients() -> Setup {
    let cluster = DevCluster::start(DevClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    let proxy = support::start_proxy(failover_config(&cluster)).await;
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    let victim = masters[1];
    let replicas = cluster.replicas_of(victim);
    assert_eq!(replicas.len(), 1, "replicas of {victim}: {replicas:?}");

    let phase = Phase::new();
    let mut clients = Vec::new();
    let mut victim_slot = None;
    for c in 0..CLIENTS {
        let keys: Vec<(String, bool)> =
            support::keys_on_every_master(&cluster, &format!("fo:c{c}:"), KEYS_PER_MASTER)
                .into_iter()
                .map(|(k, owner)| (k, owner == victim))
                .collect();
        // The victim's slots are among those exercised, by every client.
        let mine: Vec<&String> = keys.iter().filter(|(_, v)| *v).map(|(k, _)| k).collect();
        assert_eq!(mine.len(), KEYS_PER_MASTER, "client {c}: {keys:?}");
        for k in &mine {
            let slot = respgate::cluster::key_slot(k.as_bytes());
            assert_eq!(cluster.master_for_slot(slot), victim, "{k}");
            victim_slot.get_or_insert(slot);
        }
        clients.push(tokio::spawn(client_loop(
            proxy.local_addr(),
            c,
            keys,
            phase.clone(),
        )));
    }
    let deadline = Instant::now() + WAIT_LIMIT;
    while phase.warmed_up.load(Ordering::SeqCst) < CLIENTS {
        assert!(Instant::now() < deadline, "clients did not warm up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Setup {
        cluster,
        proxy,
        victim,
        replica: replicas[0],
        victim_slot: victim_slot.expect("a victim key"),
        phase,
        clients,
    }
}

/// Waits until every client made `RESUMED_OPS` successful requests on the victim's shard
/// after the promotion (and at least `linger` passed), then stops and collects them.
async fn resume_and_stop(setup: &mut Setup, linger: Duration) -> Vec<Vec<Op>> {
    let began = Instant::now();
    loop {
        let resumed: Vec<usize> = setup
            .phase
            .resumed
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .collect();
        if resumed.iter().all(|&n| n >= RESUMED_OPS) && began.elapsed() >= linger {
            break;
        }
        assert!(
            began.elapsed() < WAIT_LIMIT,
            "traffic on the failed-over shard did not resume: successes per client {resumed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    setup.phase.stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for c in setup.clients.drain(..) {
        let ops = tokio::time::timeout(WAIT_LIMIT, c)
            .await
            .expect("client stops (anti-hang bound)")
            .expect("client task");
        all.push(ops);
    }
    all
}

/// Waits until `node` reports itself master and every live node agrees on the slot owners.
fn wait_promoted(cluster: &DevCluster, node: SocketAddr, slot: u16) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while support::role(cluster, node) != "master" {
        assert!(Instant::now() < deadline, "{node} was never promoted");
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster
        .wait_for_state_ok(WAIT_LIMIT)
        .unwrap_or_else(|e| panic!("cluster after failover: {e}"));
    assert_eq!(cluster.master_for_slot(slot), node);
}

fn failures(ops: &[Op]) -> Vec<&Op> {
    ops.iter().filter(|o| o.outcome != Outcome::Ok).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_cluster_failover_is_invisible_to_clients() {
    let mut s = start_clients().await;
    let (victim, replica) = (s.victim, s.replica);
    eprintln!("CLUSTER FAILOVER: {replica} takes over from {victim}");

    let began = Instant::now();
    tokio::task::block_in_place(|| {
        support::node_ok(&s.cluster, replica, &["CLUSTER", "FAILOVER"]);
        wait_promoted(&s.cluster, replica, s.victim_slot);
    });
    let promoted_after = began.elapsed();
    s.phase.promoted.store(true, Ordering::SeqCst);

    let all = resume_and_stop(&mut s, Duration::from_millis(500)).await;
    let total: usize = all.iter().map(Vec::len).sum();
    let slowest = all
        .iter()
        .flatten()
        .filter(|o| o.victim_shard)
        .map(|o| o.end - o.start)
        .max()
        .unwrap_or_default();
    let failed: Vec<(usize, &Op)> = all
        .iter()
        .enumerate()
        .flat_map(|(c, ops)| failures(ops).into_iter().map(move |o| (c, o)))
        .collect();
    eprintln!(
        "graceful failover: promoted after {promoted_after:?}; {total} requests, {} failed; \
         slowest request on the shard {slowest:?}",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "a coordinated failover must not surface errors: {failed:#?}"
    );
    let old_role = tokio::task::block_in_place(|| support::role(&s.cluster, victim));
    assert_eq!(old_role, "slave", "{victim} after the failover");
    s.proxy.shutdown().await;
}

/// What a kill -9 run recorded.
struct KillRun {
    /// Per client, every request in order.
    all: Vec<Vec<Op>>,
    /// Just before SIGKILL was sent.
    kill_began: Instant,
    /// The process was reaped: from here on nothing can reach it.
    killed: Instant,
    /// The replica is master and every live node agrees.
    promoted: Instant,
}

/// kill -9 of a master under sequential clients; keeps them running until traffic on the
/// failed shard is back and a few seconds more. Prints the numbers for the docs.
async fn run_kill_scenario() -> KillRun {
    let mut s = start_clients().await;
    let (victim, replica) = (s.victim, s.replica);
    eprintln!("kill -9 {victim}; its replica {replica} should take over");

    let kill_began = Instant::now();
    tokio::task::block_in_place(|| s.cluster.kill_node(victim));
    let killed = Instant::now();
    tokio::task::block_in_place(|| wait_promoted(&s.cluster, replica, s.victim_slot));
    let promoted = Instant::now();
    s.phase.promoted.store(true, Ordering::SeqCst);

    // Keep going a few seconds after the promotion.
    let all = resume_and_stop(&mut s, Duration::from_secs(3)).await;
    s.proxy.shutdown().await;

    let total: usize = all.iter().map(Vec::len).sum();
    let per_client: Vec<usize> = all.iter().map(|ops| failures(ops).len()).collect();
    let first_success = all
        .iter()
        .flatten()
        .filter(|o| o.victim_shard && o.outcome == Outcome::Ok && o.start >= killed)
        .map(|o| o.end)
        .min()
        .expect("a success on the failed shard after the kill");
    let slowest = |victim_shard: bool| {
        all.iter()
            .flatten()
            .filter(|o| o.victim_shard == victim_shard)
            .map(|o| o.end - o.start)
            .max()
            .unwrap_or_default()
    };
    eprintln!(
        "kill -9 failover: process reaped {:?} after SIGKILL; replica promoted (cluster_state \
         ok everywhere) {:?} after SIGKILL; first success on the failed shard {:?} after \
         SIGKILL; {total} requests, {} failed (per client {per_client:?}); slowest request on \
         the failed shard {:?}, on the other shards {:?}",
        killed - kill_began,
        promoted - kill_began,
        first_success - kill_began,
        per_client.iter().sum::<usize>(),
        slowest(true),
        slowest(false),
    );
    for (c, ops) in all.iter().enumerate() {
        for o in failures(ops) {
            let at = |t: Instant| match t.checked_duration_since(kill_began) {
                Some(d) => format!("+{d:?}"),
                None => format!("-{:?}", kill_began - t),
            };
            eprintln!(
                "  client {c}: {} sent at {}, answered at {} (relative to SIGKILL): {:?}",
                o.what,
                at(o.start),
                at(o.end),
                o.outcome
            );
        }
    }
    KillRun {
        all,
        kill_began,
        killed,
        promoted,
    }
}

/// The checks every kill -9 run must pass.
fn check_kill_run(run: &KillRun) {
    for (c, ops) in run.all.iter().enumerate() {
        for o in failures(ops) {
            // Only requests in flight while the master was dying may fail: anything sent
            // after it was reaped is retried until the replica takes over.
            assert!(
                o.start < run.killed,
                "client {c}: a request sent after the master was gone failed: {o:?}"
            );
            match &o.outcome {
                Outcome::Error(e) => assert!(
                    e.starts_with("ERR respgate") || e.starts_with("CLUSTERDOWN"),
                    "client {c}: unclear error for {}: {e}",
                    o.what
                ),
                // Async replication: a write acknowledged by the old master just before
                // it died may be missing on the replica. Not after the kill, though.
                Outcome::Mismatch { set_at, .. } => assert!(
                    *set_at < run.killed,
                    "client {c}: stale read of a write made after the kill: {o:?}"
                ),
                Outcome::Ok => unreachable!(),
            }
        }
        // Back to normal on its own: the tail of every client's history is clean, and
        // includes the failed-over shard.
        let tail = &ops[ops.len().saturating_sub(RESUMED_OPS)..];
        assert!(
            tail.iter().all(|o| o.outcome == Outcome::Ok),
            "client {c}: last requests not all OK: {tail:#?}"
        );
        assert!(
            ops.iter().any(|o| o.victim_shard && o.end < run.kill_began),
            "client {c} never used the victim's shard before the kill"
        );
        assert!(
            ops.iter()
                .any(|o| o.victim_shard && o.start > run.promoted && o.outcome == Outcome::Ok),
            "client {c} never used the victim's shard after the promotion"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_master_fails_only_requests_in_flight_then_traffic_resumes() {
    let run = run_kill_scenario().await;
    check_kill_run(&run);
    // A client doing one request at a time loses at most the one request it had in
    // flight. (A reconnect to the dying node used to count as "sent": backend::connect
    // now waits for a PING reply, so such requests are retried instead.)
    for (c, ops) in run.all.iter().enumerate() {
        let bad = failures(ops);
        assert!(
            bad.len() <= 1,
            "client {c} saw {} failed requests: {bad:#?}",
            bad.len()
        );
    }
}
