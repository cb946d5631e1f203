//! Cross-slot moves survive respgate being killed (issue 16, acceptance 2).
//!
//! The `respgate` binary runs with `[compat] cross_slot = "compute"` in front of the
//! shared cluster while clients loop SMOVE, LMOVE and RPOPLPUSH over a known population
//! (distinct set members, distinct list elements) and RENAME keys along chains of names,
//! every key in a slot of its own. respgate is killed with SIGKILL again and again and
//! restarted on the same port; the clients reconnect and go on. Afterwards, read from the
//! nodes directly:
//! - every member and element is still somewhere (a kill between "the destination got
//!   it" and "the source gave it up" may leave it in two places, never in none), with the
//!   duplicates counted and bounded by the commands a kill can interrupt;
//! - every renamed key exists under at least one of its names, with its value;
//! - internal keys (`respgate:xslot:` in their names) seen on the nodes during the run
//!   carry a TTL of at most 10 s, and none is left once that TTL has passed.

mod support;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Set members (integers) spread over [`SETS`] sets: a pair per SMOVE client.
const MEMBERS: usize = 240;
const SETS: usize = 4;
/// List elements spread over [`LISTS`] lists: a pair per LMOVE / RPOPLPUSH client.
const ELEMENTS: usize = 240;
const LISTS: usize = 6;
/// Keys renamed along chains of [`CHAIN`] names each.
const RENAMED: usize = 6;
const CHAIN: usize = 4;
/// How many times respgate is killed.
const KILLS: usize = 12;
/// The longest TTL an internal key may carry (ms).
const INTERNAL_TTL_MS: i64 = 10_000;
/// What internal keys' names contain.
const INTERNAL: &str = "respgate:xslot:";

/// `names` made into keys under `prefix`, each in a slot no other key of the test uses.
fn distinct_slot_keys(prefix: &str, names: &[String], used: &mut HashSet<u16>) -> Vec<String> {
    names
        .iter()
        .map(|n| {
            let mut attempt = 0;
            loop {
                let k = format!("{prefix}{n}.{attempt}");
                if used.insert(respgate::cluster::key_slot(k.as_bytes())) {
                    return k;
                }
                attempt += 1;
            }
        })
        .collect()
}

/// The test's keys.
struct Layout {
    sets: Vec<String>,
    lists: Vec<String>,
    /// `chains[i][j]`: the j-th name of renamed key i.
    chains: Vec<Vec<String>>,
    /// Two sources and a destination for a client computing unions (through internal
    /// keys, which a kill may leave behind).
    unions: Vec<String>,
}

impl Layout {
    fn new(prefix: &str) -> Layout {
        let mut used = HashSet::new();
        let names = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        let sets = distinct_slot_keys(prefix, &names("set", SETS), &mut used);
        let lists = distinct_slot_keys(prefix, &names("list", LISTS), &mut used);
        let chains = (0..RENAMED)
            .map(|i| distinct_slot_keys(prefix, &names(&format!("r{i}n"), CHAIN), &mut used))
            .collect();
        let unions = distinct_slot_keys(prefix, &names("union", 3), &mut used);
        Layout {
            sets,
            lists,
            chains,
            unions,
        }
    }
}

/// The value renamed key `i` carries (checked under whichever name it ends up).
fn renamed_value(i: usize) -> String {
    format!("value-of-{i}")
}

// ---- direct node access (bypassing respgate) ----

fn node(key: &str, args: &[&str]) -> devcluster::Reply {
    support::on_owner(key, args)
}

