//! MGET-across-slots load generator: respgate vs. a client-side cluster split.
//!
//! ```text
//! cargo run --release --example mget_bench -- proxy 127.0.0.1:6390 [options]
//! cargo run --release --example mget_bench -- cluster 127.0.0.1:7000,127.0.0.1:7001 [options]
//! ```
//!
//! * `proxy HOST:PORT`: each client task has its own connection to respgate
//!   (`redis::aio::MultiplexedConnection`) and sends `MGET k1 .. k10` as one command;
//!   respgate splits it per slot and merges the replies.
//! * `cluster SEED,SEED,..`: each client task has its own
//!   `redis::cluster_async::ClusterConnection` (redis crate 0.32). The crate routes `MGET`
//!   as `MultipleNodeRoutingInfo::MultiSlot`: it splits the keys per hash slot, sends one
//!   `MGET` per slot to the node owning it, concurrently, and puts the values back in
//!   request order (`combine_and_sort_array_results`). That is the "direct client-side
//!   split": no proxy hop, the same per-slot split as respgate's.
//! * `split SEED,SEED,..`: the same split done by hand, as lean as it gets: the slot map
//!   is read once with `CLUSTER SLOTS`; each task has one `MultiplexedConnection` per
//!   master; a request groups its keys per slot (`respgate::cluster::slot::key_slot`,
//!   the Redis CRC16), sends one `MGET` per slot as one pipeline per master, all masters
//!   concurrently, and reassembles the values in request order. No MOVED handling: the
//!   topology must not change during the run (a MOVED reply counts as an error). The
//!   keyspace is written and sampled through a `ClusterConnection` in this mode.
//!
//! The keyspace is `mgb:0` .. `mgb:{keyspace-1}`, each set to its own name plus `v`
//! (`mgb:42` -> `mgb:42v`). It is written once (MSET batches through the endpoint under
//! test) and remembered by the marker key `mgb:populated`; later runs only check a sample.
//! Each request takes `--keys` distinct random keys, so they span (almost always) as many
//! slots. Every reply is checked against the expected values, in order.
//!
//! Closed loop: each task has one request in flight at a time (P1). After `--warmup`
//! seconds, requests are counted for `--duration` seconds (or until `--requests` have been
//! counted). The result is one line on stdout:
//!
//! ```text
//! RESULT mode=proxy target=... clients=50 ... rps=51234.5 p50_us=950.1 p99_us=2100.4 ... errors=0 mismatches=0
//! ```
//!
//! `requests` are the counted ones, `sent` includes the warm-up; `client_cpu_*` is this
//! process's user+system time from the start of the load to its end, per sent request.
//! Progress and details go to stderr. Exit status: 0 on success, 1 if any request failed
//! or returned a wrong value, 2 on a setup error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use redis::aio::ConnectionLike;
use redis::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// One endpoint (respgate, or any standalone-Redis-compatible server).
    Proxy,
    /// Redis Cluster seeds; MGET is split client-side by the redis crate.
    Cluster,
    /// Redis Cluster seeds; MGET is split by this program: one MGET per slot, sent as one
    /// pipeline per master over plain multiplexed connections, all masters concurrently.
    Split,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Proxy => "proxy",
            Mode::Cluster => "cluster",
            Mode::Split => "split",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Populate {
    /// Write the keyspace unless the marker key says it is already there.
    Auto,
    /// Always write the keyspace.
    Yes,
    /// Never write; only check a sample (fails if the keys are missing).
    No,
}

