//! Shared test fixtures: a real Redis Cluster and respgate in front of it.
//!
//! One cluster per test binary ([`shared_cluster`]), started on first use and stopped at
//! process exit; tests that break things (failover, migration, pauses) start a private
//! one with [`DevCluster::start`]. Each test starts its own in-process respgate on an
//! ephemeral port ([`start_proxy`]) and uses its own key prefix, so tests sharing the
//! cluster never see each other's keys.
#![allow(dead_code)]

pub mod pki;
pub mod shop;
pub mod standalone;

use devcluster::{DevCluster, DevClusterOptions};
use respgate::config::Config;
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

/// Runs this test binary's proxies on two thread-per-core workers, as the `respgate`
/// binary does (src/workers.rs): sessions and backend links live on worker threads and
/// clients are handed over as std sockets. [`start_proxy`] calls it, so every
/// integration test exercises the binary's threading; idempotent.
pub fn use_workers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| respgate::workers::start(2).expect("worker threads start"));
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
    use_workers();
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

/// respgate in front of the shared cluster, configured as an operator would: `toml`
/// (whole sections, e.g. `[compat]\ncross_slot = "compute"`) appended to a minimal file
/// (this listener, the shared cluster's seeds, `[auth] mode = "none"` unless `toml` has
/// an `[auth]` section), read with the
/// file loader's own parser; no guards, as [`test_config`]. Tests that set options by
/// their TOML names keep compiling whatever the Rust fields behind them are called.
pub async fn proxy_for_shared_with(toml: &str) -> Proxy {
    let seeds: Vec<String> = shared_cluster_seeds()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    // `[auth] mode = "none"` unless `toml` has its own `[auth]`.
    let auth = if toml.contains("[auth]") {
        ""
    } else {
        "[auth]\nmode = \"none\"\n"
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[cluster]\nseeds = [{}]\n{auth}{toml}\n",
        seeds.join(", ")
    );
    let mut config = Config::from_toml(&text, std::path::Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("test config rejected: {e}\n{text}"));
    config.guards = respgate::config::GuardsConfig::none();
    start_proxy(config).await
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

// ---------------------------------------------------------------------------------------
// Raw RESP access, for byte-exact replies and protocol edge cases.
// ---------------------------------------------------------------------------------------

/// How long a raw read may wait before the test fails instead of hanging.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// The RESP2 multibulk encoding of a command.
pub fn encode_command<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The length of the first complete RESP2 frame in `buf`, `None` if it is incomplete.
/// RESP3 frames (after HELLO 3) are framed with redis-protocol's RESP3 decoder.
///
/// # Panics
/// If `buf` does not start with a valid RESP frame.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    if matches!(
        buf.first(),
        Some(b'%' | b'~' | b'>' | b'_' | b',' | b'#' | b'=' | b'(' | b'|' | b'!')
    ) {
        return match redis_protocol::resp3::decode::complete::decode_range(buf) {
            Ok(Some((_, len))) => Some(len),
            Ok(None) => None,
            // Redis itself puts a RESP2 null (`$-1`) in some RESP3 pushes (PUNSUBSCRIBE
            // with no pattern left), which redis-protocol refuses: respgate's scanner
            // frames it.
            Err(_) if matches!(respgate::protocol::scan::scan_reply(buf), Ok(Some(_))) => {
                respgate::protocol::scan::scan_reply(buf).ok().flatten()
            }
            Err(e) => panic!("invalid RESP3 from the server ({e:?}): {:?}", show(buf)),
        };
    }
    match redis_protocol::resp2::decode::decode_range(buf) {
        Ok(Some((_, len))) => Some(len),
        Ok(None) => None,
        // An array with RESP3 elements (`*2 ... _`, COMMAND INFO's maps after HELLO 3):
        // respgate's scanner frames it (redis-protocol's RESP3 decoder refuses some
        // incomplete nested frames instead of waiting).
        Err(_) if respgate::protocol::scan::scan_reply(buf).is_ok() => {
            respgate::protocol::scan::scan_reply(buf).ok().flatten()
        }
        Err(e) => panic!(
            "invalid RESP2 from the server ({e:?}): {:?}",
            show(&buf[..buf.len().min(200)])
        ),
    }
}

