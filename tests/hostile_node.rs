//! A hostile node: replies no Redis can send (counts whose sum overflows 64 bits,
//! negative lengths). They must cost a closed link and errors for the requests on it,
//! never a panic, a hang, or the rest of a reply handed to the next request. The node
//! is a fake (a tokio listener speaking just enough RESP), since no real Redis sends
//! these; the link is respgate's own (`backend::Node`).
//!
//! Its own test binary: no worker pool is started here, so a link runs on the test's
//! single-threaded runtime and two requests queued together are written together
//! (deterministically in flight on the same connection).

mod support;

use bytes::Bytes;
use respgate::backend::{LinkError, LinkOptions, Node};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous bound for anything that should happen "within a few seconds".
const EVENTUALLY: Duration = Duration::from_secs(20);

/// A fake node: answers the link's handshake `PING`, then each `ECHO <word>` with the
/// reply `hostile(word)` names (raw bytes), `+<word>` for any other word.
async fn fake_node(hostile: fn(&str) -> Option<Vec<u8>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let limits = respgate::protocol::scan::RequestLimits::default();
                let mut ranges = Vec::new();
                loop {
                    let mut out = Vec::new();
                    while let Ok(Some(respgate::protocol::scan::Request::Multibulk { len })) =
                        respgate::protocol::scan::scan_request(&buf, &limits, &mut ranges)
                    {
                        let args: Vec<String> = ranges
                            .iter()
                            .map(|r| {
                                String::from_utf8_lossy(&buf[r.start as usize..r.end as usize])
                                    .into_owned()
                            })
                            .collect();
                        match args[0].as_str() {
                            "PING" => out.extend_from_slice(b"+PONG\r\n"),
                            _ => match hostile(&args[1]) {
                                Some(bytes) => out.extend_from_slice(&bytes),
                                None => {
                                    out.extend_from_slice(format!("+{}\r\n", args[1]).as_bytes())
                                }
                            },
                        }
                        buf.drain(..len);
                    }
                    if !out.is_empty() && sock.write_all(&out).await.is_err() {
                        return;
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

fn link_options(max_reply_bytes: usize) -> LinkOptions {
    LinkOptions {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        username: None,
        password: None,
        readonly: false,
        dedicated: false,
        resp3: false,
        tls: None,
        client_id: None,
        identity: None,
        max_reply_bytes,
    }
}

fn echo(word: &str) -> Bytes {
    Bytes::from(encode_command(&["ECHO", word]))
}

fn overflowing(word: &str) -> Option<Vec<u8>> {
    match word {
        // Nested counts whose sum does not fit 64 bits.
        "arrays" => Some(b"*9223372036854775807\r\n".repeat(3)),
        "maps" => Some(b"%9223372036854775807\r\n%9223372036854775807\r\n".to_vec()),
        "attributes" => Some(b"|9223372036854775807\r\n|9223372036854775807\r\n".to_vec()),
        "negative" => Some(b"*2\r\n*-7\r\n+x\r\n".to_vec()),
        "negative-bulk" => Some(b"$-2\r\nxx\r\n".to_vec()),
        _ => None,
    }
}

#[tokio::test]
async fn hostile_lengths_close_the_link_and_are_never_misattributed() {
    let addr = fake_node(overflowing).await;
    // No bound but the arithmetic: the overflow itself must be caught.
    let node = Node::spawn(
        &addr.to_string(),
        1,
        link_options(usize::MAX),
        Arc::new(tokio::sync::Notify::new()),
    );
    for word in ["arrays", "maps", "attributes", "negative", "negative-bulk"] {
        // The hostile reply and a request written right behind it on the same link.
        let hostile = node.request(7, false, echo(word));
        let behind = node.request(7, false, echo("behind"));
        let (hostile, behind) = tokio::time::timeout(EVENTUALLY, async {
            (hostile.await.unwrap(), behind.await.unwrap())
        })
        .await
        .unwrap_or_else(|_| panic!("{word}: the link hung"));
        match hostile {
            Err(LinkError::Lost(why)) => assert!(why.contains("not RESP"), "{word}: {why}"),
            other => panic!("{word}: {other:?}"),
        }
        // Written behind it, so it may have run: failed, not re-sent, and never
        // handed the hostile reply's tail.
        match behind {
            Err(LinkError::Lost(why)) => assert!(why.contains("in flight"), "{word}: {why}"),
            other => panic!("{word}: the request behind got {other:?}"),
        }
        // The link reconnects for the next request (one queued while it was failing
        // is answered NotSent: never written, so safe to send again, as sessions do).
        let next = tokio::time::timeout(EVENTUALLY, async {
            loop {
                match node.request(7, false, echo("next")).await {
                    Ok(Err(LinkError::NotSent(_))) => tokio::task::yield_now().await,
                    other => return other,
                }
            }
        })
        .await
        .expect("answered");
        assert_eq!(
            next,
            Ok(Ok(Bytes::from_static(b"+next\r\n"))),
            "after {word}"
        );
    }
}

#[tokio::test]
async fn hostile_lengths_under_a_bound_tell_the_client_the_limit() {
    let addr = fake_node(overflowing).await;
    let node = Node::spawn(
        &addr.to_string(),
        1,
        link_options(1 << 20),
        Arc::new(tokio::sync::Notify::new()),
    );
    let hostile = node.request(7, false, echo("arrays"));
    let behind = node.request(7, false, echo("behind"));
    let hostile = tokio::time::timeout(EVENTUALLY, respgate::backend::answer(hostile))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&hostile);
    assert!(
        text.starts_with(&format!(
            "-ERR respgate: reply from {addr} over cluster.max_reply_bytes (1048576 bytes)"
        )),
        "{text}"
    );
    // The rest of that reply overflows while it is discarded: the link closes, and the
    // request behind it fails instead of getting the tail.
    let behind = tokio::time::timeout(EVENTUALLY, behind).await.unwrap();
    assert!(matches!(behind, Ok(Err(LinkError::Lost(_)))), "{behind:?}");
}
