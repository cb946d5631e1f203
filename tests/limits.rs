//! Protection limits: a client that breaks the protocol, announces too much, stops reading
//! its replies, sits idle, or arrives past `max_clients` is answered as Redis would (or
//! with respgate's own limit named) and disconnected, while a well-behaved client on the
//! same respgate keeps working throughout. And a graceful shutdown delivers every reply
//! already requested before closing.

mod support;

use respgate::config::Config;
use respgate::server::Proxy;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Generous bound for anything that should happen "within a few seconds".
const EVENTUALLY: Duration = Duration::from_secs(20);

/// A Lua script that keeps its node busy for `ARGV[1]` microseconds.
const BUSY: &str = "local t = redis.call('TIME') \
    local start = t[1] * 1000000 + t[2] \
    repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1]) \
    return 'slept'";

fn config() -> Config {
    test_config(&shared_cluster_seeds())
}

/// A well-behaved client doing SET/GET round trips in the background, checking each.
struct GoodClient {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl GoodClient {
    /// Connects and starts working; returns once a few round trips have succeeded.
    async fn start(addr: SocketAddr, name: &str) -> GoodClient {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut conn = RawConn::connect(addr).await;
        let key = format!("{name}:good");
        let task = tokio::spawn({
            let (done, stop) = (done.clone(), stop.clone());
            async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v = i.to_string();
                    let set = conn.command(&["SET", key.as_str(), v.as_str()]).await;
                    assert_eq!(show(&set), "+OK\\r\\n", "well-behaved client's SET");
                    let got = conn.command(&["GET", key.as_str()]).await;
                    assert_eq!(
                        show(&got),
                        show(format!("${}\r\n{v}\r\n", v.len()).as_bytes()),
                        "well-behaved client's GET"
                    );
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        let client = GoodClient { done, stop, task };
        client.progresses().await;
        client
    }

    /// Waits until a few more round trips have succeeded from now on.
    async fn progresses(&self) {
        let from = self.done.load(Ordering::Relaxed);
        let waited = tokio::time::timeout(EVENTUALLY, async {
            while self.done.load(Ordering::Relaxed) < from + 3 && !self.task.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok() && !self.task.is_finished(),
            "the well-behaved client stopped making progress"
        );
    }

    /// Checks it is still working, then stops it; fails the test if any round trip failed.
    async fn finish(self) {
        self.progresses().await;
        self.stop.store(true, Ordering::Relaxed);
        if let Err(e) = self.task.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// The reply a cluster node itself gives to `bytes` (first reply), for comparison.
async fn node_reply(bytes: &[u8]) -> Vec<u8> {
    let node = with_shared_cluster(|c| c.masters()[0]);
    let mut c = RawConn::connect(node).await;
    c.send(bytes).await;
    c.read_reply().await
}

#[tokio::test]
async fn malformed_resp_gets_the_redis_protocol_error_then_the_connection_closes() {
    let proxy = start_proxy(config()).await;
    let good = GoodClient::start(proxy.local_addr(), "lim-malformed").await;

    let mut bad = RawConn::connect(proxy.local_addr()).await;
    bad.send(b"*1\r\n:x\r\n").await;
    let reply = bad.read_reply().await;
    assert_eq!(
        show(&reply),
        "-ERR Protocol error: expected '$', got ':'\\r\\n"
    );
    assert_eq!(show(&reply), show(&node_reply(b"*1\r\n:x\r\n").await));
    bad.expect_closed().await;

    good.finish().await;
}

#[tokio::test]
async fn requests_before_a_protocol_error_are_answered_before_the_error() {
    let proxy = start_proxy(config()).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let mut bytes = encode_command(&["SET", "lim-before:k", "v"]);
    bytes.extend(encode_command(&["GET", "lim-before:k"]));
    bytes.extend_from_slice(b"*1\r\n:x\r\n");
    bytes.extend(encode_command(&["SET", "lim-before:after", "v"]));
    c.send(&bytes).await;
    assert_eq!(show(&c.read_reply().await), "+OK\\r\\n");
    assert_eq!(show(&c.read_reply().await), "$1\\r\\nv\\r\\n");
    assert_eq!(
        show(&c.read_reply().await),
        "-ERR Protocol error: expected '$', got ':'\\r\\n"
    );
    c.expect_closed().await;
    let after = shared_owner_of("lim-before:after");
    let v = with_shared_cluster(|cl| cl.command(after, &["EXISTS", "lim-before:after"]).unwrap());
    assert_eq!(v.as_int(), Some(0), "nothing after the error is executed");
}

#[tokio::test]
async fn absurd_bulk_length_gets_invalid_bulk_length_then_the_connection_closes() {
    let proxy = start_proxy(config()).await;
    let good = GoodClient::start(proxy.local_addr(), "lim-bulklen").await;

    let request = b"*2\r\n$3\r\nGET\r\n$999999999999\r\n";
    let mut bad = RawConn::connect(proxy.local_addr()).await;
    bad.send(request).await;
    let reply = bad.read_reply().await;
    assert_eq!(
        show(&reply),
        "-ERR Protocol error: invalid bulk length\\r\\n"
    );
    assert_eq!(show(&reply), show(&node_reply(request).await));
    bad.expect_closed().await;

    good.finish().await;
}

#[tokio::test]
async fn a_600_mb_bulk_is_refused_from_its_header_without_waiting_for_the_payload() {
    let proxy = start_proxy(config()).await;
    let good = GoodClient::start(proxy.local_addr(), "lim-600mb").await;

    let mut bad = RawConn::connect(proxy.local_addr()).await;
    bad.send(b"*3\r\n$3\r\nSET\r\n$11\r\nlim-600mb:k\r\n$629145600\r\n")
        .await;
    // A few KB of the announced 600 MB, and no more: the error must not need the rest.
    bad.send(&vec![b'x'; 8 * 1024]).await;
    let reply = bad.read_reply().await;
    assert_eq!(
        show(&reply),
        "-ERR Protocol error: invalid bulk length\\r\\n"
    );
    bad.expect_closed().await;

    good.finish().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_its_replies_is_disconnected() {
    let mut cfg = config();
    cfg.server.output_stall_timeout_secs = 1;
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let good = GoodClient::start(addr, "lim-stall").await;

    let big = "v".repeat(1024 * 1024);
    let mut setup = RawConn::connect(addr).await;
    assert_eq!(
        show(&setup.command(&["SET", "lim-stall:big", big.as_str()]).await),
        "+OK\\r\\n"
    );

    // 100 GETs of 1 MB, and then the client never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut bad = socket.connect(addr).await.unwrap();
    let bad_addr = bad.local_addr().unwrap();
    assert!(
        proxy_side_established(addr, bad_addr),
        "/proc/net/tcp lookup"
    );
    let gets: Vec<u8> = (0..100)
        .flat_map(|_| encode_command(&["GET", "lim-stall:big"]))
        .collect();
    bad.write_all(&gets).await.unwrap();

    let closed = tokio::time::timeout(EVENTUALLY, async {
        while proxy_side_established(addr, bad_addr) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "respgate kept a client that reads nothing for {EVENTUALLY:?}"
    );
    good.progresses().await;

    // What was already in the network arrives, then the end of the stream: far less
    // than the 100 MB requested.
    let mut received = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match tokio::time::timeout(EVENTUALLY, bad.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received += n,
            Err(_) => panic!("the stalled client's connection was not closed"),
        }
    }
    assert!(
        received < 100 * big.len(),
        "all {received} bytes were delivered"
    );
    good.finish().await;
}

#[tokio::test]
async fn connections_beyond_max_clients_get_the_redis_error_and_are_closed() {
    let mut cfg = config();
    cfg.server.max_clients = 3;
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let good = GoodClient::start(addr, "lim-maxc").await;
    let mut second = RawConn::connect(addr).await;
    let mut third = RawConn::connect(addr).await;
    assert_eq!(show(&second.command(&["PING"]).await), "+PONG\\r\\n");
    assert_eq!(show(&third.command(&["PING"]).await), "+PONG\\r\\n");

    let mut fourth = RawConn::connect(addr).await;
    assert_eq!(
        show(&fourth.read_reply().await),
        "-ERR max number of clients reached\\r\\n"
    );
    fourth.expect_closed().await;

    assert_eq!(
        show(&second.command(&["SET", "lim-maxc:2", "two"]).await),
        "+OK\\r\\n"
    );
    assert_eq!(
        show(&third.command(&["GET", "lim-maxc:2"]).await),
        "$3\\r\\ntwo\\r\\n"
    );
    good.finish().await;
}

#[tokio::test]
async fn a_place_freed_under_max_clients_can_be_taken_again() {
    let mut cfg = config();
    cfg.server.max_clients = 1;
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let mut first = RawConn::connect(addr).await;
    assert_eq!(show(&first.command(&["PING"]).await), "+PONG\\r\\n");
    drop(first);

    // The place is released once respgate has noticed the disconnection.
    let taken = tokio::time::timeout(EVENTUALLY, async {
        loop {
            let mut c = RawConn::connect(addr).await;
            c.send(&encode_command(&["PING"])).await;
            match c.try_read_reply().await {
                Some(r) if r == b"+PONG\r\n" => return,
                Some(r) => assert_eq!(show(&r), "-ERR max number of clients reached\\r\\n"),
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(taken.is_ok(), "the freed place was never given out again");
}

#[tokio::test]
async fn an_idle_client_is_disconnected_after_idle_timeout() {
    let mut cfg = config();
    cfg.server.idle_timeout_secs = 1;
    let proxy = start_proxy(cfg).await;
    let good = GoodClient::start(proxy.local_addr(), "lim-idle").await;

    let mut idle = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(show(&idle.command(&["PING"]).await), "+PONG\\r\\n");
    idle.expect_closed().await;

    good.finish().await;
}

#[tokio::test]
async fn a_client_waiting_for_a_slow_reply_is_not_idle() {
    let mut cfg = config();
    cfg.server.idle_timeout_secs = 1;
    let proxy = start_proxy(cfg).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    // Longer than the idle timeout plus respgate's check period.
    let reply = c
        .command(&["EVAL", BUSY, "1", "lim-notidle:k", "2000000"])
        .await;
    assert_eq!(show(&reply), "$5\\r\\nslept\\r\\n");
}

#[tokio::test]
async fn a_request_over_max_request_bytes_gets_the_limit_error_then_the_connection_closes() {
    let mut cfg = config();
    cfg.server.max_request_bytes = 1024;
    let proxy = start_proxy(cfg).await;
    let good = GoodClient::start(proxy.local_addr(), "lim-maxreq").await;

    let mut c = RawConn::connect(proxy.local_addr()).await;
    let fits = "a".repeat(900);
    assert_eq!(
        show(&c.command(&["SET", "lim-maxreq:k", fits.as_str()]).await),
        "+OK\\r\\n"
    );
    let too_big = "b".repeat(2000);
    c.send(&encode_command(&["SET", "lim-maxreq:k", too_big.as_str()]))
        .await;
    assert_eq!(
        show(&c.read_reply().await),
        "-ERR Protocol error: request larger than respgate's max_request_bytes (1024 bytes)\\r\\n"
    );
    c.expect_closed().await;

    good.finish().await;
}

#[tokio::test]
async fn a_request_over_max_request_bytes_by_many_small_arguments_gets_the_limit_error() {
    let mut cfg = config();
    cfg.server.max_request_bytes = 1024;
    let proxy = start_proxy(cfg).await;

    // 400 one-byte arguments: about 2.8 KB, every argument small.
    let mut args = vec!["MSET".to_string()];
    for i in 0..200 {
        args.push(format!("{{lim-args}}{}", i % 10));
        args.push("x".into());
    }
    let mut c = RawConn::connect(proxy.local_addr()).await;
    c.send(&encode_command(&args)).await;
    assert_eq!(
        show(&c.read_reply().await),
        "-ERR Protocol error: request larger than respgate's max_request_bytes (1024 bytes)\\r\\n"
    );
    c.expect_closed().await;
}

/// Whether some master has a client blocked in `WAIT` (respgate's backend link).
fn a_node_holds_a_blocked_wait() -> bool {
    with_shared_cluster(|c| {
        c.masters().into_iter().any(|m| {
            let list = c.command(m, &["CLIENT", "LIST"]).unwrap();
            list.as_str().unwrap().lines().any(|l| {
                l.contains(" cmd=wait ")
                    && l.split(' ')
                        .any(|f| f.strip_prefix("flags=").is_some_and(|v| v.contains('b')))
            })
        })
    })
}

#[tokio::test]
async fn a_client_blocked_in_wait_does_not_hold_up_other_clients() {
    let proxy = start_proxy(config()).await;
    let addr = proxy.local_addr();

    // Each master has one replica, so waiting for 5 blocks this client for 4 s.
    let mut waiter = RawConn::connect(addr).await;
    waiter.send(&encode_command(&["WAIT", "5", "4000"])).await;
    let waiter = tokio::spawn(async move { waiter.read_reply().await });
    let blocked = tokio::time::timeout(EVENTUALLY, async {
        while !waiter.is_finished() && !a_node_holds_a_blocked_wait() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        blocked.is_ok(),
        "the WAIT neither blocked on a node nor was answered"
    );

    // Other clients, enough to use every backend link, with keys on every master.
    let masters = with_shared_cluster(|c| c.masters());
    let keys: Vec<String> = masters
        .iter()
        .map(|&m| {
            (0..)
                .map(|i| format!("lim-wait:{i}"))
                .find(|k| shared_owner_of(k) == m)
                .unwrap()
        })
        .collect();
    let others: Vec<_> = (0..8)
        .map(|c| {
            let keys = keys.clone();
            tokio::spawn(async move {
                let mut conn = RawConn::connect(addr).await;
                for k in &keys {
                    let v = format!("client{c}");
                    assert_eq!(show(&conn.command(&["SET", k, &v]).await), "+OK\\r\\n");
                }
            })
        })
        .collect();
    for o in others {
        tokio::time::timeout(EVENTUALLY, o)
            .await
            .expect("other clients finish")
            .unwrap();
    }
    if waiter.is_finished() {
        let reply = waiter.await.unwrap();
        assert!(
            reply.starts_with(b"-"),
            "other clients were served only after the WAIT ended ({:?})",
            show(&reply)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Graceful shutdown
// ---------------------------------------------------------------------------------------

/// Waits until a node has executed a request that set `key` to "1" (which shows respgate
/// has read and forwarded every request before it).
/// Waits until `key`'s master runs a script: it leaves a PING unanswered (a node runs
/// nothing else meanwhile; it answers -BUSY only past `lua-time-limit`).
async fn wait_until_busy(key: &str) {
    use std::io::{Read, Write};
    let owner = shared_owner_of(key);
    let deadline = std::time::Instant::now() + EVENTUALLY;
    loop {
        let mut s = std::net::TcpStream::connect(owner).expect("node reachable");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 16];
        if s.read(&mut buf).is_err() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "respgate never forwarded the script to {key}'s master"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until_executed(key: &str) {
    let owner = shared_owner_of(key);
    let executed = tokio::time::timeout(EVENTUALLY, async {
        loop {
            let v = with_shared_cluster(|cl| cl.command(owner, &["GET", key]).unwrap());
            if v.as_str() == Some("1") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        executed.is_ok(),
        "respgate never forwarded the request that sets {key}"
    );
}

/// Waits until connecting to `addr` is refused.
async fn until_refused(addr: SocketAddr) {
    let refused = tokio::time::timeout(EVENTUALLY, async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "respgate still accepts connections");
}

#[tokio::test]
async fn shutdown_delivers_every_reply_in_flight_then_closes_and_refuses_new_clients() {
    let proxy = start_proxy(config()).await;
    let addr = proxy.local_addr();

    // A slow request first, so everything behind it is still owed when shutdown starts;
    // the last request goes to another master and is executed as soon as respgate has
    // forwarded it, which shows respgate has read every request.
    let slow_key = "{lim-shutdown}slow";
    let slow_owner = shared_owner_of(slow_key);
    let last_key = (0..)
        .map(|i| format!("lim-shutdown:last:{i}"))
        .find(|k| shared_owner_of(k) != slow_owner)
        .unwrap();
    let mut requests = encode_command(&["EVAL", BUSY, "1", slow_key, "800000"]);
    let mut expected = vec![b"$5\r\nslept\r\n".to_vec()];
    for i in 0..200 {
        let key = format!("lim-shutdown:{i}");
        requests.extend(encode_command(&["SET", key.as_str(), "v"]));
        expected.push(b"+OK\r\n".to_vec());
        requests.extend(encode_command(&["INCR", key.as_str()]));
        expected.push(b"-ERR value is not an integer or out of range\r\n".to_vec());
        requests.extend(encode_command(&["GET", key.as_str()]));
        expected.push(b"$1\r\nv\r\n".to_vec());
    }
    requests.extend(encode_command(&["SET", last_key.as_str(), "1"]));
    expected.push(b"+OK\r\n".to_vec());

    let mut c = RawConn::connect(addr).await;
    c.send(&requests).await;
    wait_until_executed(&last_key).await;

    let shutdown = tokio::spawn(proxy.shutdown());
    until_refused(addr).await;
    for (i, want) in expected.iter().enumerate() {
        let got = c
            .try_read_reply()
            .await
            .unwrap_or_else(|| panic!("closed before reply #{i} of {}", expected.len()));
        assert_eq!(show(&got), show(want), "reply #{i}");
    }
    c.expect_closed().await;
    tokio::time::timeout(EVENTUALLY, shutdown)
        .await
        .expect("shutdown returns")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_closes_connections_still_busy_when_the_grace_period_ends() {
    let mut cfg = config();
    cfg.server.shutdown_grace_secs = 1;
    let proxy: Proxy = start_proxy(cfg).await;
    let slow_key = "{lim-grace}slow";
    let mut c = RawConn::connect(proxy.local_addr()).await;
    c.send(&encode_command(&["EVAL", BUSY, "1", slow_key, "3000000"]))
        .await;
    wait_until_busy(slow_key).await;

    tokio::time::timeout(EVENTUALLY, proxy.shutdown())
        .await
        .expect("shutdown returns");
    // `shutdown` promises everything is closed when it returns: the 3 s reply must not
    // arrive on a connection that outlived it.
    assert_eq!(c.try_read_reply().await.map(|r| show(&r)), None);
}
