//! Ops guardrails: rules that deny or rate-limit commands (per user, per client address
//! or for everyone), KEYS served by SCAN, and the expiry policy for sensitive keys.
//!
//! **Job.** [`GuardSet`] is one configuration's rules, built (and validated) from
//! `[guards]` / `[[ttl]]`; [`Guards`] holds the one in force behind an `ArcSwap` with a
//! generation counter, swapped whole on SIGHUP. Rules are compiled once per command
//! table into a vector indexed by [`CommandInfo::id`] holding, for each command, the
//! indices of the rules that name it, in order ([`ById`]).
//!
//! **Per-request cost.** The session keeps a [`GuardCache`] (the set and its compiled
//! vector, with the generation and table they were read at). Per command: one atomic
//! load (the generation), one pointer comparison (the table) and one vector index. A
//! command no rule names stops there: no lock, no allocation. Only a command a rule
//! names evaluates its rules in order, first match wins; token buckets are `governor`'s
//! (lock-free GCRA for `global`, a sharded map for `user` / `client_addr`, pruned of
//! idle keys when it grows past [`MAX_KEYED`]).
//!
//! **Must not.** Export per-user metrics: `respgate_guard_decisions_total` carries the
//! rule and the action only.

mod counts_as;
mod eval;
pub mod in_flight;
mod rate;
mod rule;
pub mod safe_defaults;
mod set;
pub mod shared;
pub mod sweeper;
pub mod ttl;

pub use eval::{check, Charge, GuardCache, Verdict};
pub use rate::{parse_rate, retry_text, Rate};
pub use rule::{no_literal_prefix, Rule};
pub use safe_defaults::{safe_rules, DANGEROUS};
pub use set::{ById, GuardSet};

use crate::config::{GuardsConfig, TtlRuleConfig};
use crate::protocol::refusal::Refusal;
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Keys a keyed bucket map may hold before idle ones are dropped (a full bucket carries
/// no information, so dropping it changes no decision).
pub const MAX_KEYED: usize = 10_000;

/// Validates `[guards]` and `[[ttl]]` (config loading).
pub fn validate(cfg: &GuardsConfig, ttl: &[TtlRuleConfig]) -> Result<(), (String, String)> {
    GuardSet::from_config(cfg, ttl).map(|_| ())
}

/// The guards in force, swapped whole on reload.
pub struct Guards {
    set: ArcSwap<GuardSet>,
    generation: AtomicU64,
    /// Keyspace walks in flight per user (kept across reloads).
    walks: in_flight::PerUser,
}

impl Guards {
    pub fn new(cfg: &GuardsConfig, ttl: &[TtlRuleConfig]) -> Result<Guards, String> {
        let set = GuardSet::from_config(cfg, ttl).map_err(|(k, m)| format!("{k}: {m}"))?;
        log_active(&set, cfg);
        Ok(Guards {
            set: ArcSwap::from_pointee(set),
            generation: AtomicU64::new(0),
            walks: Default::default(),
        })
    }

    /// Replaces the rules (SIGHUP); buckets start full again.
    pub fn replace(&self, cfg: &GuardsConfig, ttl: &[TtlRuleConfig]) -> Result<(), String> {
        let set = GuardSet::from_config(cfg, ttl).map_err(|(k, m)| format!("{k}: {m}"))?;
        log_active(&set, cfg);
        self.set.store(Arc::new(set));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<GuardSet> {
        self.set.load_full()
    }

    /// A place for one keyspace walk (`what`: KEYS, SCAN, RANDOMKEY) of `user`, within
    /// `max` (`guards.max_keyspace_walks_per_user` of the set in force); else the
    /// refusal naming that limit.
    pub fn begin_walk(
        &self,
        max: usize,
        user: &str,
        what: &str,
    ) -> Result<in_flight::WalkHold, Bytes> {
        match self.walks.try_hold(user, max) {
            Ok(held) => Ok(in_flight::WalkHold::new(held)),
            Err(held) => {
                metrics::counter!("respgate_keyspace_walks_refused_total").increment(1);
                Err(Refusal::TooManyWalks {
                    what: what.to_string(),
                    user: user.to_string(),
                    held,
                    max,
                }
                .reply())
            }
        }
    }
}

fn log_active(set: &GuardSet, cfg: &GuardsConfig) {
    if !cfg.enabled {
        tracing::warn!("guards disabled ([guards] enabled = false or --no-guards): dangerous commands are not refused");
    } else if set.rules.is_empty() {
        tracing::warn!("no guard rules: dangerous commands are not refused");
    } else {
        tracing::info!(
            rules = set.rules.len(),
            safe_defaults = cfg.safe_defaults,
            admins = %cfg.admins.join(","),
            "guards active"
        );
        for line in set.describe() {
            tracing::info!("guard {line}");
        }
    }
    for line in set.ttl.describe() {
        tracing::info!("ttl policy {line}");
    }
}
