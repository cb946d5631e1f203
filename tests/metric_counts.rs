//! What respgate's own counters count, exactly: one test in its own binary, so that no
//! other test shares the process-wide registry while it compares totals.
//!
//! - A refusal is counted once per reply (`EXEC` refused for NOAUTH answers one
//!   `EXECABORT ... NOAUTH` reply: `noauth` +1, not `transaction` too).
//! - A stranger (not logged in) creates no per-command series, whatever it sends.
//! - The flush alert's counters exist at 0 before any flush, and a logged-in user's
//!   FLUSHALL refused by its ACL counts.

mod support;

use respgate::config::AuthMode;
use support::*;

/// The value of the series `series` (exactly as rendered) in a scrape; 0 when absent.
fn value(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(admin: std::net::SocketAddr) -> String {
    let (status, body) = http_get(admin, "/metrics", None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn refusals_count_once_and_strangers_create_no_series() {
    let mut config = test_config(&shared_cluster_seeds());
    config.admin.listen = Some("127.0.0.1:0".into());
    config.auth.mode = Some(AuthMode::Users);
    config.auth.users = vec![shop::user("app", "~app:* +@all -@dangerous")];
    let proxy = start_proxy(config).await;
    let admin = proxy.admin_addr().unwrap();

    let before = scrape(admin).await;
    for flush in ["flushall", "flushdb"] {
        let series = format!("respgate_command_requests_total{{command=\"{flush}\"}} 0");
        assert!(
            before.lines().any(|l| l == series),
            "no {series} in:\n{before}"
        );
    }

    // A stranger: EXEC refused for NOAUTH, then every kind of command name.
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let exec = String::from_utf8_lossy(&c.command(&["EXEC"]).await).into_owned();
    assert!(
        exec.starts_with("-EXECABORT Transaction discarded because of: NOAUTH"),
        "{exec}"
    );
    let commands: [&[&str]; 6] = [
        &["LOLWUT"],
        &["DEBUG", "SLEEP", "0"],
        &["OBJECT", "ENCODING", "k"],
        &["SUNIONSTORE", "d", "a", "b"],
        &["GEOADD", "g", "1", "2", "m"],
        &["XAUTOCLAIM", "s", "g", "c", "0", "0"],
    ];
    for args in commands {
        let reply = c.command(args).await;
        assert!(
            reply.starts_with(b"-NOAUTH"),
            "{args:?}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    let after = scrape(admin).await;
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(
        delta("respgate_error_replies_total{kind=\"transaction\"}"),
        0.0
    );
    assert_eq!(delta("respgate_error_replies_total{kind=\"noauth\"}"), 7.0);
    for name in [
        "lolwut",
        "debug",
        "object|encoding",
        "sunionstore",
        "geoadd",
        "xautoclaim",
        "exec",
    ] {
        let series = format!("respgate_command_requests_total{{command=\"{name}\"}}");
        assert!(!after.contains(&series), "a stranger created {series}");
    }

    // A logged-in user's FLUSHALL, refused by its ACL (-@dangerous), counts.
    assert_eq!(
        c.command(&["AUTH", "app", "app-pw"]).await,
        b"+OK\r\n".to_vec()
    );
    let refused = c.command(&["FLUSHALL"]).await;
    assert!(refused.starts_with(b"-NOPERM"), "{refused:?}");
    let last = scrape(admin).await;
    assert_eq!(
        value(
            &last,
            "respgate_command_requests_total{command=\"flushall\"}"
        ),
        1.0
    );
    proxy.shutdown().await;
}
