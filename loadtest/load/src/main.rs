//! `respgate-load`: a load generator for respgate and the Redis Cluster behind it.
//!
//! One invocation runs a workload against every `--target` in turn, round by round
//! (A B A B ...), so drift in the machine's load hits all targets alike, and reports the
//! medians. It is an independent client: its own RESP encoder and reply scanner
//! (`resp`), its own slot function (`slot`), its own cluster routing (`cluster`), so a
//! bug in respgate cannot cancel out against the same bug here.
//!
//! Files: options (`cli`), the workload file (`workload`, `rng`), targets (`target`,
//! `cluster`), a client and its readers (`client`), one run and its threads (`run`,
//! `schedule` and `timer` for the open loop), what was measured (`stats`), CPU from /proc (`cpu`),
//! the results (`report`, `svg`).

mod cli;
mod client;
mod cluster;
mod cpu;
mod report;
mod resp;
mod rng;
mod run;
mod schedule;
mod slot;
mod stats;
mod svg;
mod target;
mod timer;
mod workload;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use cli::{Args, ModeArg};
use cluster::SlotMap;
use report::{CpuResult, KindResult, RunResult, TargetSummary};
use run::{Mode, RunSpec};
use stats::Percentiles;
use target::{Kind, TargetSpec};
use workload::Workload;

/// Set by Ctrl-C: the current run stops, its results are kept, no further run starts.
static STOP: AtomicBool = AtomicBool::new(false);

struct Target {
    spec: TargetSpec,
    map: Option<SlotMap>,
}

/// A group of processes whose CPU each run reports.
struct Group {
    name: String,
    pids: Vec<u32>,
}

#[derive(Serialize)]
struct Output<'a> {
    tool: &'static str,
    version: &'static str,
    title: &'a str,
    workload: &'a str,
    mode: Mode,
    pipeline: usize,
    clients: usize,
    rate: Option<f64>,
    duration_s: f64,
    rounds: usize,
    clk_tck: u64,
    targets: Vec<TargetJson>,
    baseline: Option<&'a str>,
    runs: &'a [RunResult],
    summary: &'a [TargetSummary],
    interrupted: bool,
}

