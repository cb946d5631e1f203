//! A slot migrated live, the way `redis-cli --cluster reshard` does it (SETSLOT IMPORTING /
//! MIGRATING, MIGRATE in batches, SETSLOT NODE everywhere), while 20 clients read and write
//! keys of that very slot through respgate. Acceptance: zero client-visible errors (respgate
//! follows ASK during the migration and MOVED after it) and every write present afterwards.
//!
//! The slot is moved to another master and then back, with fresh client traffic each way.
//! Runs against a private cluster of real redis-server processes.

mod support;

use devcluster::{DevCluster, DevClusterOptions, Reply};
use respgate::cluster::key_slot;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENTS: usize = 20;
/// Keys in the slot before the first migration, so it takes many MIGRATE batches.
const PRELOADED: usize = 2000;
const BATCH: usize = 100;
/// Pause between MIGRATE batches so the clients really run while the slot is split.
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Anti-hang bound on any single client call (not a latency assertion).
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Safety bound on a client's loop; the loop normally ends when told to stop.
const MAX_ITERATIONS: usize = 200_000;
/// Iterations every client completes before the migration starts.
const WARMUP_ITERATIONS: usize = 10;
/// How long clients keep going after the migration finished.
const AFTERGLOW: Duration = Duration::from_millis(300);

const TAG: &str = "{mig}";

fn counter_key() -> String {
    format!("{TAG}:counter")
}

fn last_key(client: usize) -> String {
    format!("{TAG}:last:c{client}")
}

fn preloaded_key(n: usize) -> String {
    format!("{TAG}:pre:{n}")
}

fn client_key(round: usize, client: usize, i: usize) -> String {
    format!("{TAG}:r{round}:c{client}:{i}")
}

fn client_value(round: usize, client: usize, i: usize) -> String {
    format!("v{round}-{client}-{i}")
}

/// Flags the clients watch.
#[derive(Default)]
struct Phase {
    /// Clients that finished their warm-up.
    warmed_up: AtomicUsize,
    /// Set while the slot is split between the two nodes.
    migrating: AtomicBool,
    stop: AtomicBool,
}

/// What one client did in one round.
#[derive(Debug, Default)]
struct ClientReport {
    client: usize,
    /// Indices `i` whose `SET` of [`client_key`] succeeded.
    written: Vec<usize>,
    /// Value of [`last_key`] after the client's last successful overwrite.
    last_value: Option<usize>,
    incrs: u64,
    /// Full iterations (SET, GET, INCR) performed while the slot was split.
    iterations_while_migrating: u64,
    errors: Vec<String>,
}

/// One client: SET a new key, overwrite its own "last" key, GET its previous key (must
/// equal what it wrote), INCR the shared counter; until told to stop. Odd clients send
/// each iteration as one pipeline (plus a GET of the key just written), which checks that
/// respgate keeps a client's order when some of its requests are redirected and others not.
async fn client_loop(
    proxy: SocketAddr,
    round: usize,
    client: usize,
    phase: Arc<Phase>,
) -> ClientReport {
    let mut con = support::client(proxy).await;
    let mut r = ClientReport {
        client,
        ..Default::default()
    };
    let pipelined = client % 2 == 1;
    for i in 0..MAX_ITERATIONS {
        if phase.stop.load(Ordering::SeqCst) {
            break;
        }
        let during = phase.migrating.load(Ordering::SeqCst);
        let clean = if pipelined {
            pipelined_iteration(&mut con, round, client, i, &mut r).await
        } else {
            sequential_iteration(&mut con, round, client, i, &mut r).await
        };
        if clean && during && phase.migrating.load(Ordering::SeqCst) {
            r.iterations_while_migrating += 1;
        }
        if i + 1 == WARMUP_ITERATIONS {
            phase.warmed_up.fetch_add(1, Ordering::SeqCst);
        }
    }
    r
}

