//! Transactions and blocking commands through respgate.
//!
//! MULTI / EXEC: respgate answers `+QUEUED` itself and, at EXEC, sends `MULTI`, the queued
//! commands and `EXEC` as one job on the shared backend link of the slot's master, so no
//! other client's request can come between them; every key of a transaction must share
//! one slot. Replies are compared byte for byte with what a Redis node answers to the same
//! sequence, sent directly to the slot's owner (keys `{tag}p:...` through respgate,
//! `{tag}n:...` on the node: same slot, same length).
//!
//! Blocking commands (BLPOP, BRPOP, BLMOVE, BZPOPMIN, XREAD BLOCK, ...) run on a backend
//! connection of the client's own, bounded by `server.max_dedicated_connections`.
//!
//! Every test uses its own hash tag. Tests that count blocked clients in a node's
//! `CLIENT LIST` own a master: [`DISCONNECT`] is where only the disconnect test runs
//! BLPOP, [`LATENCY`] where only the latency test does; everything else blocks on
//! [`GENERAL`] (or uses BRPOP, which those counts ignore).

mod support;

use devcluster::Reply;
use redis::aio::MultiplexedConnection;
use respgate::cluster::key_slot;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support::*;

/// Anti-hang limit for one call (never a timing assertion).
const LIMIT: Duration = Duration::from_secs(20);
const EXECABORT: &str = "-EXECABORT Transaction discarded because of previous errors.\r\n";
const TOO_MANY_BLOCKING: &str =
    "-ERR respgate: blocking command refused: every connection of clients' own is taken (server.max_dedicated_connections";

/// Index (in address order) of the master where blocking tests without a `CLIENT LIST`
/// count block.
const GENERAL: usize = 0;
/// The master where only the disconnect test runs BLPOP.
const DISCONNECT: usize = 1;
/// The master where only the latency test runs BLPOP.
const LATENCY: usize = 2;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The shared cluster's masters, in address order.
fn masters() -> &'static [SocketAddr] {
    static M: OnceLock<Vec<SocketAddr>> = OnceLock::new();
    M.get_or_init(|| with_shared_cluster(|c| c.masters()))
}

fn slot_owners() -> &'static [SocketAddr] {
    static O: OnceLock<Vec<SocketAddr>> = OnceLock::new();
    O.get_or_init(shared_slot_owners)
}

/// A hash tag `{name-n}` whose slot is served by master `index` ([`masters`]).
fn tag_on(index: usize, name: &str) -> String {
    let master = masters()[index];
    (0..)
        .map(|n| format!("{{{name}-{n}}}"))
        .find(|t| slot_owners()[key_slot(t.as_bytes()) as usize] == master)
        .unwrap()
}

fn bulk(v: &str) -> Reply {
    Reply::Bulk(Some(v.as_bytes().to_vec()))
}

fn shown(replies: &[Vec<u8>]) -> Vec<String> {
    replies.iter().map(|r| show(r)).collect()
}

/// The RESP2 bytes of an array of bulk strings.
fn bulk_array(items: &[&str]) -> String {
    let mut out = format!("*{}\r\n", items.len());
    for i in items {
        out.push_str(&format!("${}\r\n{i}\r\n", i.len()));
    }
    out
}

/// Replaces every occurrence of `from` by `to` (same length) in `bytes`.
fn replace(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Sends the commands of `script` one at a time on one connection to `addr`, `%` in an
/// argument replaced by `prefix`, and returns the raw replies.
async fn run_script(addr: SocketAddr, prefix: &str, script: &[&[&str]]) -> Vec<Vec<u8>> {
    let mut conn = RawConn::connect(addr).await;
    let mut out = Vec::new();
    for cmd in script {
        let args: Vec<String> = cmd.iter().map(|a| a.replace('%', prefix)).collect();
        out.push(conn.command(&args).await);
    }
    out
}

/// Runs `script` through respgate (keys `{tag}p:...`) and directly on the owner of `tag`
/// (keys `{tag}n:...`). Returns both reply lists, the node's with its key prefix
/// rewritten to respgate's so that they compare byte for byte.
async fn through_both(
    proxy: SocketAddr,
    tag: &str,
    script: &[&[&str]],
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (p, n) = (format!("{tag}p:"), format!("{tag}n:"));
    let via_proxy = run_script(proxy, &p, script).await;
    let via_node = run_script(shared_owner_of(tag), &n, script).await;
    let via_node = via_node.iter().map(|r| replace(r, &n, &p)).collect();
    (via_proxy, via_node)
}

/// Asserts that respgate's replies equal `expected` and the node's replies.
fn assert_script(
    script: &[&[&str]],
    (proxy, node): &(Vec<Vec<u8>>, Vec<Vec<u8>>),
    expected: &[&str],
) {
    let lines = |r: &[Vec<u8>]| -> Vec<String> {
        script
            .iter()
            .zip(shown(r))
            .map(|(c, r)| format!("{:<28} -> {r}", c.join(" ")))
            .collect()
    };
    assert_eq!(
        lines(node),
        lines(proxy),
        "respgate (right) differs from a Redis node (left)"
    );
    let expected: Vec<String> = expected.iter().map(|e| show(e.as_bytes())).collect();
    assert_eq!(shown(proxy), expected, "respgate's replies");
}

/// Fails unless nothing arrives on `conn` for `d` (the client is still blocked).
async fn expect_silent(conn: &mut RawConn, d: Duration, what: &str) {
    if let Ok(r) = tokio::time::timeout(d, conn.try_read_reply()).await {
        panic!(
            "{what}: expected no reply yet, got {:?}",
            r.map(|b| show(&b))
        );
    }
}

/// Clients of `node` blocked (`flags` has `b`) in command `cmd`, per `CLIENT LIST`.
fn blocked_in(node: SocketAddr, cmd: &str) -> usize {
    let list = on_node(node, &["CLIENT", "LIST"]);
    let text = list.as_str().expect("CLIENT LIST text").to_string();
    text.lines()
        .filter(|l| {
            let field = |name: &str| {
                l.split(' ')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or("")
                    .to_string()
            };
            field("cmd") == cmd && field("flags").contains('b')
        })
        .count()
}

/// Polls `cond` every 20 ms until it holds; fails with `what` after `within`.
async fn eventually(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client blocks in `block`; 200 ms later another client runs `unblock`. Returns the
/// blocked client's reply and how long it waited.
async fn block_then_unblock(
    proxy: SocketAddr,
    block: &[&str],
    unblock: &[&[&str]],
) -> (Vec<u8>, Duration) {
    let mut blocked = RawConn::connect(proxy).await;
    blocked.send(&encode_command(block)).await;
    let started = Instant::now();
    expect_silent(&mut blocked, Duration::from_millis(200), &block.join(" ")).await;
    let mut other = RawConn::connect(proxy).await;
    for cmd in unblock {
        let r = other.command(cmd).await;
        assert_ne!(r.first(), Some(&b'-'), "{cmd:?}: {}", show(&r));
    }
    let reply = blocked.read_reply().await;
    (reply, started.elapsed())
}

/// `errorstat_MOVED` of `node`: the `-MOVED` replies it has sent.
fn moved_count(node: SocketAddr) -> u64 {
    let info = on_node(node, &["INFO", "errorstats"]);
    info.as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("errorstat_MOVED:count="))
        .map_or(0, |n| n.trim().parse().unwrap())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// How many clients this process can hold open (two descriptors each: the test's end
/// and respgate's, both in this process), raising the soft `RLIMIT_NOFILE` up to the
/// hard limit if needed. At most `wanted`.
fn usable_clients(wanted: usize) -> usize {
    let reserve = 512;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let need = (wanted * 2 + reserve) as libc::rlim_t;
        if lim.rlim_cur < need {
            let raised = libc::rlimit {
                rlim_cur: need.min(lim.rlim_max),
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = raised.rlim_cur;
            }
        }
    }
    ((lim.rlim_cur as usize).saturating_sub(reserve) / 2).min(wanted)
}

// ---------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn multi_exec_runs_the_queued_commands_and_answers_like_redis() {
    let proxy = proxy_for_shared().await;
    let tag = "{tx-basic}";
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SET", "%a", "1"],
        &["INCR", "%a"],
        &["GET", "%a"],
        &["EXEC"],
        &["GET", "%a"],
    ];
    let replies = through_both(proxy.local_addr(), tag, script).await;
    assert_script(
        script,
        &replies,
        &[
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n",
            "$1\r\n2\r\n",
        ],
    );
    // The transaction ran on the slot's owner.
    assert_eq!(on_owner(tag, &["GET", &format!("{tag}p:a")]), bulk("2"));

    // The same, pipelined in one write, with a command after EXEC.
    let k = format!("{tag}p:piped");
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    let batch: Vec<u8> = encode_pipeline(&[
        &["MULTI"],
        &["SET", &k, "1"],
        &["INCR", &k],
        &["GET", &k],
        &["EXEC"],
        &["INCR", &k],
    ]);
    conn.send(&batch).await;
    let got = conn.read_replies(6).await;
    assert_eq!(
        shown(&got),
        [
            "+OK\\r\\n",
            "+QUEUED\\r\\n",
            "+QUEUED\\r\\n",
            "+QUEUED\\r\\n",
            "*3\\r\\n+OK\\r\\n:2\\r\\n$1\\r\\n2\\r\\n",
            ":3\\r\\n",
        ]
    );

    // The redis crate's atomic pipeline (MULTI ... EXEC, QUEUED replies skipped).
    let mut con = client(proxy.local_addr()).await;
    let k = format!("{tag}p:crate");
    let (set, incr, get): (String, i64, String) = timed(
        LIMIT,
        redis::pipe()
            .atomic()
            .set(&k, "1")
            .incr(&k, 1)
            .get(&k)
            .query_async(&mut con),
    )
    .await
    .unwrap();
    assert_eq!((set.as_str(), incr, get.as_str()), ("OK", 2, "2"));
    assert_eq!(on_owner(&k, &["GET", &k]), bulk("2"));
}

