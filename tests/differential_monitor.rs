//! MONITOR's shape through respgate and on a standalone redis-server (issue 15,
//! observation 9): the `+OK`, a monitored SET's line
//! (`^\+\d+\.\d{6} \[0 [^\]]+\] "set" "k" "v"$`), a keyspace command refused in monitor
//! mode, and RESET's `+RESET`, the same on both.

mod support;

use std::net::SocketAddr;
use support::standalone::Standalone;
use support::{quiet_cluster, show, RawConn};

/// `+<secs>.<6 digits> [0 <addr>] "set" "k" "v"\r\n`, with the variable parts named.
fn shape(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let ok = (|| {
        let rest = text.strip_prefix('+')?;
        let (stamp, rest) = rest.split_once(' ')?;
        let (secs, micros) = stamp.split_once('.')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let rest = rest.strip_prefix("[0 ")?;
        let (addr, args) = rest.split_once("] ")?;
        (digits(secs) && micros.len() == 6 && digits(micros) && !addr.contains(']'))
            .then(|| format!("+<secs>.<micros> [0 <addr>] {args}"))
    })();
    ok.unwrap_or_else(|| format!("not a MONITOR line: {text:?}"))
}

/// The scenario against `addr`: MONITOR's reply, the monitored SET's line, GET refused,
/// RESET.
async fn scenario(addr: SocketAddr) -> Vec<String> {
    let mut monitor = RawConn::connect(addr).await;
    let mut writer = RawConn::connect(addr).await;
    let mut out = vec![show(&monitor.command(&["MONITOR"]).await)];
    out.push(show(&writer.command(&["set", "k", "v"]).await));
    // respgate's own background traffic (INFO, PING, ...) may show too: the SET's line.
    loop {
        let line = monitor.read_reply().await;
        if String::from_utf8_lossy(&line).contains("\"set\" \"k\"") {
            out.push(shape(&line));
            break;
        }
    }
    // Refused in monitor mode: keyspace commands, and those Redis flags may_replicate
    // without COMMAND saying so (PUBLISH, EVAL).
    monitor.send(&support::encode_command(&["GET", "k"])).await;
    monitor
        .send(&support::encode_command(&["PUBLISH", "c", "m"]))
        .await;
    monitor
        .send(&support::encode_command(&["EVAL", "return 1", "0"]))
        .await;
    monitor.send(&support::encode_command(&["RESET"])).await;
    for _ in 0..4 {
        loop {
            let r = show(&monitor.read_reply().await);
            if !r.starts_with("+1") {
                out.push(r);
                break;
            }
        }
    }
    out.push(show(&monitor.command(&["DEL", "k"]).await));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_lines_are_shaped_as_on_one_redis() {
    let quiet = quiet_cluster().await;
    quiet.flush();
    let standalone = Standalone::start();
    let direct = scenario(standalone.addr).await;
    // Guards off: the default user is no admin under the safe defaults.
    let mut config = support::test_config(&quiet.seeds());
    config.guards.enabled = false;
    let proxy = support::start_proxy(config).await;
    let via = scenario(proxy.local_addr()).await;
    assert_eq!(via, direct);
    assert_eq!(
        direct[2],
        "+<secs>.<micros> [0 <addr>] \"set\" \"k\" \"v\"\r\n"
    );
}