/// Bytes as readable text for assertion messages (`\r\n` kept visible).
pub fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// A plain TCP connection speaking RESP2 by hand.
pub struct RawConn {
    pub stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

/// Several commands encoded back to back: one pipelined write.
pub fn encode_pipeline(commands: &[&[&str]]) -> Vec<u8> {
    commands.iter().flat_map(|c| encode_command(c)).collect()
}

/// Runs `args` on `node` of the shared cluster, bypassing respgate.
pub fn on_node(node: SocketAddr, args: &[&str]) -> devcluster::Reply {
    with_shared_cluster(|c| {
        c.command(node, args)
            .unwrap_or_else(|e| panic!("{node}: `{}`: {e}", args.join(" ")))
    })
}

/// Runs `args` on the shared-cluster master that owns `key`'s slot, bypassing respgate.
pub fn on_owner(key: &str, args: &[&str]) -> devcluster::Reply {
    on_node(shared_owner_of(key), args)
}

impl RawConn {
    /// The next `n` replies.
    pub async fn read_replies(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut replies = Vec::with_capacity(n);
        for _ in 0..n {
            replies.push(self.read_reply().await);
        }
        replies
    }

    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.expect("raw write");
    }

    /// Sends one command and returns the raw bytes of its reply.
    pub async fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Vec<u8> {
        self.send(&encode_command(args)).await;
        self.read_reply().await
    }

    /// Reads one reply frame; `None` when the peer closed (or reset) the connection first.
    ///
    /// # Panics
    /// If nothing complete arrives within [`RAW_TIMEOUT`].
    pub async fn try_read_reply(&mut self) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(len) = frame_len(&self.buf) {
                return Some(self.buf.drain(..len).collect());
            }
            let n = tokio::time::timeout(RAW_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "no complete reply within {RAW_TIMEOUT:?}; have {:?}",
                        show(&self.buf)
                    )
                })
                .unwrap_or(0);
            if n == 0 {
                assert!(
                    self.buf.is_empty(),
                    "connection closed in the middle of a reply: {:?}",
                    show(&self.buf)
                );
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads one reply frame, failing the test if the connection closed first.
    pub async fn read_reply(&mut self) -> Vec<u8> {
        self.try_read_reply()
            .await
            .expect("connection closed before the reply")
    }

    /// Asserts that the peer closes the connection (EOF or reset) without sending
    /// anything more, within [`RAW_TIMEOUT`].
    pub async fn expect_closed(&mut self) {
        if let Some(extra) = self.try_read_reply().await {
            panic!("expected the connection to close, got {:?}", show(&extra));
        }
    }
}

/// The master serving each of the 16384 slots in the shared cluster (`CLUSTER SLOTS`
/// asked directly of a node, not through respgate).
pub fn shared_slot_owners() -> Vec<SocketAddr> {
    use devcluster::Reply;
    with_shared_cluster(|c| {
        let seed = c.masters()[0];
        let Reply::Array(ranges) = c.command(seed, &["CLUSTER", "SLOTS"]).unwrap() else {
            panic!("CLUSTER SLOTS is not an array");
        };
        let mut owners = vec![None; 16384];
        for range in ranges {
            let Reply::Array(r) = range else {
                panic!("bad CLUSTER SLOTS entry {range:?}")
            };
            let (lo, hi) = (r[0].as_int().unwrap(), r[1].as_int().unwrap());
            let Reply::Array(master) = &r[2] else {
                panic!("bad CLUSTER SLOTS node {:?}", r[2])
            };
            let ip = master[0].as_str().unwrap();
            let port = master[1].as_int().unwrap();
            let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
            for slot in lo..=hi {
                owners[slot as usize] = Some(addr);
            }
        }
        owners
            .into_iter()
            .enumerate()
            .map(|(slot, o)| o.unwrap_or_else(|| panic!("slot {slot} unassigned")))
            .collect()
    })
}

/// The master that owns `key`'s slot in the shared cluster.
pub fn shared_owner_of(key: &str) -> SocketAddr {
    let slot = respgate::cluster::key_slot(key.as_bytes());
    with_shared_cluster(|c| c.master_for_slot(slot))
}

// ---- helpers for the migration and failover tests ----

/// The cluster node id of the node listening on `addr`.
pub fn node_id(cluster: &DevCluster, addr: SocketAddr) -> String {
    match cluster.nodes().iter().find(|n| n.addr == addr) {
        Some(n) => n.id.clone(),
        None => panic!("{addr} is not a node of this dev cluster"),
    }
}

/// Runs `args` directly on `node` and panics unless the reply is `+OK`.
pub fn node_ok(cluster: &DevCluster, node: SocketAddr, args: &[&str]) {
    match cluster.command(node, args) {
        Ok(devcluster::Reply::Simple(s)) if s == "OK" => {}
        other => panic!("{node}: `{}` gave {other:?}", args.join(" ")),
    }
}