/// One request at a time. Returns whether every request succeeded.
async fn sequential_iteration(
    con: &mut redis::aio::MultiplexedConnection,
    round: usize,
    client: usize,
    i: usize,
    r: &mut ClientReport,
) -> bool {
    let t = CALL_TIMEOUT;
    let errors_before = r.errors.len();
    let key = client_key(round, client, i);
    let set = redis::cmd("SET")
        .arg(&key)
        .arg(client_value(round, client, i))
        .clone();
    match support::call::<()>(con, &set, t).await {
        Ok(()) => r.written.push(i),
        Err(e) => r.errors.push(format!("SET {key}: {e}")),
    }
    let last = redis::cmd("SET").arg(last_key(client)).arg(i).clone();
    match support::call::<()>(con, &last, t).await {
        Ok(()) => r.last_value = Some(i),
        Err(e) => r.errors.push(format!("SET {}: {e}", last_key(client))),
    }
    if let Some(&prev) = r.written.iter().rev().find(|&&w| w < i) {
        let (prev_key, want) = (
            client_key(round, client, prev),
            client_value(round, client, prev),
        );
        let get = redis::cmd("GET").arg(&prev_key).clone();
        match support::call::<Option<String>>(con, &get, t).await {
            Ok(Some(v)) if v == want => {}
            Ok(other) => r
                .errors
                .push(format!("GET {prev_key}: got {other:?}, wrote {want:?}")),
            Err(e) => r.errors.push(format!("GET {prev_key}: {e}")),
        }
    }
    let incr = redis::cmd("INCR").arg(counter_key()).clone();
    match support::call::<i64>(con, &incr, t).await {
        Ok(_) => r.incrs += 1,
        Err(e) => r.errors.push(format!("INCR {}: {e}", counter_key())),
    }
    r.errors.len() == errors_before
}

/// The same requests, plus a GET of the new key, as one pipeline.
async fn pipelined_iteration(
    con: &mut redis::aio::MultiplexedConnection,
    round: usize,
    client: usize,
    i: usize,
    r: &mut ClientReport,
) -> bool {
    let key = client_key(round, client, i);
    let value = client_value(round, client, i);
    let prev = r.written.last().copied();
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(&key).arg(&value);
    pipe.cmd("SET").arg(last_key(client)).arg(i);
    pipe.cmd("GET").arg(&key);
    let prev_key = prev.map(|p| client_key(round, client, p));
    pipe.cmd("GET").arg(prev_key.as_deref().unwrap_or(&key));
    pipe.cmd("INCR").arg(counter_key());
    type Replies = ((), (), Option<String>, Option<String>, i64);
    match support::timed(CALL_TIMEOUT, pipe.query_async::<Replies>(con)).await {
        Ok(((), (), got, got_prev, _)) => {
            r.written.push(i);
            r.last_value = Some(i);
            r.incrs += 1;
            let want_prev = prev.map_or(value.clone(), |p| client_value(round, client, p));
            if got.as_deref() != Some(value.as_str()) || got_prev.as_deref() != Some(&want_prev) {
                r.errors.push(format!(
                    "pipeline {key}: GET gave {got:?} (wrote {value:?}), GET {prev_key:?} \
                     gave {got_prev:?} (wrote {want_prev:?})"
                ));
                return false;
            }
            true
        }
        Err(e) => {
            r.errors.push(format!("pipeline {key}: {e}"));
            false
        }
    }
}

#[derive(Debug)]
struct MigrationStats {
    keys_moved: usize,
    batches: usize,
    elapsed: Duration,
}

