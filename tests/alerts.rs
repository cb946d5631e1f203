//! The Prometheus alert rules of `deploy/prometheus/` (the runbook's escalation section),
//! checked the way Prometheus itself would load them, so `cargo test` catches a broken
//! rule before a deploy does:
//!
//! - `promtool check rules alerts.yml`: the file parses and every expression is valid
//!   PromQL.
//! - `promtool test rules alerts_test.yml`: each alert fires on synthetic series where it
//!   should and stays quiet where it should not.
//! - Every metric an expression reads exists: it is a `"respgate_..."` or `"redis_..."`
//!   string literal in `src/` (respgate's own metrics, and the cluster metrics
//!   `cluster/stats` collects under redis_exporter's names). An alert on a misspelt
//!   metric would never fire, and promtool cannot tell.
//!
//! promtool comes with Debian's `prometheus` package, which scripts/test.sh installs
//! when it is missing. Without it these tests fail; they never skip.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/promql.rs"]
mod promql;
use promql::{expressions, metric_names};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rules_dir() -> PathBuf {
    root().join("deploy/prometheus")
}

/// Runs `promtool ARGS` in deploy/prometheus and fails with its output unless it exits 0.
fn promtool(args: &[&str]) {
    let output = match Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
    {
        Ok(output) => output,
        Err(e) => panic!(
            "cannot run promtool ({e}): it comes with Debian's `prometheus` package \
             (`apt-get install -y prometheus`); scripts/test.sh installs it"
        ),
    };
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alert_rules_are_valid() {
    promtool(&["check", "rules", "alerts.yml"]);
}

#[test]
fn alert_rules_fire_where_they_should_and_only_there() {
    promtool(&["test", "rules", "alerts_test.yml"]);
}

/// Every `"respgate_..."` string literal in the `.rs` files under `dir`.
fn exported_metric_names(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            exported_metric_names(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for prefix in ["respgate_", "redis_"] {
                for piece in text.split(&format!("\"{prefix}")).skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if piece[name.len()..].starts_with('"') {
                        out.insert(format!("{prefix}{name}"));
                    }
                }
            }
        }
    }
}

#[test]
fn metric_names_parsed_from_promql() {
    let names = metric_names(
        "sum without (result) (rate(a_total{result=~\"x|y\"}[5m])) * 60 > 10 \
         and on (addr) b / (c > 0) > 3 * rate(d[1h] offset 5m)",
    );
    assert_eq!(names, ["a_total", "b", "c", "d"]);
}

#[test]
fn alerts_use_only_metrics_that_exist() {
    let yaml = std::fs::read_to_string(rules_dir().join("alerts.yml")).unwrap();
    let exprs = expressions(&yaml);
    assert!(
        exprs.len() >= 8,
        "expected the runbook's alerts in alerts.yml, found {exprs:?}"
    );
    let mut known: BTreeSet<String> = BTreeSet::new();
    exported_metric_names(&root().join("src"), &mut known);
    let mut unknown = Vec::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric found in expr {expr:?}");
        for name in names {
            // A histogram's series carry suffixes on top of its registered name.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| known.contains(*b)))
                .unwrap_or(&name);
            if !known.contains(base) {
                unknown.push(format!("{name} (in {expr:?})"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "alerts.yml reads metrics that neither respgate (src/) nor the cluster collector \
         exports:\n  {}",
        unknown.join("\n  ")
    );
}