#[derive(Serialize)]
struct TargetJson {
    name: String,
    kind: &'static str,
    addr: String,
    masters: Vec<String>,
    nodes: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("respgate-load: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main(args: &Args) -> Result<ExitCode, String> {
    let workload = Arc::new(
        Workload::load(&args.workload).map_err(|e| format!("{}: {e}", args.workload.display()))?,
    );
    let (mode, rate) = check_args(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let targets = rt.block_on(resolve_targets(args))?;
    let groups = rt.block_on(find_groups(args, &targets))?;
    std::thread::spawn(move || {
        rt.block_on(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: stopping after this run's replies");
                STOP.store(true, Ordering::SeqCst);
            }
        })
    });
    let names: Vec<String> = targets.iter().map(|t| t.spec.name.clone()).collect();
    let baseline = args.baseline.clone().or_else(|| {
        targets
            .iter()
            .rev()
            .find(|t| t.spec.kind == Kind::Cluster)
            .map(|t| t.spec.name.clone())
    });
    let title = args
        .title
        .clone()
        .unwrap_or_else(|| describe(args, &workload, mode, rate));
    eprintln!("respgate-load: {title}");
    for g in &groups {
        eprintln!("  cpu group {:<10} pids {:?}", g.name, g.pids);
    }
    let clk = cpu::clk_tck();
    let mut runs = Vec::new();
    let mut merged: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    'rounds: for round in 1..=args.rounds {
        for t in &targets {
            if STOP.load(Ordering::SeqCst) {
                break 'rounds;
            }
            let spec = run_spec(args, t, &workload, mode, rate);
            let (result, hist) = one_run(args, &spec, t, round, &groups, clk);
            println!("{}", report::run_line(&result));
            for f in &result.failures {
                eprintln!("  failure: {f}");
            }
            merged
                .entry(t.spec.name.clone())
                .or_insert_with(stats::histogram)
                .add(&hist)
                .map_err(|e| e.to_string())?;
            runs.push(result);
        }
    }
    let summary = report::summarize(&runs, &names, baseline.as_deref());
    println!("\n{}", report::table(&summary, baseline.as_deref()));
    let interrupted = STOP.load(Ordering::SeqCst);
    if let Some(path) = &args.json {
        let out = Output {
            tool: "respgate-load",
            version: env!("CARGO_PKG_VERSION"),
            title: &title,
            workload: &workload.name,
            mode,
            pipeline: args.pipeline,
            clients: args.clients,
            rate,
            duration_s: args.duration.as_secs_f64(),
            rounds: args.rounds,
            clk_tck: clk,
            targets: targets.iter().map(target_json).collect(),
            baseline: baseline.as_deref(),
            runs: &runs,
            summary: &summary,
            interrupted,
        };
        let text = serde_json::to_string_pretty(&out).map_err(|e| e.to_string())?;
        write_file(path, &text)?;
    }
    if let Some(path) = &args.svg {
        write_file(path, &picture(&title, &names, &merged, &runs))?;
    }
    let failed = runs.iter().any(|r| !r.failures.is_empty());
    Ok(if failed {
        ExitCode::from(1)
    } else if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn check_args(args: &Args) -> Result<(Mode, Option<f64>), String> {
    if args.clients == 0 || args.clients > 10_000 {
        return Err("--clients must be 1..=10000".into());
    }
    if args.pipeline == 0 || args.pipeline > 10_000 {
        return Err("--pipeline must be 1..=10000".into());
    }
    if args.rounds == 0 || args.rounds > 100 {
        return Err("--rounds must be 1..=100".into());
    }
    let planned = args.duration * (args.rounds * args.targets.len()) as u32;
    if planned > args.max_duration {
        return Err(format!(
            "{} rounds x {} targets x {:?} = {planned:?} is over --max-duration {:?}",
            args.rounds,
            args.targets.len(),
            args.duration,
            args.max_duration
        ));
    }
    match (args.mode, args.rate) {
        (ModeArg::Closed, None) => Ok((Mode::Closed, None)),
        (ModeArg::Closed, Some(_)) => Err("--rate is for --mode open".into()),
        (ModeArg::Open, Some(r)) if r > 0.0 && r <= 10_000_000.0 => Ok((Mode::Open, Some(r))),
        (ModeArg::Open, _) => {
            Err("--mode open needs --rate R (requests per second, 0 < R <= 10M)".into())
        }
    }
}

fn describe(args: &Args, w: &Workload, mode: Mode, rate: Option<f64>) -> String {
    match mode {
        Mode::Closed => format!(
            "{} closed loop, {} clients, -P {}, {:?} x {} rounds",
            w.name, args.clients, args.pipeline, args.duration, args.rounds
        ),
        Mode::Open => format!(
            "{} open loop, {} req/s over {} clients, {:?} x {} rounds",
            w.name,
            rate.unwrap_or(0.0),
            args.clients,
            args.duration,
            args.rounds
        ),
    }
}

async fn resolve_targets(args: &Args) -> Result<Vec<Target>, String> {
    let mut out: Vec<Target> = Vec::new();
    for t in &args.targets {
        let spec = target::parse(t, args.allow_remote)?;
        if out.iter().any(|o| o.spec.name == spec.name) {
            return Err(format!("two targets named {:?}", spec.name));
        }
        let map = match spec.kind {
            Kind::Single => None,
            Kind::Cluster => {
                let m = cluster::fetch(spec.addr, auth(args)?.as_ref(), true).await?;
                for n in &m.all_nodes {
                    target::check_address(*n, args.allow_remote)?;
                }
                Some(m)
            }
        };
        out.push(Target { spec, map });
    }
    Ok(out)
}

fn auth(args: &Args) -> Result<Option<(String, String)>, String> {
    match &args.auth {
        None => Ok(None),
        Some(a) => a
            .split_once(':')
            .map(|(u, p)| Some((u.to_string(), p.to_string())))
            .ok_or_else(|| "--auth wants USER:PASSWORD".to_string()),
    }
}

async fn find_groups(args: &Args, targets: &[Target]) -> Result<Vec<Group>, String> {
    let mut given: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for p in &args.pids {
        let (name, list) = p
            .split_once('=')
            .ok_or_else(|| format!("--pid {p:?}: expected NAME=PID[,PID...]"))?;
        let pids = list
            .split(',')
            .map(|x| {
                x.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("--pid {p:?}: bad pid {x:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        given.insert(name.to_string(), pids);
    }
    let mut groups = Vec::new();
    for t in targets.iter().filter(|t| t.spec.kind == Kind::Single) {
        let pids = given.remove(&t.spec.name).unwrap_or_else(|| {
            cpu::pid_listening_on(t.spec.addr.port())
                .into_iter()
                .collect()
        });
        if pids.is_empty() {
            eprintln!(
                "warning: no process found listening on {} ({}): its CPU is not reported",
                t.spec.addr, t.spec.name
            );
        }
        groups.push(Group {
            name: t.spec.name.clone(),
            pids,
        });
    }
    let mut nodes: Vec<std::net::SocketAddr> = targets
        .iter()
        .filter_map(|t| t.map.as_ref())
        .flat_map(|m| m.all_nodes.clone())
        .collect();
    if let Some(n) = &args.nodes {
        let addr = target::resolve(n)?;
        target::check_address(addr, args.allow_remote)?;
        nodes.extend(
            cluster::fetch(addr, auth(args)?.as_ref(), true)
                .await?
                .all_nodes,
        );
    }
    nodes.sort();
    nodes.dedup();
    let node_pids = given.remove("nodes").unwrap_or_else(|| {
        nodes
            .iter()
            .filter_map(|a| cpu::pid_listening_on(a.port()))
            .collect()
    });
    if !node_pids.is_empty() {
        groups.push(Group {
            name: "nodes".into(),
            pids: node_pids,
        });
    }
    for (name, pids) in given {
        groups.push(Group { name, pids });
    }
    groups.push(Group {
        name: "load".into(),
        pids: vec![std::process::id()],
    });
    Ok(groups)
}

fn run_spec(args: &Args, t: &Target, w: &Arc<Workload>, mode: Mode, rate: Option<f64>) -> RunSpec {
    RunSpec {
        addr: t.spec.addr,
        map: t.map.clone(),
        workload: w.clone(),
        mode,
        pipeline: args.pipeline,
        rate: rate.unwrap_or(0.0),
        clients: args.clients,
        threads: args.threads,
        duration: args.duration,
        drain: args.drain,
        bucket: Duration::from_millis(args.bucket_ms.max(1)),
        seed: args.seed,
        auth: auth(args).ok().flatten(),
        allow_remote: args.allow_remote,
        max_in_flight: args.max_in_flight.max(1),
    }
}

fn progress_bar(args: &Args, name: &str, round: usize) -> ProgressBar {
    if args.quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(args.duration.as_millis() as u64);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30}] {elapsed:>4} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(format!("r{round} {name}"));
    pb
}

fn one_run(
    args: &Args,
    spec: &RunSpec,
    t: &Target,
    round: usize,
    groups: &[Group],
    clk: u64,
) -> (RunResult, Histogram<u64>) {
    let pb = progress_bar(args, &t.spec.name, round);
    let done = Arc::new(AtomicU64::new(0));
    let last = std::cell::Cell::new((0u64, Duration::ZERO));
    let progress = |n: u64, at: Duration| {
        let (n0, t0) = last.get();
        let dt = (at - t0).as_secs_f64();
        if dt > 0.0 {
            pb.set_message(format!("{:>9.0} req/s  {n} replies", (n - n0) as f64 / dt));
        }
        last.set((n, at));
        pb.set_position(at.as_millis() as u64);
    };
    let before: Vec<_> = groups.iter().map(|g| cpu::sum(&g.pids)).collect();
    let out = run::run(spec, &STOP, &done, &progress);
    let after: Vec<_> = groups.iter().map(|g| cpu::sum(&g.pids)).collect();
    pb.finish_and_clear();
    let st = &out.stats;
    let requests = st.done;
    let cpu = groups
        .iter()
        .zip(before.iter().zip(&after))
        .map(|(g, (b, a))| {
            (
                g.name.clone(),
                CpuResult::new(g.pids.clone(), a.minus(*b), clk, requests),
            )
        })
        .collect();
    let elapsed = st.last_done.max(Duration::from_millis(1));
    let kinds = spec
        .workload
        .kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                k.clone(),
                KindResult {
                    latency_us: Percentiles::of(&st.kinds[i]),
                    errors: st.kind_errors[i],
                },
            )
        })
        .collect();
    let bucket_s = spec.bucket.as_secs_f64();
    let n_buckets =
        ((spec.duration.as_secs_f64() / bucket_s).ceil() as usize).min(st.timeline.len());
    let result = RunResult {
        round,
        target: t.spec.name.clone(),
        mode: spec.mode,
        pipeline: spec.pipeline,
        clients: spec.clients,
        rate: (spec.mode == Mode::Open).then_some(spec.rate),
        duration_s: spec.duration.as_secs_f64(),
        elapsed_s: elapsed.as_secs_f64(),
        sent: st.sent,
        requests,
        unanswered: out.unanswered,
        throughput_rps: requests as f64 / elapsed.as_secs_f64(),
        errors: st.errors.clone(),
        failures: out.failures,
        interrupted: out.interrupted,
        max_send_lag_us: st.max_send_lag.as_secs_f64() * 1e6,
        latency_us: Percentiles::of(&st.all),
        kinds,
        cpu,
        timeline_bucket_ms: spec.bucket.as_millis() as u64,
        timeline_rps: st.timeline[..n_buckets]
            .iter()
            .map(|c| *c as f64 / bucket_s)
            .collect(),
    };
    (result, out.stats.all)
}

