//! Where log lines go and what they look like: the `tracing` subscriber from `[log]`,
//! and [`throttle`] for warnings that repeat.
//!
//! Text lines carry ANSI colours only when stderr is a terminal: piped into journald, a
//! file or a log shipper, escape codes are noise (`\x1b[2m...`) that breaks grep and
//! parsers. `format = "json"` writes one JSON object per line for log pipelines; the few
//! lines the binary writes itself (listening on, reloaded) go through [`announce`] so
//! that every stderr line is JSON then too.

pub mod throttle;

use crate::config::{LogConfig, LogFormat};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the process's subscriber for `config` (`RUST_LOG` overrides `level`), and
/// the interval of repeated warnings. Once per process; later calls change nothing.
pub fn init(config: &LogConfig) {
    throttle::set_interval(std::time::Duration::from_secs(config.repeat_interval_secs));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_ok() {
        JSON.store(config.format == LogFormat::Json, Ordering::Relaxed);
    }
}

/// A line for the operator starting respgate (`respgate: listening on ...`): as is on
/// stderr with text logs (what scripts and people read), an `info` event with JSON logs.
pub fn announce(line: &str) {
    if JSON.load(Ordering::Relaxed) {
        tracing::info!("{line}");
    } else {
        eprintln!("{line}");
    }
}

/// [`announce`] for a failure: as is on stderr with text logs, an `error` event with
/// JSON logs.
pub fn complain(line: &str) {
    if JSON.load(Ordering::Relaxed) {
        tracing::error!("{line}");
    } else {
        eprintln!("{line}");
    }
}
