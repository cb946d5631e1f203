//! Differential stream for blocking-command ordering (issue 15, observation 5): "A:
//! `XREAD BLOCK 0 STREAMS s $`, then B: `XADD s * f v`" gives A exactly B's entry,
//! through respgate (shared cluster) as on a standalone redis-server. The entry's ID
//! differs by nature (it is a time); it is put in place of itself on both sides and
//! the rest of the reply must be byte-identical, RESP2 and RESP3.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::standalone::Standalone;
use support::{show, RawConn};

/// A's reply to the sequence, with B's entry ID replaced by `<id>`.
async fn sequence(addr: SocketAddr, stream: &str, resp3: bool) -> String {
    let mut b = RawConn::connect(addr).await;
    let mut a = RawConn::connect(addr).await;
    if resp3 {
        a.command(&["HELLO", "3"]).await;
    }
    b.command(&["DEL", stream]).await;
    assert_eq!(a.command(&["PING"]).await, b"+PONG\r\n");
    a.send(&support::encode_command(&[
        "XREAD", "BLOCK", "0", "STREAMS", stream, "$",
    ]))
    .await;
    // Wait until A is blocked on the node (this stream is about the reply, not the race).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = b.command(&["XADD", stream, "*", "f", "v"]).await;
    let id = String::from_utf8_lossy(&id);
    let id = id.split("\r\n").nth(1).expect("XADD's ID").to_string();
    let reply = tokio::time::timeout(Duration::from_secs(5), a.read_reply())
        .await
        .expect("A gets B's entry");
    b.command(&["DEL", stream]).await;
    show(&reply).replace(&format!("${}\\r\\n{id}", id.len()), "$<len>\\r\\n<id>")
}

#[tokio::test(flavor = "multi_thread")]
async fn xread_block_then_xadd_returns_that_entry_as_redis_does() {
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    let stream = format!("difforder{}", std::process::id());
    for resp3 in [false, true] {
        let via = sequence(proxy.local_addr(), &stream, resp3).await;
        let direct = sequence(standalone.addr, &stream, resp3).await;
        assert_eq!(via, direct, "XREAD BLOCK's reply (resp3: {resp3})");
        assert!(via.contains("<id>"), "{via}");
    }
    proxy.shutdown().await;
}
