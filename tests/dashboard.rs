//! The Grafana dashboard of `deploy/grafana/respgate.json`, and the metrics both it and
//! the alert rules of `deploy/prometheus/alerts.yml` read, checked against a RUNNING
//! respgate:
//!
//! - every panel query is valid PromQL (`promtool check rules` on a rules file made of
//!   them; Grafana's `$__range` is replaced by a duration first);
//! - every metric a panel or an alert reads is one respgate really exports: a proxy with
//!   the admin listener and the cluster collector runs in front of the shared cluster,
//!   the events whose series appear only once they happen are caused (a SET/GET, a wrong
//!   AUTH, a key the ACL refuses, a command a guard rule denies), and the names are taken
//!   from its `/metrics`. A panel on a misspelt or never-exported metric stays empty,
//!   and an alert on one never fires; neither Grafana nor promtool can tell.
//! - no panel query and no alert reads a cluster series (`redis_*`, `respgate_cluster_*`)
//!   without deduping it first with `max`/`min`: every respgate pod collects every node,
//!   so with N pods each node series comes N times (a textual lint,
//!   `undeduped_cluster_series`).
//!
//! promtool comes with Debian's `prometheus` package (scripts/test.sh installs it).

use respgate::acl::hash_password;
use respgate::config::{
    AuthConfig, AuthMode, Config, GuardAction, GuardRuleConfig, GuardsConfig, UserConfig,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/promql.rs"]
mod promql;
mod support;

use support::RawConn;

/// Anti-hang bound on waiting for the collector's first round (not a latency assertion).
const EVENTUALLY: Duration = Duration::from_secs(60);

/// Metrics an expression may read that this test cannot make appear cheaply. Empty:
/// `respgate_cluster_failovers_total` is set to 0 by the collector's first round, so
/// even the failover counter shows without a failover.
const NOT_CAUSED: &[&str] = &[];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dashboard() -> serde_json::Value {
    let path = root().join("deploy/grafana/respgate.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `targets[].expr` of the dashboard's panels (rows' nested panels included).
fn dashboard_expressions(dash: &serde_json::Value) -> Vec<String> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push(expr.to_string());
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

#[test]
fn dashboard_is_a_grafana_model_with_the_runbook_panels() {
    let dash = dashboard();
    assert_eq!(dash["uid"], "respgate");
    let titles: Vec<&str> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for want in [
        "Cache hit rate",
        "Slow commands (slowlog length)",
        "Ops/sec",
        "Replication lag",
        "Memory used vs max",
        "Latency p99 per command",
        "Guard refusals",
    ] {
        assert!(titles.contains(&want), "no panel {want:?} in {titles:?}");
    }
    // Every query goes to the Prometheus picked at import (`${DS_PROMETHEUS}`).
    for panel in dash["panels"].as_array().unwrap() {
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${DS_PROMETHEUS}",
                "{}",
                panel["title"]
            );
        }
    }
}

#[test]
fn dashboard_queries_are_valid_promql() {
    let exprs = dashboard_expressions(&dashboard());
    assert!(exprs.len() >= 15, "{exprs:?}");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr.replace("$__range", "1h");
        assert!(
            !expr.contains('$'),
            "an unknown Grafana variable in {expr:?}"
        );
        let quoted = serde_json::to_string(&expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:panel_{i}\n        expr: {quoted}\n"
        ));
    }
    let file = std::env::temp_dir().join(format!("respgate-dashboard-{}.yml", std::process::id()));
    std::fs::write(&file, rules).unwrap();
    let output = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): `apt-get install -y prometheus` (scripts/test.sh)")
        });
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "promtool rejects a dashboard query:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The metric names of a Prometheus text exposition: `# TYPE` lines and sample lines
/// (a histogram's `_bucket`/`_sum`/`_count` series are samples, so they are in too).
fn exposed_names(body: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in body.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split(['{', ' ']).next(),
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            names.insert(name.to_string());
        }
    }
    names
}

/// A proxy with users (so AUTH and the ACL count), a guard rule denying ECHO, the admin
/// listener and the cluster collector every second.
fn observed_config() -> Config {
    let mut config = support::test_config(&support::shared_cluster_seeds());
    config.admin.listen = Some("127.0.0.1:0".into());
    config.admin.cluster_metrics_interval_secs = 1;
    config.auth = AuthConfig {
        mode: Some(AuthMode::Users),
        users: vec![UserConfig {
            max_dedicated_connections: None,
            cross_slot: None,
            name: "app".into(),
            rules: format!("on ~dash:* +@all #{}", hash_password(b"app-pw")),
        }],
        ..AuthConfig::default()
    };
    config.guards = GuardsConfig {
        enabled: true,
        safe_defaults: false,
        rules: vec![GuardRuleConfig::new(
            "dashboard-deny-echo",
            &["ECHO"],
            GuardAction::Deny,
        )],
        ..GuardsConfig::file_default()
    };
    config
}

