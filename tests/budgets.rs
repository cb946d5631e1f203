//! Byte budgets (issue 13, findings 1-3 and the process budget): what a client can make
//! respgate hold is bounded in bytes. Before login, Redis's own small limits (10
//! arguments, 16 KiB bulks); a client that does not read large replies, or a subscriber
//! that does not read large messages, is closed by bytes long before any count limit;
//! a request needing buffer the process budget no longer has is refused naming
//! `server.max_client_buffer_bytes`, and the client holding the most is closed. A
//! well-behaved client keeps being served meanwhile.

mod support;

use respgate::acl::hash_password;
use respgate::config::{AuthConfig, AuthMode, Config, UserConfig};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EVENTUALLY: Duration = Duration::from_secs(20);

fn config() -> Config {
    let mut c = test_config(&shared_cluster_seeds());
    // Closing here is by bytes, never by the stall timeout.
    c.server.output_stall_timeout_secs = 600;
    c
}

/// Reads (and discards) until the peer closes or resets the connection: the bytes read,
/// or `None` if it was still open after [`EVENTUALLY`].
async fn read_until_closed(s: &mut TcpStream) -> Option<usize> {
    let mut total = 0;
    let mut buf = vec![0u8; 256 * 1024];
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(total),
            Ok(Ok(n)) => total += n,
        }
    }
}

/// A fresh client does a SET and a GET through `addr` and gets the right answers.
async fn served(addr: SocketAddr, key: &str) {
    let mut c = RawConn::connect(addr).await;
    assert_eq!(show(&c.command(&["SET", key, "v"]).await), "+OK\\r\\n");
    assert_eq!(show(&c.command(&["GET", key]).await), "$1\\r\\nv\\r\\n");
}

/// Sets `key` to a value of `len` bytes.
async fn set_large(addr: SocketAddr, key: &str, len: usize) {
    let mut c = RawConn::connect(addr).await;
    let value = vec![b'x'; len];
    assert_eq!(
        show(&c.command(&[&b"SET"[..], key.as_bytes(), &value]).await),
        "+OK\\r\\n"
    );
}

/// Finding 1: before login, Redis 7.0's limits, byte for byte, and the connection
/// closes; 16384 bytes is still accepted; after login the full limits apply.
#[tokio::test]
async fn before_login_only_small_requests_are_read() {
    let mut c = config();
    c.auth = AuthConfig {
        mode: Some(AuthMode::Users),
        users: vec![UserConfig {
            max_dedicated_connections: None,
            name: "ops".into(),
            rules: format!("on ~* &* +@all #{}", hash_password(b"ops-pw")),
        }],
        ..AuthConfig::default()
    };
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();

    let mut many = RawConn::connect(addr).await;
    many.send(b"*11\r\n").await;
    assert_eq!(
        show(&many.read_reply().await),
        "-ERR Protocol error: unauthenticated multibulk length\\r\\n"
    );
    many.expect_closed().await;

    let mut big = RawConn::connect(addr).await;
    big.send(b"*3\r\n$4\r\nAUTH\r\n$3\r\nops\r\n$16385\r\n")
        .await;
    assert_eq!(
        show(&big.read_reply().await),
        "-ERR Protocol error: unauthenticated bulk length\\r\\n"
    );
    big.expect_closed().await;

    // 16384 bytes is within Redis's limit: a wrong password, answered as such.
    let mut edge = RawConn::connect(addr).await;
    let long = vec![b'p'; 16384];
    let reply = edge.command(&[&b"AUTH"[..], b"ops", &long]).await;
    assert!(show(&reply).starts_with("-WRONGPASS"), "{}", show(&reply));

    // Logged in: 11 arguments and a 100 KB argument are fine.
    assert_eq!(
        show(&edge.command(&["AUTH", "ops", "ops-pw"]).await),
        "+OK\\r\\n"
    );
    let mut mset = vec!["MSET".to_string()];
    for i in 0..5 {
        mset.push(format!("{{budgets:login}}k{i}"));
        mset.push("v".into());
    }
    assert_eq!(mset.len(), 11);
    assert_eq!(show(&edge.command(&mset).await), "+OK\\r\\n");
    let value = vec![b'v'; 100_000];
    assert_eq!(
        show(
            &edge
                .command(&[&b"SET"[..], b"budgets:login:big", &value])
                .await
        ),
        "+OK\\r\\n"
    );
    proxy.shutdown().await;
}

