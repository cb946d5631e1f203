//! A blocking command reaches its node before a write another client sends after it
//! (issue 15, observation 5).
//!
//! Client A sends `XREAD BLOCK 0 STREAMS s $` on a fresh connection; as soon as its
//! write is done (no reply to wait for) client B sends `XADD s * f v`. A must get
//! exactly B's entry: had B's XADD reached the node first, `$` would name B's entry and
//! A would wait for the next one. Against one Redis this never happens; through
//! respgate it did while A's own connection to the node was being opened (connect +
//! handshake) on the request's path. respgate now takes it ready (`backend/ready.rs`).
//!
//! What is guaranteed, and measured here: when A's and B's sessions run on the same
//! worker thread, tasks run in the order their sockets became readable, so A's command
//! is written first. On two different workers the two sessions race (B's request is
//! often in respgate's hands before A's worker has read A's); while blocking commands
//! are in use, B's XADD waits for a fence (`src/workers/fence.rs`): the other workers
//! take in what their clients sent before it. 0 overtakes in 200 tries, both ways,
//! asserted. Fencing starts with the first blocking command respgate routes, so the
//! test routes one first (the first blocking command after a quiet period is the one
//! case left to chance, README "Blocking commands").
//!
//! Runs against the shared 3+3 cluster; clients are handed to workers round robin
//! (`src/workers.rs`), which is how the test puts A next to B or not.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{show, RawConn};

const TRIES: usize = 200;
/// A's reply not in by then: either B's entry went first (A waits for another) or the
/// host is slow; a second entry tells which.
const SLOW_AFTER: Duration = Duration::from_millis(300);

/// The reply XREAD gives for `stream`'s entry `id` with field `f` = `value`.
fn entry(stream: &str, id: &str, value: &str) -> String {
    format!(
        "*1\r\n*2\r\n${}\r\n{stream}\r\n*1\r\n*2\r\n${}\r\n{id}\r\n*2\r\n$1\r\nf\r\n${}\r\n{value}\r\n",
        stream.len(),
        id.len(),
        value.len()
    )
}

/// XADD `stream` * f `value`, and the ID given.
async fn xadd(b: &mut RawConn, stream: &str, value: &str) -> String {
    let id = b.command(&["XADD", stream, "*", "f", value]).await;
    let id = String::from_utf8_lossy(&id);
    id.split("\r\n").nth(1).expect("XADD's ID").to_string()
}

/// One try: `true` when A got B's entry, `false` when B overtook A.
async fn one_try(addr: SocketAddr, b: &mut RawConn, stream: &str, pad_before: bool) -> bool {
    // A fresh client (its own connection to the node is new), in session.
    let mut a = RawConn::connect(addr).await;
    let _pad = match pad_before {
        true => None,
        false => Some(RawConn::connect(addr).await),
    };
    assert_eq!(a.command(&["PING"]).await, b"+PONG\r\n");
    a.send(&support::encode_command(&[
        "XREAD", "BLOCK", "0", "STREAMS", stream, "$",
    ]))
    .await;
    let first = xadd(b, stream, "v").await;
    let got = match tokio::time::timeout(SLOW_AFTER, a.read_reply()).await {
        Ok(reply) => reply,
        Err(_) => {
            // Slow, or overtaken: a second entry wakes A in the second case only.
            let second = xadd(b, stream, "w").await;
            let reply = a.read_reply().await;
            if show(&reply) == show(entry(stream, &second, "w").as_bytes()) {
                b.command(&["DEL", stream]).await;
                return false;
            }
            reply
        }
    };
    assert_eq!(
        show(&got),
        show(entry(stream, &first, "v").as_bytes()),
        "{stream}"
    );
    b.command(&["DEL", stream]).await;
    true
}

/// Runs [`TRIES`] tries. Each opens two clients, A and a pad, so with two workers
/// handed clients round robin A is always on B's worker (pad first) or never (A first).
async fn overtakes(addr: SocketAddr, tag: &str, same_worker: bool) -> Vec<usize> {
    assert_eq!(respgate::workers::count(), 2);
    let mut b = RawConn::connect(addr).await;
    let mut overtaken = Vec::new();
    for i in 0..TRIES {
        let _pad = match same_worker {
            true => Some(RawConn::connect(addr).await),
            false => None,
        };
        let stream = format!("{tag}:s{i}");
        let ok = one_try(addr, &mut b, &stream, same_worker).await;
        if !ok {
            overtaken.push(i);
        }
    }
    overtaken
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blocking_command_is_not_overtaken_by_a_later_write() {
    let proxy = support::proxy_for_shared().await;
    let addr = proxy.local_addr();
    let tag = format!("order{}", std::process::id());

    // Blocking commands are in use from now on (what turns fencing on).
    let mut warm = RawConn::connect(addr).await;
    let nil = warm
        .command(&[
            "XREAD",
            "BLOCK",
            "1",
            "STREAMS",
            &format!("{tag}:warm"),
            "$",
        ])
        .await;
    assert_eq!(nil, b"*-1\r\n");
    let began = Instant::now();
    let across = overtakes(addr, &format!("{tag}:x"), false).await;
    eprintln!(
        "A and B on different workers: {} of {TRIES} overtaken in {:?} {across:?}",
        across.len(),
        began.elapsed()
    );
    let began = Instant::now();
    let same = overtakes(addr, &format!("{tag}:s"), true).await;
    eprintln!(
        "A and B on one worker: {} of {TRIES} overtaken in {:?} {same:?}",
        same.len(),
        began.elapsed()
    );
    assert!(
        same.is_empty() && across.is_empty(),
        "XADD overtook XREAD BLOCK in tries {same:?} (one worker), {across:?} (two)"
    );
    proxy.shutdown().await;
}
