//! Ops guardrails through respgate, against a real cluster: deny, limits per user, per
//! client address and global (local and shared by two respgates), the shipped safe
//! defaults, KEYS served by SCAN, the TTL policy and reload.

mod support;

use respgate::acl::hash_password;
use respgate::config::{
    AuthConfig, AuthMode, Config, FailMode, GuardAction, GuardRewrite, GuardRuleConfig, GuardScope,
    GuardsConfig, TtlMode, TtlRuleConfig, UserConfig,
};
use std::net::SocketAddr;
use support::*;

fn rule(name: &str, commands: &[&str], action: GuardAction) -> GuardRuleConfig {
    GuardRuleConfig::new(name, commands, action)
}

fn limit(name: &str, commands: &[&str], rate: &str, scope: GuardScope) -> GuardRuleConfig {
    GuardRuleConfig {
        rate: Some(rate.into()),
        scope,
        ..rule(name, commands, GuardAction::Limit)
    }
}

fn guards(rules: Vec<GuardRuleConfig>) -> GuardsConfig {
    GuardsConfig {
        enabled: true,
        safe_defaults: false,
        rules,
        ..GuardsConfig::file_default()
    }
}

fn user(name: &str) -> UserConfig {
    UserConfig {
        max_dedicated_connections: None,
        cross_slot: None,
        name: name.into(),
        rules: format!(
            "on ~* &* +@all #{}",
            hash_password(format!("{name}-pw").as_bytes())
        ),
    }
}

fn with_users(mut c: Config, names: &[&str]) -> Config {
    c.auth = AuthConfig {
        mode: Some(AuthMode::Users),
        users: names.iter().map(|n| user(n)).collect(),
        ..AuthConfig::default()
    };
    c
}