#[tokio::test]
async fn exec_and_discard_without_multi_are_errors_as_in_redis() {
    let proxy = proxy_for_shared().await;
    let script: &[&[&str]] = &[
        &["EXEC"],
        &["DISCARD"],
        &["MULTI"],
        &["EXEC"],
        &["EXEC"],
        &["DISCARD"],
    ];
    let replies = through_both(proxy.local_addr(), "{tx-without}", script).await;
    assert_script(
        script,
        &replies,
        &[
            "-ERR EXEC without MULTI\r\n",
            "-ERR DISCARD without MULTI\r\n",
            "+OK\r\n",
            "*0\r\n",
            "-ERR EXEC without MULTI\r\n",
            "-ERR DISCARD without MULTI\r\n",
        ],
    );
}

#[tokio::test]
async fn nested_multi_and_watch_inside_multi_are_errors_but_the_transaction_continues() {
    let proxy = proxy_for_shared().await;
    let tag = "{tx-nested}";
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SET", "%a", "1"],
        &["MULTI"],
        &["WATCH", "%a"],
        &["INCR", "%a"],
        &["EXEC"],
        &["GET", "%a"],
    ];
    let replies = through_both(proxy.local_addr(), tag, script).await;
    assert_script(
        script,
        &replies,
        &[
            "+OK\r\n",
            "+QUEUED\r\n",
            "-ERR MULTI calls can not be nested\r\n",
            "-ERR WATCH inside MULTI is not allowed\r\n",
            "+QUEUED\r\n",
            "*2\r\n+OK\r\n:2\r\n",
            "$1\r\n2\r\n",
        ],
    );
}

#[tokio::test]
async fn discard_drops_the_queued_commands_and_leaves_the_key_unchanged() {
    let proxy = proxy_for_shared().await;
    let tag = "{tx-discard}";
    let script: &[&[&str]] = &[
        &["SET", "%a", "before"],
        &["MULTI"],
        &["SET", "%a", "after"],
        &["DEL", "%a"],
        &["SET", "%b", "new"],
        &["DISCARD"],
        &["GET", "%a"],
        &["EXISTS", "%b"],
        // Out of the transaction: commands run at once again.
        &["SET", "%b", "now"],
        &["EXEC"],
    ];
    let replies = through_both(proxy.local_addr(), tag, script).await;
    assert_script(
        script,
        &replies,
        &[
            "+OK\r\n",
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+OK\r\n",
            "$6\r\nbefore\r\n",
            ":0\r\n",
            "+OK\r\n",
            "-ERR EXEC without MULTI\r\n",
        ],
    );
    let a = format!("{tag}p:a");
    assert_eq!(on_owner(&a, &["GET", &a]), bulk("before"));
}

#[tokio::test]
async fn empty_multi_exec_returns_an_empty_array() {
    let proxy = proxy_for_shared().await;
    let script: &[&[&str]] = &[&["MULTI"], &["EXEC"], &["MULTI"], &["DISCARD"]];
    let replies = through_both(proxy.local_addr(), "{tx-empty}", script).await;
    assert_script(
        script,
        &replies,
        &["+OK\r\n", "*0\r\n", "+OK\r\n", "+OK\r\n"],
    );
}