/// The integer ending a reply (`:n\r\n`, alone or as the last element of an array).
pub fn trailing_int(reply: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(reply);
    let last = text.trim_end().rsplit("\r\n").next().unwrap_or_default();
    last.strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no trailing integer in {:?}", show(reply)))
}

/// The RESP2 bytes of a PUBSUB NUMSUB / SHARDNUMSUB reply: `[channel, count, ...]`.
pub fn numsub_reply(counts: &[(&str, i64)]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", counts.len() * 2);
    for (channel, n) in counts {
        out.push_str(&format!("${}\r\n{channel}\r\n:{n}\r\n", channel.len()));
    }
    out.into_bytes()
}

/// A master of `cluster` other than `than` (a slot's destination).
pub fn another_master(cluster: &DevCluster, than: SocketAddr) -> SocketAddr {
    cluster
        .masters()
        .into_iter()
        .find(|m| *m != than)
        .expect("a second master")
}

/// The first half of moving `slot` from `from` to `to` as `redis-cli --cluster
/// reshard` does: IMPORTING on the target, MIGRATING on the source. Keys are moved
/// (MIGRATE) between the halves.
pub fn slot_move_begin(cluster: &DevCluster, slot: u16, from: SocketAddr, to: SocketAddr) {
    let (from_id, to_id) = (node_id(cluster, from), node_id(cluster, to));
    let s = slot.to_string();
    node_ok(
        cluster,
        to,
        &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id],
    );
    node_ok(
        cluster,
        from,
        &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id],
    );
}

/// The second half: SETSLOT NODE on the target, then the source, then every other
/// master (redis-cli's order); `after` runs after each node has been told.
pub fn slot_move_end(
    cluster: &DevCluster,
    slot: u16,
    from: SocketAddr,
    to: SocketAddr,
    mut after: impl FnMut(SocketAddr),
) {
    let (s, to_id) = (slot.to_string(), node_id(cluster, to));
    let mut order = vec![to, from];
    order.extend(
        cluster
            .masters()
            .into_iter()
            .filter(|m| *m != to && *m != from),
    );
    for node in order {
        node_ok(cluster, node, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
        after(node);
    }
}

/// A redis-crate error as the client sees it: `CODE detail` for server errors (e.g.
/// `ERR respgate: ...`, `CLUSTERDOWN ...`), the description otherwise.
pub fn error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Runs one client call with an anti-hang timeout; errors become [`error_text`] and a
/// timeout becomes `HANG: ...`.
pub async fn timed<T>(
    limit: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error_text(&e)),
        Err(_) => Err(format!("HANG: no reply within {} ms", limit.as_millis())),
    }
}

/// Keys `{prefix}{n}` chosen so that every current master serves `per_master` of them,
/// interleaved master by master (consecutive keys hit different shards). Each key comes
/// with the master serving it now.
pub fn keys_on_every_master(
    cluster: &DevCluster,
    prefix: &str,
    per_master: usize,
) -> Vec<(String, SocketAddr)> {
    let masters = cluster.masters();
    let mut by_master: Vec<Vec<String>> = vec![Vec::new(); masters.len()];
    let mut n = 0u64;
    while by_master.iter().any(|k| k.len() < per_master) {
        let key = format!("{prefix}{n}");
        n += 1;
        let owner = cluster.master_for_slot(respgate::cluster::key_slot(key.as_bytes()));
        let i = masters
            .iter()
            .position(|m| *m == owner)
            .expect("slot owner is a master");
        if by_master[i].len() < per_master {
            by_master[i].push(key);
        }
    }
    (0..per_master)
        .flat_map(|j| {
            by_master
                .iter()
                .zip(&masters)
                .map(move |(keys, m)| (keys[j].clone(), *m))
        })
        .collect()
}

/// [`timed`] for one command on `con`.
pub async fn call<T: redis::FromRedisValue>(
    con: &mut redis::aio::MultiplexedConnection,
    cmd: &redis::Cmd,
    limit: Duration,
) -> Result<T, String> {
    timed(limit, cmd.query_async::<T>(con)).await
}

// ---- a second cluster, private to one test at a time, for whole-keyspace tests ----

static QUIET: OnceLock<Mutex<Option<DevCluster>>> = OnceLock::new();
static QUIET_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

extern "C" fn stop_quiet_cluster() {
    if let Some(m) = QUIET.get() {
        if let Ok(mut guard) = m.lock() {
            if let Some(mut c) = guard.take() {
                c.shutdown();
            }
        }
    }
}