/// Moves `slot` from `from` to `to` like `redis-cli --cluster reshard`.
fn migrate_slot(
    cluster: &DevCluster,
    slot: u16,
    from: SocketAddr,
    to: SocketAddr,
    phase: &Phase,
) -> MigrationStats {
    let began = Instant::now();
    let s = slot.to_string();
    support::slot_move_begin(cluster, slot, from, to);
    phase.migrating.store(true, Ordering::SeqCst);

    let (host, port) = (to.ip().to_string(), to.port().to_string());
    let batch = BATCH.to_string();
    let (mut keys_moved, mut batches) = (0, 0);
    loop {
        let reply = cluster
            .command(from, &["CLUSTER", "GETKEYSINSLOT", &s, &batch])
            .unwrap_or_else(|e| panic!("GETKEYSINSLOT on {from}: {e}"));
        let Reply::Array(items) = reply else {
            panic!("GETKEYSINSLOT on {from}: {reply:?}");
        };
        if items.is_empty() {
            break;
        }
        let keys: Vec<&str> = items
            .iter()
            .map(|k| k.as_str().expect("key name"))
            .collect();
        let mut args = vec!["MIGRATE", &host, &port, "", "0", "5000", "KEYS"];
        args.extend(&keys);
        support::node_ok(cluster, from, &args);
        keys_moved += keys.len();
        batches += 1;
        std::thread::sleep(BATCH_PAUSE);
    }

    support::slot_move_end(cluster, slot, from, to, |node| {
        if node == from {
            // From here on the source answers MOVED: the migration is over for clients.
            phase.migrating.store(false, Ordering::SeqCst);
        }
    });
    MigrationStats {
        keys_moved,
        batches,
        elapsed: began.elapsed(),
    }
}

/// `cmdstat_asking` calls on `node`: how many ASK redirections it was asked to serve.
fn asking_calls(cluster: &DevCluster, node: SocketAddr) -> u64 {
    let info = cluster
        .command(node, &["INFO", "commandstats"])
        .expect("INFO commandstats");
    let text = info.as_str().expect("INFO text").to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("cmdstat_asking:calls="))
        .and_then(|rest| rest.split(',').next())
        .map(|n| n.parse().expect("calls count"))
        .unwrap_or(0)
}

fn count_keys_in_slot(cluster: &DevCluster, node: SocketAddr, slot: u16) -> i64 {
    cluster
        .command(node, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])
        .expect("COUNTKEYSINSLOT")
        .as_int()
        .expect("COUNTKEYSINSLOT integer")
}

