//! `[[ttl]]`: the expiry policy for sensitive key patterns, as written. Its checks are
//! the `guards` module's (the TTL policy lives there), run by the loader.

use serde::Deserialize;

/// One `[[ttl]]`: keys matching `pattern` never live without an expiry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlRuleConfig {
    /// A Redis glob (`session:*`).
    pub pattern: String,
    pub default_seconds: u64,
    #[serde(default)]
    pub mode: TtlMode,
    /// The longest expiry a client may give such a key (EXPIRE and friends, SET EX,
    /// SETEX, GETEX EX ...); absent: no cap.
    #[serde(default)]
    pub max_seconds: Option<u64>,
    /// What happens to an expiry above `max_seconds` (default: `reject`).
    #[serde(default)]
    pub over_max: Option<TtlOverMax>,
    /// Seconds between two passes of the background sweeper (SCAN MATCH pattern on
    /// every master, `EXPIRE key default_seconds NX` on each key found); 0: no sweeper.
    #[serde(default = "TtlRuleConfig::default_sweep_interval_secs")]
    pub sweep_interval_secs: u64,
    /// Keys the sweeper may examine per second (its SCAN COUNT budget), per pattern.
    #[serde(default = "TtlRuleConfig::default_sweep_keys_per_sec")]
    pub sweep_keys_per_sec: u64,
}

impl TtlRuleConfig {
    pub const fn default_sweep_interval_secs() -> u64 {
        60
    }

    pub const fn default_sweep_keys_per_sec() -> u64 {
        5000
    }

    /// A rule for `pattern` with `default_seconds`, everything else at its default.
    pub fn new(pattern: &str, default_seconds: u64) -> TtlRuleConfig {
        TtlRuleConfig {
            pattern: pattern.into(),
            default_seconds,
            mode: TtlMode::default(),
            max_seconds: None,
            over_max: None,
            sweep_interval_secs: Self::default_sweep_interval_secs(),
            sweep_keys_per_sec: Self::default_sweep_keys_per_sec(),
        }
    }
}

/// `over_max` of a `[[ttl]]` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TtlOverMax {
    /// Refuse the command.
    #[default]
    Reject,
    /// Rewrite the expiry to `max_seconds`.
    Cap,
}

/// `add`: an `EXPIRE key N NX` follows the write; `reject`: SET without expiry refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TtlMode {
    #[default]
    Add,
    Reject,
}
