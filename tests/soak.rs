//! Soak test (issue 13, Fuzzing bullet), opt-in and bounded:
//!
//! ```sh
//! cargo test --release --test soak -- --ignored --nocapture            # 10 minutes
//! RESPGATE_SOAK_SECS=180 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! 50 clients, each on its own connection with its own keys, run a mix of GET, SET, INCR,
//! MSET/MGET (one slot and across slots), EXPIRE, HSET/HGET, EVAL and 10-command
//! pipelines through respgate in front of a private cluster (3 masters + 3 replicas).
//! A third of the way in a master is killed (`kill -9`; its replica takes over); half
//! way in a slot that every client writes to is migrated to another master, keys and all.
//!
//! Every reply is checked against what that client sent: each value embeds the client,
//! the key and a sequence number, so a reply meant for another request (another
//! client's, another key's, another command's shape) is a **misrouted** reply, and there
//! must be none. Error replies are allowed (a failover makes some requests fail) but must
//! be errors: a write that got an error may or may not have been applied, so the key's
//! next read accepts either (and nothing else). A read that returns an *older* value of
//! the client's own key is counted apart as a **lost write**: Redis replicates
//! asynchronously, so a write the killed master acknowledged but had not yet sent to its
//! replica is gone; respgate cannot prevent that, only never make it up.

mod support;

use devcluster::{DevCluster, DevClusterOptions, Reply};
use respgate::cluster::key_slot;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENTS: usize = 50;
/// Plain keys per client (spread over slots), and keys sharing one slot for MSET.
const KEYS: usize = 8;
const TAGGED: usize = 4;
/// The tag whose slot is migrated during the run: every client has a key in it.
const MIGRATED_TAG: &str = "{soak-migrated}";
const REPLY_TIMEOUT: Duration = Duration::from_secs(15);

fn soak_duration() -> Duration {
    let secs = std::env::var("RESPGATE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(600);
    Duration::from_secs(secs.max(10))
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    errors: AtomicU64,
    misrouted: AtomicU64,
    lost_writes: AtomicU64,
    reconnects: AtomicU64,
    /// Error replies by their text up to the first digit (addresses and numbers vary).
    kinds: std::sync::Mutex<HashMap<String, u64>>,
}

impl Stats {
    fn error(&self, text: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let kind: String = text.chars().take_while(|c| !c.is_ascii_digit()).collect();
        *self
            .kinds
            .lock()
            .unwrap()
            .entry(kind.trim().to_string())
            .or_default() += 1;
    }
}

/// One parsed reply.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Vec<Frame>),
}

/// Parses one frame at the start of `buf`: the frame and its length.
fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[1..end]).ok()?;
    let after = end + 2;
    match buf.first()? {
        b'+' => Some((Frame::Simple(line.into()), after)),
        b'-' => Some((Frame::Error(line.into()), after)),
        b':' => Some((Frame::Int(line.parse().ok()?), after)),
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some((Frame::Bulk(None), after));
            }
            let n = n as usize;
            if buf.len() < after + n + 2 {
                return None;
            }
            let s = String::from_utf8_lossy(&buf[after..after + n]).into_owned();
            Some((Frame::Bulk(Some(s)), after + n + 2))
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut pos = after;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                let (f, len) = parse(&buf[pos..])?;
                items.push(f);
                pos += len;
            }
            Some((Frame::Array(items), pos))
        }
        _ => Some((Frame::Error(format!("unparsable reply {line:?}")), after)),
    }
}