/// Exclusive use of a cluster that no other test touches while this is held: for tests
/// that flush, count or scan the whole keyspace, or change node configuration. One such
/// cluster per test binary, started on first use (off the async worker) and stopped at
/// process exit; tests take turns on it. Whatever the previous holder left in it stays:
/// start with [`QuietCluster::flush`].
pub struct QuietCluster {
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Waits for this test's turn on the quiet cluster (see [`QuietCluster`]).
pub async fn quiet_cluster() -> QuietCluster {
    let turn = QUIET_TURN.lock().await;
    tokio::task::spawn_blocking(|| {
        QUIET.get_or_init(|| {
            let c = DevCluster::start(DevClusterOptions::default())
                .unwrap_or_else(|e| panic!("cannot start the quiet test cluster: {e}"));
            // SAFETY: registering a plain extern "C" fn with atexit.
            unsafe {
                libc::atexit(stop_quiet_cluster);
            }
            Mutex::new(Some(c))
        });
    })
    .await
    .expect("starting the quiet cluster");
    QuietCluster { _turn: turn }
}

impl QuietCluster {
    /// Runs `f` with the cluster (direct node access).
    pub fn with<T>(&self, f: impl FnOnce(&DevCluster) -> T) -> T {
        let guard = QUIET
            .get()
            .unwrap()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(guard.as_ref().expect("quiet cluster already stopped"))
    }

    pub fn seeds(&self) -> Vec<SocketAddr> {
        self.with(|c| c.seeds())
    }

    pub fn masters(&self) -> Vec<SocketAddr> {
        self.with(|c| c.masters())
    }

    /// Runs `args` directly on `node`, bypassing respgate.
    pub fn command(&self, node: SocketAddr, args: &[&str]) -> devcluster::Reply {
        self.with(|c| {
            c.command(node, args)
                .unwrap_or_else(|e| panic!("{node}: `{}`: {e}", args.join(" ")))
        })
    }