#[derive(Parser, Debug)]
#[command(
    about = "MGET across slots: closed-loop load through respgate or a client-side cluster split"
)]
struct Args {
    /// proxy or cluster
    #[arg(value_enum)]
    mode: Mode,
    /// proxy: HOST:PORT; cluster: comma-separated seeds HOST:PORT,HOST:PORT,...
    target: String,
    /// Concurrent client tasks, each with one request in flight.
    #[arg(short, long, default_value_t = 50)]
    clients: usize,
    /// Connections the tasks share round-robin (default: one per task).
    #[arg(long)]
    connections: Option<usize>,
    /// Seconds to measure for (ignored with --requests).
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Measure this many requests instead of a duration.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds of load before measuring starts (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Keys per MGET (distinct, random).
    #[arg(short, long, default_value_t = 10)]
    keys: usize,
    /// Number of keys in the keyspace.
    #[arg(long, default_value_t = 100_000)]
    keyspace: usize,
    /// Write the keyspace first: auto (once, remembered by a marker key), yes, no.
    #[arg(long, value_enum, default_value_t = Populate::Auto)]
    populate: Populate,
    /// Write/check the keyspace, then exit without a load run.
    #[arg(long)]
    populate_only: bool,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds before one request counts as failed.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// RNG seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
}

const MARKER: &str = "mgb:populated";

fn key_name(i: usize) -> String {
    format!("mgb:{i}")
}

/// A connection of any kind. `query` sends any command for `Proxy` and `Cluster`; `Split`
/// only knows MGET.
#[derive(Clone)]
enum Conn {
    Proxy(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
    Split(SplitConn),
}

impl Conn {
    async fn query(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        match self {
            Conn::Proxy(c) => c.req_packed_command(cmd).await,
            Conn::Cluster(c) => c.req_packed_command(cmd).await,
            Conn::Split(_) => Err(redis::RedisError::from((
                redis::ErrorKind::ClientError,
                "split mode only sends MGET",
            ))),
        }
    }

    async fn mget(&mut self, keys: &[&str]) -> redis::RedisResult<Value> {
        match self {
            Conn::Split(c) => c.mget(keys).await,
            _ => self.query(&mget(keys)).await,
        }
    }
}

/// Slot owner map read from `CLUSTER SLOTS`: master index per slot.
struct SlotMap {
    masters: Vec<String>,
    owner: Vec<u8>,
}

const UNOWNED: u8 = u8::MAX;

impl SlotMap {
    async fn read(seed: &str) -> redis::RedisResult<SlotMap> {
        let client = redis::Client::open(format!("redis://{seed}/"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let reply: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await?;
        let bad = |what: &str| {
            redis::RedisError::from((
                redis::ErrorKind::ParseError,
                "CLUSTER SLOTS",
                what.to_string(),
            ))
        };
        let seed_host = seed.rsplit_once(':').map(|(h, _)| h).unwrap_or(seed);
        let mut map = SlotMap {
            masters: Vec::new(),
            owner: vec![UNOWNED; 16384],
        };
        let Value::Array(ranges) = reply else {
            return Err(bad("not an array"));
        };
        for range in ranges {
            let Value::Array(f) = range else {
                return Err(bad("range is not an array"));
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
                (f.first(), f.get(1), f.get(2))
            else {
                return Err(bad("range fields"));
            };
            let host = match node.first() {
                Some(Value::BulkString(h)) if !h.is_empty() && h.as_slice() != b"?" => {
                    String::from_utf8_lossy(h).into_owned()
                }
                _ => seed_host.to_string(),
            };
            let Some(Value::Int(port)) = node.get(1) else {
                return Err(bad("node port"));
            };
            let addr = format!("{host}:{port}");
            let i = match map.masters.iter().position(|m| *m == addr) {
                Some(i) => i,
                None => {
                    map.masters.push(addr);
                    map.masters.len() - 1
                }
            };
            if i >= UNOWNED as usize
                || !(0..16384).contains(start)
                || !(*start..16384).contains(end)
            {
                return Err(bad("slot range or too many masters"));
            }
            for slot in *start..=*end {
                map.owner[slot as usize] = i as u8;
            }
        }
        if map.owner.contains(&UNOWNED) {
            return Err(bad("not all slots are covered"));
        }
        Ok(map)
    }
}

/// One multiplexed connection per master, plus the slot map.
#[derive(Clone)]
struct SplitConn {
    map: Arc<SlotMap>,
    nodes: Vec<redis::aio::MultiplexedConnection>,
}

impl SplitConn {
    /// MGET split per slot (as respgate and the redis crate split it), one pipeline per
    /// master, all masters at once; the values come back in request order.
    async fn mget(&mut self, keys: &[&str]) -> redis::RedisResult<Value> {
        // (slot, positions in the request), in order of first appearance.
        let mut groups: Vec<(u16, Vec<usize>)> = Vec::with_capacity(keys.len());
        for (pos, k) in keys.iter().enumerate() {
            let slot = respgate::cluster::slot::key_slot(k.as_bytes());
            match groups.iter_mut().find(|g| g.0 == slot) {
                Some(g) => g.1.push(pos),
                None => groups.push((slot, vec![pos])),
            }
        }
        // Per master: its pipeline and the groups it carries, in pipeline order.
        let mut per_node: Vec<(usize, redis::Pipeline, Vec<usize>)> = Vec::new();
        for (gi, (slot, positions)) in groups.iter().enumerate() {
            let node = self.map.owner[*slot as usize] as usize;
            let entry = match per_node.iter().position(|e| e.0 == node) {
                Some(i) => &mut per_node[i],
                None => {
                    per_node.push((node, redis::pipe(), Vec::new()));
                    per_node.last_mut().expect("just pushed")
                }
            };
            let cmd = entry.1.cmd("MGET");
            for &p in positions {
                cmd.arg(keys[p]);
            }
            entry.2.push(gi);
        }
        let mut conns: Vec<redis::aio::MultiplexedConnection> =
            per_node.iter().map(|e| self.nodes[e.0].clone()).collect();
        let futures: Vec<_> = per_node
            .iter()
            .zip(conns.iter_mut())
            .map(|((_, pipe, _), conn)| pipe.query_async::<Vec<Value>>(conn))
            .collect();
        let replies = join_all(futures).await;
        let mut out: Vec<Value> = vec![Value::Nil; keys.len()];
        for ((_, _, group_ids), reply) in per_node.iter().zip(replies) {
            let reply = reply?;
            if reply.len() != group_ids.len() {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::ParseError,
                    "pipeline reply count",
                )));
            }
            for (gi, part) in group_ids.iter().zip(reply) {
                let positions = &groups[*gi].1;
                let Value::Array(values) = part else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::ParseError,
                        "MGET reply is not an array",
                    )));
                };
                if values.len() != positions.len() {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::ParseError,
                        "MGET reply length",
                    )));
                }
                for (&p, v) in positions.iter().zip(values) {
                    out[p] = v;
                }
            }
        }
        Ok(Value::Array(out))
    }
}

