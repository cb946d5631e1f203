//! Counters and per-command latency go through the `metrics` facade.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use redis::AsyncCommands;

mod support;

#[derive(Debug)]
enum Value {
    Counter(u64),
    Samples(usize),
    Other,
}

#[tokio::test]
async fn requests_and_latency_are_recorded_per_command() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("first recorder in this test binary");

    let mut config = support::test_config(&support::shared_cluster_seeds());
    config.guards = respgate::config::GuardsConfig {
        enabled: true,
        safe_defaults: true,
        ..respgate::config::GuardsConfig::file_default()
    };
    let proxy = support::start_proxy(config).await;
    let mut c = support::client(proxy.local_addr()).await;
    // Guard decisions: per rule and action, never per user.
    let flush: redis::RedisResult<()> = redis::cmd("FLUSHALL").query_async(&mut c).await;
    assert!(flush.is_err());
    let _: redis::RedisResult<Vec<String>> = redis::cmd("KEYS")
        .arg("*metrics-none*")
        .query_async(&mut c)
        .await;
    let _: redis::RedisResult<Vec<String>> = redis::cmd("KEYS")
        .arg("*metrics-none*")
        .query_async(&mut c)
        .await;
    for i in 0..5 {
        let _: () = c.set(format!("metrics:{i}"), i).await.unwrap();
    }
    let _: Option<i32> = c.get("metrics:1").await.unwrap();

    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str, command: &str| {
        snapshot
            .iter()
            .filter(|(key, _, _, _)| {
                key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "command" && l.value() == command)
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(n) => Value::Counter(*n),
                DebugValue::Histogram(s) => Value::Samples(s.len()),
                DebugValue::Gauge(_) => Value::Other,
            })
            .next()
    };
    match find("respgate_command_requests_total", "set") {
        Some(Value::Counter(n)) => assert_eq!(n, 5),
        other => panic!("no SET counter: {other:?}"),
    }
    match find("respgate_command_duration_seconds", "set") {
        Some(Value::Samples(n)) => assert_eq!(n, 5),
        other => panic!("no SET latency: {other:?}"),
    }
    match find("respgate_command_requests_total", "get") {
        Some(Value::Counter(n)) => assert_eq!(n, 1),
        other => panic!("no GET counter: {other:?}"),
    }
    let decisions = |rule: &str, action: &str| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                let k = key.key();
                k.name() == "respgate_guard_decisions_total"
                    && k.labels().any(|l| l.key() == "rule" && l.value() == rule)
                    && k.labels()
                        .any(|l| l.key() == "action" && l.value() == action)
            })
            .map(|(key, _, _, v)| {
                assert!(
                    key.key()
                        .labels()
                        .all(|l| l.key() == "rule" || l.key() == "action"),
                    "guard metrics carry rule and action only"
                );
                match v {
                    DebugValue::Counter(n) => *n,
                    other => panic!("{other:?}"),
                }
            })
    };
    assert_eq!(decisions("dangerous-admin-only", "deny"), Some(1));
    assert_eq!(decisions("keys-scan", "pass"), Some(1));
    assert_eq!(decisions("keys-scan", "limit"), Some(1));
    proxy.shutdown().await;

    // Authentication failures and ACL refusals are counted by result / reason.
    let mut config = support::test_config(&support::shared_cluster_seeds());
    config.auth = respgate::config::AuthConfig {
        mode: Some(respgate::config::AuthMode::Users),
        users: vec![respgate::config::UserConfig {
            max_dedicated_connections: None,
            cross_slot: None,
            name: "svc".into(),
            rules: format!("on #{} ~mine:* +@all", respgate::acl::hash_password(b"pw")),
        }],
        ..Default::default()
    };
    let proxy = support::start_proxy(config).await;
    let mut raw = support::RawConn::connect(proxy.local_addr()).await;
    raw.command(&["GET", "mine:1"]).await; // NOAUTH
    raw.command(&["AUTH", "svc", "bad"]).await;
    raw.command(&["AUTH", "svc", "pw"]).await;
    raw.command(&["GET", "theirs:1"]).await;
    raw.command(&["GET", "theirs:2"]).await;
    let snapshot = snapshotter.snapshot().into_vec();
    let counter = |name: &str, label: &str, value: &str| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == label && l.value() == value)
            })
            .map(|(_, _, _, v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
    };
    assert_eq!(
        counter("respgate_auth_total", "result", "wrongpass"),
        Some(1)
    );
    assert_eq!(counter("respgate_auth_total", "result", "ok"), Some(1));
    assert_eq!(
        counter("respgate_acl_denied_total", "reason", "noauth"),
        Some(1)
    );
    assert_eq!(
        counter("respgate_acl_denied_total", "reason", "key"),
        Some(2)
    );
    proxy.shutdown().await;
}