async fn login(addr: SocketAddr, user: &str) -> RawConn {
    let mut c = RawConn::connect(addr).await;
    let pw = format!("{user}-pw");
    assert_eq!(cmd(&mut c, &["AUTH", user, &pw]).await, "+OK\r\n");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn cmd(c: &mut RawConn, args: &[&str]) -> String {
    String::from_utf8_lossy(&c.command(args).await).into_owned()
}

/// A connection to `addr` from the local address `from` (another loopback address).
async fn connect_from(addr: SocketAddr, from: &str) -> RawConn {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    RawConn::from_stream(socket.connect(addr).await.unwrap())
}

fn refused_by_limit(reply: &str, what: &str, rule: &str) {
    assert!(
        reply.starts_with(&format!("-ERR respgate: {what} is limited to "))
            && reply.contains(&format!("(rule {rule}); retry in ")),
        "{reply}"
    );
}

#[tokio::test]
async fn deny_names_the_rule_and_aborts_a_transaction() {
    let mut c = test_config(&shared_cluster_seeds());
    c.guards = guards(vec![GuardRuleConfig {
        except_users: vec!["ops".into()],
        ..rule(
            "dangerous-admin-only",
            &["flushall", "config|set", "debug", "cluster|*"],
            GuardAction::Deny,
        )
    }]);
    let proxy = start_proxy(c).await;
    let mut con = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(
        cmd(&mut con, &["SET", "guards:deny:k", "v"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        cmd(&mut con, &["FLUSHALL"]).await,
        "-ERR respgate: FLUSHALL is denied by rule 'dangerous-admin-only' (ask an admin)\r\n"
    );
    assert_eq!(
        cmd(&mut con, &["CONFIG", "SET", "maxmemory", "0"]).await,
        "-ERR respgate: CONFIG SET is denied by rule 'dangerous-admin-only' (ask an admin)\r\n"
    );
    // CONFIG GET is not named: it passes.
    assert!(cmd(&mut con, &["CONFIG", "GET", "maxmemory"])
        .await
        .starts_with("*2"));
    assert!(cmd(&mut con, &["DEBUG", "SLEEP", "0"])
        .await
        .contains("'dangerous-admin-only'"));
    assert!(cmd(&mut con, &["CLUSTER", "INFO"])
        .await
        .contains("'dangerous-admin-only'"));
    assert_eq!(
        cmd(&mut con, &["GET", "guards:deny:k"]).await,
        "$1\r\nv\r\n"
    );
    // Inside MULTI the refusal aborts the transaction.
    assert_eq!(cmd(&mut con, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(
        cmd(&mut con, &["SET", "guards:deny:k", "w"]).await,
        "+QUEUED\r\n"
    );
    assert!(cmd(&mut con, &["FLUSHALL"])
        .await
        .contains("denied by rule"));
    assert!(cmd(&mut con, &["EXEC"]).await.starts_with("-EXECABORT"));
    assert_eq!(
        cmd(&mut con, &["GET", "guards:deny:k"]).await,
        "$1\r\nv\r\n"
    );
}

#[tokio::test]
async fn keys_without_prefix_is_limited_per_user_by_the_safe_defaults() {
    let mut c = with_users(test_config(&shared_cluster_seeds()), &["alice", "bob"]);
    c.guards = GuardsConfig::file_default();
    let proxy = start_proxy(c).await;
    let mut alice = login(proxy.local_addr(), "alice").await;
    let mut bob = login(proxy.local_addr(), "bob").await;
    assert!(cmd(&mut alice, &["KEYS", "*guards-nothing*"])
        .await
        .starts_with('*'));
    let second = cmd(&mut alice, &["KEYS", "*"]).await;
    refused_by_limit(&second, "KEYS without a prefix", "keys-scan");
    assert!(second.contains("1/min per user"), "{second}");
    let secs: u64 = second
        .rsplit("retry in ")
        .next()
        .unwrap()
        .trim_end_matches("s\r\n")
        .parse()
        .unwrap();
    assert!((50..=60).contains(&secs), "{second}");
    // A pattern with a literal prefix is not limited.
    for _ in 0..5 {
        assert!(cmd(&mut alice, &["KEYS", "session:42:*"])
            .await
            .starts_with('*'));
    }
    // Per user: bob has his own bucket.
    assert!(cmd(&mut bob, &["KEYS", "?guards-nothing"])
        .await
        .starts_with('*'));
    refused_by_limit(
        &cmd(&mut bob, &["KEYS", "[a]*"]).await,
        "KEYS without a prefix",
        "keys-scan",
    );
    // Another connection of alice shares her bucket.
    let mut alice2 = login(proxy.local_addr(), "alice").await;
    refused_by_limit(
        &cmd(&mut alice2, &["KEYS", "*"]).await,
        "KEYS without a prefix",
        "keys-scan",
    );
    // Non-admins are denied the dangerous commands.
    assert!(cmd(&mut alice, &["FLUSHDB"])
        .await
        .contains("denied by rule 'dangerous-admin-only'"));
}

#[tokio::test]
async fn default_config_refuses_flushall_to_users_and_lets_an_admin_within_its_rate() {
    let quiet = quiet_cluster().await;
    quiet.flush();
    let mut c = with_users(test_config(&quiet.seeds()), &["app", "ops"]);
    c.guards = GuardsConfig {
        admins: vec!["ops".into()],
        admin_rate: "1/min".into(),
        ..GuardsConfig::file_default()
    };
    let proxy = start_proxy(c).await;
    let mut app = login(proxy.local_addr(), "app").await;
    for i in 0..20 {
        assert_eq!(
            cmd(&mut app, &["SET", &format!("guards:keep:{i}"), "v"]).await,
            "+OK\r\n"
        );
    }
    for c in [
        &["FLUSHALL"][..],
        &["FLUSHDB"],
        &["FLUSHALL", "ASYNC"],
        &["SHUTDOWN"],
        &["BGSAVE"],
        &["SCRIPT", "FLUSH"],
    ] {
        let r = cmd(&mut app, c).await;
        assert!(
            r.contains("is denied by rule 'dangerous-admin-only'"),
            "{c:?}: {r}"
        );
    }
    let total: i64 = quiet.dbsize_per_master().iter().map(|(_, n)| n).sum();
    assert_eq!(total, 20, "no key is lost");
    let mut ops = login(proxy.local_addr(), "ops").await;
    assert_eq!(cmd(&mut ops, &["FLUSHALL"]).await, "+OK\r\n");
    let total: i64 = quiet.dbsize_per_master().iter().map(|(_, n)| n).sum();
    assert_eq!(total, 0);
    refused_by_limit(
        &cmd(&mut ops, &["FLUSHALL"]).await,
        "FLUSHALL",
        "dangerous-admin-rate",
    );
}

#[tokio::test]
async fn limit_per_client_address() {
    let mut c = test_config(&shared_cluster_seeds());
    c.guards = guards(vec![GuardRuleConfig {
        burst: Some(2),
        ..limit("echo-per-addr", &["echo"], "2/min", GuardScope::ClientAddr)
    }]);
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    let mut a1 = connect_from(addr, "127.0.0.1").await;
    let mut a2 = connect_from(addr, "127.0.0.1").await;
    let mut b = connect_from(addr, "127.0.0.2").await;
    assert_eq!(cmd(&mut a1, &["ECHO", "x"]).await, "$1\r\nx\r\n");
    assert_eq!(cmd(&mut a2, &["ECHO", "x"]).await, "$1\r\nx\r\n");
    let r = cmd(&mut a1, &["ECHO", "x"]).await;
    refused_by_limit(&r, "ECHO", "echo-per-addr");
    assert!(r.contains("2/min per client address"), "{r}");
    assert_eq!(cmd(&mut b, &["ECHO", "y"]).await, "$1\r\ny\r\n");
    assert_eq!(cmd(&mut b, &["ECHO", "y"]).await, "$1\r\ny\r\n");
    refused_by_limit(&cmd(&mut b, &["ECHO", "y"]).await, "ECHO", "echo-per-addr");
    // Unmatched commands are untouched.
    assert_eq!(cmd(&mut a1, &["PING"]).await, "+PONG\r\n");
}

#[tokio::test]
async fn limit_global_to_this_respgate_and_users_filter() {
    let mut c = with_users(
        test_config(&shared_cluster_seeds()),
        &["alice", "bob", "ops"],
    );
    c.guards = guards(vec![
        GuardRuleConfig {
            users: Some(vec!["ops".into()]),
            ..rule("ops-free", &["echo"], GuardAction::Allow)
        },
        GuardRuleConfig {
            burst: Some(3),
            ..limit("echo-global", &["echo"], "3/min", GuardScope::Global)
        },
        GuardRuleConfig {
            scan_count_above: Some(100),
            ..rule("big-scan", &["scan"], GuardAction::Deny)
        },
    ]);
    let proxy = start_proxy(c).await;
    let mut alice = login(proxy.local_addr(), "alice").await;
    let mut bob = login(proxy.local_addr(), "bob").await;
    let mut ops = login(proxy.local_addr(), "ops").await;
    let mut passed = 0;
    for i in 0..6 {
        let con = if i % 2 == 0 { &mut alice } else { &mut bob };
        let r = cmd(con, &["ECHO", "x"]).await;
        if r == "$1\r\nx\r\n" {
            passed += 1;
        } else {
            refused_by_limit(&r, "ECHO", "echo-global");
            assert!(r.contains("3/min for all clients"), "{r}");
        }
    }
    assert_eq!(passed, 3);
    for _ in 0..5 {
        assert_eq!(cmd(&mut ops, &["ECHO", "x"]).await, "$1\r\nx\r\n");
    }
    assert!(cmd(&mut alice, &["SCAN", "0", "COUNT", "50"])
        .await
        .starts_with("*2"));
    assert_eq!(
        cmd(&mut alice, &["SCAN", "0", "COUNT", "5000"]).await,
        "-ERR respgate: SCAN with COUNT above 100 is denied by rule 'big-scan' (ask an admin)\r\n"
    );
}

#[tokio::test]
async fn shared_global_budget_is_one_budget_for_two_respgates() {
    let seeds = shared_cluster_seeds();
    let rule_name = format!("shared-echo-{}", std::process::id());
    let config = || {
        let mut c = test_config(&seeds);
        c.guards = guards(vec![GuardRuleConfig {
            shared: true,
            ..limit(&rule_name, &["echo", "get"], "5/h", GuardScope::Global)
        }]);
        c
    };
    let p1 = start_proxy(config()).await;
    let p2 = start_proxy(config()).await;
    let mut c1 = RawConn::connect(p1.local_addr()).await;
    let mut c2 = RawConn::connect(p2.local_addr()).await;
    let mut passed = 0;
    for i in 0..12 {
        let con = if i % 2 == 0 { &mut c1 } else { &mut c2 };
        let r = cmd(con, &["ECHO", "x"]).await;
        if r == "$1\r\nx\r\n" {
            passed += 1;
        } else {
            refused_by_limit(&r, "ECHO", &rule_name);
            assert!(r.contains("5/h for all respgate instances together"), "{r}");
        }
    }
    assert_eq!(passed, 5, "exactly the budget passes across both respgates");
    // Pipelined requests keep their order around a gated one.
    c1.send(&encode_pipeline(&[
        &["PING"],
        &["GET", "guards:shared:x"],
        &["PING"],
    ]))
    .await;
    let replies = c1.read_replies(3).await;
    assert_eq!(text(&replies[0]), "+PONG\r\n");
    assert!(
        text(&replies[1]).contains("(rule "),
        "{}",
        text(&replies[1])
    );
    assert_eq!(text(&replies[2]), "+PONG\r\n");
}

#[tokio::test]
async fn shared_budget_fails_open_or_closed_when_the_cluster_cannot_count() {
    // The counter's key holds a hash, so the counting script fails on the node:
    // `open` lets the request pass, `closed` refuses it.
    let seeds = shared_cluster_seeds();
    let name = format!("wrongtype-{}", std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for w in [now / 3_600_000, now / 3_600_000 + 1] {
        let key = format!("respgate:guard:{{{name}}}:{w}");
        on_owner(&key, &["DEL", &key]);
        on_owner(&key, &["HSET", &key, "f", "v"]);
    }
    for (mode, expect_pass) in [(FailMode::Open, true), (FailMode::Closed, false)] {
        let mut c = test_config(&seeds);
        c.guards = guards(vec![GuardRuleConfig {
            shared: true,
            on_error: mode,
            ..limit(&name, &["echo"], "5/h", GuardScope::Global)
        }]);
        let p = start_proxy(c).await;
        let mut con = RawConn::connect(p.local_addr()).await;
        let r = cmd(&mut con, &["ECHO", "x"]).await;
        if expect_pass {
            assert_eq!(r, "$1\r\nx\r\n");
        } else {
            assert!(r.contains("cannot be counted right now"), "{r}");
        }
    }
}

#[tokio::test]
async fn safe_keys_is_served_by_scan_with_the_same_result_and_a_cap() {
    let quiet = quiet_cluster().await;
    quiet.flush();
    let mut c = test_config(&quiet.seeds());
    c.guards = GuardsConfig {
        max_keys_reply: 60_000,
        ..guards(vec![GuardRuleConfig {
            rewrite: Some(GuardRewrite::Scan),
            ..rule("keys-by-scan", &["keys"], GuardAction::Allow)
        }])
    };
    let proxy = start_proxy(c.clone()).await;
    let mut con = RawConn::connect(proxy.local_addr()).await;
    let n = 50_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let mut bytes = Vec::new();
        for i in chunk {
            bytes.extend(encode_command(&["SET", &format!("sk:{i}"), "v"]));
        }
        con.send(&bytes).await;
        for r in con.read_replies(chunk.len()).await {
            assert_eq!(text(&r), "+OK\r\n");
        }
    }
    let masters = quiet.masters();
    for &m in &masters {
        quiet.command(m, &["CONFIG", "RESETSTAT"]);
        quiet.command(m, &["SLOWLOG", "RESET"]);
    }
    let reply = con.command(&["KEYS", "sk:*"]).await;
    let mut got = parse_bulk_array(&reply);
    got.sort();
    let mut direct = Vec::new();
    for &m in &masters {
        let info = quiet.command(m, &["INFO", "commandstats"]);
        let text = String::from_utf8_lossy(info.as_bytes().unwrap()).into_owned();
        assert!(!text.contains("cmdstat_keys:"), "{m} ran KEYS: {text}");
        assert!(text.contains("cmdstat_scan:"), "{m} ran no SCAN: {text}");
        let slowlog = format!("{:?}", quiet.command(m, &["SLOWLOG", "GET", "128"]));
        assert!(!slowlog.to_lowercase().contains("\"keys\""), "{slowlog}");
        match quiet.command(m, &["KEYS", "sk:*"]) {
            devcluster::Reply::Array(keys) => direct.extend(
                keys.iter()
                    .map(|k| String::from_utf8(k.as_bytes().unwrap().to_vec()).unwrap()),
            ),
            other => panic!("{other:?}"),
        }
    }
    direct.sort();
    assert_eq!(got.len(), n);
    assert_eq!(got, direct);
    // Past max_keys_reply: an error, not an answer.
    drop(con);
    c.guards.max_keys_reply = 10_000;
    proxy.reload(&c).unwrap();
    let mut con = RawConn::connect(proxy.local_addr()).await;
    let rss_before = vm_rss_kib();
    for _ in 0..10 {
        assert_eq!(
            cmd(&mut con, &["KEYS", "sk:*"]).await,
            "-ERR respgate: KEYS matches more than 10000 keys (guards.max_keys_reply); use SCAN with MATCH and a narrower pattern\r\n"
        );
    }
    // The task stops at the cap: repeated overflows leave memory where it was (this
    // process holds respgate, the test client and nothing else of size).
    let grown = vm_rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "RSS grew by {grown} KiB over 10 capped KEYS"
    );
    quiet.flush();
}

/// This process's resident set size.
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn parse_bulk_array(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply);
    let mut lines = text.split("\r\n");
    let n: usize = lines.next().unwrap()[1..].parse().unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        lines.next();
        out.push(lines.next().unwrap().to_string());
    }
    out
}

fn ttl_of(key: &str) -> i64 {
    on_owner(key, &["TTL", key]).as_int().unwrap()
}

#[tokio::test]
async fn ttl_policy_adds_missing_expiries_and_refuses_persist() {
    let mut c = test_config(&shared_cluster_seeds());
    // No sweeper: the expiries checked here are the ones added on the request path.
    c.ttl = vec![
        TtlRuleConfig {
            mode: TtlMode::Add,
            sweep_interval_secs: 0,
            ..TtlRuleConfig::new("gsession:*", 1000)
        },
        TtlRuleConfig {
            mode: TtlMode::Reject,
            sweep_interval_secs: 0,
            ..TtlRuleConfig::new("gstrict:*", 1000)
        },
    ];
    let proxy = start_proxy(c).await;
    let mut con = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(
        cmd(&mut con, &["SET", "gsession:set", "v"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        cmd(&mut con, &["HSET", "gsession:hset", "f", "v"]).await,
        ":1\r\n"
    );
    assert_eq!(cmd(&mut con, &["INCR", "gsession:incr"]).await, ":1\r\n");
    assert_eq!(
        cmd(&mut con, &["SETRANGE", "gsession:setrange", "3", "x"]).await,
        ":4\r\n"
    );
    assert_eq!(
        cmd(&mut con, &["LPUSH", "gsession:lpush", "a", "b"]).await,
        ":2\r\n"
    );
    for k in [
        "gsession:set",
        "gsession:hset",
        "gsession:incr",
        "gsession:setrange",
        "gsession:lpush",
    ] {
        let t = ttl_of(k);
        assert!((990..=1000).contains(&t), "{k}: TTL {t}");
    }
    // An explicit expiry is kept, also by later writes.
    assert_eq!(
        cmd(&mut con, &["SET", "gsession:ex", "v", "EX", "5"]).await,
        "+OK\r\n"
    );
    assert!((1..=5).contains(&ttl_of("gsession:ex")));
    assert_eq!(cmd(&mut con, &["INCR", "gsession:incr"]).await, ":2\r\n");
    assert_eq!(
        cmd(&mut con, &["EXPIRE", "gsession:hset", "7"]).await,
        ":1\r\n"
    );
    assert_eq!(
        cmd(&mut con, &["HSET", "gsession:hset", "g", "w"]).await,
        ":1\r\n"
    );
    assert!((1..=7).contains(&ttl_of("gsession:hset")));
    // PERSIST refused; other keys untouched.
    assert_eq!(
        cmd(&mut con, &["PERSIST", "gsession:set"]).await,
        "-ERR respgate: keys matching 'gsession:*' must keep an expiry (PERSIST refused by the TTL policy)\r\n"
    );
    assert!(ttl_of("gsession:set") > 0);
    assert_eq!(cmd(&mut con, &["MULTI"]).await, "+OK\r\n");
    assert!(cmd(&mut con, &["PERSIST", "gsession:set"])
        .await
        .contains("PERSIST refused by the TTL policy"));
    assert!(cmd(&mut con, &["EXEC"]).await.starts_with("-EXECABORT"));
    assert!(cmd(&mut con, &["GETEX", "gsession:set", "PERSIST"])
        .await
        .contains("GETEX refused by the TTL policy"));
    assert!(ttl_of("gsession:set") > 0);
    assert_eq!(cmd(&mut con, &["SET", "gother:k", "v"]).await, "+OK\r\n");
    assert_eq!(ttl_of("gother:k"), -1);
    // Pipelined: each client reply in order, EXPIRE replies invisible.
    con.send(&encode_pipeline(&[
        &["SET", "gsession:p1", "a"],
        &["GET", "gsession:p1"],
        &["APPEND", "gsession:p1", "b"],
        &["GET", "gsession:p1"],
    ]))
    .await;
    let r: Vec<String> = con.read_replies(4).await.iter().map(|r| text(r)).collect();
    assert_eq!(r, ["+OK\r\n", "$1\r\na\r\n", ":2\r\n", "$2\r\nab\r\n"]);
    // reject mode.
    assert!(cmd(&mut con, &["SET", "gstrict:1", "v"])
        .await
        .starts_with("-ERR respgate: keys matching 'gstrict:*' need an expiry"));
    assert_eq!(
        cmd(&mut con, &["SET", "gstrict:1", "v", "PX", "5000"]).await,
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut con, &["GET", "gstrict:1"]).await, "$1\r\nv\r\n");
}

#[tokio::test]
async fn reload_swaps_guards_on_live_connections() {
    let mut c = test_config(&shared_cluster_seeds());
    let proxy = start_proxy(c.clone()).await;
    let mut con = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(cmd(&mut con, &["ECHO", "x"]).await, "$1\r\nx\r\n");
    c.guards = guards(vec![rule("no-echo", &["echo"], GuardAction::Deny)]);
    proxy.reload(&c).unwrap();
    assert!(cmd(&mut con, &["ECHO", "x"])
        .await
        .contains("rule 'no-echo'"));
    // An invalid configuration changes nothing.
    let mut bad = c.clone();
    bad.guards.rules[0].rate = Some("fast".into());
    assert!(proxy.reload(&bad).is_err());
    assert!(cmd(&mut con, &["ECHO", "x"])
        .await
        .contains("rule 'no-echo'"));
    c.guards = GuardsConfig::none();
    proxy.reload(&c).unwrap();
    assert_eq!(cmd(&mut con, &["ECHO", "x"]).await, "$1\r\nx\r\n");
}
