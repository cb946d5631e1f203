//! CLIENT PAUSE / UNPAUSE through respgate (issue 15, observation 3): respgate holds its
//! own clients' paused commands itself, so a write sent during a pause waits and is then
//! applied (never a backend timeout, even when the pause outlasts the request timeout),
//! UNPAUSE is answered at once and releases it, and ALL holds reads too. The
//! differential stream at the end compares the replies (timing aside) with a
//! standalone Redis. The pause is process- and cluster-wide: every test here takes the
//! quiet cluster.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::standalone::Standalone;
use support::{quiet_cluster, show, QuietCluster, RawConn};

/// respgate with a 1 s backend request timeout, so a pause of 2 s proves the held time
/// does not count.
async fn proxy(q: &QuietCluster) -> respgate::server::Proxy {
    let mut config = support::test_config(&q.seeds());
    config.cluster.request_timeout_ms = 1000;
    support::start_proxy(config).await
}

/// Lifts any pause left on the nodes (a failed test must not pause the next one).
fn unpause_nodes(q: &QuietCluster) {
    for m in q.masters() {
        q.command(m, &["CLIENT", "UNPAUSE"]);
    }
}

/// Whether no reply arrives on `conn` within `wait`.
async fn silent(conn: &mut RawConn, wait: Duration) -> bool {
    tokio::time::timeout(wait, conn.read_reply()).await.is_err()
}