struct Conn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Option<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        Some(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends `commands` in one write and reads their replies (`None`: the connection
    /// failed or a reply did not come within [`REPLY_TIMEOUT`]).
    async fn round_trip(&mut self, commands: &[Vec<String>]) -> Option<Vec<Frame>> {
        let bytes: Vec<u8> = commands
            .iter()
            .flat_map(|c| support::encode_command(c))
            .collect();
        self.stream.write_all(&bytes).await.ok()?;
        let mut out = Vec::with_capacity(commands.len());
        let mut chunk = vec![0u8; 64 * 1024];
        while out.len() < commands.len() {
            if let Some((frame, len)) = parse(&self.buf) {
                self.buf.drain(..len);
                out.push(frame);
                continue;
            }
            let n = tokio::time::timeout(REPLY_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Some(out)
    }
}

/// What a client knows about one of its keys.
#[derive(Debug, Clone, PartialEq)]
enum Known {
    /// Holds exactly this (`None`: absent).
    Value(Option<String>),
    /// A write to it got an error: it holds one of these values (the old, or any of
    /// the errored writes), until a read settles it.
    EitherOf(Vec<Option<String>>),
}

/// A small deterministic generator (xorshift), one per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What a request expects, checked against its reply.
enum Expect {
    /// `+OK` from a write of `values` (key, value) pairs.
    Ok(Vec<(String, String)>),
    /// The key's value.
    Get(String),
    /// The values of these keys, in order.
    MGet(Vec<String>),
    /// INCR of the client's counter.
    Incr,
    /// EXPIRE of the key: 1 if it exists, 0 if not.
    Expire(String),
    /// HSET of a field (0 or 1), then the field is `value`.
    HSet(String, String),
    /// HGET of a field.
    HGet(String),
    /// A script that SETs the key to the value and returns GET: the value.
    EvalSet(String, String),
}

struct Client {
    id: usize,
    seq: u64,
    rng: Rng,
    keys: HashMap<String, Known>,
    fields: HashMap<String, Known>,
    counter: Known,
    stats: Arc<Stats>,
    /// The slots of the shard whose master is killed: only there may a write be lost.
    victim_slots: Arc<Vec<bool>>,
}

impl Client {
    fn plain_key(&self, j: usize) -> String {
        format!("soak:c{}:k{j}", self.id)
    }
    fn tagged_key(&self, j: usize) -> String {
        format!("soak:{{c{}}}:m{j}", self.id)
    }
    fn migrated_key(&self) -> String {
        format!("soak:{MIGRATED_TAG}:c{}", self.id)
    }
    fn any_key(&mut self) -> String {
        match self.rng.below(KEYS + 2) {
            j if j < KEYS => self.plain_key(j),
            KEYS => self.migrated_key(),
            _ => {
                let j = self.rng.below(TAGGED);
                self.tagged_key(j)
            }
        }
    }
    fn counter_key(&self) -> String {
        format!("soak:c{}:ctr", self.id)
    }
    fn hash_key(&self) -> String {
        format!("soak:c{}:h", self.id)
    }
    fn value_for(&mut self, key: &str) -> String {
        self.seq += 1;
        format!("c{}|{key}|{}", self.id, self.seq)
    }

    /// The next request (or a few that go as one pipeline) and what each expects.
    fn next_batch(&mut self) -> Vec<(Vec<String>, Expect)> {
        let n = if self.rng.below(10) == 0 { 10 } else { 1 };
        (0..n).map(|_| self.next_request()).collect()
    }

    fn next_request(&mut self) -> (Vec<String>, Expect) {
        let s = |v: &str| v.to_string();
        match self.rng.below(12) {
            0..=2 => {
                let k = self.any_key();
                let v = self.value_for(&k);
                (
                    vec![s("SET"), k.clone(), v.clone()],
                    Expect::Ok(vec![(k, v)]),
                )
            }
            3..=5 => {
                let k = self.any_key();
                (vec![s("GET"), k.clone()], Expect::Get(k))
            }
            6 => (vec![s("INCR"), self.counter_key()], Expect::Incr),
            7 => {
                let pairs: Vec<(String, String)> = (0..TAGGED)
                    .map(|j| {
                        let k = self.tagged_key(j);
                        let v = self.value_for(&k);
                        (k, v)
                    })
                    .collect();
                let mut cmd = vec![s("MSET")];
                for (k, v) in &pairs {
                    cmd.push(k.clone());
                    cmd.push(v.clone());
                }
                (cmd, Expect::Ok(pairs))
            }
            8 => {
                // Across slots: respgate splits it and merges the replies.
                let keys: Vec<String> = (0..4).map(|_| self.any_key()).collect();
                let mut cmd = vec![s("MGET")];
                cmd.extend(keys.iter().cloned());
                (cmd, Expect::MGet(keys))
            }
            9 => {
                let k = self.any_key();
                (vec![s("EXPIRE"), k.clone(), s("3600")], Expect::Expire(k))
            }
            10 => {
                let f = format!("f{}", self.rng.below(4));
                if self.rng.below(2) == 0 {
                    let v = self.value_for(&f);
                    (
                        vec![s("HSET"), self.hash_key(), f.clone(), v.clone()],
                        Expect::HSet(f, v),
                    )
                } else {
                    (vec![s("HGET"), self.hash_key(), f.clone()], Expect::HGet(f))
                }
            }
            _ => {
                let k = self.any_key();
                let v = self.value_for(&k);
                (
                    vec![
                        s("EVAL"),
                        s("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"),
                        s("1"),
                        k.clone(),
                        v.clone(),
                    ],
                    Expect::EvalSet(k, v),
                )
            }
        }
    }

    /// Whether a write to `key` may have been lost (its master was the one killed).
    fn may_lose(&self, key: &str) -> bool {
        self.victim_slots[key_slot(key.as_bytes()) as usize]
    }

    /// A value older than expected: a lost write if `key`'s master was killed.
    fn lost(&self, key: &str, what: std::fmt::Arguments) -> bool {
        if !self.may_lose(key) {
            return false;
        }
        self.stats.lost_writes.fetch_add(1, Ordering::Relaxed);
        eprintln!("lost write, client {}: {what}", self.id);
        true
    }

    fn misrouted(&self, what: &str, reply: &Frame) {
        self.stats.misrouted.fetch_add(1, Ordering::Relaxed);
        eprintln!("MISROUTED client {}: {what}: got {reply:?}", self.id);
    }

    /// A write got an error: the key may or may not hold the new value.
    fn uncertain(map: &mut HashMap<String, Known>, key: &str, value: Option<String>) {
        let entry = map.entry(key.to_string()).or_insert(Known::Value(None));
        let mut options = match entry.clone() {
            Known::Value(v) => vec![v],
            Known::EitherOf(v) => v,
        };
        options.push(value);
        *entry = Known::EitherOf(options);
    }

    /// Checks a value read for `key` (from `map`; stored under `redis_key`) and settles
    /// what is known.
    fn check_value(
        &self,
        map: &mut HashMap<String, Known>,
        key: &str,
        redis_key: &str,
        got: &Option<String>,
    ) -> bool {
        let known = map.get(key).cloned().unwrap_or(Known::Value(None));
        let ok = match &known {
            Known::Value(v) => v == got,
            Known::EitherOf(options) => options.contains(got),
        };
        if ok {
            map.insert(key.to_string(), Known::Value(got.clone()));
            return true;
        }
        // Another value of this client's own key: an older one (a lost write) is told
        // apart from anything else.
        let own = format!("c{}|{key}|", self.id);
        if let Some(v) = got {
            if let Some(seq) = v.strip_prefix(&own).and_then(|n| n.parse::<u64>().ok()) {
                if seq <= self.seq
                    && self.lost(
                        redis_key,
                        format_args!("{key} holds {v:?}, expected {known:?}"),
                    )
                {
                    map.insert(key.to_string(), Known::Value(got.clone()));
                    return true;
                }
            }
        }
        // The key vanished: its only writes were lost.
        if got.is_none() && self.lost(redis_key, format_args!("{key} is gone, expected {known:?}"))
        {
            map.insert(key.to_string(), Known::Value(None));
            return true;
        }
        false
    }

    /// Checks one reply against what its request expects.
    fn check(&mut self, expect: Expect, reply: Frame) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if let Frame::Error(e) = &reply {
            self.stats.error(e);
            self.after_error(expect);
            return;
        }
        let mut keys = std::mem::take(&mut self.keys);
        let fine = match (&expect, &reply) {
            (Expect::Ok(pairs), Frame::Simple(s)) if s == "OK" => {
                for (k, v) in pairs {
                    keys.insert(k.clone(), Known::Value(Some(v.clone())));
                }
                true
            }
            (Expect::Get(k), Frame::Bulk(v)) => self.check_value(&mut keys, k, k, v),
            (Expect::MGet(ks), Frame::Array(items)) if items.len() == ks.len() => {
                ks.iter().zip(items).all(|(k, item)| match item {
                    Frame::Bulk(v) => self.check_value(&mut keys, k, k, v),
                    _ => false,
                })
            }
            (Expect::Incr, Frame::Int(n)) => {
                let ok = match &self.counter {
                    Known::Value(v) => {
                        let before = v.as_ref().map_or(0, |s| s.parse::<i64>().unwrap_or(0));
                        *n == before + 1
                            || (*n <= before
                                && self.lost(
                                    &self.counter_key(),
                                    format_args!("INCR gave {n} after {before}"),
                                ))
                    }
                    Known::EitherOf(options) => {
                        let last = options
                            .iter()
                            .filter_map(|o| o.as_ref()?.parse::<i64>().ok())
                            .max()
                            .unwrap_or(0);
                        *n >= 1 && *n <= last + 2
                    }
                };
                if ok {
                    self.counter = Known::Value(Some(n.to_string()));
                }
                ok
            }
            (Expect::Expire(k), Frame::Int(n)) if *n == 0 || *n == 1 => {
                let exists = *n == 1;
                match keys.get(k).cloned().unwrap_or(Known::Value(None)) {
                    Known::Value(Some(_)) if exists => true,
                    Known::Value(Some(_)) => {
                        let lost = self.lost(k, format_args!("EXPIRE {k}: the key is gone"));
                        if lost {
                            keys.insert(k.clone(), Known::Value(None));
                        }
                        lost
                    }
                    Known::Value(None) => !exists,
                    Known::EitherOf(options) => options.iter().any(|o| o.is_some() == exists),
                }
            }
            (Expect::HSet(f, v), Frame::Int(n)) if *n == 0 || *n == 1 => {
                self.fields.insert(f.clone(), Known::Value(Some(v.clone())));
                true
            }
            (Expect::HGet(f), Frame::Bulk(v)) => {
                let mut fields = std::mem::take(&mut self.fields);
                let ok = self.check_value(&mut fields, f, &self.hash_key(), v);
                self.fields = fields;
                ok
            }
            (Expect::EvalSet(k, v), Frame::Bulk(Some(got))) if got == v => {
                keys.insert(k.clone(), Known::Value(Some(v.clone())));
                true
            }
            _ => false,
        };
        self.keys = keys;
        if !fine {
            let what = match &expect {
                Expect::Ok(p) => format!("write of {p:?}"),
                Expect::Get(k) => format!("GET {k} (known {:?})", self.keys.get(k)),
                Expect::MGet(ks) => format!("MGET {ks:?}"),
                Expect::Incr => format!("INCR (known {:?})", self.counter),
                Expect::Expire(k) => format!("EXPIRE {k} (known {:?})", self.keys.get(k)),
                Expect::HSet(f, _) => format!("HSET {f}"),
                Expect::HGet(f) => format!("HGET {f} (known {:?})", self.fields.get(f)),
                Expect::EvalSet(k, v) => format!("EVAL SET {k} {v}"),
            };
            self.misrouted(&what, &reply);
        }
    }

    /// A request got an error (or no reply): what it wrote may or may not be there.
    fn after_error(&mut self, expect: Expect) {
        match expect {
            Expect::Ok(pairs) => {
                for (k, v) in pairs {
                    Self::uncertain(&mut self.keys, &k, Some(v));
                }
            }
            Expect::EvalSet(k, v) => Self::uncertain(&mut self.keys, &k, Some(v)),
            Expect::HSet(f, v) => Self::uncertain(&mut self.fields, &f, Some(v)),
            Expect::Incr => {
                let mut options = match self.counter.clone() {
                    Known::Value(v) => vec![v],
                    Known::EitherOf(v) => v,
                };
                let last = options
                    .iter()
                    .filter_map(|o| o.as_ref()?.parse::<i64>().ok())
                    .max()
                    .unwrap_or(0);
                options.push(Some((last + 1).to_string()));
                self.counter = Known::EitherOf(options);
            }
            Expect::Get(_) | Expect::MGet(_) | Expect::Expire(_) | Expect::HGet(_) => {}
        }
    }
}

async fn run_client(
    id: usize,
    addr: SocketAddr,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    victim_slots: Arc<Vec<bool>>,
) {
    let mut client = Client {
        id,
        seq: 0,
        rng: Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)),
        keys: HashMap::new(),
        fields: HashMap::new(),
        counter: Known::Value(None),
        stats: stats.clone(),
        victim_slots,
    };
    let mut conn = None;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            conn = Conn::connect(addr).await;
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        let batch = client.next_batch();
        let commands: Vec<Vec<String>> = batch.iter().map(|(c, _)| c.clone()).collect();
        match conn
            .as_mut()
            .expect("connected")
            .round_trip(&commands)
            .await
        {
            Some(replies) => {
                for ((_, expect), reply) in batch.into_iter().zip(replies) {
                    client.check(expect, reply);
                }
            }
            None => {
                // No reply (connection lost or a hang): counted as errors, and the
                // connection is replaced (late replies must not be read as answers to
                // later requests).
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                for (_, expect) in batch {
                    stats.requests.fetch_add(1, Ordering::Relaxed);
                    stats.error("(no reply: connection lost or timed out)");
                    client.after_error(expect);
                }
                conn = None;
            }
        }
    }
}