/// Every expected `(key, value)` must read back the same through the proxy and directly
/// on `owner`.
async fn verify_keys(
    con: &mut redis::aio::MultiplexedConnection,
    cluster: &DevCluster,
    owner: SocketAddr,
    expected: &[(String, String)],
) {
    for chunk in expected.chunks(500) {
        let mut pipe = redis::pipe();
        for (k, _) in chunk {
            pipe.cmd("GET").arg(k);
        }
        let got: Vec<Option<String>> = support::timed(CALL_TIMEOUT, pipe.query_async(con))
            .await
            .unwrap_or_else(|e| panic!("GET pipeline through respgate: {e}"));
        for ((k, want), got) in chunk.iter().zip(got) {
            assert_eq!(got.as_deref(), Some(want.as_str()), "{k} through respgate");
        }
    }
    tokio::task::block_in_place(|| {
        for (k, want) in expected {
            let got = cluster
                .command(owner, &["GET", k])
                .unwrap_or_else(|e| panic!("GET {k} on {owner}: {e}"));
            assert_eq!(
                got,
                Reply::Bulk(Some(want.as_bytes().to_vec())),
                "{k} directly on {owner}"
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn slot_migrated_live_under_load_there_and_back() {
    let cluster = DevCluster::start(DevClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    let proxy = support::start_proxy(support::test_config(&cluster.seeds())).await;
    let addr = proxy.local_addr();

    let slot = key_slot(TAG.as_bytes());
    let source = cluster.master_for_slot(slot);
    let target = support::another_master(&cluster, source);
    eprintln!("slot {slot}: source {source}, target {target}");

    let mut admin = support::client(addr).await;
    let mut expected: Vec<(String, String)> = Vec::new();
    for chunk in (0..PRELOADED).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for &n in chunk {
            pipe.cmd("SET").arg(preloaded_key(n)).arg(n).ignore();
            expected.push((preloaded_key(n), n.to_string()));
        }
        support::timed(CALL_TIMEOUT, pipe.query_async::<()>(&mut admin))
            .await
            .unwrap_or_else(|e| panic!("preloading: {e}"));
    }

    let mut total_incrs = 0u64;
    let mut last_values: Vec<Option<usize>> = vec![None; CLIENTS];
    for (round, (from, to)) in [(source, target), (target, source)].into_iter().enumerate() {
        let phase = Arc::new(Phase::default());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(client_loop(addr, round, c, phase.clone())))
            .collect();
        let warmup_deadline = Instant::now() + Duration::from_secs(60);
        while phase.warmed_up.load(Ordering::SeqCst) < CLIENTS {
            assert!(
                Instant::now() < warmup_deadline,
                "clients did not warm up (anti-hang bound)"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        let asking_before = tokio::task::block_in_place(|| asking_calls(&cluster, to));
        let stats = tokio::task::block_in_place(|| migrate_slot(&cluster, slot, from, to, &phase));
        tokio::time::sleep(AFTERGLOW).await;
        phase.stop.store(true, Ordering::SeqCst);

        let mut reports = Vec::new();
        for c in clients {
            let report = tokio::time::timeout(Duration::from_secs(60), c)
                .await
                .expect("client finishes (anti-hang bound)")
                .expect("client task");
            reports.push(report);
        }
        let errors: Vec<&String> = reports.iter().flat_map(|r| &r.errors).collect();
        let iterations: usize = reports.iter().map(|r| r.written.len()).sum();
        let during: Vec<u64> = reports
            .iter()
            .map(|r| r.iterations_while_migrating)
            .collect();
        let asks = tokio::task::block_in_place(|| asking_calls(&cluster, to)) - asking_before;
        eprintln!(
            "round {round} ({from} -> {to}): {} keys moved in {} MIGRATE batches in {:?}; \
             {iterations} client iterations, \
             {} while the slot was split (per client {during:?}); {asks} ASKING on the target; \
             {} errors",
            stats.keys_moved,
            stats.batches,
            stats.elapsed,
            during.iter().sum::<u64>(),
            errors.len()
        );
        assert!(
            errors.is_empty(),
            "clients saw {} errors, first ones: {:#?}",
            errors.len(),
            &errors[..errors.len().min(20)]
        );
        assert!(
            stats.batches >= 2,
            "the slot should take several batches: {stats:?}"
        );
        assert!(
            during.iter().all(|&n| n > 0),
            "every client must have run while the slot was split: {during:?}"
        );
        assert!(
            asks > 0,
            "respgate never followed an ASK to {to} during the migration"
        );

        // The cluster agrees on the new owner; nothing is left on the old one.
        tokio::task::block_in_place(|| {
            cluster
                .wait_for_state_ok(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("cluster after migration: {e}"));
        });
        assert_eq!(cluster.master_for_slot(slot), to);
        assert_eq!(
            count_keys_in_slot(&cluster, from, slot),
            0,
            "keys left on {from}"
        );

        for r in &reports {
            total_incrs += r.incrs;
            if r.last_value.is_some() {
                last_values[r.client] = r.last_value;
            }
            for &i in &r.written {
                expected.push((
                    client_key(round, r.client, i),
                    client_value(round, r.client, i),
                ));
            }
        }
        let mut all = expected.clone();
        for (c, v) in last_values.iter().enumerate() {
            if let Some(v) = v {
                all.push((last_key(c), v.to_string()));
            }
        }
        all.push((counter_key(), total_incrs.to_string()));
        assert_eq!(
            count_keys_in_slot(&cluster, to, slot),
            all.len() as i64,
            "keys in slot {slot} on {to}"
        );
        verify_keys(&mut admin, &cluster, to, &all).await;
    }

    drop(admin);
    proxy.shutdown().await;
}