async fn conns(addr: SocketAddr) -> (RawConn, RawConn, RawConn) {
    (
        RawConn::connect(addr).await,
        RawConn::connect(addr).await,
        RawConn::connect(addr).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_held_for_the_pause_then_applied_and_reads_pass() {
    let q = quiet_cluster().await;
    let proxy = proxy(&q).await;
    let (mut pauser, mut writer, mut reader) = conns(proxy.local_addr()).await;
    assert_eq!(reader.command(&["SET", "pause:r", "1"]).await, b"+OK\r\n");
    assert_eq!(
        pauser.command(&["CLIENT", "PAUSE", "2000", "WRITE"]).await,
        b"+OK\r\n"
    );
    let started = Instant::now();
    writer
        .send(&support::encode_command(&["SET", "pause:w", "v"]))
        .await;
    // A read from a third client is answered at once during the pause.
    let read_at = Instant::now();
    assert_eq!(reader.command(&["GET", "pause:r"]).await, b"$1\r\n1\r\n");
    assert!(read_at.elapsed() < Duration::from_millis(500));
    // The write waits for the whole pause (longer than the 1 s request timeout), then
    // is applied and answered OK.
    let reply = writer.read_reply().await;
    let held = started.elapsed();
    assert_eq!(show(&reply), show(b"+OK\r\n"));
    assert!(held >= Duration::from_millis(1700), "held only {held:?}");
    assert_eq!(reader.command(&["GET", "pause:w"]).await, b"$1\r\nv\r\n");
    unpause_nodes(&q);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpause_is_answered_at_once_and_releases_the_held_write() {
    let q = quiet_cluster().await;
    let proxy = proxy(&q).await;
    let (mut pauser, mut writer, mut other) = conns(proxy.local_addr()).await;
    assert_eq!(
        pauser.command(&["CLIENT", "PAUSE", "20000", "WRITE"]).await,
        b"+OK\r\n"
    );
    writer
        .send(&support::encode_command(&["INCR", "pause:n"]))
        .await;
    // Pipelined behind it: held too, answered after it (the client is blocked).
    writer
        .send(&support::encode_command(&["GET", "pause:n"]))
        .await;
    assert!(silent(&mut writer, Duration::from_millis(1500)).await);
    let asked = Instant::now();
    assert_eq!(other.command(&["CLIENT", "UNPAUSE"]).await, b"+OK\r\n");
    assert!(asked.elapsed() < Duration::from_millis(500));
    let replies = writer.read_replies(2).await;
    assert!(
        asked.elapsed() < Duration::from_millis(800),
        "{:?}",
        asked.elapsed()
    );
    let n: i64 = std::str::from_utf8(&replies[0][1..replies[0].len() - 2])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        show(&replies[1]),
        show(format!("${}\r\n{n}\r\n", n.to_string().len()).as_bytes())
    );
    unpause_nodes(&q);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_mode_holds_reads_too() {
    let q = quiet_cluster().await;
    let proxy = proxy(&q).await;
    let (mut pauser, mut reader, _) = conns(proxy.local_addr()).await;
    assert_eq!(
        pauser.command(&["CLIENT", "PAUSE", "1500", "ALL"]).await,
        b"+OK\r\n"
    );
    let started = Instant::now();
    reader
        .send(&support::encode_command(&["GET", "pause:a"]))
        .await;
    assert!(silent(&mut reader, Duration::from_millis(800)).await);
    assert_eq!(reader.read_reply().await, b"$-1\r\n");
    assert!(started.elapsed() >= Duration::from_millis(1300));
    unpause_nodes(&q);
}

/// The differential stream: the same pause sequences on respgate and a standalone
/// Redis get the same replies (timing aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_pause_write_and_all() {
    let q = quiet_cluster().await;
    let proxy = proxy(&q).await;
    let direct = Standalone::start();
    let mut got = Vec::new();
    for addr in [proxy.local_addr(), direct.addr] {
        let (mut a, mut b, mut c) = conns(addr).await;
        let mut replies = Vec::new();
        replies.push(a.command(&["DEL", "{p}k"]).await);
        // WRITE: the write waits, UNPAUSE is answered, the write goes on.
        replies.push(a.command(&["CLIENT", "PAUSE", "10000", "WRITE"]).await);
        b.send(&support::encode_command(&["SET", "{p}k", "1"]))
            .await;
        replies.push(c.command(&["GET", "{p}k"]).await);
        // Held longer than respgate's request timeout (1 s): the held time is not
        // counted against it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        replies.push(c.command(&["CLIENT", "PAUSE", "abc"]).await);
        replies.push(c.command(&["CLIENT", "PAUSE", "10", "sometimes"]).await);
        replies.push(c.command(&["CLIENT", "UNPAUSE"]).await);
        replies.push(b.read_reply().await);
        // ALL: reads and UNPAUSE itself wait for the end of the pause.
        replies.push(a.command(&["CLIENT", "PAUSE", "700", "ALL"]).await);
        b.send(&support::encode_command(&["GET", "{p}k"])).await;
        c.send(&support::encode_command(&["CLIENT", "UNPAUSE"]))
            .await;
        replies.push(b.read_reply().await);
        replies.push(c.read_reply().await);
        // A later PAUSE replaces the mode (ALL -> WRITE: reads pass).
        replies.push(a.command(&["CLIENT", "PAUSE", "600", "ALL"]).await);
        replies.push(c.command(&["CLIENT", "PAUSE", "100", "WRITE"]).await);
        replies.push(b.command(&["INCR", "{p}k"]).await);
        replies.push(b.command(&["CLIENT", "UNPAUSE"]).await);
        got.push(replies.iter().map(|r| show(r)).collect::<Vec<_>>());
    }
    assert_eq!(got[0], got[1]);
    unpause_nodes(&q);
}

/// What the review of the pause found, each compared with a standalone Redis 7.0.15:
/// a client that closes while held is gone (its write never runs); a held client is not
/// idle (`idle_timeout_secs` does not cut it); a write queued in MULTI is held before
/// its `+QUEUED`; a pause whose end overflows (Redis: no pause) holds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_client_that_closes_is_gone_and_others_are_held_as_redis_holds_them() {
    let q = quiet_cluster().await;
    let standalone = Standalone::start();
    let mut config = support::test_config(&q.seeds());
    config.cluster.request_timeout_ms = 1000;
    config.server.idle_timeout_secs = 1;
    let proxy = support::start_proxy(config).await;
    for addr in [proxy.local_addr(), standalone.addr] {
        let what = if addr == standalone.addr {
            "redis"
        } else {
            "respgate"
        };
        let (mut pauser, mut closer, mut queued) = conns(addr).await;
        let mut idle = RawConn::connect(addr).await;
        queued
            .command(&["DEL", "pause:gone", "pause:idle", "pause:q"])
            .await;
        assert_eq!(queued.command(&["MULTI"]).await, b"+OK\r\n");
        assert_eq!(
            pauser.command(&["CLIENT", "PAUSE", "2500", "WRITE"]).await,
            b"+OK\r\n"
        );
        closer
            .send(&support::encode_command(&["SET", "pause:gone", "x"]))
            .await;
        idle.send(&support::encode_command(&["SET", "pause:idle", "y"]))
            .await;
        queued
            .send(&support::encode_command(&["SET", "pause:q", "z"]))
            .await;
        assert!(
            silent(&mut queued, Duration::from_millis(500)).await,
            "{what}: QUEUED during the pause"
        );
        drop(closer);
        // Past the pause (and past two idle periods of respgate's 1 s timeout).
        assert_eq!(queued.read_reply().await, b"+QUEUED\r\n", "{what}");
        assert_eq!(
            idle.read_reply().await,
            b"+OK\r\n",
            "{what}: the held client was cut"
        );
        assert_eq!(queued.command(&["EXEC"]).await, b"*1\r\n+OK\r\n", "{what}");
        let mut check = RawConn::connect(addr).await;
        assert_eq!(
            check.command(&["GET", "pause:gone"]).await,
            b"$-1\r\n",
            "{what}: the closed client's held write ran"
        );
        // An end that overflows: +OK and no pause at all (fresh connections: respgate's
        // 1 s idle timeout closed the ones idle through the pause, as it should).
        let mut pauser = RawConn::connect(addr).await;
        assert_eq!(
            pauser
                .command(&["CLIENT", "PAUSE", "9223372036854000000", "ALL"])
                .await,
            b"+OK\r\n",
            "{what}"
        );
        assert_eq!(
            check.command(&["SET", "pause:after", "1"]).await,
            b"+OK\r\n",
            "{what}"
        );
        assert_eq!(pauser.command(&["CLIENT", "UNPAUSE"]).await, b"+OK\r\n");
    }
    unpause_nodes(&q);
    proxy.shutdown().await;
}
