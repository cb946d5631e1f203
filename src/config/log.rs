//! `[log]`: what is logged (`level`), how (`format`: text for a terminal, JSON lines for a
//! log pipeline), and how often one repeated warning is (`repeat_interval_secs`).

use super::{invalid, Invalid};
use serde::Deserialize;

/// The longest `repeat_interval_secs`: an hour. A longer one would hide for hours that a
/// failure is still going on.
pub const MAX_REPEAT_INTERVAL_SECS: u64 = 3600;

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `respgate=debug`; `RUST_LOG` overrides it.
    pub level: String,
    /// `text` (one human-readable line per event; colours only on a terminal) or `json`
    /// (one JSON object per line: `timestamp`, `level`, `fields.message`, the event's
    /// other fields, `target`).
    pub format: LogFormat,
    /// A warning that repeats (a topology refresh failing every 200 ms, a node refusing
    /// connections) is logged at its first occurrence, then at most once per this many
    /// seconds, with the number of repeats left out in between.
    pub repeat_interval_secs: u64,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            repeat_interval_secs: 30,
        }
    }
}

impl LogConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if !(1..=MAX_REPEAT_INTERVAL_SECS).contains(&self.repeat_interval_secs) {
            return Err(invalid(
                "log.repeat_interval_secs",
                format!(
                    "{} is outside 1..={MAX_REPEAT_INTERVAL_SECS}",
                    self.repeat_interval_secs
                ),
            ));
        }
        Ok(())
    }
}
