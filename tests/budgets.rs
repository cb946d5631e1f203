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
            cross_slot: None,
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

const EXECABORT: &str = "-EXECABORT Transaction discarded because of previous errors.\\r\\n";

/// Queues `SET key <len bytes>` in `c`'s transaction: the reply.
async fn queue_set(c: &mut RawConn, key: &str, len: usize) -> String {
    let value = vec![b'q'; len];
    show(&c.command(&[&b"SET"[..], key.as_bytes(), &value]).await)
}

/// Review hole 1: a transaction's queued commands are bounded in bytes
/// (`server.max_transaction_bytes`), the command crossing it is refused naming the
/// option, and EXEC then answers EXECABORT, as Redis does for a command refused while
/// queueing. (Before, `MULTI` and 2,000 `SET k <16 MiB>` were all `+QUEUED`: ~32 GB.)
#[tokio::test]
async fn a_transaction_past_max_transaction_bytes_is_refused_and_aborts() {
    let mut c = config();
    c.server.max_transaction_bytes = 1 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    let key = "budgets:tx:k";
    let mut tx = RawConn::connect(addr).await;
    assert_eq!(show(&tx.command(&["DEL", key]).await), ":0\\r\\n");
    assert_eq!(show(&tx.command(&["MULTI"]).await), "+OK\\r\\n");
    for _ in 0..20 {
        assert_eq!(queue_set(&mut tx, key, 50_000).await, "+QUEUED\\r\\n");
    }
    assert_eq!(
        queue_set(&mut tx, key, 50_000).await,
        "-ERR respgate: transaction longer than server.max_transaction_bytes (1048576 bytes)\\r\\n"
    );
    // As in Redis, later commands are still answered QUEUED; EXEC aborts.
    assert_eq!(queue_set(&mut tx, key, 10).await, "+QUEUED\\r\\n");
    assert_eq!(show(&tx.command(&["EXEC"]).await), EXECABORT);
    assert_eq!(show(&tx.command(&["GET", key]).await), "$-1\\r\\n");
    // A transaction within the bound runs.
    assert_eq!(show(&tx.command(&["MULTI"]).await), "+OK\\r\\n");
    assert_eq!(queue_set(&mut tx, key, 10).await, "+QUEUED\\r\\n");
    assert_eq!(show(&tx.command(&["EXEC"]).await), "*1\\r\\n+OK\\r\\n");
    proxy.shutdown().await;
}

/// Review hole 1, the process budget: queued commands are taken from
/// `server.max_client_buffer_bytes` until EXEC / DISCARD gives them back, so many
/// transactions together cannot pass it either.
#[tokio::test]
async fn queued_commands_are_taken_from_the_process_budget_and_given_back() {
    let mut c = config();
    c.server.max_client_buffer_bytes = 1 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    let key = "budgets:txp:k";
    let mut a = RawConn::connect(addr).await;
    let mut b = RawConn::connect(addr).await;
    assert_eq!(show(&a.command(&["MULTI"]).await), "+OK\\r\\n");
    for _ in 0..14 {
        assert_eq!(queue_set(&mut a, key, 50_000).await, "+QUEUED\\r\\n");
    }
    // A holds 700 KB: B's transaction is refused before 350 KB more, naming the budget.
    assert_eq!(show(&b.command(&["MULTI"]).await), "+OK\\r\\n");
    let mut refused = None;
    for _ in 0..7 {
        let reply = queue_set(&mut b, key, 50_000).await;
        if reply != "+QUEUED\\r\\n" {
            refused = Some(reply);
            break;
        }
    }
    assert_eq!(
        refused.as_deref(),
        Some("-ERR respgate: client buffers are full (server.max_client_buffer_bytes = 1048576); retry later\\r\\n")
    );
    assert_eq!(show(&b.command(&["EXEC"]).await), EXECABORT);
    // A's EXEC gives its bytes back: B's next transaction of the same size fits.
    let exec = a.command(&["EXEC"]).await;
    assert!(show(&exec).starts_with("*14\\r\\n+OK"), "{}", show(&exec));
    assert_eq!(show(&b.command(&["MULTI"]).await), "+OK\\r\\n");
    for _ in 0..14 {
        assert_eq!(queue_set(&mut b, key, 50_000).await, "+QUEUED\\r\\n");
    }
    // DISCARD gives them back too.
    assert_eq!(show(&b.command(&["DISCARD"]).await), "+OK\\r\\n");
    assert_eq!(show(&a.command(&["MULTI"]).await), "+OK\\r\\n");
    for _ in 0..14 {
        assert_eq!(queue_set(&mut a, key, 50_000).await, "+QUEUED\\r\\n");
    }
    assert_eq!(show(&a.command(&["DISCARD"]).await), "+OK\\r\\n");
    served(addr, "budgets:txp:good").await;
    proxy.shutdown().await;
}