/// Finding 2: a client pipelining GETs of a large value and never reading is closed once
/// it holds twice `max_pending_reply_bytes` (long before `max_pending_replies` or the
/// stall timeout), and other clients keep being served.
#[tokio::test]
async fn a_client_that_never_reads_large_replies_is_closed_by_bytes() {
    let mut c = config();
    c.server.max_pending_reply_bytes = 1 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    set_large(addr, "budgets:slow:v", 256 * 1024).await;

    let mut slow = TcpStream::connect(addr).await.unwrap();
    let gets = encode_pipeline(&vec![&["GET", "budgets:slow:v"][..]; 400]);
    slow.write_all(&gets).await.unwrap();
    served(addr, "budgets:slow:good").await;
    // Not reading for a while: the replies pile up in respgate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    served(addr, "budgets:slow:good").await;
    let read = read_until_closed(&mut slow)
        .await
        .expect("the client that does not read is closed");
    assert!(
        read < 400 * 256 * 1024,
        "closed before every reply was written ({read} bytes read)"
    );
    served(addr, "budgets:slow:good").await;
    proxy.shutdown().await;
}

/// Finding 3: a subscriber that does not read is closed by the bytes of its queue
/// (`server.pubsub_queue_bytes`), with far fewer than `pubsub_queue_messages` queued.
#[tokio::test]
async fn a_subscriber_that_does_not_read_large_messages_is_closed_by_bytes() {
    let mut c = config();
    c.server.pubsub_queue_bytes = 1 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();

    let mut sub = RawConn::connect(addr).await;
    assert_eq!(
        sub.command(&["SUBSCRIBE", "budgets:news"]).await,
        confirmation("subscribe", Some("budgets:news"), 1)
    );
    let mut publisher = RawConn::connect(addr).await;
    let message = vec![b'm'; 512 * 1024];
    // 80 messages (40 MiB): far under the 10,000-message bound, far over the bytes.
    for _ in 0..80 {
        let reply = publisher
            .command(&[&b"PUBLISH"[..], b"budgets:news", &message])
            .await;
        assert!(reply.starts_with(b":"), "{}", show(&reply));
    }
    served(addr, "budgets:sub:good").await;
    let mut stream = sub.stream;
    let read = read_until_closed(&mut stream)
        .await
        .expect("the subscriber that does not read is closed");
    assert!(read < 80 * 512 * 1024, "closed early ({read} bytes read)");
    served(addr, "budgets:sub:good").await;
    proxy.shutdown().await;
}

/// The process budget: a request that needs more read buffer than
/// `server.max_client_buffer_bytes` has left is refused, naming the option, and the
/// connection closes; a smaller one passes.
#[tokio::test]
async fn a_large_request_past_the_process_budget_is_refused_naming_it() {
    let mut c = config();
    c.server.max_client_buffer_bytes = 1 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();

    set_large(addr, "budgets:process:fits", 512 * 1024).await;
    let big = RawConn::connect(addr).await;
    let (rd, mut wr) = big.stream.into_split();
    // A 4 MiB SET; respgate refuses it part way (so the write may fail: ignored).
    let writer = tokio::spawn(async move {
        let value = vec![b'x'; 4 << 20];
        let _ = wr
            .write_all(&encode_command(&[
                &b"SET"[..],
                b"budgets:process:big",
                &value,
            ]))
            .await;
        wr
    });
    let mut big = RawConn::from_stream(rd.reunite(writer.await.unwrap()).unwrap());
    assert_eq!(
        show(&big.read_reply().await),
        "-ERR respgate: client buffers are full (server.max_client_buffer_bytes = 1048576); retry later\\r\\n"
    );
    big.expect_closed().await;
    served(addr, "budgets:process:good").await;
    proxy.shutdown().await;
}

/// The process budget covers held replies too: the client holding the most is closed
/// when it is spent, even under its own `max_pending_reply_bytes`.
#[tokio::test]
async fn the_process_budget_closes_the_client_holding_the_most() {
    let mut c = config();
    c.server.max_pending_reply_bytes = 256 << 20;
    c.server.max_client_buffer_bytes = 2 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    set_large(addr, "budgets:evict:v", 256 * 1024).await;

    let mut slow = TcpStream::connect(addr).await.unwrap();
    let gets = encode_pipeline(&vec![&["GET", "budgets:evict:v"][..]; 400]);
    slow.write_all(&gets).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    served(addr, "budgets:evict:good").await;
    let read = read_until_closed(&mut slow)
        .await
        .expect("the client holding the most is closed");
    assert!(read < 400 * 256 * 1024, "closed early ({read} bytes read)");
    served(addr, "budgets:evict:good").await;
    proxy.shutdown().await;
}

/// A client that reads may get one reply larger than its whole reply-bytes line (only
/// replies piling up behind others count against it).
#[tokio::test]
async fn one_large_reply_to_a_client_that_reads_passes() {
    let mut c = config();
    c.server.max_pending_reply_bytes = 64 * 1024;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    set_large(addr, "budgets:large:v", 512 * 1024).await;
    let mut reader = RawConn::connect(addr).await;
    for _ in 0..3 {
        let reply = reader.command(&["GET", "budgets:large:v"]).await;
        assert_eq!(reply.len(), 512 * 1024 + b"$524288\r\n\r\n".len());
    }
    proxy.shutdown().await;
}