fn bulk_strings(reply: devcluster::Reply) -> Vec<String> {
    match reply {
        devcluster::Reply::Array(items) => items
            .into_iter()
            .map(|i| String::from_utf8(i.as_bytes().expect("a bulk string").to_vec()).unwrap())
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// Every key whose name contains [`INTERNAL`] on every master, with its PTTL.
fn internal_keys() -> Vec<(SocketAddr, String, i64)> {
    let masters = support::with_shared_cluster(|c| c.masters());
    let mut out = Vec::new();
    let pattern = format!("*{INTERNAL}*");
    for m in masters {
        let mut cursor = "0".to_string();
        loop {
            let reply = support::on_node(m, &["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"]);
            let devcluster::Reply::Array(mut parts) = reply else {
                panic!("{m}: SCAN gave {reply:?}")
            };
            let keys = bulk_strings(parts.pop().unwrap());
            cursor = String::from_utf8(parts[0].as_bytes().unwrap().to_vec()).unwrap();
            for k in keys {
                let ttl = support::on_node(m, &["PTTL", &k]).as_int().unwrap();
                out.push((m, k, ttl));
            }
            if cursor == "0" {
                break;
            }
        }
    }
    out
}

// ---- a blocking RESP client that survives respgate's death ----

struct Client {
    addr: String,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
}

/// A reply, or why there is none (connection lost: the command may or may not have run).
type Reply = Result<Vec<u8>, String>;

impl Client {
    fn new(addr: &str) -> Client {
        Client {
            addr: addr.to_string(),
            conn: None,
            buf: Vec::new(),
        }
    }

    fn command(&mut self, args: &[&str]) -> Reply {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.set_nodelay(true).unwrap();
            self.conn = Some(s);
            self.buf.clear();
        }
        let result = self.exchange(args);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn exchange(&mut self, args: &[&str]) -> Reply {
        let s = self.conn.as_mut().unwrap();
        s.write_all(&support::encode_command(args))
            .map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if !self.buf.is_empty() {
                if let Some(len) = support::frame_len(&self.buf) {
                    return Ok(self.buf.drain(..len).collect());
                }
            }
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A bulk string reply's payload; `None` for nil or anything else.
fn bulk(reply: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(reply).ok()?;
    let rest = text.strip_prefix('$')?;
    let (len, body) = rest.split_once("\r\n")?;
    let len: usize = len.parse().ok()?;
    Some(body[..len].to_string())
}

/// What the clients did, for the report.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    /// Successful moves and renames between two different keys (so two slots).
    moved: AtomicU64,
    errors: AtomicU64,
    lost_connections: AtomicU64,
    /// Each error reply's text and how often it came.
    error_texts: std::sync::Mutex<HashMap<String, u64>>,
}

impl Counts {
    /// Counts `r`, and a move across slots when `across` and the reply says it moved.
    fn record_move(&self, r: &Reply, across: bool, moved: impl Fn(&[u8]) -> bool) {
        if across && matches!(r, Ok(b) if moved(b)) {
            self.moved.fetch_add(1, Ordering::Relaxed);
        }
        self.record(r);
    }

    fn record(&self, r: &Reply) {
        match r {
            Ok(b) if b.first() == Some(&b'-') => {
                let text = String::from_utf8_lossy(b).trim_end().to_string();
                *self.error_texts.lock().unwrap().entry(text).or_default() += 1;
                // respgate restarting (not ready yet): no busy loop.
                std::thread::sleep(Duration::from_millis(5));
                self.errors.fetch_add(1, Ordering::Relaxed)
            }
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                self.lost_connections.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Loops SMOVE between random sets of `sets` of random members (SRANDMEMBER first, so most
/// moves find their member).
fn smove_client(
    addr: String,
    sets: Vec<String>,
    seed: u64,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Client::new(&addr);
    while !stop.load(Ordering::Relaxed) {
        let src = &sets[rng.random_range(0..sets.len())];
        let dst = &sets[rng.random_range(0..sets.len())];
        let member = match c.command(&["SRANDMEMBER", src]) {
            Ok(r) => bulk(&r).unwrap_or_else(|| rng.random_range(0..MEMBERS).to_string()),
            Err(e) => {
                counts.record(&Err(e));
                continue;
            }
        };
        let r = c.command(&["SMOVE", src, dst, &member]);
        counts.record_move(&r, src != dst, |b| b == b":1\r\n");
    }
}

/// Loops LMOVE (or RPOPLPUSH) between random lists of `lists`.
fn lmove_client(
    addr: String,
    lists: Vec<String>,
    seed: u64,
    rpoplpush: bool,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Client::new(&addr);
    let sides = ["LEFT", "RIGHT"];
    while !stop.load(Ordering::Relaxed) {
        let src = &lists[rng.random_range(0..lists.len())];
        let dst = &lists[rng.random_range(0..lists.len())];
        let r = if rpoplpush {
            c.command(&["RPOPLPUSH", src, dst])
        } else {
            let (from, to) = (sides[rng.random_range(0..2)], sides[rng.random_range(0..2)]);
            c.command(&["LMOVE", src, dst, from, to])
        };
        counts.record_move(&r, src != dst, |b| b.starts_with(b"$") && b != b"$-1\r\n");
    }
}

/// Loops SUNIONSTORE and ZUNIONSTORE over `keys` (`dst`, `a`, `b`): computed through
/// internal copies next to `dst`.
fn union_client(addr: String, keys: Vec<String>, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let mut c = Client::new(&addr);
    let (dst, a, b) = (&keys[0], &keys[1], &keys[2]);
    while !stop.load(Ordering::Relaxed) {
        let r = c.command(&["SUNIONSTORE", dst, a, b]);
        counts.record(&r);
        let r = c.command(&["ZUNIONSTORE", dst, "2", a, b, "WEIGHTS", "1", "2"]);
        counts.record(&r);
    }
}

/// Renames each of its keys along its chain of names; after a lost connection (or an
/// error) it looks for the key's names again through respgate.
fn rename_client(
    addr: String,
    layout: Arc<Layout>,
    keys: Vec<usize>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) {
    let mut c = Client::new(&addr);
    // Where each key is believed to be: an index into its chain, `None` when unknown.
    let mut at: HashMap<usize, Option<usize>> = keys.iter().map(|&k| (k, None)).collect();
    while !stop.load(Ordering::Relaxed) {
        for &k in &keys {
            let chain = &layout.chains[k];
            let Some(cur) = at[&k].or_else(|| find_name(&mut c, chain)) else {
                // Not found (respgate down, or the key under no name: the final count says).
                at.insert(k, None);
                continue;
            };
            let next = (cur + 1) % CHAIN;
            let r = c.command(&["RENAME", &chain[cur], &chain[next]]);
            let moved = matches!(&r, Ok(b) if b.as_slice() == b"+OK\r\n");
            counts.record_move(&r, true, |b| b == b"+OK\r\n");
            at.insert(k, moved.then_some(next));
        }
    }
}

/// The first of `chain`'s names that exists, asked through respgate.
fn find_name(c: &mut Client, chain: &[String]) -> Option<usize> {
    chain
        .iter()
        .position(|name| matches!(c.command(&["EXISTS", name]), Ok(r) if r.as_slice() == b":1\r\n"))
}

// ---- the respgate process ----

struct Gate {
    child: Child,
    addr: String,
    config: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Gate {
    fn start(dir: &tempfile::TempDir, addr: &str) -> Gate {
        let seeds: Vec<String> = support::shared_cluster_seeds()
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect();
        let config = dir.path().join("respgate.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"{addr}\"\n[cluster]\nseeds = [{}]\n[auth]\nmode = \"none\"\n[compat]\ncross_slot = \"compute\"\n",
                seeds.join(", ")
            ),
        )
        .unwrap();
        let log = dir.path().join("respgate.log");
        let child = Gate::spawn(&config, &log);
        let mut gate = Gate {
            child,
            addr: addr.to_string(),
            config,
            log,
        };
        gate.wait_ready();
        gate
    }

    fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_respgate"))
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the respgate binary starts")
    }

    /// Waits until respgate routes keyed commands (PING alone is answered before it
    /// knows the cluster).
    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let mut c = Client::new(&self.addr);
            if matches!(c.command(&["EXISTS", "xsf:ready"]), Ok(r) if r.starts_with(b":")) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("respgate exited ({status}):\n{}", self.log_tail());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "respgate not ready after 20 s:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL respgate");
        self.child.wait().unwrap();
    }

    fn restart(&mut self) {
        self.child = Gate::spawn(&self.config, &self.log);
        self.wait_ready();
    }
}

/// Occurrences of each expected item over `containers`' contents.
fn count_items(expected: &[String], contents: &[Vec<String>]) -> (Vec<String>, usize, Vec<String>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut unknown = Vec::new();
    for items in contents {
        for i in items {
            match expected.iter().find(|e| *e == i) {
                Some(e) => *seen.entry(e.as_str()).or_default() += 1,
                None => unknown.push(i.clone()),
            }
        }
    }
    let missing = expected
        .iter()
        .filter(|e| !seen.contains_key(e.as_str()))
        .cloned()
        .collect();
    let duplicates = seen.values().map(|n| n - 1).sum();
    (missing, duplicates, unknown)
}

impl Counts {
    fn load(&self) -> (u64, u64, u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.moved.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.lost_connections.load(Ordering::Relaxed),
        )
    }
}

/// Starts the clients: two SMOVE, two LMOVE, one RPOPLPUSH, two RENAME (three keys
/// each), one computing unions. `owned`: each mover on a pair of keys of its own; else all on every key.
fn spawn_clients(
    addr: &str,
    layout: &Arc<Layout>,
    owned: bool,
    stop: &Arc<AtomicBool>,
    counts: &Arc<Counts>,
) -> Vec<std::thread::JoinHandle<()>> {
    let pick = |keys: &[String], i: usize| -> Vec<String> {
        if owned {
            keys[2 * i..2 * i + 2].to_vec()
        } else {
            keys.to_vec()
        }
    };
    let mut clients = Vec::new();
    for i in 0..2 {
        let (a, k, s, c) = (
            addr.to_string(),
            pick(&layout.sets, i),
            stop.clone(),
            counts.clone(),
        );
        clients.push(std::thread::spawn(move || {
            smove_client(a, k, i as u64, s, c)
        }));
    }
    for i in 0..3 {
        let (a, k, s, c) = (
            addr.to_string(),
            pick(&layout.lists, i),
            stop.clone(),
            counts.clone(),
        );
        clients.push(std::thread::spawn(move || {
            lmove_client(a, k, 10 + i as u64, i == 2, s, c)
        }));
    }
    for keys in [vec![0, 1, 2], vec![3, 4, 5]] {
        let (a, l, s, c) = (
            addr.to_string(),
            layout.clone(),
            stop.clone(),
            counts.clone(),
        );
        clients.push(std::thread::spawn(move || rename_client(a, l, keys, s, c)));
    }
    let (a, k, s, c) = (
        addr.to_string(),
        layout.unions.clone(),
        stop.clone(),
        counts.clone(),
    );
    clients.push(std::thread::spawn(move || union_client(a, k, s, c)));
    clients
}

/// Reads every key on the nodes directly: asserts that no member, element or renamed
/// key is lost (and nothing unknown appeared); returns the duplicates (set members,
/// list elements, renamed keys under more than one name).
fn count_everything(
    layout: &Layout,
    members: &[String],
    elements: &[String],
) -> (usize, usize, usize) {
    let set_contents: Vec<Vec<String>> = layout
        .sets
        .iter()
        .map(|k| bulk_strings(node(k, &["SMEMBERS", k])))
        .collect();
    let (missing, set_dups, unknown) = count_items(members, &set_contents);
    assert!(missing.is_empty(), "set members lost: {missing:?}");
    assert!(unknown.is_empty(), "unexpected set members: {unknown:?}");
    let list_contents: Vec<Vec<String>> = layout
        .lists
        .iter()
        .map(|k| bulk_strings(node(k, &["LRANGE", k, "0", "-1"])))
        .collect();
    let (missing, list_dups, unknown) = count_items(elements, &list_contents);
    assert!(missing.is_empty(), "list elements lost: {missing:?}");
    assert!(unknown.is_empty(), "unexpected list elements: {unknown:?}");
    let mut rename_dups = 0;
    for (i, chain) in layout.chains.iter().enumerate() {
        let mut under = Vec::new();
        for name in chain {
            match node(name, &["GET", name]) {
                devcluster::Reply::Bulk(None) => {}
                devcluster::Reply::Bulk(Some(v)) => {
                    assert_eq!(v, renamed_value(i).as_bytes(), "{name}");
                    under.push(name.clone());
                }
                other => panic!("{name}: GET gave {other:?}"),
            }
        }
        assert!(
            !under.is_empty(),
            "renamed key {i} lost: under none of {chain:?}"
        );
        rename_dups += under.len() - 1;
    }
    (set_dups, list_dups, rename_dups)
}

/// Acceptance 2: SIGKILL respgate over and over while clients move members and elements
/// and rename keys across slots: nothing is lost, duplicates stay within what a kill can
/// interrupt, and no internal key outlives its TTL.
#[test]
fn killing_respgate_during_cross_slot_moves_loses_nothing() {
    let prefix = format!("xsf-{}:", std::process::id());
    let layout = Arc::new(Layout::new(&prefix));
    // The population, written to the nodes directly.
    let members: Vec<String> = (0..MEMBERS).map(|m| m.to_string()).collect();
    let elements: Vec<String> = (0..ELEMENTS).map(|e| format!("e{e}")).collect();
    for (i, set) in layout.sets.iter().enumerate() {
        let mut args = vec!["SADD", set];
        args.extend(members.iter().skip(i).step_by(SETS).map(String::as_str));
        node(set, &["DEL", set]);
        node(set, &args);
    }
    for (i, list) in layout.lists.iter().enumerate() {
        let mut args = vec!["RPUSH", list];
        args.extend(elements.iter().skip(i).step_by(LISTS).map(String::as_str));
        node(list, &["DEL", list]);
        node(list, &args);
    }
    for (i, k) in layout.unions.iter().enumerate() {
        node(k, &["DEL", k]);
        if i > 0 {
            let mut args = vec!["SADD".to_string(), k.clone()];
            args.extend((0..100).map(|m| format!("u{i}-{m}")));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            node(k, &args);
        }
    }
    for (i, chain) in layout.chains.iter().enumerate() {
        for name in chain {
            node(name, &["DEL", name]);
        }
        node(&chain[0], &["SET", &chain[0], &renamed_value(i)]);
    }

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut gate = Gate::start(&dir, &addr);

    // Phase 1: kills, each client on keys of its own (no two clients touch one key, so
    // every duplicate comes from a kill).
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let clients = spawn_clients(&addr, &layout, true, &stop, &counts);
    let mut rng = StdRng::seed_from_u64(7);
    let mut internal_seen = 0;
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.random_range(200..500)));
        gate.kill();
        for (m, k, ttl) in internal_keys() {
            internal_seen += 1;
            assert!(
                ttl == -2 || (0..=INTERNAL_TTL_MS).contains(&ttl),
                "internal key {k} on {m} has PTTL {ttl} (at most {INTERNAL_TTL_MS} ms, never none)"
            );
        }
        gate.restart();
    }
    // Let the clients run on the last respgate a little, then stop them.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client thread panicked");
    }
    let (ok, moved, errors, lost) = counts.load();
    assert!(
        moved > 300,
        "the clients hardly moved anything across slots: {moved} moves ({ok} replies, {errors} errors)"
    );
    let (set_dups, list_dups, rename_dups) = count_everything(&layout, &members, &elements);
    // Each kill interrupts at most one command per client: the only way to a duplicate
    // here.
    let movers = 5;
    assert!(
        set_dups + list_dups <= KILLS * movers,
        "{set_dups} set and {list_dups} list duplicates after {KILLS} kills of {movers} movers \
         each on keys of its own"
    );
    assert!(
        rename_dups <= KILLS * 2,
        "{rename_dups} keys under two names"
    );
    eprintln!(
        "cross-slot faults, {KILLS} kills: {moved} moves across slots; replies {ok} ok, {errors} errors, \
         {lost} lost connections; duplicates: {set_dups} set members, {list_dups} list elements, \
         {rename_dups} renamed keys; {internal_seen} internal keys seen after kills; errors: {:?}",
        counts.error_texts.lock().unwrap()
    );

    // Phase 2: no kill, the movers on every key at once. What interleaves (two clients
    // taking the same element) is the README's to say: nothing may be lost; the
    // duplicates are reported.
    stop.store(false, Ordering::Relaxed);
    let counts = Arc::new(Counts::default());
    let clients = spawn_clients(&addr, &layout, false, &stop, &counts);
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client thread panicked");
    }
    gate.kill();
    let ended = Instant::now();
    let (_, moved, errors, _) = counts.load();
    let (set_dups2, list_dups2, rename_dups2) = count_everything(&layout, &members, &elements);
    eprintln!(
        "cross-slot, concurrent movers without kills: {moved} moves, {errors} errors; duplicates \
         now {set_dups2} set members (+{}), {list_dups2} list elements (+{}), {rename_dups2} renamed keys; \
         errors: {:?}",
        set_dups2 as i64 - set_dups as i64,
        list_dups2 as i64 - list_dups as i64,
        counts.error_texts.lock().unwrap()
    );

    // Once their TTL has passed, no internal key is left on any master.
    let wait = Duration::from_millis(INTERNAL_TTL_MS as u64 + 500);
    std::thread::sleep(wait.saturating_sub(ended.elapsed()));
    let left = internal_keys();
    assert!(
        left.is_empty(),
        "internal keys left after their TTL: {left:?}"
    );

    for k in layout
        .sets
        .iter()
        .chain(&layout.lists)
        .chain(&layout.unions)
        .chain(layout.chains.iter().flatten())
    {
        node(k, &["DEL", k]);
    }
}