/// Polls all `futures` concurrently until each is done; outputs in input order.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("polled to completion"))
        .collect()
}

enum Factory {
    Proxy(redis::Client),
    Cluster(redis::cluster::ClusterClient),
    /// The cluster client for writing and sampling the keyspace; the slot map for the run.
    Split(redis::cluster::ClusterClient, Arc<SlotMap>),
}

impl Factory {
    async fn new(mode: Mode, target: &str) -> redis::RedisResult<Factory> {
        let seeds: Vec<&str> = target
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let urls: Vec<String> = seeds.iter().map(|s| format!("redis://{s}/")).collect();
        Ok(match mode {
            Mode::Proxy => Factory::Proxy(redis::Client::open(format!("redis://{target}/"))?),
            Mode::Cluster => Factory::Cluster(redis::cluster::ClusterClient::new(urls)?),
            Mode::Split => {
                let mut last_err = None;
                let mut map = None;
                for seed in &seeds {
                    match SlotMap::read(seed).await {
                        Ok(m) => {
                            map = Some(m);
                            break;
                        }
                        Err(e) => last_err = Some(e),
                    }
                }
                let Some(map) = map else {
                    return Err(last_err.unwrap_or_else(|| {
                        redis::RedisError::from((redis::ErrorKind::ClientError, "no seeds"))
                    }));
                };
                Factory::Split(redis::cluster::ClusterClient::new(urls)?, Arc::new(map))
            }
        })
    }

    /// A connection for setup (populate, sample check): any command.
    async fn connect(&self) -> redis::RedisResult<Conn> {
        Ok(match self {
            Factory::Proxy(c) => Conn::Proxy(c.get_multiplexed_async_connection().await?),
            Factory::Cluster(c) | Factory::Split(c, _) => {
                Conn::Cluster(c.get_async_connection().await?)
            }
        })
    }

    /// A connection for the measured load.
    async fn connect_bench(&self) -> redis::RedisResult<Conn> {
        match self {
            Factory::Split(_, map) => {
                let mut nodes = Vec::with_capacity(map.masters.len());
                for m in &map.masters {
                    let client = redis::Client::open(format!("redis://{m}/"))?;
                    nodes.push(client.get_multiplexed_async_connection().await?);
                }
                Ok(Conn::Split(SplitConn {
                    map: map.clone(),
                    nodes,
                }))
            }
            _ => self.connect().await,
        }
    }

    fn describe(&self) -> String {
        match self {
            Factory::Split(_, map) => format!(" masters={}", map.masters.join(",")),
            _ => String::new(),
        }
    }
}