fn target_json(t: &Target) -> TargetJson {
    let list = |v: &[std::net::SocketAddr]| v.iter().map(|a| a.to_string()).collect();
    TargetJson {
        name: t.spec.name.clone(),
        kind: if t.spec.kind == Kind::Cluster {
            "cluster"
        } else {
            "single"
        },
        addr: t.spec.addr.to_string(),
        masters: t.map.as_ref().map(|m| list(&m.masters)).unwrap_or_default(),
        nodes: t
            .map
            .as_ref()
            .map(|m| list(&m.all_nodes))
            .unwrap_or_default(),
    }
}

fn picture(
    title: &str,
    names: &[String],
    merged: &BTreeMap<String, Histogram<u64>>,
    runs: &[RunResult],
) -> String {
    svg::render(&svg::Picture {
        title: title.to_string(),
        targets: names.to_vec(),
        curves: names
            .iter()
            .filter_map(|n| {
                merged.get(n).map(|h| svg::Curve {
                    target: n.clone(),
                    points: stats::curve(h),
                })
            })
            .collect(),
        timelines: runs
            .iter()
            .map(|r| svg::Timeline {
                target: r.target.clone(),
                round: r.round,
                bucket_s: r.timeline_bucket_ms as f64 / 1000.0,
                rps: r.timeline_rps.clone(),
            })
            .collect(),
    })
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
