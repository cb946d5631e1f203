//! MONITOR through respgate (issue 15, observation 9), against the quiet 3+3 cluster:
//! an admin sees every master's commands in one stream, shaped as Redis's lines; a
//! non-admin is refused by the safe defaults; monitor mode follows Redis 7.0 (PING
//! answered, keyspace commands refused, RESET leaves it, QUIT closes); and the node
//! connections close with the client.

mod support;

use respgate::config::{AuthConfig, AuthMode, Config, GuardsConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

fn with_users(mut c: Config, names: &[&str]) -> Config {
    c.auth = AuthConfig {
        mode: Some(AuthMode::Users),
        users: names.iter().map(|n| shop::user(n, "~* &* +@all")).collect(),
        ..AuthConfig::default()
    };
    // The shipped safe defaults, with `ops` as the one admin.
    c.guards = GuardsConfig {
        admins: vec!["ops".into()],
        admin_rate: "100/min".into(),
        ..GuardsConfig::file_default()
    };
    c
}

async fn login(addr: SocketAddr, user: &str) -> RawConn {
    let mut c = RawConn::connect(addr).await;
    let pw = format!("{user}-pw");
    assert_eq!(
        show(&c.command(&["AUTH", user, &pw]).await),
        show(b"+OK\r\n")
    );
    c
}

/// `^\+\d+\.\d{6} \[0 [^\]]+\] ` followed by the quoted arguments: Redis's line.
pub fn is_monitor_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('+') else {
        return false;
    };
    let Some((stamp, rest)) = rest.split_once(' ') else {
        return false;
    };
    let Some((secs, micros)) = stamp.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("[0 ") else {
        return false;
    };
    let Some((addr, args)) = rest.split_once("] ") else {
        return false;
    };
    digits(secs)
        && micros.len() == 6
        && digits(micros)
        && !addr.is_empty()
        && !addr.contains(']')
        && args.starts_with('"')
        && args.ends_with("\"\r\n")
}

/// The MONITOR clients on each master, asked directly (`cmd=monitor` in CLIENT LIST).
fn monitors_per_master(quiet: &QuietCluster) -> Vec<usize> {
    quiet
        .masters()
        .into_iter()
        .map(|m| {
            let list = quiet.command(m, &["CLIENT", "LIST"]);
            let text = String::from_utf8_lossy(list.as_bytes().unwrap()).into_owned();
            text.lines().filter(|l| l.contains(" cmd=monitor ")).count()
        })
        .collect()
}

