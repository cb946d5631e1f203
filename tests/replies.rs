//! Huge backend replies, from real redis-server: framing a reply of millions of
//! elements, and the `cluster.max_reply_bytes` bound (the client is told, its next
//! request gets its own reply). Replies no Redis sends are in `tests/hostile_node.rs`.

mod support;

use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous bound for anything that should happen "within a few seconds".
const EVENTUALLY: Duration = Duration::from_secs(60);

/// The reply `LRANGE key 0 -1` gives for the list `elements`.
fn array_of(elements: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", elements.len()).into_bytes();
    for e in elements {
        out.extend_from_slice(format!("${}\r\n{e}\r\n", e.len()).as_bytes());
    }
    out
}

/// Fills `key` (through respgate) with `n` elements, `RPUSH`ed in batches.
async fn fill_list(conn: &mut RawConn, key: &str, n: usize) -> Vec<String> {
    let elements: Vec<String> = (0..n).map(|i| format!("e{}", i % 100_000)).collect();
    assert_eq!(conn.command(&["DEL", key]).await.len(), 4);
    for batch in elements.chunks(100_000) {
        let mut args: Vec<&str> = vec!["RPUSH", key];
        args.extend(batch.iter().map(String::as_str));
        let reply = conn.command(&args).await;
        assert_eq!(reply[0], b':', "{}", show(&reply));
    }
    elements
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_million_element_lrange_comes_back_whole() {
    let proxy = proxy_for_shared().await;
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    let key = "replies:big-list";
    let elements = fill_list(&mut conn, key, 2_000_000).await;
    let expected = array_of(&elements);
    drop(elements);
    tokio::time::timeout(EVENTUALLY, async {
        conn.send(&encode_pipeline(&[&["LRANGE", key, "0", "-1"], &["PING"]]))
            .await;
        // Read by length: RawConn's reader reframes its buffer from the start.
        let mut stream = conn.stream;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 256 * 1024];
        while buf.len() < expected.len() + 7 {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {} bytes", buf.len());
            buf.extend_from_slice(&chunk[..n]);
        }
        assert!(
            buf[..expected.len()] == expected[..],
            "the LRANGE reply differs"
        );
        assert_eq!(&buf[expected.len()..], b"+PONG\r\n");
        let _ = stream.write_all(&encode_command(&["DEL", key])).await;
    })
    .await
    .expect("the reply arrived");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_max_reply_bytes_is_refused_and_the_next_request_gets_its_own() {
    let mut config = test_config(&shared_cluster_seeds());
    config.cluster.max_reply_bytes = 1 << 20;
    let proxy = start_proxy(config).await;
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    // Every key in one slot: one node, one link, every reply in flight on it at once.
    let big = "x".repeat(3 << 20);
    assert_eq!(conn.command(&["SET", "{rb}big", &big]).await, b"+OK\r\n");
    assert_eq!(
        conn.command(&["SET", "{rb}small", "tiny"]).await,
        b"+OK\r\n"
    );
    fill_list(&mut conn, "{rb}list", 300_000).await;
    let node = shared_owner_of("{rb}big");
    let refused = format!(
        "-ERR respgate: reply from {node} over cluster.max_reply_bytes (1048576 bytes); \
         the command ran, its reply was discarded\r\n"
    );

    conn.send(&encode_pipeline(&[
        &["GET", "{rb}big"],
        &["GET", "{rb}small"],
        &["LRANGE", "{rb}list", "0", "-1"],
        &["LRANGE", "{rb}list", "0", "2"],
        &["MULTI"],
        &["GET", "{rb}big"],
        &["EXEC"],
        &["GET", "{rb}small"],
    ]))
    .await;
    // Compared as (shortened) text: a failure must not print megabytes.
    let replies: Vec<String> = conn
        .read_replies(8)
        .await
        .iter()
        .map(|r| show(&r[..r.len().min(200)]))
        .collect();
    let refused = show(refused.as_bytes());
    let expected = [
        refused.as_str(),
        "$4\\r\\ntiny\\r\\n",
        refused.as_str(),
        "*3\\r\\n$2\\r\\ne0\\r\\n$2\\r\\ne1\\r\\n$2\\r\\ne2\\r\\n",
        "+OK\\r\\n",
        "+QUEUED\\r\\n",
        refused.as_str(),
        "$4\\r\\ntiny\\r\\n",
    ];
    assert_eq!(replies, expected);

    // Another client on the same link is served as ever.
    let mut other = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(
        other.command(&["GET", "{rb}small"]).await,
        b"$4\r\ntiny\r\n"
    );
    // Below the bound, a reply of nearly 1 MiB is whole.
    let under = "y".repeat(1_000_000);
    assert_eq!(
        other.command(&["SET", "{rb}under", &under]).await,
        b"+OK\r\n"
    );
    let reply = other.command(&["GET", "{rb}under"]).await;
    assert_eq!(reply.len(), under.len() + 12);
    assert_eq!(
        conn.command(&["DEL", "{rb}big", "{rb}small", "{rb}list", "{rb}under"])
            .await,
        b":4\r\n"
    );
    proxy.shutdown().await;
}

#[test]
fn max_reply_bytes_below_one_mib_is_refused_by_the_loader() {
    let path = std::path::Path::new("respgate.toml");
    let auth = "[auth]\nmode = \"none\"\n";
    let err = respgate::loader::parse(&format!("{auth}[cluster]\nmax_reply_bytes = 1000\n"), path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cluster.max_reply_bytes"), "{err}");
    let ok = respgate::loader::parse(
        &format!("{auth}[cluster]\nmax_reply_bytes = 1048576\n"),
        path,
    )
    .unwrap();
    assert_eq!(ok.cluster.max_reply_bytes, 1 << 20);
    let default = respgate::loader::parse(auth, path).unwrap();
    assert_eq!(default.cluster.max_reply_bytes, 512 << 20);
}
