//! Pub/sub through respgate: one standalone-Redis endpoint whose SUBSCRIBE / PSUBSCRIBE
//! are served by a single backend subscription per channel (the hub in `src/pubsub.rs`),
//! shared by every client.
//!
//! Replies Redis defines (confirmations, messages, subscribed-mode errors, PING) are
//! compared byte for byte with a real node: the same commands go to a master directly
//! (a "reference" connection) and through respgate, and both get the same messages,
//! since in a Redis Cluster a PUBLISH reaches every node. Backend subscriptions are
//! counted with `PUBSUB NUMSUB` asked directly of every node (a node counts its own
//! subscribers only), patterns by the receiver counts `PUBLISH` returns when sent directly
//! to the nodes.
//!
//! Every test uses its own channel names ([`unique`]), so tests sharing the cluster never
//! see each other's messages or subscriptions.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous bound for anything that should happen "within a few seconds" (an anti-hang
/// limit, never a timing assertion).
const EVENTUALLY: Duration = Duration::from_secs(20);

/// Taken by the tests that load the machine (500 clients, 20 MB of messages), so that
/// they neither run together nor see each other in this process's memory figures.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A channel-name prefix no other test (nor an earlier run) uses.
fn unique(name: &str) -> String {
    format!("ps{}:{name}", std::process::id())
}

/// The shared cluster's masters, in address order.
fn masters() -> &'static [SocketAddr] {
    static M: OnceLock<Vec<SocketAddr>> = OnceLock::new();
    M.get_or_init(|| with_shared_cluster(|c| c.masters()))
}

/// Every node of the shared cluster, masters and replicas.
fn all_nodes() -> &'static [SocketAddr] {
    static N: OnceLock<Vec<SocketAddr>> = OnceLock::new();
    N.get_or_init(|| with_shared_cluster(|c| c.seeds()))
}

/// The RESP2 bytes of a message frame (`*3 message channel payload`).
fn message(channel: &str, payload: &str) -> Vec<u8> {
    encode_command(&["message", channel, payload])
}

/// The RESP2 bytes of a pattern message frame (`*4 pmessage pattern channel payload`).
fn pmessage(pattern: &str, channel: &str, payload: &str) -> Vec<u8> {
    encode_command(&["pmessage", pattern, channel, payload])
}

/// PUBLISH through `conn`; returns the receiver count in the reply.
async fn publish(conn: &mut RawConn, channel: &str, payload: &str) -> i64 {
    let reply = conn.command(&["PUBLISH", channel, payload]).await;
    assert!(reply.starts_with(b":"), "PUBLISH gave {:?}", show(&reply));
    trailing_int(&reply)
}

/// How many subscribers `channel` has on every node together, asked directly of each
/// (`PUBSUB NUMSUB` counts a node's own clients only).
async fn numsub_total(channel: &str) -> i64 {
    let mut total = 0;
    for &node in all_nodes() {
        let mut conn = RawConn::connect(node).await;
        total += trailing_int(&conn.command(&["PUBSUB", "NUMSUB", channel]).await);
    }
    total
}

/// How many connections receive a message published on `channel` (as subscribers of the
/// channel or of a matching pattern), summed over every node: each node's `PUBLISH`
/// reply counts its own receivers only.
async fn receivers_total(channel: &str) -> i64 {
    let mut total = 0;
    for &node in all_nodes() {
        let mut conn = RawConn::connect(node).await;
        total += publish(&mut conn, channel, "probe").await;
    }
    total
}

/// The node holding respgate's backend subscription to `channel` (the only one).
async fn hub_node(channel: &str) -> SocketAddr {
    let mut found = Vec::new();
    for &node in all_nodes() {
        let mut conn = RawConn::connect(node).await;
        if trailing_int(&conn.command(&["PUBSUB", "NUMSUB", channel]).await) > 0 {
            found.push(node);
        }
    }
    assert_eq!(found.len(), 1, "nodes subscribed to {channel}: {found:?}");
    found[0]
}

/// How many connections of `node` receive a message published on `channel` (the
/// receiver count of a `PUBLISH probe` sent there: its own clients only). The probe
/// itself reaches every subscriber of the channel cluster-wide.
async fn pattern_receivers(node: SocketAddr, channel: &str) -> i64 {
    let mut conn = RawConn::connect(node).await;
    publish(&mut conn, channel, "probe").await
}

/// Raises the soft open-files limit to the hard one (500 clients are 1000 descriptors
/// in this process: the client ends and respgate's ends).
fn raise_nofile_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// This process's resident memory (respgate runs in it), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// A subscriber that never reads: a small receive buffer so that respgate's output to
/// it backs up quickly. Returns once its subscription is confirmed (that confirmation is
/// the only thing it ever reads).
async fn non_reading_subscriber(proxy: SocketAddr, channel: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    let mut conn = socket.connect(proxy).await.unwrap();
    conn.write_all(&encode_command(&["SUBSCRIBE", channel]))
        .await
        .unwrap();
    let expected = confirmation("subscribe", Some(channel), 1);
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(EVENTUALLY, conn.read_exact(&mut got))
        .await
        .expect("subscription confirmed")
        .unwrap();
    assert_eq!(show(&got), show(&expected));
    conn
}