/// Review hole 2: client names are bounded (`server.max_client_name_bytes`, 4096 by
/// default; Redis has no bound), for CLIENT SETNAME and HELLO ... SETNAME alike. (Before,
/// 200 connections with a 16 MiB name each held 3.2 GB in the registry.)
#[tokio::test]
async fn a_client_name_longer_than_the_bound_is_refused() {
    let proxy = start_proxy(config()).await;
    let addr = proxy.local_addr();
    let mut c = RawConn::connect(addr).await;
    let fits = "n".repeat(4096);
    let long = "n".repeat(4097);
    let refusal =
        "-ERR respgate: client name longer than server.max_client_name_bytes (4096 bytes)\\r\\n";
    assert_eq!(
        show(&c.command(&["CLIENT", "SETNAME", &fits]).await),
        "+OK\\r\\n"
    );
    assert_eq!(
        show(&c.command(&["CLIENT", "SETNAME", &long]).await),
        refusal
    );
    let big = vec![b'n'; 16 << 20];
    assert_eq!(
        show(&c.command(&[&b"CLIENT"[..], b"SETNAME", &big]).await),
        refusal
    );
    assert_eq!(
        show(&c.command(&["HELLO", "2", "SETNAME", &long]).await),
        refusal
    );
    // The name set before is kept.
    assert_eq!(
        c.command(&["CLIENT", "GETNAME"]).await,
        format!("$4096\r\n{fits}\r\n").into_bytes()
    );
    proxy.shutdown().await;
}

/// Review hole 3: one message shared by many subscribers is counted once in the process
/// budget (`server.max_client_buffer_bytes`), while each subscriber's own queue still
/// counts it: 40 subscribers of 1 MiB messages under an 8 MiB budget are all served.
/// (Before, each subscriber's copy was counted: 40 MiB per message, and the evictor
/// closed healthy subscribers.)
#[tokio::test]
async fn a_message_shared_by_many_subscribers_counts_once_in_the_process_budget() {
    let mut c = config();
    c.server.max_client_buffer_bytes = 8 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    let channel = "budgets:shared";
    let mut subs = Vec::new();
    for _ in 0..40 {
        let mut s = RawConn::connect(addr).await;
        assert_eq!(
            s.command(&["SUBSCRIBE", channel]).await,
            confirmation("subscribe", Some(channel), 1)
        );
        subs.push(s);
    }
    let mut publisher = RawConn::connect(addr).await;
    let message = vec![b'm'; 1 << 20];
    let publish = encode_command(&[&b"PUBLISH"[..], channel.as_bytes(), &message]);
    publisher.send(&publish.repeat(3)).await;
    for reply in publisher.read_replies(3).await {
        assert_eq!(show(&reply), ":40\\r\\n");
    }
    let mut expected =
        format!("*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n", channel.len()).into_bytes();
    expected.extend_from_slice(format!("${}\r\n", message.len()).as_bytes());
    expected.extend_from_slice(&message);
    expected.extend_from_slice(b"\r\n");
    for (i, s) in subs.iter_mut().enumerate() {
        for _ in 0..3 {
            let got = s
                .try_read_reply()
                .await
                .unwrap_or_else(|| panic!("subscriber {i} was disconnected"));
            assert!(got == expected, "subscriber {i}: {}", show(&got[..64]));
        }
        assert_eq!(
            show(&s.command(&["PING"]).await),
            "*2\\r\\n$4\\r\\npong\\r\\n$0\\r\\n\\r\\n"
        );
    }
    served(addr, "budgets:shared:good").await;
    proxy.shutdown().await;
}