/// True when `got` is `key` followed by `v`.
fn is_expected(key: &str, got: &[u8]) -> bool {
    got.len() == key.len() + 1 && got.starts_with(key.as_bytes()) && got.ends_with(b"v")
}

/// Checks an MGET reply against the keys asked for; returns the number of wrong values.
fn check_reply(keys: &[&str], reply: &Value) -> usize {
    let Value::Array(items) = reply else {
        return keys.len();
    };
    if items.len() != keys.len() {
        return keys.len();
    }
    keys.iter()
        .zip(items)
        .filter(|(k, v)| match v {
            Value::BulkString(b) => !is_expected(k, b),
            _ => true,
        })
        .count()
}

fn mget(keys: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("MGET");
    for k in keys {
        cmd.arg(*k);
    }
    cmd
}

/// Picks `n` distinct indices below `max` into `out`.
fn pick(rng: &mut SmallRng, n: usize, max: usize, out: &mut Vec<usize>) {
    out.clear();
    while out.len() < n {
        let i = rng.random_range(0..max);
        if !out.contains(&i) {
            out.push(i);
        }
    }
}

/// Writes the keyspace with MSET batches, several in flight.
async fn populate(factory: &Factory, names: &Arc<Vec<String>>) -> redis::RedisResult<()> {
    const BATCH: usize = 500;
    const WRITERS: usize = 8;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let mut conn = factory.connect().await?;
        let names = names.clone();
        let next = next.clone();
        set.spawn(async move {
            loop {
                let start = next.fetch_add(BATCH as u64, Ordering::Relaxed) as usize;
                if start >= names.len() {
                    return Ok::<(), redis::RedisError>(());
                }
                let mut cmd = redis::cmd("MSET");
                for k in &names[start..(start + BATCH).min(names.len())] {
                    cmd.arg(k.as_str()).arg(format!("{k}v"));
                }
                conn.query(&cmd).await?;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::IoError, "writer task", e.to_string()))
        })??;
    }
    let mut conn = factory.connect().await?;
    conn.query(redis::cmd("SET").arg(MARKER).arg(names.len()))
        .await?;
    eprintln!(
        "mget_bench: wrote {} keys in {:.1} s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// MGETs `samples` random key sets and returns the number of wrong values.
async fn check_sample(
    conn: &mut Conn,
    names: &[String],
    keys: usize,
    samples: usize,
    rng: &mut SmallRng,
) -> redis::RedisResult<usize> {
    let mut idx = Vec::new();
    let mut wrong = 0;
    for _ in 0..samples {
        pick(rng, keys.min(names.len()), names.len(), &mut idx);
        let ks: Vec<&str> = idx.iter().map(|&i| names[i].as_str()).collect();
        let reply = conn.mget(&ks).await?;
        wrong += check_reply(&ks, &reply);
    }
    Ok(wrong)
}

struct TaskResult {
    /// Latencies of the counted requests, in nanoseconds.
    lat_ns: Vec<u64>,
    /// When the last counted request completed.
    last_done: Option<Instant>,
    /// All MGETs sent, warm-up included.
    sent: u64,
    errors: u64,
    mismatches: u64,
    first_error: Option<String>,
}

struct Plan {
    names: Arc<Vec<String>>,
    keys: usize,
    measure_start: Instant,
    measure_end: Option<Instant>,
    remaining: Option<Arc<AtomicU64>>,
    timeout: Duration,
    stop: Arc<AtomicBool>,
}

async fn client_task(mut conn: Conn, plan: Arc<Plan>, mut rng: SmallRng) -> TaskResult {
    let mut res = TaskResult {
        lat_ns: Vec::with_capacity(1 << 14),
        last_done: None,
        sent: 0,
        errors: 0,
        mismatches: 0,
        first_error: None,
    };
    let mut idx = Vec::with_capacity(plan.keys);
    let mut consecutive_errors = 0u32;
    loop {
        if plan.stop.load(Ordering::Relaxed) {
            break;
        }
        let t0 = Instant::now();
        let counted = t0 >= plan.measure_start;
        if counted {
            if let Some(end) = plan.measure_end {
                if t0 >= end {
                    break;
                }
            }
            if let Some(rem) = &plan.remaining {
                // Take one request from the shared budget.
                if rem
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_err()
                {
                    break;
                }
            }
        }
        pick(&mut rng, plan.keys, plan.names.len(), &mut idx);
        let ks: Vec<&str> = idx.iter().map(|&i| plan.names[i].as_str()).collect();
        res.sent += 1;
        let outcome = tokio::time::timeout(plan.timeout, conn.mget(&ks)).await;
        let done = Instant::now();
        match outcome {
            Ok(Ok(reply)) => {
                consecutive_errors = 0;
                let wrong = check_reply(&ks, &reply);
                if wrong > 0 {
                    res.mismatches += 1;
                    if res.first_error.is_none() {
                        res.first_error = Some(format!("wrong reply to MGET {ks:?}: {reply:?}"));
                    }
                }
                if counted {
                    res.lat_ns.push((done - t0).as_nanos() as u64);
                    res.last_done = Some(done);
                }
            }
            Ok(Err(e)) => {
                res.errors += 1;
                consecutive_errors += 1;
                if res.first_error.is_none() {
                    res.first_error = Some(format!("MGET failed: {e}"));
                }
            }
            Err(_) => {
                res.errors += 1;
                consecutive_errors += 1;
                if res.first_error.is_none() {
                    res.first_error = Some(format!("MGET timed out after {:?}", plan.timeout));
                }
            }
        }
        if consecutive_errors >= 100 {
            // The connection is most likely dead; stop everyone rather than spin.
            plan.stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    res
}

/// Value at quantile `q` of sorted `v` (nearest rank).
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// CPU time (user + system) this process has used so far, in seconds.
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return f64::NAN;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

async fn run(args: Args) -> Result<bool, String> {
    if args.clients == 0 || args.keys == 0 || args.keyspace == 0 {
        return Err("--clients, --keys and --keyspace must be positive".into());
    }
    if args.keys > args.keyspace {
        return Err("--keys cannot exceed --keyspace".into());
    }
    if !(args.duration > 0.0 && args.warmup >= 0.0 && args.timeout > 0.0) {
        return Err("--duration and --timeout must be positive, --warmup not negative".into());
    }
    let connections = args
        .connections
        .unwrap_or(args.clients)
        .clamp(1, args.clients);
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut rng = SmallRng::seed_from_u64(seed);
    let factory = Factory::new(args.mode, &args.target)
        .await
        .map_err(|e| format!("target {}: {e}", args.target))?;
    let names: Arc<Vec<String>> = Arc::new((0..args.keyspace).map(key_name).collect());

    // How many slots the requests span (respgate's own slot function; same CRC16 as Redis).
    let mut idx = Vec::new();
    let mut slots_total = 0usize;
    const SLOT_SAMPLE: usize = 1000;
    for _ in 0..SLOT_SAMPLE {
        pick(&mut rng, args.keys, args.keyspace, &mut idx);
        let mut s: Vec<u16> = idx
            .iter()
            .map(|&i| respgate::cluster::slot::key_slot(names[i].as_bytes()))
            .collect();
        s.sort_unstable();
        s.dedup();
        slots_total += s.len();
    }
    let avg_slots = slots_total as f64 / SLOT_SAMPLE as f64;

    // Populate once, then check a sample either way.
    let mut probe = factory
        .connect()
        .await
        .map_err(|e| format!("connect to {}: {e}", args.target))?;
    let marker = probe
        .query(redis::cmd("GET").arg(MARKER))
        .await
        .map_err(|e| format!("GET {MARKER}: {e}"))?;
    let marked = matches!(&marker, Value::BulkString(b) if b.as_slice() == args.keyspace.to_string().as_bytes());
    let write = match args.populate {
        Populate::Yes => true,
        Populate::No => false,
        Populate::Auto => !marked,
    };
    if write {
        populate(&factory, &names)
            .await
            .map_err(|e| format!("populating the keyspace: {e}"))?;
    } else {
        eprintln!(
            "mget_bench: keyspace not rewritten (marker {MARKER} {})",
            if marked { "present" } else { "absent" }
        );
    }
    let wrong = check_sample(&mut probe, &names, args.keys, 200, &mut rng)
        .await
        .map_err(|e| format!("sample check: {e}"))?;
    if wrong > 0 {
        return Err(format!(
            "sample check: {wrong} wrong value(s) in 200 MGETs of {} keys (is the keyspace populated? try --populate yes)",
            args.keys
        ));
    }
    eprintln!(
        "mget_bench: sample check ok (200 MGETs of {} keys, {avg_slots:.2} distinct slots per MGET on average)",
        args.keys
    );
    drop(probe);
    if args.populate_only {
        return Ok(true);
    }
    if args.mode == Mode::Split {
        // The sample again, through the hand-made split.
        let mut conn = factory
            .connect_bench()
            .await
            .map_err(|e| format!("connect to the masters: {e}"))?;
        let wrong = check_sample(&mut conn, &names, args.keys, 200, &mut rng)
            .await
            .map_err(|e| format!("sample check (split): {e}"))?;
        if wrong > 0 {
            return Err(format!(
                "sample check (split): {wrong} wrong value(s) in 200 MGETs"
            ));
        }
        eprintln!("mget_bench: split sample check ok{}", factory.describe());
    }

    // Connections first, so that connecting is not part of the measurement.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(
            factory
                .connect_bench()
                .await
                .map_err(|e| format!("connect to {}: {e}", args.target))?,
        );
    }
    let cpu_before = process_cpu_s();
    let start = Instant::now();
    let measure_start = start + Duration::from_secs_f64(args.warmup);
    let plan = Arc::new(Plan {
        names: names.clone(),
        keys: args.keys,
        measure_start,
        measure_end: match args.requests {
            Some(_) => None,
            None => Some(measure_start + Duration::from_secs_f64(args.duration)),
        },
        remaining: args.requests.map(|n| Arc::new(AtomicU64::new(n))),
        timeout: Duration::from_secs_f64(args.timeout),
        stop: Arc::new(AtomicBool::new(false)),
    });
    let mut set = tokio::task::JoinSet::new();
    for i in 0..args.clients {
        let conn = conns[i % connections].clone();
        let task_rng =
            SmallRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)));
        set.spawn(client_task(conn, plan.clone(), task_rng));
    }
    let mut lat: Vec<u64> = Vec::new();
    let (mut sent, mut errors, mut mismatches) = (0u64, 0u64, 0u64);
    let mut last_done: Option<Instant> = None;
    let mut first_error: Option<String> = None;
    while let Some(r) = set.join_next().await {
        let r = r.map_err(|e| format!("client task: {e}"))?;
        lat.extend_from_slice(&r.lat_ns);
        sent += r.sent;
        errors += r.errors;
        mismatches += r.mismatches;
        last_done = match (last_done, r.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let client_cpu = process_cpu_s() - cpu_before;
    drop(conns);
    if let Some(e) = &first_error {
        eprintln!("mget_bench: first problem: {e}");
    }
    let elapsed = last_done
        .map(|t| t.saturating_duration_since(measure_start))
        .unwrap_or_default()
        .as_secs_f64();
    lat.sort_unstable();
    let n = lat.len() as u64;
    let rps = if elapsed > 0.0 {
        n as f64 / elapsed
    } else {
        0.0
    };
    let mean = if n > 0 {
        lat.iter().sum::<u64>() as f64 / n as f64 / 1000.0
    } else {
        0.0
    };
    println!(
        "RESULT mode={} target={} clients={} connections={} keys={} keyspace={} slots_per_mget={:.2} \
         elapsed_s={:.3} requests={} sent={} rps={:.1} keys_per_s={:.0} mean_us={:.1} p50_us={:.1} \
         p90_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} client_cpu_s={:.2} client_cpu_us_per_req={:.2} \
         errors={} mismatches={}",
        args.mode.name(),
        args.target,
        args.clients,
        connections,
        args.keys,
        args.keyspace,
        avg_slots,
        elapsed,
        n,
        sent,
        rps,
        rps * args.keys as f64,
        mean,
        us(quantile(&lat, 0.50)),
        us(quantile(&lat, 0.90)),
        us(quantile(&lat, 0.99)),
        us(quantile(&lat, 0.999)),
        us(lat.last().copied().unwrap_or(0)),
        client_cpu,
        if sent > 0 { client_cpu * 1e6 / sent as f64 } else { 0.0 },
        errors,
        mismatches,
    );
    Ok(errors == 0 && mismatches == 0 && n > 0)
}

fn main() {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = args.threads {
        rt.worker_threads(t.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mget_bench: tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    let code = match rt.block_on(run(args)) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("mget_bench: error: {e}");
            2
        }
    };
    // Do not wait for the connections' background tasks to wind down.
    rt.shutdown_timeout(Duration::from_millis(100));
    std::process::exit(code);
}