/// A client doing SET/GET round trips through respgate in the background, checking
/// each reply.
struct KvClient {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl KvClient {
    async fn start(proxy: SocketAddr, key: String) -> KvClient {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (done.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut conn = RawConn::connect(proxy).await;
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let value = format!("v{n}");
                let set = conn.command(&["SET", &key, &value]).await;
                assert_eq!(show(&set), "+OK\\r\\n");
                let get = conn.command(&["GET", &key]).await;
                assert_eq!(
                    show(&get),
                    show(format!("${}\r\n{value}\r\n", value.len()).as_bytes())
                );
                n += 1;
                d.store(n, Ordering::Relaxed);
            }
        });
        let client = KvClient { done, stop, task };
        client.progresses().await;
        client
    }

    /// Asserts that more round trips complete from now on.
    async fn progresses(&self) {
        let before = self.done.load(Ordering::Relaxed);
        let deadline = Instant::now() + EVENTUALLY;
        while self.done.load(Ordering::Relaxed) < before + 3 {
            assert!(
                !self.task.is_finished(),
                "the SET/GET client failed (see its panic above)"
            );
            assert!(Instant::now() < deadline, "SET/GET client made no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(EVENTUALLY, self.task)
            .await
            .expect("SET/GET client stops")
            .expect("SET/GET client never failed");
        self.done.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------
// 1. SUBSCRIBE / PUBLISH / PSUBSCRIBE / UNSUBSCRIBE / PUNSUBSCRIBE
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn subscribe_publish_and_unsubscribe_are_byte_identical_to_redis() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let base = unique("basic");
    let (a, b) = (format!("{base}:a"), format!("{base}:b"));
    let pattern = format!("{base}:p*");
    let pchan = format!("{base}:p1");
    let mut pair = Pair::new(addr, masters()[1]).await;
    let mut publisher = RawConn::connect(addr).await;

    // Two confirmations for one SUBSCRIBE, counting up.
    pair.send(&["SUBSCRIBE", &a, &b]).await;
    let first = pair.read("SUBSCRIBE a b (1)").await;
    assert_eq!(show(&first), show(&confirmation("subscribe", Some(&a), 1)));
    let second = pair.read("SUBSCRIBE a b (2)").await;
    assert_eq!(show(&second), show(&confirmation("subscribe", Some(&b), 2)));

    // A message published by another client through respgate.
    publish(&mut publisher, &a, "msg").await;
    let got = pair.read("message on a").await;
    assert_eq!(show(&got), show(&message(&a, "msg")));
    publish(&mut publisher, &b, "second").await;
    let got = pair.read("message on b").await;
    assert_eq!(show(&got), show(&message(&b, "second")));

    // Patterns: the confirmation counts channels and patterns together.
    pair.expect(
        &["PSUBSCRIBE", &pattern],
        &confirmation("psubscribe", Some(&pattern), 3),
    )
    .await;
    publish(&mut publisher, &pchan, "patterned").await;
    let got = pair.read("pmessage").await;
    assert_eq!(show(&got), show(&pmessage(&pattern, &pchan, "patterned")));

    // UNSUBSCRIBE with an argument: a's messages stop, b's keep coming.
    pair.expect(
        &["UNSUBSCRIBE", &a],
        &confirmation("unsubscribe", Some(&a), 2),
    )
    .await;
    publish(&mut publisher, &a, "not for you").await;
    publish(&mut publisher, &b, "still yours").await;
    let got = pair.read("message on b after unsubscribing a").await;
    assert_eq!(show(&got), show(&message(&b, "still yours")));

    // Unsubscribing from a channel it does not have: the count is unchanged.
    pair.expect(
        &["UNSUBSCRIBE", &a],
        &confirmation("unsubscribe", Some(&a), 2),
    )
    .await;

    // UNSUBSCRIBE without arguments: every channel (here b), the pattern remains.
    pair.expect(&["UNSUBSCRIBE"], &confirmation("unsubscribe", Some(&b), 1))
        .await;
    publish(&mut publisher, &b, "gone").await;
    publish(&mut publisher, &pchan, "pattern only").await;
    let got = pair.read("pmessage after UNSUBSCRIBE").await;
    assert_eq!(
        show(&got),
        show(&pmessage(&pattern, &pchan, "pattern only"))
    );

    // PUNSUBSCRIBE with an argument, then without (nothing left).
    pair.expect(
        &["PUNSUBSCRIBE", &pattern],
        &confirmation("punsubscribe", Some(&pattern), 0),
    )
    .await;
    pair.expect(&["PUNSUBSCRIBE"], &confirmation("punsubscribe", None, 0))
        .await;

    // Not subscribed any more: UNSUBSCRIBE answers `unsubscribe $-1 :0`.
    pair.expect(&["UNSUBSCRIBE"], &confirmation("unsubscribe", None, 0))
        .await;
    pair.send(&["UNSUBSCRIBE", &a, &b]).await;
    let got = pair.read("UNSUBSCRIBE a b when not subscribed (1)").await;
    assert_eq!(show(&got), show(&confirmation("unsubscribe", Some(&a), 0)));
    let got = pair.read("UNSUBSCRIBE a b when not subscribed (2)").await;
    assert_eq!(show(&got), show(&confirmation("unsubscribe", Some(&b), 0)));

    // Normal commands work again, and nothing published meanwhile leaks through.
    publish(&mut publisher, &pchan, "after").await;
    pair.expect(&["PING"], b"+PONG\r\n").await;
    pair.expect(&["ECHO", "back"], b"$4\r\nback\r\n").await;
    let key = format!("{base}:key");
    let mut p = pair.proxy;
    assert_eq!(show(&p.command(&["SET", &key, "v"]).await), "+OK\\r\\n");
    assert_eq!(show(&p.command(&["GET", &key]).await), "$1\\r\\nv\\r\\n");

    // The (un)subscriptions were served by the hub: nothing remains on the backend.
    wait_for("subscribers of a", 0, || numsub_total(&a)).await;
    wait_for("subscribers of b", 0, || numsub_total(&b)).await;
}

// ---------------------------------------------------------------------------------------
// 2. Subscribed-mode rules (RESP2)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn subscribed_mode_rules_are_those_of_redis() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let base = unique("mode");
    let channel = format!("{base}:c");
    let key = format!("{base}:key");
    // The reference node owns the key: a node checks the slot before the mode.
    let mut pair = Pair::new(addr, shared_owner_of(&key)).await;

    pair.expect(
        &["SUBSCRIBE", &channel],
        &confirmation("subscribe", Some(&channel), 1),
    )
    .await;

    // Other commands are refused with Redis's own text (compared with the node's bytes).
    pair.expect(
        &["GET", &key],
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    pair.send(&["SET", &key, "v"]).await;
    pair.read("SET in subscribed mode").await;
    pair.send(&["PUBLISH", &channel, "x"]).await;
    pair.read("PUBLISH in subscribed mode").await;
    pair.send(&["ECHO", "x"]).await;
    pair.read("ECHO in subscribed mode").await;
    pair.send(&["CLIENT", "ID"]).await;
    pair.read("CLIENT ID in subscribed mode").await;
    // Unknown commands and wrong arities keep their own errors.
    pair.send(&["NOSUCHCOMMAND", "x"]).await;
    pair.read("unknown command in subscribed mode").await;
    pair.send(&["GET"]).await;
    pair.read("GET without a key in subscribed mode").await;

    // PING answers a pair.
    pair.expect(&["PING"], b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        .await;
    pair.expect(&["PING", "x"], b"*2\r\n$4\r\npong\r\n$1\r\nx\r\n")
        .await;

    // Still subscribed after all those refusals.
    let mut publisher = RawConn::connect(addr).await;
    publish(&mut publisher, &channel, "still here").await;
    let got = pair.read("message after refusals").await;
    assert_eq!(show(&got), show(&message(&channel, "still here")));

    // RESET leaves subscribed mode; commands work afterwards.
    pair.expect(&["RESET"], b"+RESET\r\n").await;
    pair.expect(&["PING"], b"+PONG\r\n").await;
    let mut p = pair.proxy;
    assert_eq!(show(&p.command(&["SET", &key, "v"]).await), "+OK\\r\\n");
    assert_eq!(show(&p.command(&["GET", &key]).await), "$1\\r\\nv\\r\\n");
    // And the subscription is gone: no message reaches it, the hub let go.
    publish(&mut publisher, &channel, "after reset").await;
    assert_eq!(show(&p.command(&["PING"]).await), "+PONG\\r\\n");
    wait_for("subscribers after RESET", 0, || numsub_total(&channel)).await;

    // QUIT in subscribed mode: +OK, then the connection closes.
    let mut pair = Pair::new(addr, shared_owner_of(&key)).await;
    pair.expect(
        &["SUBSCRIBE", &channel],
        &confirmation("subscribe", Some(&channel), 1),
    )
    .await;
    pair.expect(&["QUIT"], b"+OK\r\n").await;
    pair.expect_closed().await;
    wait_for("subscribers after QUIT", 0, || numsub_total(&channel)).await;
}

/// Redis's PING takes at most one argument, in subscribed mode as outside it.
#[tokio::test]
async fn ping_with_two_arguments_gets_the_arity_error_in_and_out_of_subscribed_mode() {
    let proxy = proxy_for_shared().await;
    let channel = unique("mode-ping");
    let mut pair = Pair::new(proxy.local_addr(), masters()[0]).await;
    pair.expect(
        &["PING", "x", "y"],
        b"-ERR wrong number of arguments for 'ping' command\r\n",
    )
    .await;
    pair.expect(
        &["SUBSCRIBE", &channel],
        &confirmation("subscribe", Some(&channel), 1),
    )
    .await;
    pair.expect(
        &["PING", "x", "y"],
        b"-ERR wrong number of arguments for 'ping' command\r\n",
    )
    .await;
}

/// MULTI / EXEC / DISCARD / WATCH / UNWATCH are transaction commands, which respgate's
/// router handles before its subscribed-mode check.
#[tokio::test]
async fn transaction_commands_in_subscribed_mode_are_refused_as_redis_does() {
    let proxy = proxy_for_shared().await;
    let base = unique("mode-multi");
    let channel = format!("{base}:c");
    let key = format!("{base}:key");
    let mut pair = Pair::new(proxy.local_addr(), shared_owner_of(&key)).await;
    pair.expect(
        &["SUBSCRIBE", &channel],
        &confirmation("subscribe", Some(&channel), 1),
    )
    .await;
    pair.expect(
        &["MULTI"],
        b"-ERR Can't execute 'multi': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    // Not in a transaction: GET is refused, not queued.
    pair.send(&["GET", &key]).await;
    pair.read("GET after MULTI in subscribed mode").await;
    for cmd in [
        &["EXEC"][..],
        &["DISCARD"],
        &["WATCH", key.as_str()],
        &["UNWATCH"],
    ] {
        pair.send(cmd).await;
        pair.read(&format!("{} in subscribed mode", cmd[0])).await;
    }
    // Still subscribed, and UNSUBSCRIBE is answered as such.
    pair.expect(
        &["UNSUBSCRIBE"],
        &confirmation("unsubscribe", Some(&channel), 0),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. No gap between the confirmation and the first message
// ---------------------------------------------------------------------------------------

/// Once the confirmation has arrived, the subscription is active on the backend: a
/// message published at once is received. Half of the rounds start from nothing (the
/// hub connects and subscribes), half add a channel to a live hub connection.
#[tokio::test]
async fn a_message_published_right_after_the_confirmation_is_received() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let base = unique("nogap");
    let mut sub = RawConn::connect(addr).await;
    let mut publisher = RawConn::connect(addr).await;
    let mut count = 0;
    for i in 0..200 {
        let channel = format!("{base}:{i}");
        let confirmed = sub.command(&["SUBSCRIBE", &channel]).await;
        count += 1;
        assert_eq!(
            show(&confirmed),
            show(&confirmation("subscribe", Some(&channel), count)),
            "round {i}"
        );
        publish(&mut publisher, &channel, &format!("m{i}")).await;
        let got = tokio::time::timeout(Duration::from_secs(5), sub.read_reply())
            .await
            .unwrap_or_else(|_| {
                panic!("round {i}: the message published right after the confirmation was lost")
            });
        assert_eq!(show(&got), show(&message(&channel, &format!("m{i}"))));
        if i % 2 == 1 {
            // Leave subscribed mode: the hub lets its backend connection go, and the
            // next round starts from nothing.
            sub.send(&encode_command(&["UNSUBSCRIBE"])).await;
            for _ in 0..count {
                sub.read_reply().await;
            }
            count = 0;
        }
    }
}

/// Two clients subscribing to one new channel at the same moment: the second joins a
/// backend subscription that is not confirmed yet, and must not be confirmed before it is.
#[tokio::test]
async fn clients_subscribing_together_are_confirmed_only_once_the_subscription_is_active() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let base = unique("together");
    let mut first = RawConn::connect(addr).await;
    let mut second = RawConn::connect(addr).await;
    let mut publisher = RawConn::connect(addr).await;
    for i in 0..100 {
        let channel = format!("{base}:{i}");
        let subscribe = encode_command(&["SUBSCRIBE", &channel]);
        first.send(&subscribe).await;
        second.send(&subscribe).await;
        let expected = show(&confirmation("subscribe", Some(&channel), 1));
        // Whichever is confirmed first publishes at once: both must get the message.
        let (a, b) = tokio::join!(first.read_reply(), second.read_reply());
        assert_eq!(show(&a), expected);
        assert_eq!(show(&b), expected);
        publish(&mut publisher, &channel, "m").await;
        for (who, conn) in [("first", &mut first), ("second", &mut second)] {
            let got = tokio::time::timeout(Duration::from_secs(5), conn.read_reply())
                .await
                .unwrap_or_else(|_| panic!("round {i}: the {who} subscriber lost the message"));
            assert_eq!(
                show(&got),
                show(&message(&channel, "m")),
                "round {i}, {who}"
            );
            conn.send(&encode_command(&["UNSUBSCRIBE"])).await;
            let got = conn.read_reply().await;
            assert_eq!(
                show(&got),
                show(&confirmation("unsubscribe", Some(&channel), 0))
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. Acceptance: 500 clients, one backend subscription
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_subscribers_share_one_backend_subscription_and_all_get_every_message() {
    const CLIENTS: usize = 500;
    const MESSAGES: usize = 20;
    let _heavy = HEAVY.lock().await;
    raise_nofile_limit();
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let channel = unique("fanout");

    let subscribers = subscribe_many(addr, "SUBSCRIBE", &channel, CLIENTS).await;

    // Exactly one subscription on the whole cluster: respgate's.
    let mut per_node = Vec::new();
    for &node in all_nodes() {
        let mut conn = RawConn::connect(node).await;
        let n = trailing_int(&conn.command(&["PUBSUB", "NUMSUB", &channel]).await);
        per_node.push((node, n));
    }
    let total: i64 = per_node.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 1, "backend subscriptions per node: {per_node:?}");

    let mut publisher = RawConn::connect(addr).await;
    for m in 0..MESSAGES {
        publish(&mut publisher, &channel, &format!("message-{m}")).await;
    }

    let mut reading = tokio::task::JoinSet::new();
    for (i, mut conn) in subscribers.into_iter().enumerate() {
        let channel = channel.clone();
        reading.spawn(async move {
            for m in 0..MESSAGES {
                let got = conn.read_reply().await;
                assert_eq!(
                    show(&got),
                    show(&message(&channel, &format!("message-{m}"))),
                    "client {i}, message {m}"
                );
            }
            conn
        });
    }
    let mut done = Vec::with_capacity(CLIENTS);
    while let Some(conn) = reading.join_next().await {
        done.push(conn.expect("every subscriber gets every message in order"));
    }
    assert_eq!(done.len(), CLIENTS);

    // All gone: so is the backend subscription.
    drop(done);
    wait_for("subscribers once all 500 left", 0, || {
        numsub_total(&channel)
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 5. Cluster-wide propagation
// ---------------------------------------------------------------------------------------

/// A PUBLISH sent directly to any node (every master and every replica, none of them
/// through respgate) reaches respgate's subscribers, on the channel and on a pattern.
#[tokio::test]
async fn messages_published_directly_on_any_node_reach_respgate_subscribers() {
    let proxy = proxy_for_shared().await;
    let base = unique("direct");
    let channel = format!("{base}:chan");
    let pattern = format!("{base}:*");
    let mut sub = RawConn::connect(proxy.local_addr()).await;
    sub.send(&encode_command(&["SUBSCRIBE", &channel])).await;
    sub.send(&encode_command(&["PSUBSCRIBE", &pattern])).await;
    assert_eq!(
        show(&sub.read_reply().await),
        show(&confirmation("subscribe", Some(&channel), 1))
    );
    assert_eq!(
        show(&sub.read_reply().await),
        show(&confirmation("psubscribe", Some(&pattern), 2))
    );
    assert!(
        all_nodes().len() > masters().len(),
        "replicas to publish on"
    );
    for &node in all_nodes() {
        let payload = format!("from {node}");
        let mut direct = RawConn::connect(node).await;
        publish(&mut direct, &channel, &payload).await;
        // The node where respgate's subscription lives sends the channel's subscribers
        // the message first, then the pattern's.
        assert_eq!(
            show(&sub.read_reply().await),
            show(&message(&channel, &payload)),
            "published on {node}"
        );
        assert_eq!(
            show(&sub.read_reply().await),
            show(&pmessage(&pattern, &channel, &payload)),
            "published on {node}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6. The redis crate's async PubSub
// ---------------------------------------------------------------------------------------

/// The redis crate's async `PubSub` (RESP2) works unchanged: its subscribe, psubscribe,
/// ping and unsubscribe all accept respgate's replies, and its subscriptions are the
/// hub's. (Consuming `on_message` needs `futures::StreamExt`, which this crate's
/// dev-dependencies do not offer; the frames it would parse are checked byte for byte
/// against Redis in the tests above.)
#[tokio::test]
async fn the_redis_crate_async_pubsub_works_unchanged() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let base = unique("redis-rs");
    let channel = format!("{base}:chan");
    let other = format!("{base}:other");
    let pattern = format!("{base}:pat*");
    let pchan = format!("{base}:pat1");
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let mut pubsub = timed(EVENTUALLY, client.get_async_pubsub())
        .await
        .expect("get_async_pubsub");
    timed(EVENTUALLY, pubsub.subscribe(&channel))
        .await
        .expect("subscribe");
    timed(EVENTUALLY, pubsub.subscribe(&[&other]))
        .await
        .expect("subscribe to a second channel");
    timed(EVENTUALLY, pubsub.psubscribe(&pattern))
        .await
        .expect("psubscribe");
    assert_eq!(numsub_total(&channel).await, 1);
    assert_eq!(numsub_total(&other).await, 1);
    assert_eq!(
        receivers_total(&pchan).await,
        1,
        "the pattern's subscription"
    );

    // PING in subscribed mode: the crate routes the `pong` pair as PING's reply.
    let pong: Vec<String> = timed(EVENTUALLY, pubsub.ping()).await.expect("ping");
    assert_eq!(pong, vec!["pong".to_string(), String::new()]);
    let pong: Vec<String> = timed(EVENTUALLY, pubsub.ping_message("hi"))
        .await
        .expect("ping with a message");
    assert_eq!(pong, vec!["pong".to_string(), "hi".to_string()]);

    // Meanwhile a regular connection through respgate keeps working, and PUBLISH from it
    // is fine; the connection survives the messages it gets (a frame it could not parse
    // would close it, failing the next call).
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    for i in 0..10 {
        let _: i64 = call(
            &mut con,
            redis::cmd("PUBLISH").arg(&channel).arg(format!("m{i}")),
            EVENTUALLY,
        )
        .await
        .expect("PUBLISH through respgate");
        let _: i64 = call(
            &mut con,
            redis::cmd("PUBLISH").arg(&pchan).arg(format!("p{i}")),
            EVENTUALLY,
        )
        .await
        .expect("PUBLISH through respgate");
    }
    let pong: Vec<String> = timed(EVENTUALLY, pubsub.ping_message("after"))
        .await
        .expect("ping after messages");
    assert_eq!(pong, vec!["pong".to_string(), "after".to_string()]);

    timed(EVENTUALLY, pubsub.unsubscribe(&channel))
        .await
        .expect("unsubscribe");
    wait_for("subscribers after unsubscribe", 0, || {
        numsub_total(&channel)
    })
    .await;
    assert_eq!(numsub_total(&other).await, 1);
    timed(EVENTUALLY, pubsub.punsubscribe(&pattern))
        .await
        .expect("punsubscribe");
    wait_for("pattern receivers after punsubscribe", 0, || {
        receivers_total(&pchan)
    })
    .await;
    drop(pubsub);
    wait_for("subscribers once the PubSub is dropped", 0, || {
        numsub_total(&other)
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 7. A subscriber that does not read
// ---------------------------------------------------------------------------------------

/// With `pubsub_queue_messages = 100`, a subscriber that reads nothing is disconnected
/// by respgate, by the pub/sub limit itself, while 20,000 messages of 1 KB go by (the
/// output-stall timeout is set far away so that only the pub/sub limit can act). See
/// [`slow_subscriber`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_disconnected_and_memory_stays_bounded() {
    slow_subscriber(3600).await;
}

/// The same with a 2 s output-stall timeout: whichever limit acts first, the subscriber
/// that reads nothing is disconnected, the reading one gets every message in order, the
/// SET/GET client keeps working and respgate's memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_disconnected_within_the_stall_timeout_and_memory_stays_bounded(
) {
    slow_subscriber(2).await;
}

/// One subscriber that reads nothing and one that reads normally, on one channel, while
/// 20,000 messages of 1 KB are published through respgate and a third client does
/// SET/GET: the reading subscriber gets all of them, in order; the other is disconnected
/// by respgate (with `pubsub_queue_messages = 100` and `output_stall_timeout_secs =
/// stall_secs`) having been sent far less than was published; the SET/GET client never
/// stalls; and the process's resident memory (respgate runs in it) does not grow with
/// what the slow subscriber failed to read.
async fn slow_subscriber(stall_secs: u64) {
    let _heavy = HEAVY.lock().await;
    const MESSAGES: usize = 20_000;
    const SIZE: usize = 1024;
    const BATCH: usize = 25;
    let mut cfg = test_config(&shared_cluster_seeds());
    cfg.server.pubsub_queue_messages = 100;
    cfg.server.output_stall_timeout_secs = stall_secs;
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let base = unique("slow");
    let channel = format!("{base}:chan");
    let payload = |i: usize| format!("{i:08}{}", "x".repeat(SIZE - 8));

    let kv = KvClient::start(addr, format!("{base}:key")).await;
    let slow = non_reading_subscriber(addr, &channel).await;
    let slow_addr = slow.local_addr().unwrap();
    assert!(
        proxy_side_established(addr, slow_addr),
        "/proc/net/tcp lookup"
    );

    // The reader checks every byte as it arrives (all frames have the same length).
    let mut good = RawConn::connect(addr).await;
    assert_eq!(
        show(&good.command(&["SUBSCRIBE", &channel]).await),
        show(&confirmation("subscribe", Some(&channel), 1))
    );
    let frame_len = message(&channel, &payload(0)).len();
    let received = Arc::new(AtomicU64::new(0));
    let reader = {
        let (received, channel) = (received.clone(), channel.clone());
        tokio::spawn(async move {
            let mut expected = Vec::new();
            let mut next = 0;
            let mut total = 0;
            let mut buf = vec![0u8; 256 * 1024];
            while total < MESSAGES * frame_len {
                let n = good.stream.read(&mut buf).await.unwrap_or(0);
                assert!(
                    n > 0,
                    "the reading subscriber was disconnected after {} messages",
                    total / frame_len
                );
                while expected.len() < n && next < MESSAGES {
                    expected.extend_from_slice(&message(&channel, &payload(next)));
                    next += 1;
                }
                assert!(
                    expected.len() >= n && buf[..n] == expected[..n],
                    "unexpected bytes after {} messages: {:?}",
                    total / frame_len,
                    show(&buf[..n.min(120)])
                );
                expected.drain(..n);
                total += n;
                received.store((total / frame_len) as u64, Ordering::Relaxed);
            }
            good
        })
    };

    // Peak memory while the messages go by.
    let baseline = rss_bytes();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            peak.max(rss_bytes())
        })
    };

    let mut publisher = RawConn::connect(addr).await;
    for start in (0..MESSAGES).step_by(BATCH) {
        // A normal subscriber reads as messages come: publishing never runs more than a
        // batch ahead of it (while the slow one falls behind without bound). A burst of
        // more than `pubsub_queue_messages` can reach the hub faster than a subscriber's
        // session is scheduled to take it, whoever the subscriber.
        let deadline = Instant::now() + EVENTUALLY;
        while start as u64 > received.load(Ordering::Relaxed) + BATCH as u64 {
            assert!(
                !reader.is_finished() && Instant::now() < deadline,
                "the reading subscriber stopped at {} messages",
                received.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let batch: Vec<u8> = (start..start + BATCH)
            .flat_map(|i| encode_command(&["PUBLISH", &channel, &payload(i)]))
            .collect();
        publisher.send(&batch).await;
        for _ in 0..BATCH {
            let reply = publisher.read_reply().await;
            assert!(reply.starts_with(b":"), "PUBLISH gave {:?}", show(&reply));
        }
    }

    let good = tokio::time::timeout(EVENTUALLY, reader)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the reading subscriber got {} of {MESSAGES} messages",
                received.load(Ordering::Relaxed)
            )
        })
        .expect("the reading subscriber got every message, in order");
    kv.progresses().await;

    let deadline = Instant::now() + EVENTUALLY;
    while proxy_side_established(addr, slow_addr) {
        assert!(
            Instant::now() < deadline,
            "respgate kept a subscriber that reads nothing for {EVENTUALLY:?} after {MESSAGES} messages"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler.await.unwrap();

    // What was already in the network arrives, then the end of the stream: far less than
    // the 20 MB published.
    let mut slow = slow;
    let mut left = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match tokio::time::timeout(EVENTUALLY, slow.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => left += n,
            Err(_) => panic!("the slow subscriber's connection was not closed"),
        }
    }
    assert!(
        left < MESSAGES * SIZE / 2,
        "the slow subscriber was sent {left} bytes"
    );
    let growth = peak.saturating_sub(baseline);
    assert!(
        growth < 8 * 1024 * 1024,
        "memory grew by {growth} bytes while {} MB went to a subscriber that reads nothing",
        MESSAGES * SIZE / 1_000_000
    );
    kv.finish().await;
    // The reading subscriber keeps the backend subscription alone, until it leaves.
    assert_eq!(numsub_total(&channel).await, 1);
    drop(good);
    wait_for("subscribers once both left", 0, || numsub_total(&channel)).await;
}

// ---------------------------------------------------------------------------------------
// 8. The backend subscription goes when the last subscriber does
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_backend_subscription_ends_when_the_last_subscriber_unsubscribes_or_disconnects() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let base = unique("last");
    // Keeps the hub's backend connection alive throughout: the subscriptions must end by
    // the hub's UNSUBSCRIBE / PUNSUBSCRIBE, not by its connection closing.
    let keep = format!("{base}:keep");
    let mut keeper = RawConn::connect(addr).await;
    keeper.command(&["SUBSCRIBE", &keep]).await;
    let hub = hub_node(&keep).await;

    // A channel whose subscribers leave by UNSUBSCRIBE.
    let channel = format!("{base}:unsub");
    let mut a = RawConn::connect(addr).await;
    let mut b = RawConn::connect(addr).await;
    a.command(&["SUBSCRIBE", &channel]).await;
    b.command(&["SUBSCRIBE", &channel]).await;
    assert_eq!(numsub_total(&channel).await, 1);
    assert_eq!(
        show(&a.command(&["UNSUBSCRIBE", &channel]).await),
        show(&confirmation("unsubscribe", Some(&channel), 0))
    );
    b.command(&["PING"]).await; // a round trip while the hub applies a's leaving
    assert_eq!(numsub_total(&channel).await, 1, "b is still subscribed");
    assert_eq!(
        show(&b.command(&["UNSUBSCRIBE"]).await),
        show(&confirmation("unsubscribe", Some(&channel), 0))
    );
    wait_for("subscribers after the last UNSUBSCRIBE", 0, || {
        numsub_total(&channel)
    })
    .await;

    // A pattern whose subscribers leave by PUNSUBSCRIBE (counted as the receivers of a
    // PUBLISH on the hub's node: each such probe reaches the pattern's subscribers).
    let pattern = format!("{base}:pat*");
    let pchan = format!("{base}:pat1");
    a.command(&["PSUBSCRIBE", &pattern]).await;
    b.command(&["PSUBSCRIBE", &pattern]).await;
    assert_eq!(pattern_receivers(hub, &pchan).await, 1);
    for conn in [&mut a, &mut b] {
        let probe = conn.read_reply().await;
        assert_eq!(show(&probe), show(&pmessage(&pattern, &pchan, "probe")));
    }
    assert_eq!(
        show(&a.command(&["PUNSUBSCRIBE", &pattern]).await),
        show(&confirmation("punsubscribe", Some(&pattern), 0))
    );
    b.command(&["PING"]).await;
    assert_eq!(
        pattern_receivers(hub, &pchan).await,
        1,
        "b still has the pattern"
    );
    let probe = b.read_reply().await;
    assert_eq!(show(&probe), show(&pmessage(&pattern, &pchan, "probe")));
    assert_eq!(
        show(&b.command(&["PUNSUBSCRIBE"]).await),
        show(&confirmation("punsubscribe", Some(&pattern), 0))
    );
    wait_for("pattern receivers after the last PUNSUBSCRIBE", 0, || {
        pattern_receivers(hub, &pchan)
    })
    .await;
    // Neither got anything after leaving.
    assert_eq!(show(&a.command(&["PING"]).await), "+PONG\\r\\n");
    assert_eq!(show(&b.command(&["PING"]).await), "+PONG\\r\\n");

    // A channel and a pattern whose subscribers disconnect.
    let channel = format!("{base}:close");
    let pattern = format!("{base}:closepat*");
    let pchan = format!("{base}:closepat1");
    for conn in [&mut a, &mut b] {
        conn.command(&["SUBSCRIBE", &channel]).await;
        conn.command(&["PSUBSCRIBE", &pattern]).await;
    }
    assert_eq!(numsub_total(&channel).await, 1);
    drop(a);
    keeper.command(&["PING"]).await;
    assert_eq!(numsub_total(&channel).await, 1, "b is still subscribed");
    assert_eq!(
        pattern_receivers(hub, &pchan).await,
        1,
        "b still has the pattern"
    );
    drop(b);
    wait_for("subscribers once the last one disconnected", 0, || {
        numsub_total(&channel)
    })
    .await;
    wait_for(
        "pattern receivers once the last one disconnected",
        0,
        || pattern_receivers(hub, &pchan),
    )
    .await;

    // The keeper was there all along; its leaving ends the last subscription.
    assert_eq!(numsub_total(&keep).await, 1);
    drop(keeper);
    wait_for("subscribers once the keeper left", 0, || {
        numsub_total(&keep)
    })
    .await;
}

/// A subscriber dropped because it does not read its messages is a subscriber gone: if
/// it was the channel's last, the backend subscription must go too (here the hub's
/// connection stays up for another channel, so only an UNSUBSCRIBE can end it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_subscription_ends_when_its_last_subscriber_is_dropped_for_not_reading() {
    let mut cfg = test_config(&shared_cluster_seeds());
    cfg.server.pubsub_queue_messages = 10;
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let base = unique("evicted");
    let channel = format!("{base}:chan");
    let keep = format!("{base}:keep");
    let mut keeper = RawConn::connect(addr).await;
    keeper.command(&["SUBSCRIBE", &keep]).await;
    let slow = non_reading_subscriber(addr, &channel).await;
    assert_eq!(numsub_total(&channel).await, 1);

    // Enough to fill every buffer on the way and then its queue.
    let mut publisher = RawConn::connect(addr).await;
    let big = "x".repeat(64 * 1024);
    for _ in 0..200 {
        publish(&mut publisher, &channel, &big).await;
    }
    wait_for(
        "backend subscribers of a channel whose only subscriber was dropped",
        0,
        || numsub_total(&channel),
    )
    .await;
    drop(slow);
    assert_eq!(numsub_total(&keep).await, 1);
}

/// Redis writes a channel's messages to the client in order with the replies, so every
/// message published before an UNSUBSCRIBE comes before its confirmation and none after.
/// Here the subscriber is behind (it had not read for a while) when it unsubscribes.
#[tokio::test]
async fn no_message_of_a_channel_follows_its_unsubscribe_confirmation() {
    const BACKLOG: usize = 8000;
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let base = unique("unsub-order");
    let (a, b) = (format!("{base}:a"), format!("{base}:b"));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4 * 1024).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut sub = RawConn::from_stream(stream);
    sub.send(&encode_command(&["SUBSCRIBE", &a, &b])).await;
    assert_eq!(
        show(&sub.read_reply().await),
        show(&confirmation("subscribe", Some(&a), 1))
    );
    assert_eq!(
        show(&sub.read_reply().await),
        show(&confirmation("subscribe", Some(&b), 2))
    );

    // A backlog the subscriber has not read yet.
    let mut publisher = RawConn::connect(addr).await;
    let payload = "x".repeat(1024);
    for _ in 0..BACKLOG / 100 {
        let batch: Vec<u8> = (0..100)
            .flat_map(|_| encode_command(&["PUBLISH", &a, &payload]))
            .collect();
        publisher.send(&batch).await;
        for _ in 0..100 {
            publisher.read_reply().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sub.send(&encode_command(&["UNSUBSCRIBE", &a])).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(&mut publisher, &b, "after").await;

    let mut before = 0;
    loop {
        let frame = sub.read_reply().await;
        if frame == message(&a, &payload) {
            before += 1;
            continue;
        }
        assert_eq!(
            show(&frame),
            show(&confirmation("unsubscribe", Some(&a), 1)),
            "after {before} messages"
        );
        break;
    }
    let next = sub.read_reply().await;
    assert_eq!(
        show(&next[..next.len().min(100)]),
        show(&message(&b, "after")),
        "{before} of the {BACKLOG} messages on {a} came before the confirmation of UNSUBSCRIBE {a}"
    );
    assert_eq!(before, BACKLOG);
}

// ---------------------------------------------------------------------------------------
// PUBSUB introspection
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn pubsub_numsub_and_channels_count_respgate_clients() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let channel = unique("introspect");
    let mut subscribers = Vec::new();
    for _ in 0..3 {
        let mut s = RawConn::connect(addr).await;
        s.command(&["SUBSCRIBE", &channel]).await;
        subscribers.push(s);
    }
    let mut c = RawConn::connect(addr).await;
    // Three respgate clients share one backend subscription; NUMSUB counts the clients.
    assert_eq!(
        show(
            &c.command(&["PUBSUB", "NUMSUB", &channel, "nobody-here"])
                .await
        ),
        show(&numsub_reply(&[(&channel, 3), ("nobody-here", 0)]))
    );
    let channels = show(
        &c.command(&["PUBSUB", "CHANNELS", &format!("{channel}*")])
            .await,
    );
    assert_eq!(channels, show(&encode_command(&[&channel])));
    drop(subscribers);
    proxy.shutdown().await;
}

/// PUBLISH through respgate counts respgate's subscribers one by one (channel and
/// pattern subscriptions each), as a standalone Redis counts its clients, although the
/// node sees one backend subscription per channel and pattern.
#[tokio::test]
async fn publish_counts_every_respgate_subscriber() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let channel = unique("count:a");
    let pattern = unique("count:*");
    let mut subs = Vec::new();
    for _ in 0..3 {
        let mut s = RawConn::connect(addr).await;
        s.command(&["SUBSCRIBE", &channel]).await;
        subs.push(s);
    }
    for _ in 0..2 {
        let mut s = RawConn::connect(addr).await;
        s.command(&["PSUBSCRIBE", &pattern]).await;
        subs.push(s);
    }
    let mut publisher = RawConn::connect(addr).await;
    assert_eq!(publish(&mut publisher, &channel, "five").await, 5);
    assert_eq!(
        publish(&mut publisher, &unique("count:other"), "two").await,
        2
    );
    assert_eq!(
        publish(&mut publisher, &unique("elsewhere"), "none").await,
        0
    );
    // One channel subscriber leaves (its confirmation read): four remain.
    subs[0]
        .send(&encode_command(&["UNSUBSCRIBE", &channel]))
        .await;
    while !subs[0]
        .read_reply()
        .await
        .starts_with(b"*3\r\n$11\r\nunsubscribe")
    {}
    assert_eq!(publish(&mut publisher, &channel, "four").await, 4);
    proxy.shutdown().await;
}