#[tokio::test]
async fn an_unknown_command_inside_multi_aborts_the_transaction_at_exec() {
    let proxy = proxy_for_shared().await;
    let tag = "{tx-unknown}";
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SET", "%a", "1"],
        &["NOSUCHCOMMAND", "%a", "x"],
        &["INCR", "%b"],
        &["EXEC"],
        &["EXISTS", "%a", "%b"],
        // The connection is out of the transaction and works normally.
        &["MULTI"],
        &["SET", "%a", "2"],
        &["EXEC"],
    ];
    let replies = through_both(proxy.local_addr(), tag, script).await;
    assert_script(
        script,
        &replies,
        &[
            "+OK\r\n",
            "+QUEUED\r\n",
            &format!(
                "-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: '{tag}p:a' 'x' \r\n"
            ),
            "+QUEUED\r\n",
            EXECABORT,
            ":0\r\n",
            "+OK\r\n",
            "+QUEUED\r\n",
            "*1\r\n+OK\r\n",
        ],
    );
}

#[tokio::test]
async fn a_wrong_arity_inside_multi_aborts_the_transaction_at_exec() {
    let proxy = proxy_for_shared().await;
    let tag = "{tx-arity}";
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SET", "%a", "1"],
        &["GET"],
        &["INCR", "%a", "extra"],
        &["EXEC"],
        &["EXISTS", "%a"],
    ];
    let replies = through_both(proxy.local_addr(), tag, script).await;
    assert_script(
        script,
        &replies,
        &[
            "+OK\r\n",
            "+QUEUED\r\n",
            "-ERR wrong number of arguments for 'get' command\r\n",
            "-ERR wrong number of arguments for 'incr' command\r\n",
            EXECABORT,
            ":0\r\n",
        ],
    );
}

#[tokio::test]
async fn keys_of_two_slots_in_one_transaction_get_crossslot_and_exec_runs_nothing() {
    let proxy = proxy_for_shared().await;
    let (a, b) = ("{tx-cross-a}x", "{tx-cross-b}y");
    assert_ne!(key_slot(a.as_bytes()), key_slot(b.as_bytes()));
    let mut conn = RawConn::connect(proxy.local_addr()).await;

    // Across two commands.
    assert_eq!(show(&conn.command(&["MULTI"]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["SET", a, "1"]).await), "+QUEUED\\r\\n");
    let cross = conn.command(&["SET", b, "1"]).await;
    assert!(
        cross.starts_with(b"-CROSSSLOT Keys in request don't hash to the same slot"),
        "{}",
        show(&cross)
    );
    assert_eq!(show(&conn.command(&["INCR", a]).await), "+QUEUED\\r\\n");
    assert_eq!(
        show(&conn.command(&["EXEC"]).await),
        show(EXECABORT.as_bytes())
    );

    // Within one command: exactly the error a cluster node gives.
    assert_eq!(show(&conn.command(&["MULTI"]).await), "+OK\\r\\n");
    assert_eq!(
        show(&conn.command(&["MSET", a, "1", b, "2"]).await),
        "-CROSSSLOT Keys in request don't hash to the same slot\\r\\n"
    );
    assert_eq!(
        show(&conn.command(&["EXEC"]).await),
        show(EXECABORT.as_bytes())
    );

    for k in [a, b] {
        assert_eq!(on_owner(k, &["EXISTS", k]), Reply::Int(0), "{k} untouched");
    }

    // A transaction on one slot works afterwards.
    assert_eq!(show(&conn.command(&["MULTI"]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["SET", a, "1"]).await), "+QUEUED\\r\\n");
    assert_eq!(show(&conn.command(&["EXEC"]).await), "*1\\r\\n+OK\\r\\n");
    assert_eq!(on_owner(a, &["GET", a]), bulk("1"));
}

#[tokio::test]
async fn a_runtime_error_inside_exec_is_one_element_and_the_other_commands_run() {
    let proxy = proxy_for_shared().await;
    let tag = "{tx-runtime}";
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SET", "%s", "abc"],
        &["INCR", "%s"],
        &["LPUSH", "%s", "x"],
        &["SET", "%t", "1"],
        &["EXEC"],
        &["MGET", "%s", "%t"],
    ];
    let replies = through_both(proxy.local_addr(), tag, script).await;
    assert_script(
        script,
        &replies,
        &[
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*4\r\n+OK\r\n-ERR value is not an integer or out of range\r\n\
             -WRONGTYPE Operation against a key holding the wrong kind of value\r\n+OK\r\n",
            "*2\r\n$3\r\nabc\r\n$1\r\n1\r\n",
        ],
    );
}