async fn wait_monitors(quiet: &QuietCluster, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts = monitors_per_master(quiet);
        if counts.iter().all(|&n| n == want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "MONITOR clients per master: {counts:?}, want {want} on each"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next reply on a monitoring connection that is not a monitor line.
async fn reply_past_lines(c: &mut RawConn) -> String {
    loop {
        let r = show(&c.read_reply().await);
        if !r.starts_with("+1") {
            return r;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_monitors_every_master_in_one_stream() {
    let quiet = quiet_cluster().await;
    quiet.flush();
    let proxy = start_proxy(with_users(test_config(&quiet.seeds()), &["app", "ops"])).await;
    let addr = proxy.local_addr();

    // A non-admin is refused by the safe defaults, with the guard's usual error.
    let mut app = login(addr, "app").await;
    let refused = show(&app.command(&["MONITOR"]).await);
    assert!(
        refused.contains("denied by rule 'dangerous-admin-only'"),
        "{refused}"
    );
    assert_eq!(monitors_per_master(&quiet), vec![0; 3]);

    let mut ops = login(addr, "ops").await;
    assert_eq!(show(&ops.command(&["MONITOR"]).await), show(b"+OK\r\n"));
    wait_monitors(&quiet, 1).await;

    // SETs on keys of every master, from another client: each one is in the stream.
    let keys = quiet.with(|c| keys_on_every_master(c, "monitor:k", 3));
    for (key, _) in &keys {
        assert_eq!(
            show(&app.command(&["set", key, "v"]).await),
            show(b"+OK\r\n")
        );
    }
    let mut missing: Vec<String> = keys
        .iter()
        .map(|(k, _)| format!("\"set\" \"{k}\" \"v\"\r\n"))
        .collect();
    while !missing.is_empty() {
        let line = String::from_utf8(ops.read_reply().await).unwrap();
        assert!(is_monitor_line(&line), "not a MONITOR line: {line:?}");
        missing.retain(|tail| !line.ends_with(tail.as_str()));
    }

    // Monitor mode, as Redis 7.0: a second MONITOR answered with nothing, keyspace
    // commands refused, PING answered.
    ops.send(&encode_command(&["MONITOR"])).await;
    ops.send(&encode_command(&["GET", &keys[0].0])).await;
    assert_eq!(
        reply_past_lines(&mut ops).await,
        show(b"-ERR Replica can't interact with the keyspace\r\n")
    );
    ops.send(&encode_command(&["PING"])).await;
    assert_eq!(reply_past_lines(&mut ops).await, show(b"+PONG\r\n"));

    // RESET leaves monitor mode: the node connections close, commands work again.
    ops.send(&encode_command(&["RESET"])).await;
    assert_eq!(reply_past_lines(&mut ops).await, show(b"+RESET\r\n"));
    wait_monitors(&quiet, 0).await;
    let mut ops = login(addr, "ops").await;
    assert_eq!(
        show(&ops.command(&["GET", &keys[0].0]).await),
        show(b"$1\r\nv\r\n")
    );

    // Closing the monitoring client closes its node connections.
    assert_eq!(show(&ops.command(&["MONITOR"]).await), show(b"+OK\r\n"));
    wait_monitors(&quiet, 1).await;
    drop(ops);
    wait_monitors(&quiet, 0).await;

    // QUIT answers +OK and closes, as on Redis.
    let mut ops = login(addr, "ops").await;
    assert_eq!(show(&ops.command(&["MONITOR"]).await), show(b"+OK\r\n"));
    wait_monitors(&quiet, 1).await;
    ops.send(&encode_command(&["QUIT"])).await;
    assert_eq!(reply_past_lines(&mut ops).await, show(b"+OK\r\n"));
    ops.expect_closed().await;
    wait_monitors(&quiet, 0).await;
}

/// A respgate over a quiet cluster with `pubsub_queue_bytes` = 64 KiB and users `app`
/// and `ops`, `ops` monitoring (one MONITOR per master seen).
async fn monitoring_with_a_64k_bound() -> (QuietCluster, respgate::server::Proxy, RawConn) {
    let quiet = quiet_cluster().await;
    let mut config = with_users(test_config(&quiet.seeds()), &["app", "ops"]);
    config.server.pubsub_queue_bytes = 64 * 1024;
    let proxy = start_proxy(config).await;
    let mut ops = login(proxy.local_addr(), "ops").await;
    assert_eq!(show(&ops.command(&["MONITOR"]).await), show(b"+OK\r\n"));
    wait_monitors(&quiet, 1).await;
    (quiet, proxy, ops)
}

/// MONITOR is bounded by bytes: a line longer than `pubsub_queue_bytes` (here 64 KiB: a
/// SET of 100 KiB) is never held whole; the monitoring client is closed, and every node
/// connection with it, as one that falls behind by more than that many bytes is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_line_over_the_byte_bound_ends_monitoring() {
    let (quiet, proxy, _ops) = monitoring_with_a_64k_bound().await;
    let addr = proxy.local_addr();
    let mut app = login(addr, "app").await;
    let value = "v".repeat(100 * 1024);
    assert_eq!(
        show(&app.command(&["SET", "mon:big", &value]).await),
        show(b"+OK\r\n")
    );
    wait_monitors(&quiet, 0).await;
    proxy.shutdown().await;
}

/// The byte bound counts what is queued, not what went through: a monitor that reads its
/// stream stays open however many bytes pass (here 20 times `pubsub_queue_bytes`, in
/// pipelined bursts so lines are taken from the queue several at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_that_reads_stays_open_past_the_byte_bound() {
    let (quiet, proxy, mut ops) = monitoring_with_a_64k_bound().await;
    let addr = proxy.local_addr();
    let reader = tokio::spawn(async move {
        let mut seen = 0usize;
        while seen < 20 * 64 * 1024 {
            seen += ops.read_reply().await.len();
        }
        ops
    });
    let mut app = login(addr, "app").await;
    let value = "v".repeat(4 * 1024);
    let burst: Vec<u8> = (0..8)
        .flat_map(|i| encode_command(&["SET", &format!("mon:flow:{i}"), &value]))
        .collect();
    for _ in 0..45 {
        app.send(&burst).await;
        for _ in 0..8 {
            assert_eq!(show(&app.read_reply().await), show(b"+OK\r\n"));
        }
    }
    let _ops = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .expect("the monitor read its stream")
        .unwrap();
    assert_eq!(monitors_per_master(&quiet), vec![1; 3]);
    proxy.shutdown().await;
}
