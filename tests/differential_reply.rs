//! CLIENT REPLY OFF / SKIP with pub/sub (issue 15, observation 6). Redis 7.0 writes
//! (un)subscription confirmations and messages as pushes (`CLIENT_PUSHING`), which
//! CLIENT REPLY does not silence, while every other reply stays muted; a SKIP before
//! SUBSCRIBE is used up by it. Checked against a standalone redis-server 7.0.15:
//!
//! - REPLY OFF, `SUBSCRIBE a b`: both confirmations; messages delivered; PING (and the
//!   refused CLIENT REPLY ON, RESP2 subscribed mode) muted; UNSUBSCRIBE, PSUBSCRIBE,
//!   SSUBSCRIBE and their UNSUBSCRIBEs confirmed; UNSUBSCRIBE outside subscribed mode
//!   confirmed too.
//! - REPLY SKIP, `SUBSCRIBE a b`: both confirmations, and the next command is answered.
//! - RESP3 (HELLO 3): the same, the confirmations as `>` pushes.
//!
//! The first test runs one stream against respgate in front of the 3+3 cluster with
//! fixed expectations; the second runs every stream against respgate and a standalone
//! Redis and asserts the same bytes after each step.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::standalone::Standalone;
use support::{confirmation, encode_command, proxy_for_shared, show, RawConn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Names no other test (nor an earlier run) uses.
fn name(tag: &str, what: &str) -> String {
    format!("rp{}:{tag}:{what}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_confirmations_and_messages_pass_client_reply_off() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let (key, c1, c2) = (name("off", "k"), name("off", "c1"), name("off", "c2"));
    let mut sub = RawConn::connect(addr).await;
    let mut publisher = RawConn::connect(addr).await;
    // Muted: the OFF itself, the SET; then SUBSCRIBE's two confirmations come first.
    sub.send(&encode_command(&["CLIENT", "REPLY", "OFF"])).await;
    sub.send(&encode_command(&["SET", &key, "v"])).await;
    sub.send(&encode_command(&["SUBSCRIBE", &c1, &c2])).await;
    assert_eq!(
        show(&sub.read_reply().await),
        show(&confirmation("subscribe", Some(&c1), 1))
    );
    assert_eq!(
        show(&sub.read_reply().await),
        show(&confirmation("subscribe", Some(&c2), 2))
    );
    // A message is delivered.
    publisher.command(&["PUBLISH", &c1, "hi"]).await;
    assert_eq!(
        show(&sub.read_reply().await),
        show(&encode_command(&["message", &c1, "hi"]))
    );
    // PING's reply stays muted: the UNSUBSCRIBE confirmation is the next frame.
    sub.send(&encode_command(&["PING"])).await;
    sub.send(&encode_command(&["UNSUBSCRIBE", &c1])).await;
    assert_eq!(
        show(&sub.read_reply().await),
        show(&confirmation("unsubscribe", Some(&c1), 1))
    );
    // SKIP before SUBSCRIBE: both confirmations, and SKIP is used up (PING answered).
    let mut skip = RawConn::connect(addr).await;
    skip.send(&encode_command(&["CLIENT", "REPLY", "SKIP"]))
        .await;
    skip.send(&encode_command(&["SUBSCRIBE", &c1, &c2])).await;
    assert_eq!(
        show(&skip.read_reply().await),
        show(&confirmation("subscribe", Some(&c1), 1))
    );
    assert_eq!(
        show(&skip.read_reply().await),
        show(&confirmation("subscribe", Some(&c2), 2))
    );
    assert_eq!(
        show(&skip.command(&["PING"]).await),
        show(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
    );
    // The muted SET did run.
    assert_eq!(publisher.command(&["GET", &key]).await, b"$1\r\nv\r\n");
}

/// One step of a stream: a command on the subscriber's connection, or a publication
/// from another connection (its reply, a receiver count, is not compared: respgate's
/// node counts its hub, not its clients).
enum Step<'a> {
    Send(Vec<&'a str>),
    Publish(&'a str, &'a str, &'a str),
}

/// A connection whose bytes are read as they come, whatever frames they make.
struct Bytes(TcpStream);

impl Bytes {
    /// What arrives until nothing more does for `quiet`, or at least `want` bytes
    /// arrived (then a short `quiet` wait for extra bytes).
    async fn read(&mut self, want: usize, quiet: Duration) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let wait = if got.len() < want {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            } else {
                quiet
            };
            match tokio::time::timeout(wait, self.0.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
                _ => return got,
            }
        }
    }
}

/// Runs `steps` against `addr`: the bytes the subscriber received after each step.
/// `expected` (from the reference run) tells how many bytes to wait for, so a slower
/// respgate is never cut short; with none, what arrives within a quiet window.
async fn run(addr: SocketAddr, steps: &[Step<'_>], expected: Option<&[Vec<u8>]>) -> Vec<Vec<u8>> {
    let mut sub = Bytes(TcpStream::connect(addr).await.unwrap());
    let mut publisher = RawConn::connect(addr).await;
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Send(args) => sub.0.write_all(&encode_command(args)).await.unwrap(),
            Step::Publish(cmd, channel, payload) => {
                publisher.command(&[cmd, channel, payload]).await;
            }
        }
        let want = expected.map_or(0, |e| e[i].len());
        let quiet = if expected.is_some() { 150 } else { 300 };
        out.push(sub.read(want, Duration::from_millis(quiet)).await);
    }
    out
}

fn describe(step: &Step<'_>) -> String {
    match step {
        Step::Send(args) => args.join(" "),
        Step::Publish(cmd, channel, payload) => format!("(other client) {cmd} {channel} {payload}"),
    }
}

/// The same bytes from respgate and from a standalone Redis after every step; `skip`
/// steps (HELLO's reply) are not compared.
async fn differential(via: SocketAddr, direct: SocketAddr, steps: &[Step<'_>], skip: &[usize]) {
    let reference = run(direct, steps, None).await;
    let got = run(via, steps, Some(&reference)).await;
    for (i, step) in steps.iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        assert_eq!(
            show(&got[i]),
            show(&reference[i]),
            "step {i}: `{}`",
            describe(step)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reply_with_pubsub_as_on_one_redis() {
    let proxy = proxy_for_shared().await;
    let standalone = Standalone::start();
    let (via, direct) = (proxy.local_addr(), standalone.addr);
    let key = name("d", "k");
    let (c1, c2, sc) = (name("d", "c1"), name("d", "c2"), name("d", "sc"));
    let (pattern, pc) = (name("d", "p*"), name("d", "pa"));
    use Step::{Publish, Send};

    // RESP2, REPLY OFF through subscribed mode and out of it.
    let off = [
        Send(vec!["SET", &key, "v"]),
        Send(vec!["CLIENT", "REPLY", "OFF"]),
        Send(vec!["SET", &key, "v2"]),
        Send(vec!["SUBSCRIBE", &c1, &c2]),
        Publish("PUBLISH", &c1, "hi"),
        Send(vec!["PING"]),
        Send(vec!["PING", "x"]),
        Send(vec!["CLIENT", "REPLY", "ON"]),
        Send(vec!["UNSUBSCRIBE", &c1]),
        Send(vec!["PSUBSCRIBE", &pattern]),
        Publish("PUBLISH", &pc, "m"),
        Send(vec!["SSUBSCRIBE", &sc]),
        Publish("SPUBLISH", &sc, "sm"),
        Send(vec!["UNSUBSCRIBE"]),
        Send(vec!["PUNSUBSCRIBE"]),
        Send(vec!["SUNSUBSCRIBE"]),
        Send(vec!["GET", &key]),
        Send(vec!["CLIENT", "REPLY", "ON"]),
        Send(vec!["GET", &key]),
    ];
    differential(via, direct, &off, &[]).await;

    // RESP2, REPLY SKIP before SUBSCRIBE and before a plain command.
    let skip = [
        Send(vec!["CLIENT", "REPLY", "SKIP"]),
        Send(vec!["SUBSCRIBE", &c1, &c2]),
        Publish("PUBLISH", &c1, "hi"),
        Send(vec!["PING"]),
        // Named: with two channels, UNSUBSCRIBE alone confirms them in the order of
        // Redis's channel dict (hash order), which differs from run to run.
        Send(vec!["UNSUBSCRIBE", &c1, &c2]),
        Send(vec!["CLIENT", "REPLY", "SKIP"]),
        Send(vec!["GET", &key]),
        Send(vec!["GET", &key]),
    ];
    differential(via, direct, &skip, &[]).await;

    // RESP2, (UN)SUBSCRIBE confirmations outside subscribed mode under OFF.
    let unsubscribed = [
        Send(vec!["CLIENT", "REPLY", "OFF"]),
        Send(vec!["UNSUBSCRIBE"]),
        Send(vec!["UNSUBSCRIBE", &c1]),
        Send(vec!["PUNSUBSCRIBE"]),
        Send(vec!["SUNSUBSCRIBE"]),
        Send(vec!["SUBSCRIBE"]),
        Send(vec!["CLIENT", "REPLY", "ON"]),
        Send(vec!["PING"]),
    ];
    differential(via, direct, &unsubscribed, &[]).await;

    // RESP3: commands run while subscribed, their replies muted, pushes not.
    let resp3_off = [
        Send(vec!["HELLO", "3"]),
        Send(vec!["CLIENT", "REPLY", "OFF"]),
        Send(vec!["SET", &key, "v3"]),
        Send(vec!["SUBSCRIBE", &c1]),
        Publish("PUBLISH", &c1, "hi"),
        Send(vec!["GET", &key]),
        Send(vec!["PSUBSCRIBE", &pattern]),
        Publish("PUBLISH", &pc, "m"),
        Send(vec!["SSUBSCRIBE", &sc]),
        Publish("SPUBLISH", &sc, "sm"),
        Send(vec!["UNSUBSCRIBE", &c1]),
        Send(vec!["PUNSUBSCRIBE"]),
        Send(vec!["SUNSUBSCRIBE"]),
        Send(vec!["CLIENT", "REPLY", "ON"]),
        Send(vec!["GET", &key]),
    ];
    differential(via, direct, &resp3_off, &[0]).await;

    let resp3_skip = [
        Send(vec!["HELLO", "3"]),
        Send(vec!["CLIENT", "REPLY", "SKIP"]),
        Send(vec!["SUBSCRIBE", &c1]),
        Publish("PUBLISH", &c1, "hi"),
        Send(vec!["CLIENT", "REPLY", "SKIP"]),
        Send(vec!["GET", &key]),
        Publish("PUBLISH", &c1, "m2"),
        Send(vec!["GET", &key]),
        Send(vec!["PING"]),
    ];
    differential(via, direct, &resp3_skip, &[0]).await;
}