#[tokio::test]
async fn a_command_whose_keys_respgate_cannot_find_is_judged_by_the_node_as_redis_would() {
    // ZUNIONSTORE with numkeys beyond its arguments: respgate's key specs call it
    // malformed and queue it as it is; the transaction must end as on a node (Redis
    // 7.0 queues it and EXEC's array holds `-ERR syntax error` for it).
    let proxy = proxy_for_shared().await;
    let tag = "{tx-malformed}";
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SET", "%a", "1"],
        &["ZUNIONSTORE", "%d", "5", "%a"],
        &["EXEC"],
        &["GET", "%a"],
    ];
    let (p, n) = through_both(proxy.local_addr(), tag, script).await;
    assert_eq!(
        shown(&p),
        shown(&n),
        "respgate (left) vs a Redis node (right)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_comes_between_the_commands_of_a_transaction_under_concurrent_traffic() {
    const TX_CLIENTS: usize = 20;
    const TX_EACH: usize = 200;
    const HAMMERS: usize = 20;
    let mut cfg = test_config(&shared_cluster_seeds());
    // Every client of the node shares one backend connection: the hardest case.
    cfg.cluster.connections_per_node = 1;
    let proxy = start_proxy(cfg).await;
    let tag = "{tx-concurrent}";
    let counter = format!("{tag}counter");
    on_owner(&counter, &["DEL", &counter]);
    let addr = proxy.local_addr();

    let stop = Arc::new(AtomicBool::new(false));
    let hammered = Arc::new(AtomicU64::new(0));
    let mut hammers = Vec::new();
    for h in 0..HAMMERS {
        let mut con = client(addr).await;
        let (stop, hammered) = (stop.clone(), hammered.clone());
        let key = format!("{tag}hammer:{h}");
        hammers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) || i < 50 {
                let v = format!("{h}-{i}");
                let set: String = call(&mut con, redis::cmd("SET").arg(&key).arg(&v), LIMIT)
                    .await
                    .unwrap();
                assert_eq!(set, "OK", "hammer SET answered with another reply");
                let got: Option<String> = call(&mut con, redis::cmd("GET").arg(&key), LIMIT)
                    .await
                    .unwrap();
                assert_eq!(got.as_deref(), Some(v.as_str()), "hammer GET");
                i += 1;
            }
            hammered.fetch_add(i * 2, Ordering::Relaxed);
        }));
    }

    let mut workers = Vec::new();
    for _ in 0..TX_CLIENTS {
        let mut con: MultiplexedConnection = client(addr).await;
        let counter = counter.clone();
        workers.push(tokio::spawn(async move {
            let mut firsts = Vec::with_capacity(TX_EACH);
            for _ in 0..TX_EACH {
                let (a, b): (i64, i64) = timed(
                    LIMIT,
                    redis::pipe()
                        .atomic()
                        .incr(&counter, 1)
                        .incr(&counter, 1)
                        .query_async(&mut con),
                )
                .await
                .unwrap();
                assert_eq!(b, a + 1, "another INCR ran between the transaction's two");
                firsts.push(a);
            }
            firsts
        }));
    }
    let started = Instant::now();
    let mut firsts = BTreeSet::new();
    for w in workers {
        for a in w.await.unwrap() {
            assert!(
                firsts.insert(a),
                "two transactions saw the same counter {a}"
            );
        }
    }
    let tx_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.await.unwrap();
    }
    let total = (TX_CLIENTS * TX_EACH) as i64;
    let expected: BTreeSet<i64> = (0..total).map(|i| 2 * i + 1).collect();
    assert_eq!(firsts, expected, "each transaction got n, n+1 with n odd");
    assert_eq!(
        on_owner(&counter, &["GET", &counter]),
        bulk(&(2 * total).to_string())
    );
    eprintln!(
        "{total} transactions in {tx_time:?} alongside {} hammer requests",
        hammered.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn watch_aborts_exec_when_a_watched_key_changed_and_not_otherwise() {
    let proxy = proxy_for_shared().await;
    let k = "{tx-watch}a";
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    let mut other = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(show(&conn.command(&["SET", k, "1"]).await), "+OK\\r\\n");

    // Another client changes the key between WATCH and EXEC: EXEC runs nothing.
    assert_eq!(show(&conn.command(&["WATCH", k]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["GET", k]).await), "$1\\r\\n1\\r\\n");
    assert_eq!(show(&other.command(&["SET", k, "2"]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["MULTI"]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["INCR", k]).await), "+QUEUED\\r\\n");
    assert_eq!(show(&conn.command(&["EXEC"]).await), "*-1\\r\\n");
    assert_eq!(show(&conn.command(&["GET", k]).await), "$1\\r\\n2\\r\\n");

    // Nobody interferes: EXEC runs (EXEC also ended the previous WATCH).
    assert_eq!(show(&conn.command(&["WATCH", k]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["MULTI"]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["INCR", k]).await), "+QUEUED\\r\\n");
    assert_eq!(show(&conn.command(&["EXEC"]).await), "*1\\r\\n:3\\r\\n");

    // UNWATCH forgets: a later change no longer aborts.
    assert_eq!(show(&conn.command(&["WATCH", k]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["UNWATCH"]).await), "+OK\\r\\n");
    assert_eq!(show(&other.command(&["SET", k, "9"]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["MULTI"]).await), "+OK\\r\\n");
    assert_eq!(show(&conn.command(&["INCR", k]).await), "+QUEUED\\r\\n");
    assert_eq!(show(&conn.command(&["EXEC"]).await), "*1\\r\\n:10\\r\\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn watched_keys_must_share_one_slot() {
    let proxy = proxy_for_shared().await;
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(
        show(&conn.command(&["WATCH", "{tx-w2}a"]).await),
        "+OK\\r\\n"
    );
    let reply = show(&conn.command(&["WATCH", "{tx-w3}b"]).await);
    assert!(reply.starts_with("-CROSSSLOT"), "{reply}");
    let reply = show(&conn.command(&["WATCH", "{tx-w2}a", "{tx-w3}b"]).await);
    assert!(reply.starts_with("-CROSSSLOT"), "{reply}");
    // A transaction on the watched slot still works.
    assert_eq!(show(&conn.command(&["MULTI"]).await), "+OK\\r\\n");
    assert_eq!(
        show(&conn.command(&["SET", "{tx-w2}a", "x"]).await),
        "+QUEUED\\r\\n"
    );
    assert_eq!(show(&conn.command(&["EXEC"]).await), "*1\\r\\n+OK\\r\\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn unwatch_inside_multi_is_queued_as_in_redis() {
    let proxy = proxy_for_shared().await;
    let script: &[&[&str]] = &[&["MULTI"], &["SET", "%a", "1"], &["UNWATCH"], &["EXEC"]];
    let replies = through_both(proxy.local_addr(), "{tx-unwatch}", script).await;
    assert_script(
        script,
        &replies,
        &[
            "+OK\r\n",
            "+QUEUED\r\n",
            "+QUEUED\r\n",
            "*2\r\n+OK\r\n+OK\r\n",
        ],
    );
}

#[tokio::test]
async fn reset_inside_multi_ends_the_transaction_as_in_redis() {
    let proxy = proxy_for_shared().await;
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["SET", "%a", "1"],
        &["RESET"],
        &["EXEC"],
        &["EXISTS", "%a"],
    ];
    let replies = through_both(proxy.local_addr(), "{tx-reset}", script).await;
    assert_script(
        script,
        &replies,
        &[
            "+OK\r\n",
            "+QUEUED\r\n",
            "+RESET\r\n",
            "-ERR EXEC without MULTI\r\n",
            ":0\r\n",
        ],
    );
}

#[tokio::test]
async fn quit_inside_multi_closes_the_connection_as_in_redis() {
    let proxy = proxy_for_shared().await;
    let tag = "{tx-quit}";
    let node = shared_owner_of(tag);
    for (side, addr, key) in [
        ("node", node, format!("{tag}n:a")),
        ("respgate", proxy.local_addr(), format!("{tag}p:a")),
    ] {
        let mut conn = RawConn::connect(addr).await;
        assert_eq!(show(&conn.command(&["MULTI"]).await), "+OK\\r\\n", "{side}");
        assert_eq!(
            show(&conn.command(&["SET", &key, "1"]).await),
            "+QUEUED\\r\\n",
            "{side}"
        );
        assert_eq!(show(&conn.command(&["QUIT"]).await), "+OK\\r\\n", "{side}");
        conn.expect_closed().await;
        assert_eq!(on_node(node, &["EXISTS", &key]), Reply::Int(0), "{side}");
    }
}

#[tokio::test]
async fn a_transaction_sent_to_a_stale_owner_is_resent_whole_to_the_right_one() {
    let mut cfg = test_config(&shared_cluster_seeds());
    // No refresh repairs the stale map behind the test's back.
    cfg.cluster.refresh_interval_ms = 120_000;
    cfg.cluster.refresh_min_interval_ms = 120_000;
    let proxy = start_proxy(cfg).await;
    let tag = "{tx-moved}";
    let slot = key_slot(tag.as_bytes());
    let owner = shared_owner_of(tag);
    let wrong = *masters().iter().find(|m| **m != owner).unwrap();
    let routed_to = |proxy: &respgate::server::Proxy| {
        proxy
            .cluster()
            .topology()
            .as_ref()
            .and_then(|t| t.master_for_slot(slot).map(|n| n.addr().to_string()))
    };
    assert_eq!(routed_to(&proxy), Some(owner.to_string()));
    // respgate believes the slot moved to `wrong` (as after a MOVED it has not yet
    // seen undone): the transaction goes there first, gets MOVED, and nothing runs.
    proxy.cluster().apply_moved(slot, &wrong.to_string());
    assert_eq!(routed_to(&proxy), Some(wrong.to_string()));
    let moved_before = moved_count(wrong);

    let (k, runs) = (format!("{tag}k"), format!("{tag}runs"));
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    let batch: Vec<u8> = encode_pipeline(&[
        &["MULTI"],
        &["SET", &k, "1"],
        &["INCR", &k],
        &["INCR", &runs],
        &["EXEC"],
    ]);
    conn.send(&batch).await;
    let got = conn.read_replies(5).await;
    assert_eq!(
        shown(&got),
        [
            "+OK\\r\\n",
            "+QUEUED\\r\\n",
            "+QUEUED\\r\\n",
            "+QUEUED\\r\\n",
            "*3\\r\\n+OK\\r\\n:2\\r\\n:1\\r\\n",
        ]
    );
    assert!(
        moved_count(wrong) > moved_before,
        "the transaction was first sent to the stale owner {wrong}"
    );
    // Run exactly once, on the owner; and respgate now routes the slot right.
    assert_eq!(on_node(owner, &["GET", &k]), bulk("2"));
    assert_eq!(on_node(owner, &["GET", &runs]), bulk("1"));
    assert_eq!(routed_to(&proxy), Some(owner.to_string()));
}

// ---------------------------------------------------------------------------------------
// Blocking commands
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn blpop_waits_for_a_push_from_another_client_and_returns_key_and_value() {
    let proxy = proxy_for_shared().await;
    let q = format!("{}q", tag_on(GENERAL, "blpop"));
    let (reply, waited) = block_then_unblock(
        proxy.local_addr(),
        &["BLPOP", &q, "0"],
        &[&["LPUSH", &q, "v1"]],
    )
    .await;
    assert_eq!(show(&reply), show(bulk_array(&[&q, "v1"]).as_bytes()));
    assert!(waited >= Duration::from_millis(200), "{waited:?}");
    assert_eq!(
        on_owner(&q, &["LLEN", &q]),
        Reply::Int(0),
        "the value was consumed"
    );
}

#[tokio::test]
async fn blpop_with_a_timeout_on_an_empty_list_returns_nil_after_the_timeout() {
    let proxy = proxy_for_shared().await;
    let q = format!("{}q", tag_on(GENERAL, "blpop-timeout"));
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    let started = Instant::now();
    let reply = conn.command(&["BLPOP", &q, "1"]).await;
    let waited = started.elapsed();
    assert_eq!(show(&reply), "*-1\\r\\n");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "BLPOP 1 answered after {waited:?}"
    );
    // Same bytes as a node.
    let direct = RawConn::connect(shared_owner_of(&q))
        .await
        .command(&["BLPOP", &q, "0.1"])
        .await;
    assert_eq!(show(&reply), show(&direct));
    // The connection goes on normally.
    assert_eq!(show(&conn.command(&["LPUSH", &q, "x"]).await), ":1\\r\\n");
    assert_eq!(
        show(&conn.command(&["BLPOP", &q, "1"]).await),
        show(bulk_array(&[&q, "x"]).as_bytes())
    );
}

#[tokio::test]
async fn brpop_unblocks_with_the_right_end_of_the_list() {
    let proxy = proxy_for_shared().await;
    let q = format!("{}q", tag_on(GENERAL, "brpop"));
    let (reply, _) = block_then_unblock(
        proxy.local_addr(),
        &["BRPOP", &q, "0"],
        &[&["RPUSH", &q, "a", "b"]],
    )
    .await;
    assert_eq!(show(&reply), show(bulk_array(&[&q, "b"]).as_bytes()));
    let rest = on_owner(&q, &["LRANGE", &q, "0", "-1"]);
    assert_eq!(rest, Reply::Array(vec![bulk("a")]));
}

#[tokio::test]
async fn blmove_unblocks_and_moves_the_pushed_value() {
    let proxy = proxy_for_shared().await;
    let tag = tag_on(GENERAL, "blmove");
    let (src, dst) = (format!("{tag}src"), format!("{tag}dst"));
    let (reply, _) = block_then_unblock(
        proxy.local_addr(),
        &["BLMOVE", &src, &dst, "LEFT", "RIGHT", "0"],
        &[&["LPUSH", &src, "moved"]],
    )
    .await;
    assert_eq!(show(&reply), "$5\\r\\nmoved\\r\\n");
    assert_eq!(on_owner(&src, &["LLEN", &src]), Reply::Int(0));
    assert_eq!(
        on_owner(&dst, &["LRANGE", &dst, "0", "-1"]),
        Reply::Array(vec![bulk("moved")])
    );
}

#[tokio::test]
async fn bzpopmin_unblocks_with_the_lowest_scored_member() {
    let proxy = proxy_for_shared().await;
    let z = format!("{}z", tag_on(GENERAL, "bzpopmin"));
    let (reply, _) = block_then_unblock(
        proxy.local_addr(),
        &["BZPOPMIN", &z, "0"],
        &[&["ZADD", &z, "2", "two", "1", "one"]],
    )
    .await;
    assert_eq!(show(&reply), show(bulk_array(&[&z, "one", "1"]).as_bytes()));
    assert_eq!(on_owner(&z, &["ZCARD", &z]), Reply::Int(1));
}

#[tokio::test]
async fn xread_block_unblocks_with_the_entry_added_by_another_client() {
    let proxy = proxy_for_shared().await;
    let s = format!("{}s", tag_on(GENERAL, "xread"));
    let mut blocked = RawConn::connect(proxy.local_addr()).await;
    blocked
        .send(&encode_command(&[
            "XREAD", "BLOCK", "1000", "STREAMS", &s, "$",
        ]))
        .await;
    expect_silent(&mut blocked, Duration::from_millis(200), "XREAD BLOCK").await;
    let mut other = RawConn::connect(proxy.local_addr()).await;
    let id_reply = other.command(&["XADD", &s, "*", "f", "v"]).await;
    assert_eq!(id_reply[0], b'$', "{}", show(&id_reply));
    let id = String::from_utf8_lossy(&id_reply)
        .split("\r\n")
        .nth(1)
        .unwrap()
        .to_string();
    let reply = blocked.read_reply().await;
    let expected = format!(
        "*1\r\n*2\r\n${}\r\n{s}\r\n*1\r\n*2\r\n${}\r\n{id}\r\n{}",
        s.len(),
        id.len(),
        bulk_array(&["f", "v"])
    );
    assert_eq!(show(&reply), show(expected.as_bytes()));

    // With nothing added, XREAD BLOCK times out with what a node answers.
    let started = Instant::now();
    let timed_out = blocked
        .command(&["XREAD", "BLOCK", "300", "STREAMS", &s, "$"])
        .await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    let direct = RawConn::connect(shared_owner_of(&s))
        .await
        .command(&["XREAD", "BLOCK", "10", "STREAMS", &s, "$"])
        .await;
    assert_eq!(show(&timed_out), show(&direct));
}

#[tokio::test]
async fn requests_pipelined_after_a_blocking_command_are_answered_after_it() {
    let proxy = proxy_for_shared().await;
    let tag = tag_on(GENERAL, "blpop-pipe");
    let (q, k) = (format!("{tag}q"), format!("{tag}k"));
    let mut blocked = RawConn::connect(proxy.local_addr()).await;
    let batch: Vec<u8> = encode_pipeline(&[&["BLPOP", &q, "0"], &["SET", &k, "x"], &["GET", &k]]);
    blocked.send(&batch).await;
    expect_silent(
        &mut blocked,
        Duration::from_millis(200),
        "pipeline behind BLPOP",
    )
    .await;
    let mut other = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(show(&other.command(&["RPUSH", &q, "v"]).await), ":1\\r\\n");
    let got = blocked.read_replies(3).await;
    assert_eq!(
        shown(&got),
        [
            show(bulk_array(&[&q, "v"]).as_bytes()),
            "+OK\\r\\n".to_string(),
            "$1\\r\\nx\\r\\n".to_string()
        ]
    );
}

#[tokio::test]
async fn a_client_s_blocking_commands_follow_its_keys_from_node_to_node() {
    let proxy = proxy_for_shared().await;
    let a = format!("{}q", tag_on(GENERAL, "hop"));
    let b = format!("{}q", tag_on(LATENCY, "hop"));
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(
        show(&conn.command(&["BRPOP", &a, "0.1"]).await),
        "*-1\\r\\n"
    );
    assert_eq!(
        show(&conn.command(&["BRPOP", &b, "0.1"]).await),
        "*-1\\r\\n"
    );
    assert_eq!(
        show(&conn.command(&["BRPOP", &a, "0.1"]).await),
        "*-1\\r\\n"
    );
    // And it still blocks and wakes up on the last node.
    conn.send(&encode_command(&["BRPOP", &b, "0"])).await;
    expect_silent(
        &mut conn,
        Duration::from_millis(200),
        "BRPOP on the second node",
    )
    .await;
    let mut other = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(show(&other.command(&["RPUSH", &b, "v"]).await), ":1\\r\\n");
    assert_eq!(
        show(&conn.read_reply().await),
        show(bulk_array(&[&b, "v"]).as_bytes())
    );
}

#[tokio::test]
async fn pipelined_blocking_commands_for_different_nodes_each_get_their_reply() {
    let proxy = proxy_for_shared().await;
    let a = format!("{}q", tag_on(GENERAL, "pipe-hop"));
    let b = format!("{}q", tag_on(LATENCY, "pipe-hop"));
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    let batch: Vec<u8> = encode_pipeline(&[&["BRPOP", &a, "0.3"], &["BRPOP", &b, "0.3"]]);
    conn.send(&batch).await;
    let first = conn.read_reply().await;
    let second = conn.read_reply().await;
    assert_eq!(
        [show(&first), show(&second)],
        ["*-1\\r\\n", "*-1\\r\\n"],
        "what a single Redis answers: both time out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_blocked_in_blpop_do_not_delay_other_clients_of_the_same_node() {
    const ROUNDS: usize = 10;
    const BLOCKED: usize = 5;
    let n = usable_clients(1000);
    assert!(
        n >= 100,
        "only {n} clients fit in the file descriptor limit"
    );
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let tag = tag_on(LATENCY, "lat");
    let node = masters()[LATENCY];

    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(RawConn::connect(addr).await);
    }

    /// Every client does ROUNDS SET + GET round trips at once; returns the sorted
    /// latencies of every request.
    async fn phase(conns: Vec<RawConn>, tag: &str, label: &str) -> (Vec<RawConn>, Vec<Duration>) {
        let barrier = Arc::new(tokio::sync::Barrier::new(conns.len()));
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, mut conn)| {
                let barrier = barrier.clone();
                let key = format!("{tag}k:{i}");
                let label = label.to_string();
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(ROUNDS * 2);
                    barrier.wait().await;
                    for r in 0..ROUNDS {
                        let v = format!("{label}-{r}");
                        let t = Instant::now();
                        let set = conn.command(&["SET", &key, &v]).await;
                        lat.push(t.elapsed());
                        assert_eq!(show(&set), "+OK\\r\\n", "{label}: SET {key}");
                        let t = Instant::now();
                        let got = conn.command(&["GET", &key]).await;
                        lat.push(t.elapsed());
                        assert_eq!(
                            show(&got),
                            show(format!("${}\r\n{v}\r\n", v.len()).as_bytes()),
                            "{label}: GET {key}"
                        );
                    }
                    (conn, lat)
                })
            })
            .collect();
        let mut conns = Vec::new();
        let mut all = Vec::new();
        for t in tasks {
            let (c, lat) = t.await.expect("a client failed");
            conns.push(c);
            all.extend(lat);
        }
        all.sort();
        (conns, all)
    }

    let (conns, _) = phase(conns, &tag, "warmup").await;
    let started = Instant::now();
    let (conns, baseline) = phase(conns, &tag, "baseline").await;
    let baseline_time = started.elapsed();

    let mut blocked = Vec::new();
    for j in 0..BLOCKED {
        let mut c = RawConn::connect(addr).await;
        c.send(&encode_command(&["BLPOP", &format!("{tag}q:{j}"), "0"]))
            .await;
        blocked.push(c);
    }
    eventually(
        Duration::from_secs(10),
        "clients blocked in BLPOP on the node",
        || blocked_in(node, "blpop") >= BLOCKED,
    )
    .await;
    let started = Instant::now();
    let (conns, with_blocked) = phase(conns, &tag, "blocked").await;
    let blocked_time = started.elapsed();

    // They were blocked all along, and still wake up.
    for (j, c) in blocked.iter_mut().enumerate() {
        expect_silent(c, Duration::from_millis(1), "blocked client").await;
        let q = format!("{tag}q:{j}");
        on_owner(&q, &["RPUSH", &q, "done"]);
        assert_eq!(
            show(&c.read_reply().await),
            show(bulk_array(&[&q, "done"]).as_bytes())
        );
    }
    drop(conns);

    let figures = |l: &[Duration]| (percentile(l, 0.5), percentile(l, 0.99), l.len());
    let (b50, b99, bn) = figures(&baseline);
    let (w50, w99, wn) = figures(&with_blocked);
    eprintln!(
        "GET/SET latency through respgate, {n} concurrent clients x {ROUNDS} x (SET+GET), \
         all on one node:\n  \
         no blocked client:     p50 {b50:?}  p99 {b99:?}  ({bn} requests in {baseline_time:?})\n  \
         {BLOCKED} clients in BLPOP 0: p50 {w50:?}  p99 {w99:?}  ({wn} requests in {blocked_time:?})"
    );
    assert_eq!(bn, n * ROUNDS * 2);
    assert_eq!(wn, n * ROUNDS * 2);
    let bound = b99 * 5 + Duration::from_millis(20);
    assert!(
        w99 <= bound,
        "p99 with blocked clients {w99:?} exceeds 5 x baseline p99 + 20 ms = {bound:?}"
    );
}