    /// Empties every master directly (not through respgate) and waits until every
    /// replica is empty too.
    pub fn flush(&self) {
        let masters = self.masters();
        for &m in &masters {
            node_ok_quiet(self, m, &["FLUSHALL"]);
        }
        let nodes: Vec<SocketAddr> = self.seeds();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for n in nodes {
            loop {
                let r = self.command(n, &["DBSIZE"]);
                if r.as_int() == Some(0) {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{n} still holds keys after FLUSHALL on every master: {r:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// The keys held by each master, asked directly (`DBSIZE`).
    pub fn dbsize_per_master(&self) -> Vec<(SocketAddr, i64)> {
        self.masters()
            .into_iter()
            .map(|m| {
                let r = self.command(m, &["DBSIZE"]);
                (
                    m,
                    r.as_int()
                        .unwrap_or_else(|| panic!("{m}: DBSIZE gave {r:?}")),
                )
            })
            .collect()
    }

    /// respgate in front of this cluster, with default settings.
    pub async fn proxy(&self) -> Proxy {
        start_proxy(test_config(&self.seeds())).await
    }
}

fn node_ok_quiet(q: &QuietCluster, node: SocketAddr, args: &[&str]) {
    q.with(|c| node_ok(c, node, args))
}

// ---- helpers for the pub/sub tests ----

impl RawConn {
    /// A [`RawConn`] over an already connected stream (e.g. one opened with a small
    /// receive buffer).
    pub fn from_stream(stream: tokio::net::TcpStream) -> RawConn {
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }
}

/// Whether respgate still has the TCP connection from `client` open, from the kernel's
/// view of respgate's side (`/proc/net/tcp`): once respgate closes it, the socket leaves
/// ESTABLISHED even though the client has not read the data still in flight.
pub fn proxy_side_established(proxy: SocketAddr, client: SocketAddr) -> bool {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => panic!("tests listen on IPv4 loopback"),
    };
    let (local, remote) = (hex(proxy), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 3 && f[1] == local && f[2] == remote && f[3] == "01"
    })
}

// ---------------------------------------------------------------------------------------
// Side by side with Redis (pub/sub tests).
// ---------------------------------------------------------------------------------------

/// How long a pub/sub condition may take to become true.
pub const PUBSUB_EVENTUALLY: Duration = Duration::from_secs(20);

/// Polls `probe` until it returns `expected`; fails with `what` and the last value.
pub async fn wait_for<F, Fut>(what: &str, expected: i64, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let deadline = std::time::Instant::now() + PUBSUB_EVENTUALLY;
    loop {
        let got = probe().await;
        if got == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: still {got} after {PUBSUB_EVENTUALLY:?}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One connection through respgate and one directly to a node, sent the same commands:
/// every reply and message must be byte-identical.
pub struct Pair {
    pub proxy: RawConn,
    pub node: RawConn,
}

impl Pair {
    pub async fn new(proxy: SocketAddr, node: SocketAddr) -> Pair {
        Pair {
            proxy: RawConn::connect(proxy).await,
            node: RawConn::connect(node).await,
        }
    }

    pub async fn send(&mut self, args: &[&str]) {
        let bytes = encode_command(args);
        self.proxy.send(&bytes).await;
        self.node.send(&bytes).await;
    }

    /// The next frame on both connections, asserted identical.
    pub async fn read(&mut self, context: &str) -> Vec<u8> {
        let from_node = self.node.read_reply().await;
        let from_proxy = self.proxy.read_reply().await;
        assert_eq!(
            show(&from_proxy),
            show(&from_node),
            "{context}: respgate (left) and Redis (right) differ"
        );
        from_proxy
    }

    /// Sends `args` and checks the next frame on both is `expected` (and identical).
    pub async fn expect(&mut self, args: &[&str], expected: &[u8]) {
        self.send(args).await;
        let got = self.read(&args.join(" ")).await;
        assert_eq!(show(&got), show(expected), "reply to `{}`", args.join(" "));
    }

    /// Both connections must be closed by the server with nothing more sent.
    pub async fn expect_closed(&mut self) {
        self.node.expect_closed().await;
        self.proxy.expect_closed().await;
    }
}

/// The RESP2 bytes of a (un)subscription confirmation: `*3 kind name :count`, with a
/// null bulk when there is no name.
pub fn confirmation(kind: &str, name: Option<&str>, count: i64) -> Vec<u8> {
    let mut out = format!("*3\r\n${}\r\n{kind}\r\n", kind.len()).into_bytes();
    match name {
        Some(n) => out.extend_from_slice(format!("${}\r\n{n}\r\n", n.len()).as_bytes()),
        None => out.extend_from_slice(b"$-1\r\n"),
    }
    out.extend_from_slice(format!(":{count}\r\n").as_bytes());
    out
}

/// `n` clients of `proxy`, each subscribed to `channel` with `command` (SUBSCRIBE or
/// SSUBSCRIBE) and confirmed, connected concurrently.
pub async fn subscribe_many(
    proxy: SocketAddr,
    command: &str,
    channel: &str,
    n: usize,
) -> Vec<RawConn> {
    let kind = command.to_ascii_lowercase();
    let mut connecting = tokio::task::JoinSet::new();
    for i in 0..n {
        let (channel, command, kind) = (channel.to_string(), command.to_string(), kind.clone());
        connecting.spawn(async move {
            let mut conn = RawConn::connect(proxy).await;
            let got = conn.command(&[command.as_str(), &channel]).await;
            assert_eq!(
                show(&got),
                show(&confirmation(&kind, Some(&channel), 1)),
                "client {i}"
            );
            conn
        });
    }
    let mut subscribers = Vec::with_capacity(n);
    while let Some(conn) = connecting.join_next().await {
        subscribers.push(conn.expect("subscriber connects and is confirmed"));
    }
    subscribers
}

/// One HTTP/1.1 GET to the admin listener (`Connection: close`): the status code and the body.
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!("GET {path} HTTP/1.1\r\nHost: respgate\r\n{auth}Connection: close\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut s, head.as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut raw),
    )
    .await
    .expect("an answer (anti-hang bound)")
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Sends `args` through respgate (`via`) and to Redis (`direct`) and asserts the same
/// reply bytes; `context` prefixes the failure message.
pub async fn same<A: AsRef<[u8]>>(
    via: &mut RawConn,
    direct: &mut RawConn,
    args: &[A],
    context: &str,
) {
    let (a, b) = (via.command(args).await, direct.command(args).await);
    let line: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
        .collect();
    assert_eq!(show(&a), show(&b), "{context}`{}`", line.join(" "));
}

/// A node's role as ROLE reports it (`master`, `slave`), or what went wrong.
pub fn role(cluster: &devcluster::DevCluster, node: SocketAddr) -> String {
    match cluster.command(node, &["ROLE"]) {
        Ok(devcluster::Reply::Array(items)) => items
            .first()
            .and_then(devcluster::Reply::as_str)
            .unwrap_or("?")
            .to_string(),
        other => format!("{other:?}"),
    }
}
