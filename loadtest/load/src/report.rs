//! Results: one record per run, the medians per target over the rounds, the printed
//! table and the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::cpu::Ticks;
use crate::run::Mode;
use crate::stats::{median, Percentiles};

#[derive(Debug, Clone, Serialize)]
pub struct CpuResult {
    pub pids: Vec<u32>,
    pub ticks: Ticks,
    pub user_us_per_req: f64,
    pub sys_us_per_req: f64,
    pub us_per_req: f64,
}

impl CpuResult {
    pub fn new(pids: Vec<u32>, ticks: Ticks, clk_tck: u64, requests: u64) -> CpuResult {
        let per = |t: u64| {
            if requests == 0 {
                0.0
            } else {
                t as f64 * 1e6 / clk_tck as f64 / requests as f64
            }
        };
        CpuResult {
            pids,
            ticks,
            user_us_per_req: per(ticks.utime),
            sys_us_per_req: per(ticks.stime),
            us_per_req: per(ticks.utime + ticks.stime),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct KindResult {
    pub latency_us: Percentiles,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub round: usize,
    pub target: String,
    pub mode: Mode,
    pub pipeline: usize,
    pub clients: usize,
    pub rate: Option<f64>,
    pub duration_s: f64,
    /// From the start to the last reply.
    pub elapsed_s: f64,
    pub sent: u64,
    pub requests: u64,
    pub unanswered: u64,
    pub throughput_rps: f64,
    pub errors: BTreeMap<String, u64>,
    pub failures: Vec<String>,
    pub interrupted: bool,
    pub max_send_lag_us: f64,
    pub latency_us: Percentiles,
    pub kinds: BTreeMap<String, KindResult>,
    pub cpu: BTreeMap<String, CpuResult>,
    pub timeline_bucket_ms: u64,
    /// Replies per second in each bucket of the run.
    pub timeline_rps: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct TargetSummary {
    pub target: String,
    pub runs: usize,
    pub throughput_rps: f64,
    /// Median over rounds of this target's throughput / the baseline's, same round.
    pub ratio_to_baseline: Option<f64>,
    pub latency_us: Percentiles,
    pub kinds: BTreeMap<String, Percentiles>,
    pub cpu_us_per_req: BTreeMap<String, [f64; 3]>,
    pub errors: u64,
}

/// Medians over the rounds, per target, in the order the targets were given.
pub fn summarize(
    runs: &[RunResult],
    targets: &[String],
    baseline: Option<&str>,
) -> Vec<TargetSummary> {
    let mut out = Vec::new();
    for t in targets {
        let mine: Vec<&RunResult> = runs.iter().filter(|r| &r.target == t).collect();
        if mine.is_empty() {
            continue;
        }
        let med =
            |f: &dyn Fn(&RunResult) -> f64| median(&mine.iter().map(|r| f(r)).collect::<Vec<_>>());
        let pct = |f: &dyn Fn(&RunResult) -> Option<Percentiles>| {
            let ps: Vec<Percentiles> = mine.iter().filter_map(|r| f(r)).collect();
            let m = |g: fn(&Percentiles) -> f64| median(&ps.iter().map(g).collect::<Vec<_>>());
            Percentiles {
                count: ps.iter().map(|p| p.count).sum(),
                mean: m(|p| p.mean),
                p50: m(|p| p.p50),
                p90: m(|p| p.p90),
                p99: m(|p| p.p99),
                p999: m(|p| p.p999),
                max: m(|p| p.max),
            }
        };
        let mut kinds = BTreeMap::new();
        for k in mine[0].kinds.keys() {
            kinds.insert(k.clone(), pct(&|r| r.kinds.get(k).map(|x| x.latency_us)));
        }
        let mut cpu = BTreeMap::new();
        for g in mine[0].cpu.keys() {
            let get = |f: fn(&CpuResult) -> f64| med(&|r| r.cpu.get(g).map(f).unwrap_or(f64::NAN));
            cpu.insert(
                g.clone(),
                [
                    get(|c| c.us_per_req),
                    get(|c| c.user_us_per_req),
                    get(|c| c.sys_us_per_req),
                ],
            );
        }
        let ratio = baseline.filter(|b| *b != t).map(|b| {
            let ratios: Vec<f64> = mine
                .iter()
                .filter_map(|r| {
                    let base = runs.iter().find(|x| x.target == b && x.round == r.round)?;
                    (base.throughput_rps > 0.0).then(|| r.throughput_rps / base.throughput_rps)
                })
                .collect();
            median(&ratios)
        });
        out.push(TargetSummary {
            target: t.clone(),
            runs: mine.len(),
            throughput_rps: med(&|r| r.throughput_rps),
            ratio_to_baseline: ratio,
            latency_us: pct(&|r| Some(r.latency_us)),
            kinds,
            cpu_us_per_req: cpu,
            errors: mine.iter().map(|r| r.errors.values().sum::<u64>()).sum(),
        });
    }
    out
}

/// One line per run, as it finishes.
pub fn run_line(r: &RunResult) -> String {
    let cpu: Vec<String> = r
        .cpu
        .iter()
        .map(|(g, c)| format!("{g} {:.2}", c.us_per_req))
        .collect();
    let errs: u64 = r.errors.values().sum();
    format!(
        "round {} {:<10} {:>10.0} req/s  p50 {:>8.1}  p99 {:>8.1}  p99.9 {:>8.1}  max {:>9.1} us  errors {}  cpu us/req: {}{}",
        r.round,
        r.target,
        r.throughput_rps,
        r.latency_us.p50,
        r.latency_us.p99,
        r.latency_us.p999,
        r.latency_us.max,
        errs,
        cpu.join(", "),
        if r.interrupted { "  (interrupted)" } else { "" }
    )
}

/// The human summary: medians per target, then per command kind.
pub fn table(summary: &[TargetSummary], baseline: Option<&str>) -> String {
    let mut s = String::new();
    let groups: Vec<&String> = summary
        .first()
        .map(|t| t.cpu_us_per_req.keys().collect())
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "medians over the rounds (latency in us; CPU in us per request: total = user + sys{})",
        baseline
            .map(|b| format!("; ratio = throughput / {b}'s, same round"))
            .unwrap_or_default()
    );
    let mut head = format!(
        "{:<12} {:>10} {:>6} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6}",
        "target", "req/s", "ratio", "p50", "p90", "p99", "p99.9", "max", "errors"
    );
    for g in &groups {
        let _ = write!(head, " {:>20}", format!("cpu {g} (u+s)"));
    }
    let _ = writeln!(s, "{head}");
    for t in summary {
        let l = &t.latency_us;
        let ratio = t
            .ratio_to_baseline
            .map(|r| format!("{r:.3}"))
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            s,
            "{:<12} {:>10.0} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1} {:>6}",
            t.target, t.throughput_rps, ratio, l.p50, l.p90, l.p99, l.p999, l.max, t.errors
        );
        for g in &groups {
            let c = t.cpu_us_per_req.get(*g).copied().unwrap_or([f64::NAN; 3]);
            let _ = write!(
                s,
                " {:>20}",
                format!("{:.2} ({:.2}+{:.2})", c[0], c[1], c[2])
            );
        }
        let _ = writeln!(s);
    }
    if summary.iter().any(|t| t.kinds.len() > 1) {
        let _ = writeln!(s, "\nper command kind (medians; latency in us)");
        let _ = writeln!(
            s,
            "{:<12} {:<22} {:>9} {:>8} {:>8} {:>8} {:>9}",
            "target", "kind", "count", "p50", "p99", "p99.9", "max"
        );
        for t in summary {
            for (k, p) in &t.kinds {
                let _ = writeln!(
                    s,
                    "{:<12} {:<22} {:>9} {:>8.1} {:>8.1} {:>8.1} {:>9.1}",
                    t.target, k, p.count, p.p50, p.p99, p.p999, p.max
                );
            }
        }
    }
    s
}