/// A client socket with a small receive buffer, so replies it does not read stay in
/// respgate rather than in the kernel.
async fn reluctant_reader(addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Review, hole 1: replies moved into a session's output buffer count for the process
/// budget. Clients that each ask for a large value and never read hold it there (each
/// far under its own `max_pending_reply_bytes`); together they pass
/// `server.max_client_buffer_bytes`, so the evictor closes some of them.
#[tokio::test]
async fn output_buffers_count_for_the_process_budget() {
    let mut c = config();
    c.server.max_pending_reply_bytes = 256 << 20;
    c.server.max_client_buffer_bytes = 24 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    set_large(addr, "budgets:out:v", 8 << 20).await;

    let mut idle = Vec::new();
    for _ in 0..12 {
        let mut s = reluctant_reader(addr).await;
        s.write_all(&encode_command(&["GET", "budgets:out:v"]))
            .await
            .unwrap();
        // One at a time: the replies handed over never pile up in flight together.
        tokio::time::sleep(Duration::from_millis(100)).await;
        idle.push(s);
    }
    let deadline = tokio::time::Instant::now() + EVENTUALLY;
    loop {
        let closed = idle
            .iter()
            .filter(|s| !proxy_side_established(addr, s.local_addr().unwrap()))
            .count();
        if closed > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no client closed: output buffers are not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served(addr, "budgets:out:good").await;
    proxy.shutdown().await;
}

/// Review, hole 2: a reply merged from several nodes is bounded by
/// `cluster.max_reply_bytes` as one node's reply is (each part here is under it), and
/// the client is served on.
#[tokio::test]
async fn a_merged_reply_over_max_reply_bytes_is_refused_naming_it() {
    let mut c = config();
    c.cluster.max_reply_bytes = 1 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    let keys = ["budgets:merge:a", "budgets:merge:b", "budgets:merge:c"];
    for k in keys {
        set_large(addr, k, 256 * 1024).await;
    }
    let mut client = RawConn::connect(addr).await;
    let mut mget = vec!["MGET"];
    for _ in 0..2 {
        mget.extend(keys);
    }
    let reply = show(&client.command(&mget).await);
    assert!(
        reply.starts_with("-ERR respgate: reply merged from ")
            && reply.ends_with(
                " parts over cluster.max_reply_bytes (1048576 bytes); the command ran, its reply was discarded\\r\\n"
            ),
        "{reply}"
    );
    // Under the bound, the same keys merge as before.
    let reply = client.command(&["MGET", keys[0], keys[1]]).await;
    assert_eq!(reply.len(), 2 * (256 * 1024 + b"$262144\r\n\r\n".len()) + 4);
    assert_eq!(show(&client.command(&["PING"]).await), "+PONG\\r\\n");
    proxy.shutdown().await;
}

/// Review, hole 2: parts of ONE request arriving together are not replies piling up: an
/// MGET across slots much larger than twice `max_pending_reply_bytes` reaches a client
/// that reads it.
#[tokio::test]
async fn an_mget_across_slots_larger_than_the_reply_line_passes() {
    let mut c = config();
    c.server.max_pending_reply_bytes = 64 * 1024;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    let keys: Vec<String> = (0..16).map(|i| format!("budgets:parts:{i}")).collect();
    for k in &keys {
        set_large(addr, k, 100_000).await;
    }
    let mut client = RawConn::connect(addr).await;
    let mut mget = vec!["MGET".to_string()];
    mget.extend(keys.iter().cloned());
    for _ in 0..3 {
        let reply = client.command(&mget).await;
        assert_eq!(
            reply.len(),
            b"*16\r\n".len() + 16 * (100_000 + b"$100000\r\n\r\n".len()),
            "{}",
            show(&reply[..reply.len().min(200)])
        );
    }
    proxy.shutdown().await;
}

/// Review, hole 3: large requests waiting for their replies count against the client's
/// `max_pending_reply_bytes`: behind a reply the client does not read, respgate stops
/// reading its large SETs instead of holding them all; once the client reads, every
/// reply arrives in order.
#[tokio::test]
async fn large_requests_waiting_for_their_replies_stop_reading() {
    let mut c = config();
    c.server.max_pending_reply_bytes = 16 << 20;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    // Its reply stays in respgate's output buffer (more than the sockets take), under
    // the client's line.
    set_large(addr, "budgets:req:v", 12 << 20).await;

    let (rd, mut wr) = reluctant_reader(addr).await.into_split();
    wr.write_all(&encode_command(&["GET", "budgets:req:v"]))
        .await
        .unwrap();
    const SETS: usize = 120;
    let writer = tokio::spawn(async move {
        let value = vec![b'x'; 512 * 1024];
        let set = encode_command(&[&b"SET"[..], b"budgets:req:k", &value]);
        for _ in 0..SETS {
            wr.write_all(&set).await.unwrap();
        }
        wr
    });
    // 60 MiB of SETs: far more than the line (16 MiB, which the SETs alone reach before
    // the GET's reply is even in) and the sockets' buffers (~10 MiB on loopback).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !writer.is_finished(),
        "respgate kept reading large requests behind an unread reply"
    );
    let mut rd = rd;
    let get_len = (12 << 20) + b"$12582912\r\n\r\n".len();
    let expected = get_len + SETS * b"+OK\r\n".len();
    let mut got = Vec::with_capacity(expected);
    let mut buf = vec![0u8; 1 << 20];
    while got.len() < expected {
        let n = tokio::time::timeout(EVENTUALLY, rd.read(&mut buf))
            .await
            .expect("replies keep coming once the client reads")
            .unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"$12582912\r\nxxx"));
    assert_eq!(got[get_len..], b"+OK\r\n".repeat(SETS)[..]);
    drop(writer.await.unwrap());
    proxy.shutdown().await;
}