async fn cmd(c: &mut RawConn, args: &[&str]) -> String {
    String::from_utf8_lossy(&c.command(args).await).into_owned()
}

#[tokio::test]
async fn dashboard_and_alerts_read_only_metrics_respgate_exports() {
    let proxy = support::start_proxy(observed_config()).await;
    let admin = proxy.admin_addr().expect("the admin listener is up");
    // The events whose series exist only once they happened.
    let mut app = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(cmd(&mut app, &["AUTH", "app", "app-pw"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut app, &["SET", "dash:k", "v"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut app, &["GET", "dash:k"]).await, "$1\r\nv\r\n");
    let refused = cmd(&mut app, &["GET", "other:k"]).await;
    assert!(refused.starts_with("-NOPERM"), "{refused}");
    let denied = cmd(&mut app, &["ECHO", "x"]).await;
    assert!(denied.contains("dashboard-deny-echo"), "{denied}");
    let mut intruder = RawConn::connect(proxy.local_addr()).await;
    let wrong = cmd(&mut intruder, &["AUTH", "app", "wrong"]).await;
    assert!(wrong.starts_with("-WRONGPASS"), "{wrong}");
    // The collector's first round (every node's INFO).
    let start = Instant::now();
    let body = loop {
        let (status, body) = support::http_get(admin, "/metrics", None).await;
        assert_eq!(status, 200, "{body}");
        if body.contains("\nredis_memory_used_bytes{") {
            break body;
        }
        assert!(
            start.elapsed() < EVENTUALLY,
            "no redis_memory_used_bytes after {EVENTUALLY:?}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let exported = exposed_names(&body);
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let sources = [
        (
            "deploy/grafana/respgate.json",
            dashboard_expressions(&dashboard()),
        ),
        ("deploy/prometheus/alerts.yml", promql::expressions(&alerts)),
    ];
    let mut missing = Vec::new();
    for (file, exprs) in &sources {
        assert!(!exprs.is_empty(), "no expression found in {file}");
        for expr in exprs {
            let names = promql::metric_names(expr);
            assert!(!names.is_empty(), "no metric found in {expr:?} ({file})");
            for name in names {
                if !exported.contains(&name) && !NOT_CAUSED.contains(&name.as_str()) {
                    missing.push(format!("{name} ({file}: {expr:?})"));
                }
            }
        }
    }
    drop((app, intruder));
    proxy.shutdown().await;
    assert!(
        missing.is_empty(),
        "metrics read by the dashboard or the alerts that respgate's /metrics does not \
         export:\n  {}\nexported: {exported:?}",
        missing.join("\n  ")
    );
}

/// Aggregations that dedupe the copies of one node's series (one per respgate pod).
const DEDUPING: &[&str] = &["max", "min"];

/// The selectors of `expr` that read a cluster series (`redis_*`, `respgate_cluster_*`)
/// whose innermost enclosing aggregation is not `max`/`min` (or that have none).
///
/// A textual lint, not a PromQL parser: it walks the parentheses, and a `(` opens an
/// aggregation's argument when the word before it is an aggregation (`sum(`), or when it
/// follows the `by (...)`/`without (...)` clause of one (`sum by (addr) (`). Label
/// matchers `{...}` and strings are skipped; the postfix form `sum(x) by (l)` is read
/// like `sum(x)`. Every respgate pod collects every Redis node, so a node's series come
/// once per pod (same `addr`, another `instance`); respgate_cluster_* are each pod's
/// view of the same cluster. Read bare, or under `sum`/`count` before a per-node (or
/// across-pods) `max`/`min`, they count N times or fire once per pod. respgate's own
/// series (`respgate_command_*`, `respgate_auth_total`, ...) are per pod and are not
/// checked: summing them is right.
fn undeduped_cluster_series(expr: &str) -> Vec<String> {
    #[derive(Clone, PartialEq)]
    enum Paren {
        Agg(String),
        Clause(String),
        Other,
    }
    let chars: Vec<char> = expr.chars().collect();
    let mut stack: Vec<Paren> = Vec::new();
    // The aggregation whose `by (...)` clause just closed: the next `(` is its argument.
    let mut pending: Option<String> = None;
    let mut last_word = String::new();
    let mut bad = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if c == '{' || c == '[' {
            let close = if c == '{' { '}' } else { ']' };
            while i < chars.len() && chars[i] != close {
                i += 1;
            }
            i += 1;
            last_word.clear();
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let is_call = chars[i..].iter().find(|c| !c.is_whitespace()) == Some(&'(');
            let in_clause = matches!(stack.last(), Some(Paren::Clause(_)));
            if !is_call
                && !in_clause
                && (word.starts_with("redis_") || word.starts_with("respgate_cluster_"))
            {
                let innermost = stack.iter().rev().find_map(|p| match p {
                    Paren::Agg(a) => Some(a.as_str()),
                    _ => None,
                });
                if !innermost.is_some_and(|a| DEDUPING.contains(&a)) {
                    bad.push(word.clone());
                }
            }
            if word != "by" && word != "without" {
                pending = None;
            }
            last_word = word;
            continue;
        }
        match c {
            '(' => {
                let frame = if let Some(agg) = pending.take() {
                    Paren::Agg(agg)
                } else if promql::AGGREGATIONS.contains(&last_word.as_str()) {
                    Paren::Agg(last_word.clone())
                } else if last_word == "by" || last_word == "without" {
                    // The word before `by`: the aggregation it belongs to (prefix form).
                    let agg = word_before_clause(&chars, i);
                    Paren::Clause(agg)
                } else {
                    Paren::Other
                };
                stack.push(frame);
            }
            ')' => {
                if let Some(Paren::Clause(agg)) = stack.pop() {
                    if promql::AGGREGATIONS.contains(&agg.as_str()) {
                        pending = Some(agg);
                    }
                }
            }
            c if !c.is_whitespace() => pending = None,
            _ => {}
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    bad
}

/// The word before the `by`/`without` that precedes the `(` at `open` (`sum` in
/// `sum by (`), empty when there is none.
fn word_before_clause(chars: &[char], open: usize) -> String {
    let text: String = chars[..open].iter().collect();
    let mut words = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .rev();
    words.next(); // by / without
    words.next().unwrap_or_default().to_string()
}

#[test]
fn dedupe_lint_reads_promql_as_meant() {
    for ok in [
        "sum(max by (addr) (redis_up))",
        "count(max by (addr) (redis_up))",
        "max by (addr, role) (redis_memory_used_bytes) / max by (addr, role) (redis_memory_max_bytes > 0) > 0.85",
        "sum(max by (addr) (rate(redis_commands_processed_total{role=\"master\"}[1m])))",
        "max without (instance, pod) (redis_up)",
        "min(respgate_cluster_masters_online)",
        "max(increase(respgate_cluster_failovers_total[15m])) >= 3",
        "sum by (command) (rate(respgate_command_requests_total[1m]))",
        "max(redis_up) by (addr)",
    ] {
        assert_eq!(undeduped_cluster_series(ok), Vec::<String>::new(), "{ok}");
    }
    for (bad, series) in [
        ("sum(redis_up)", "redis_up"),
        ("count(redis_up)", "redis_up"),
        (
            "sum by (addr) (rate(redis_evicted_keys_total[5m]))",
            "redis_evicted_keys_total",
        ),
        (
            "max(sum by (addr) (redis_connected_clients))",
            "redis_connected_clients",
        ),
        (
            "redis_memory_used_bytes / max by (addr) (redis_memory_max_bytes) > 0.85",
            "redis_memory_used_bytes",
        ),
        (
            "respgate_cluster_masters_online < 2",
            "respgate_cluster_masters_online",
        ),
        ("sum(max by (addr) (redis_up)) + sum(redis_up)", "redis_up"),
    ] {
        assert_eq!(undeduped_cluster_series(bad), [series], "{bad}");
    }
}

/// With N respgate pods every node series is exported N times: no dashboard query and
/// no alert may read one without first deduping it (`undeduped_cluster_series`), so each
/// gives the same answer, and fires once, with 1 or N respgates.
#[test]
fn cluster_series_are_deduped_across_respgate_instances() {
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let mut offenders = Vec::new();
    for (file, exprs) in [
        (
            "deploy/grafana/respgate.json",
            dashboard_expressions(&dashboard()),
        ),
        ("deploy/prometheus/alerts.yml", promql::expressions(&alerts)),
    ] {
        for expr in exprs {
            for series in undeduped_cluster_series(&expr) {
                offenders.push(format!("{file}: {series} in {expr:?}"));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "cluster series read without a per-node (or across-pods) max/min first; with N \
         respgate pods they count N times:\n  {}",
        offenders.join("\n  ")
    );
}
