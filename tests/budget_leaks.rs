//! Counted bytes always come back: after every client of a respgate has gone, its
//! process-wide count of client buffers (`proxy_client_buffer_bytes` in INFO) is 0
//! again, whatever the clients did. A leak there would, once it passed
//! `server.max_client_buffer_bytes`, make respgate disconnect innocent clients forever.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// `proxy_client_buffer_bytes` from INFO, on a fresh connection.
async fn counted(addr: std::net::SocketAddr) -> i64 {
    let mut c = RawConn::connect(addr).await;
    let info = c.command(&["INFO", "proxy"]).await;
    let text = String::from_utf8_lossy(&info).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("proxy_client_buffer_bytes:"))
        .unwrap_or_else(|| panic!("no proxy_client_buffer_bytes in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Subscribers that leave (UNSUBSCRIBE, RESET, or closing) while large messages keep
/// coming: messages queued for them and never taken are given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_for_a_subscriber_that_leaves_are_given_back() {
    let proxy = start_proxy(test_config(&shared_cluster_seeds())).await;
    let addr = proxy.local_addr();
    let channel = "leaks:news";
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut p = RawConn::connect(addr).await;
            let payload = vec![b'm'; 100 * 1024];
            while !stop.load(Ordering::Relaxed) {
                let reply = p
                    .command(&[&b"PUBLISH"[..], channel.as_bytes(), &payload])
                    .await;
                assert!(reply.starts_with(b":"), "{}", show(&reply));
            }
        }
    });
    for round in 0..30 {
        let mut sub = RawConn::connect(addr).await;
        sub.send(&encode_command(&["SUBSCRIBE", channel])).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Leave without reading what was queued, three ways.
        match round % 3 {
            0 => sub.send(&encode_command(&["UNSUBSCRIBE", channel])).await,
            1 => sub.send(&encode_command(&["RESET"])).await,
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(sub);
    }
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    wait_for("client buffer bytes after every subscriber left", 0, || {
        counted(addr)
    })
    .await;
    proxy.shutdown().await;
}
