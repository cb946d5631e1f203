//! `[replica_reads]`: which reads replicas may serve and how fresh they must be proven,
//! and the checks those bounds allow alone.

use super::{invalid, Invalid};
use serde::Deserialize;

/// Lag bounds `[replica_reads]` may define: the default's and one per rule (each node
/// keeps, per bound, when it was last outside it).
pub const MAX_LAG_BOUNDS: usize = 8;

/// Reads served by replicas while provably fresh enough (`[replica_reads]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaReadsConfig {
    /// Policy for keys no rule matches: `master` or `prefer_replica`.
    pub default_policy: ReadPolicyKind,
    /// Bounds of `default_policy = "prefer_replica"`.
    pub max_lag_ms: u64,
    pub max_lag_bytes: u64,
    /// Per key pattern, first match wins.
    pub rules: Vec<ReadRuleConfig>,
    /// How often replication lag is measured (heartbeat written and read back).
    pub poll_interval_ms: u64,
    /// A replica that left a bound serves reads again only after staying inside it
    /// this long (no flapping).
    pub recover_ms: u64,
    /// Key prefix of the heartbeat keys respgate writes on each master (one per shard,
    /// per respgate process, with a 60 s expiry).
    pub heartbeat_prefix: String,
    /// Users whose reads on a shard go to its master until a replica has everything
    /// they wrote there (`["*"]`: everyone; with auth "none" the user is `default`).
    pub read_your_writes: Vec<String>,
    /// A read sent to a replica that has not answered after this long is sent to the
    /// shard's master as well, and the first answer wins (a frozen replica then costs a
    /// read this much, not `cluster.request_timeout_ms`). 0: never hedge.
    pub hedge_after_ms: u64,
}

impl Default for ReplicaReadsConfig {
    fn default() -> Self {
        ReplicaReadsConfig {
            default_policy: ReadPolicyKind::Master,
            max_lag_ms: default_max_lag_ms(),
            max_lag_bytes: default_max_lag_bytes(),
            rules: Vec::new(),
            poll_interval_ms: 100,
            recover_ms: 1000,
            heartbeat_prefix: "respgate:heartbeat".into(),
            read_your_writes: Vec::new(),
            hedge_after_ms: 100,
        }
    }
}

/// Where reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadPolicyKind {
    #[default]
    Master,
    PreferReplica,
}

/// One `[[replica_reads.rules]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRuleConfig {
    /// Redis glob on the key (the first key of the command).
    pub pattern: String,
    pub policy: ReadPolicyKind,
    #[serde(default = "default_max_lag_ms")]
    pub max_lag_ms: u64,
    #[serde(default = "default_max_lag_bytes")]
    pub max_lag_bytes: u64,
}

fn default_max_lag_ms() -> u64 {
    1000
}

fn default_max_lag_bytes() -> u64 {
    1024 * 1024
}

impl ReplicaReadsConfig {
    /// Whether any read may go to a replica.
    pub fn enabled(&self) -> bool {
        self.default_policy == ReadPolicyKind::PreferReplica
            || self
                .rules
                .iter()
                .any(|r| r.policy == ReadPolicyKind::PreferReplica)
    }
}

impl ReplicaReadsConfig {
    /// The bounds against the lag poll and `cluster.request_timeout_ms`, and the number
    /// of rules.
    pub(super) fn check(&self, request_timeout_ms: u64) -> Result<(), Invalid> {
        if self.poll_interval_ms == 0 {
            return Err(invalid(
                "replica_reads.poll_interval_ms",
                "must be at least 1",
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.policy == ReadPolicyKind::PreferReplica
                && rule.max_lag_ms < self.poll_interval_ms
            {
                return Err(invalid(
                    &format!("replica_reads.rules[{i}].max_lag_ms"),
                    format!(
                        "{} ms is below poll_interval_ms ({} ms): no replica could ever be proven that fresh",
                        rule.max_lag_ms, self.poll_interval_ms
                    ),
                ));
            }
        }
        if self.enabled() && self.hedge_after_ms >= request_timeout_ms {
            return Err(invalid(
                "replica_reads.hedge_after_ms",
                format!(
                    "{} ms is not below cluster.request_timeout_ms ({} ms): the master would never be asked in time",
                    self.hedge_after_ms, request_timeout_ms
                ),
            ));
        }
        if self.rules.len() + 1 > MAX_LAG_BOUNDS {
            return Err(invalid(
                "replica_reads.rules",
                format!(
                    "at most {} rules (each has its own lag bound)",
                    MAX_LAG_BOUNDS - 1
                ),
            ));
        }
        Ok(())
    }
}