/// Moves `slot` from `from` to `to` with its keys, as `redis-cli --cluster reshard`.
fn migrate_slot(cluster: &DevCluster, slot: u16, from: SocketAddr, to: SocketAddr) -> usize {
    let s = slot.to_string();
    support::slot_move_begin(cluster, slot, from, to);
    let (host, port) = (to.ip().to_string(), to.port().to_string());
    let mut moved = 0;
    loop {
        let reply = cluster
            .command(from, &["CLUSTER", "GETKEYSINSLOT", &s, "10"])
            .unwrap_or_else(|e| panic!("GETKEYSINSLOT on {from}: {e}"));
        let Reply::Array(items) = reply else {
            panic!("GETKEYSINSLOT on {from}: {reply:?}");
        };
        if items.is_empty() {
            break;
        }
        let keys: Vec<&str> = items.iter().filter_map(|k| k.as_str()).collect();
        let mut args = vec!["MIGRATE", &host, &port, "", "0", "5000", "KEYS"];
        args.extend(&keys);
        support::node_ok(cluster, from, &args);
        moved += keys.len();
        std::thread::sleep(Duration::from_millis(50));
    }
    support::slot_move_end(cluster, slot, from, to, |_| {});
    moved
}

/// Which slots `master` serves, per `CLUSTER SLOTS` asked of `via`.
fn slots_of(cluster: &DevCluster, via: SocketAddr, master: SocketAddr) -> Vec<bool> {
    let mut slots = vec![false; 16384];
    let Ok(Reply::Array(ranges)) = cluster.command(via, &["CLUSTER", "SLOTS"]) else {
        panic!("CLUSTER SLOTS on {via}");
    };
    for range in ranges {
        let Reply::Array(r) = range else { continue };
        let (Some(lo), Some(hi)) = (r[0].as_int(), r[1].as_int()) else {
            continue;
        };
        let Reply::Array(node) = &r[2] else { continue };
        let port = node[1].as_int().unwrap_or(0);
        if port == i64::from(master.port()) {
            for s in lo..=hi {
                slots[s as usize] = true;
            }
        }
    }
    assert!(slots.iter().any(|s| *s), "{master} serves slots");
    slots
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak test: minutes long; run with --ignored (RESPGATE_SOAK_SECS sets the duration)"]
async fn soak_50_clients_mixed_commands_through_a_failover_and_a_migration() {
    let duration = soak_duration();
    let mut cluster = tokio::task::block_in_place(|| {
        DevCluster::start(DevClusterOptions::default())
            .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"))
    });
    let proxy = support::start_proxy(support::test_config(&cluster.seeds())).await;
    let addr = proxy.local_addr();
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let slot = key_slot(MIGRATED_TAG.as_bytes());
    let source = cluster.master_for_slot(slot);
    let masters = cluster.masters();
    let victim = *masters
        .iter()
        .find(|m| **m != source)
        .expect("a second master");
    let target = *masters
        .iter()
        .find(|m| **m != source && **m != victim)
        .expect("a third master");
    let victim_slots = Arc::new(tokio::task::block_in_place(|| {
        slots_of(&cluster, source, victim)
    }));
    let began = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let task = run_client(id, addr, stats.clone(), stop.clone(), victim_slots.clone());
            tokio::spawn(task)
        })
        .collect();
    let progress = |what: &str| {
        eprintln!(
            "[{:>5.1}s] {what}: requests {}, errors {}, misrouted {}, lost writes {}",
            began.elapsed().as_secs_f64(),
            stats.requests.load(Ordering::Relaxed),
            stats.errors.load(Ordering::Relaxed),
            stats.misrouted.load(Ordering::Relaxed),
            stats.lost_writes.load(Ordering::Relaxed),
        )
    };

    tokio::time::sleep(duration / 3).await;
    progress(&format!("kill -9 of master {victim}"));
    tokio::task::block_in_place(|| {
        cluster.kill_node(victim);
        cluster
            .wait_for_state_ok(Duration::from_secs(60))
            .expect("the replica takes over");
    });
    progress("failover done");

    let until = duration / 2;
    if began.elapsed() < until {
        tokio::time::sleep(until - began.elapsed()).await;
    }
    progress(&format!("migrating slot {slot} from {source} to {target}"));
    let moved = tokio::task::block_in_place(|| migrate_slot(&cluster, slot, source, target));
    progress(&format!("slot {slot} migrated ({moved} keys)"));

    if began.elapsed() < duration {
        tokio::time::sleep(duration - began.elapsed()).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let elapsed = began.elapsed();
    let requests = stats.requests.load(Ordering::Relaxed);
    let errors = stats.errors.load(Ordering::Relaxed);
    let misrouted = stats.misrouted.load(Ordering::Relaxed);
    let lost = stats.lost_writes.load(Ordering::Relaxed);
    eprintln!(
        "SOAK RESULT: {CLIENTS} clients, {:.0} s: requests {requests}, errors {errors}, misrouted {misrouted}, lost writes {lost}, reconnects {}, {:.0} req/s",
        elapsed.as_secs_f64(),
        stats.reconnects.load(Ordering::Relaxed),
        requests as f64 / elapsed.as_secs_f64()
    );
    let mut kinds: Vec<_> = stats.kinds.lock().unwrap().clone().into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    for (kind, n) in kinds {
        eprintln!("  {n:>6} x {kind}");
    }
    assert_eq!(misrouted, 0, "replies that answer another request");
    assert!(
        requests > (CLIENTS as u64) * 100,
        "the clients made progress"
    );
    // Errors come from the failover window only: a small share of the whole.
    assert!(
        errors * 100 < requests,
        "{errors} errors in {requests} requests"
    );
    proxy.shutdown().await;
}