#[tokio::test]
async fn a_client_disconnecting_while_blocked_releases_its_backend_connection() {
    let proxy = proxy_for_shared().await;
    let node = masters()[DISCONNECT];
    let q = format!("{}q", tag_on(DISCONNECT, "gone"));
    assert_eq!(
        blocked_in(node, "blpop"),
        0,
        "no BLPOP blocked on {node} yet"
    );
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    conn.send(&encode_command(&["BLPOP", &q, "0"])).await;
    eventually(
        Duration::from_secs(5),
        "the BLPOP blocks on the node",
        || blocked_in(node, "blpop") == 1,
    )
    .await;
    drop(conn);
    eventually(
        Duration::from_secs(5),
        "the node no longer shows a client blocked in BLPOP after its client left",
        || blocked_in(node, "blpop") == 0,
    )
    .await;
    let mut other = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(show(&other.command(&["LPUSH", &q, "v"]).await), ":1\\r\\n");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        on_node(node, &["LLEN", &q]),
        Reply::Int(1),
        "the push was not consumed by the vanished client"
    );
}

#[tokio::test]
async fn past_max_dedicated_connections_a_blocking_command_is_refused_until_a_place_frees() {
    let mut cfg = test_config(&shared_cluster_seeds());
    cfg.server.max_dedicated_connections = 2;
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let tag = tag_on(GENERAL, "max-dedicated");
    let key = |n: &str| format!("{tag}{n}");

    let mut a = RawConn::connect(addr).await;
    a.send(&encode_command(&["BLPOP", &key("a"), "0"])).await;
    let mut b = RawConn::connect(addr).await;
    b.send(&encode_command(&["BLPOP", &key("b"), "0"])).await;
    expect_silent(&mut a, Duration::from_millis(200), "first blocked client").await;
    expect_silent(&mut b, Duration::from_millis(1), "second blocked client").await;

    // A third client: refused at once, for every kind of blocking command, while its
    // other commands work.
    let mut c = RawConn::connect(addr).await;
    for cmd in [
        vec!["BLPOP", &key("c"), "0"],
        vec!["BRPOP", &key("c"), "0"],
        vec!["XREAD", "BLOCK", "0", "STREAMS", &key("s"), "$"],
    ] {
        let r = c.command(&cmd).await;
        assert!(
            r.starts_with(TOO_MANY_BLOCKING.as_bytes()),
            "{cmd:?}: {}",
            show(&r)
        );
    }
    assert_eq!(
        show(&c.command(&["SET", &key("c"), "x"]).await),
        "+OK\\r\\n"
    );
    assert_eq!(
        show(&c.command(&["GET", &key("c")]).await),
        "$1\\r\\nx\\r\\n"
    );

    // The first client is served and leaves: its place goes to the third.
    assert_eq!(
        show(&c.command(&["LPUSH", &key("a"), "v"]).await),
        ":1\\r\\n"
    );
    assert_eq!(
        show(&a.read_reply().await),
        show(bulk_array(&[&key("a"), "v"]).as_bytes())
    );
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.command(&["BLPOP", &key("c2"), "0.1"]).await;
        if !r.starts_with(TOO_MANY_BLOCKING.as_bytes()) {
            assert_eq!(show(&r), "*-1\\r\\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the place of a client that left was not given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two places taken again (b blocked, c holding its connection): a fourth is refused.
    let mut d = RawConn::connect(addr).await;
    let r = d.command(&["BLPOP", &key("d"), "0"]).await;
    assert!(r.starts_with(TOO_MANY_BLOCKING.as_bytes()), "{}", show(&r));
    // The second client was never disturbed.
    assert_eq!(
        show(&d.command(&["RPUSH", &key("b"), "w"]).await),
        ":1\\r\\n"
    );
    assert_eq!(
        show(&b.read_reply().await),
        show(bulk_array(&[&key("b"), "w"]).as_bytes())
    );
}

#[tokio::test]
async fn a_client_disconnecting_while_blocked_gives_its_place_back() {
    let mut cfg = test_config(&shared_cluster_seeds());
    cfg.server.max_dedicated_connections = 1;
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let tag = tag_on(GENERAL, "max-dedicated-gone");
    let mut a = RawConn::connect(addr).await;
    a.send(&encode_command(&["BLPOP", &format!("{tag}a"), "0"]))
        .await;
    expect_silent(&mut a, Duration::from_millis(200), "blocked client").await;
    let mut c = RawConn::connect(addr).await;
    let r = c.command(&["BLPOP", &format!("{tag}c"), "0.1"]).await;
    assert!(r.starts_with(TOO_MANY_BLOCKING.as_bytes()), "{}", show(&r));
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = c.command(&["BLPOP", &format!("{tag}c"), "0.1"]).await;
        if !r.starts_with(TOO_MANY_BLOCKING.as_bytes()) {
            assert_eq!(show(&r), "*-1\\r\\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a client that left while blocked still holds its place"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn non_blocking_reads_and_transactions_use_no_dedicated_connection() {
    // With no place for a dedicated connection at all, only what really blocks fails.
    let mut cfg = test_config(&shared_cluster_seeds());
    cfg.server.max_dedicated_connections = 0;
    let proxy = start_proxy(cfg).await;
    let tag = tag_on(GENERAL, "no-dedicated");
    let (s, l) = (format!("{tag}s"), format!("{tag}l"));
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    let id = conn.command(&["XADD", &s, "1-1", "f", "v"]).await;
    assert_eq!(show(&id), "$3\\r\\n1-1\\r\\n");

    let entry = format!(
        "*1\r\n*2\r\n${}\r\n{s}\r\n*1\r\n*2\r\n$3\r\n1-1\r\n{}",
        s.len(),
        bulk_array(&["f", "v"])
    );
    let xread = conn
        .command(&["XREAD", "COUNT", "10", "STREAMS", &s, "0"])
        .await;
    assert_eq!(show(&xread), show(entry.as_bytes()));
    // BLOCK after STREAMS is a key name, not the option.
    let xread = conn.command(&["XREAD", "STREAMS", "block", "0"]).await;
    assert_eq!(show(&xread), "*-1\\r\\n");
    assert_eq!(
        show(&conn.command(&["XGROUP", "CREATE", &s, "g", "0"]).await),
        "+OK\\r\\n"
    );
    let group = conn
        .command(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", &s, ">"])
        .await;
    assert_eq!(show(&group), show(entry.as_bytes()));

    // A blocking command inside MULTI does not block (as in Redis) and needs no
    // dedicated connection.
    assert_eq!(show(&conn.command(&["MULTI"]).await), "+OK\\r\\n");
    assert_eq!(
        show(&conn.command(&["BLPOP", &l, "0"]).await),
        "+QUEUED\\r\\n"
    );
    assert_eq!(show(&conn.command(&["EXEC"]).await), "*1\\r\\n*-1\\r\\n");

    // What blocks is refused.
    for cmd in [
        vec!["XREAD", "BLOCK", "10", "STREAMS", &s, "$"],
        vec![
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "10",
            "STREAMS",
            &s,
            ">",
        ],
        vec!["BLPOP", &l, "0.1"],
    ] {
        let r = conn.command(&cmd).await;
        assert!(
            r.starts_with(TOO_MANY_BLOCKING.as_bytes()),
            "{cmd:?}: {}",
            show(&r)
        );
    }
}

/// Pipelined requests keep their order when the client's connection changes: commands
/// before a WATCH (shared links) run before it (the client's own connection), and
/// commands after EXEC or a blocking command run after it. Repeated, since a lost order
/// shows only when the shared link happens to be slower.
#[tokio::test]
async fn pipelined_requests_keep_their_order_across_watch_exec_and_blocking_commands() {
    let proxy = proxy_for_shared().await;
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    for round in 0..40 {
        let k = format!("{{tx-order}}k{round}");
        let l = format!("{{tx-order}}l{round}");
        let script: Vec<Vec<&str>> = vec![
            vec!["SET", &k, "1"],
            vec!["WATCH", &k],
            vec!["MULTI"],
            vec!["INCR", &k],
            vec!["EXEC"],
            vec!["GET", &k],
            vec!["RPUSH", &l, "a"],
            vec!["BRPOP", &l, "0"],
            vec!["LLEN", &l],
            vec!["DEL", &k],
        ];
        let mut bytes = Vec::new();
        for args in &script {
            bytes.extend(encode_command(args));
        }
        conn.send(&bytes).await;
        let replies: Vec<String> = conn
            .read_replies(script.len())
            .await
            .iter()
            .map(|r| show(r))
            .collect();
        let want = [
            "+OK\\r\\n".to_string(),
            "+OK\\r\\n".into(),
            "+OK\\r\\n".into(),
            "+QUEUED\\r\\n".into(),
            // Not `*-1`: the SET before WATCH ran first, so nothing changed the key.
            "*1\\r\\n:2\\r\\n".into(),
            "$1\\r\\n2\\r\\n".into(),
            ":1\\r\\n".into(),
            format!("*2\\r\\n${}\\r\\n{l}\\r\\n$1\\r\\na\\r\\n", l.len()),
            // Not `:1`: LLEN ran after BRPOP took the element.
            ":0\\r\\n".into(),
            ":1\\r\\n".into(),
        ];
        assert_eq!(replies, want, "round {round}");
    }
    proxy.shutdown().await;
}

/// CLIENT UNBLOCK names a respgate client; respgate unblocks that client's own
/// connection on the node, and the client gets what Redis sends: a timeout (nil) or
/// `-UNBLOCKED`.
#[tokio::test]
async fn client_unblock_unblocks_a_client_blocked_through_respgate() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let k = "{tx-unblock}list";
    let mut blocked = RawConn::connect(addr).await;
    let mut admin = RawConn::connect(addr).await;
    let id = String::from_utf8_lossy(&blocked.command(&["CLIENT", "ID"]).await)
        .trim_start_matches(':')
        .trim_end()
        .to_string();
    for (mode, want) in [
        (None, "*-1\r\n"),
        (Some("TIMEOUT"), "*-1\r\n"),
        (
            Some("ERROR"),
            "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n",
        ),
    ] {
        blocked.send(&encode_command(&["BRPOP", k, "0"])).await;
        let mut args = vec!["CLIENT", "UNBLOCK", id.as_str()];
        args.extend(mode);
        // The BRPOP reaches the node a moment later: retry until it is blocked there.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = show(&admin.command(&args).await);
            if r == ":1\\r\\n" {
                break;
            }
            assert_eq!(r, ":0\\r\\n");
            assert!(Instant::now() < deadline, "the BRPOP never blocked");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            show(&blocked.read_reply().await),
            show(want.as_bytes()),
            "{mode:?}"
        );
    }
    // Not blocked, unknown, or malformed: Redis's answers.
    assert_eq!(
        show(&admin.command(&["CLIENT", "UNBLOCK", &id]).await),
        ":0\\r\\n"
    );
    assert_eq!(
        show(&admin.command(&["CLIENT", "UNBLOCK", "999999"]).await),
        ":0\\r\\n"
    );
    assert_eq!(
        show(&admin.command(&["CLIENT", "UNBLOCK", &id, "LATER"]).await),
        "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\\r\\n"
    );
    assert_eq!(
        show(&admin.command(&["CLIENT", "UNBLOCK", "abc"]).await),
        "-ERR value is not an integer or out of range\\r\\n"
    );
    // The unblocked client works on.
    assert_eq!(show(&blocked.command(&["PING"]).await), "+PONG\\r\\n");
    proxy.shutdown().await;
}
