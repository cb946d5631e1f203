//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// N connections, each writes a batch of --pipeline requests and waits for all replies.
    Closed,
    /// A fixed arrival rate (--rate), latency measured from each request's intended time.
    Open,
}

/// Load generator for respgate and Redis Cluster.
///
/// Runs a workload against one or more targets, interleaved round by round (A B A B ...),
/// and reports throughput, latency percentiles (overall and per command kind) and CPU
/// per request of the target processes, the cluster nodes and this tool, from /proc.
///
/// Closed loop (default): each of --clients connections writes --pipeline requests,
/// waits for every reply, and repeats; latency is from the write to the reply. A closed
/// loop slows down when the target stalls, so a stall hides from its percentiles
/// ("coordinated omission"): use it for throughput.
///
/// Open loop (--mode open --rate R): requests are due at a fixed rate R (requests per
/// second, all connections together), each with an intended send time; latency is
/// measured from the INTENDED time, not from when the request was written, so a stall of
/// the target (or of this tool) shows in the percentiles: no coordinated omission. Use it
/// for latency at a given load.
///
/// Loopback targets only, unless --allow-remote. Ctrl-C stops the current run cleanly and
/// reports what was measured.
#[derive(Debug, Parser)]
#[command(name = "respgate-load", version, verbatim_doc_comment)]
pub struct Args {
    /// NAME=HOST:PORT (one address, e.g. respgate) or NAME=cluster:HOST:PORT (a Redis
    /// Cluster, cluster-aware from this seed). Repeat for several targets.
    #[arg(long = "target", required = true)]
    pub targets: Vec<String>,

    /// Workload file (TOML): weighted operations with key patterns (loadtest/workloads/).
    #[arg(short, long)]
    pub workload: PathBuf,

    #[arg(long, value_enum, default_value = "closed")]
    pub mode: ModeArg,

    /// Clients per target (a client of a cluster target holds one connection per master).
    #[arg(short, long, default_value_t = 50)]
    pub clients: usize,

    /// Closed loop: requests per batch per client (a cluster client splits its batch by
    /// slot over its connections, as any cluster client sending them would).
    #[arg(short = 'P', long, default_value_t = 1)]
    pub pipeline: usize,

    /// Open loop: requests per second, all connections together.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Length of one run (e.g. 10s, 500ms, 2m).
    #[arg(short, long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,

    /// Rounds: each round runs every target once, in the order given.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// Refuse to start if rounds x targets x duration exceeds this.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    pub max_duration: Duration,

    /// How long to wait for replies still in flight at the end of a run.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub drain: Duration,

    /// Load threads (each a single-threaded runtime with its share of the connections).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Throughput-over-time bucket, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub bucket_ms: u64,

    /// Open loop: a connection holds back new requests while this many are in flight.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight: usize,

    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// USER:PASSWORD sent with AUTH on every connection.
    #[arg(long)]
    pub auth: Option<String>,

    /// NAME=PID[,PID...]: the processes of a target (or NAME=nodes for the cluster nodes),
    /// instead of finding them by their listening ports.
    #[arg(long = "pid")]
    pub pids: Vec<String>,

    /// HOST:PORT of a cluster node, to find the nodes' pids when no target is the cluster.
    #[arg(long)]
    pub nodes: Option<String>,

    /// The target the others' throughput is compared to (default: the last cluster target).
    #[arg(long)]
    pub baseline: Option<String>,

    /// Allow targets outside the loopback range (127.0.0.0/8, ::1).
    #[arg(long)]
    pub allow_remote: bool,

    /// Write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Write the picture (latency percentiles, throughput over time) as SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,

    /// A title for the picture and the JSON.
    #[arg(long)]
    pub title: Option<String>,

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `500ms`, `5s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 500ms, 5s or 2m"))?;
    let secs = match unit {
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    if !(secs > 0.0 && secs <= 24.0 * 3600.0) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn help_names_coordinated_omission() {
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        assert!(
            help.contains("INTENDED time") && help.contains("coordinated omission"),
            "{help}"
        );
    }
}
