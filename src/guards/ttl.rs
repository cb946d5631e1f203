//! Expiry policy for sensitive key patterns (`[[ttl]]`): such keys never live without a
//! TTL, and (with `max_seconds`) never with a longer one.
//!
//! **Which writes.** Every key a write command may create or overwrite: a key whose
//! key-spec flags (from the cluster's `COMMAND` table) say `insert` or `update` (SET,
//! APPEND, INCR*, HSET, LPUSH, SADD, ZADD, XADD, MSET, RENAME / RENAMENX / SMOVE /
//! LMOVE / COPY destinations, *STORE destinations, BITOP, PFMERGE, RESTORE, ...). A
//! covered key is such a key matching a pattern. Commands that set or read the expiry
//! themselves (EXPIRE and friends, GETEX, PERSIST) are handled apart; SET with EX / PX /
//! EXAT / PXAT and SETEX / PSETEX carry their own expiry and get none added. `KEEPTTL`
//! may create a key without one, so it counts as "no expiry".
//!
//! **add.** Each covered key gets `EXPIRE key N NX` written right behind the command,
//! in the same job on the same connection (so the same node, in order; a redirection
//! re-sends both). The client sees only the command's reply. `NX`: a key that already
//! has a TTL keeps it. Inside MULTI the EXPIREs of the transaction's covered keys are
//! queued last, before EXEC ([`PendingExpires`]), and their replies are taken out of
//! EXEC's array: they run only when the transaction does. An MSET split over slots
//! gets them per part (`expire_covered`).
//!
//! **reject.** SET without an expiry on a covered key is refused; writes that cannot
//! carry an expiry (HSET, LPUSH, ...) get the EXPIRE as with `add`.
//!
//! **max_seconds.** An expiry a client gives a covered key (EXPIRE / PEXPIRE /
//! EXPIREAT / PEXPIREAT, SET EX / PX / EXAT / PXAT, SETEX / PSETEX, GETEX EX / PX /
//! EXAT / PXAT) longer than the rule's `max_seconds` is refused (`over_max = "reject"`)
//! or rewritten to it (`"cap"`; absolute times become now + max_seconds).
//!
//! PERSIST (and GETEX ... PERSIST) on a covered key is refused in both modes, queued in
//! MULTI too (aborting it). What respgate cannot see (keys a script writes) is left to
//! the background sweeper (`guards::sweeper`).

use crate::acl::glob::Pattern;
use crate::commands::{CommandInfo, KeyFlags, KeyRef};
use crate::config::{TtlMode, TtlOverMax, TtlRuleConfig};
use crate::protocol::refusal::Refusal;
use crate::protocol::reply::{self, put_bulk};
use crate::protocol::Args;
use bytes::{Bytes, BytesMut};
use std::time::Duration;

struct TtlRule {
    pattern: Pattern,
    source: String,
    seconds: u64,
    seconds_text: String,
    /// `max_seconds` as written in `EXPIRE key max LT`.
    max_text: Option<String>,
    mode: TtlMode,
    /// `max_seconds` and what to do above it.
    max: Option<(u64, TtlOverMax)>,
    sweep_interval: Duration,
    sweep_keys_per_sec: u64,
}

/// The `[[ttl]]` rules.
#[derive(Default)]
pub struct TtlPolicy {
    rules: Vec<TtlRule>,
}

/// What the policy does with one request.
pub enum TtlDecision {
    /// Nothing to do.
    Pass,
    /// Refuse with this error.
    Refuse(Bytes),
    /// Send `job` instead of the request: the request (its expiry capped when it was
    /// over `max_seconds`) followed by `replies - 1` EXPIREs; the client gets the first
    /// reply.
    Rewrite { job: Bytes, replies: u32 },
}

/// One pattern's background sweep (see `guards::sweeper`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepRule {
    pub pattern: String,
    pub seconds: u64,
    /// `max_seconds`: a longer expiry found is lowered to it (`EXPIRE key max LT`).
    pub max: Option<u64>,
    pub interval: Duration,
    pub keys_per_sec: u64,
}

/// The EXPIREs a transaction being queued owes its covered keys (each key once), sent
/// last inside the transaction.
#[derive(Default, Debug)]
pub struct PendingExpires {
    /// Key, default seconds, `max_seconds`.
    keys: Vec<(Bytes, u64, Option<u64>)>,
}

impl PendingExpires {
    /// How many EXPIREs (and so replies) there are.
    pub fn len(&self) -> usize {
        self.keys
            .iter()
            .map(|(_, _, max)| 1 + max.is_some() as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn add(&mut self, key: &[u8], rule: &TtlRule) {
        if !self.keys.iter().any(|(k, _, _)| &k[..] == key) {
            let max = rule.max.map(|(m, _)| m);
            self.keys
                .push((Bytes::copy_from_slice(key), rule.seconds, max));
        }
    }

    /// Writes the policy's EXPIREs for each key ([`put_policy`]).
    pub fn write_to(&self, out: &mut BytesMut) {
        for (key, seconds, max) in &self.keys {
            put_expire(out, key, seconds.to_string().as_bytes(), b"NX");
            if let Some(max) = max {
                put_expire(out, key, max.to_string().as_bytes(), b"LT");
            }
        }
    }
}

/// How an expiry argument counts time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Unit {
    Seconds,
    Millis,
    UnixSeconds,
    UnixMillis,
}

impl TtlPolicy {
    pub fn from_config(cfg: &[TtlRuleConfig]) -> Result<TtlPolicy, (String, String)> {
        let mut rules = Vec::new();
        for (i, r) in cfg.iter().enumerate() {
            let key = |field: &str| format!("ttl[{i}].{field}");
            if r.pattern.is_empty() {
                return Err((key("pattern"), "must not be empty".into()));
            }
            if r.default_seconds == 0 {
                return Err((key("default_seconds"), "must be at least 1".into()));
            }
            if let Some(max) = r.max_seconds {
                if max < r.default_seconds {
                    return Err((
                        key("max_seconds"),
                        format!(
                            "{max} is below default_seconds ({}): the policy's own EXPIRE would be over the cap",
                            r.default_seconds
                        ),
                    ));
                }
            } else if r.over_max.is_some() {
                return Err((
                    key("over_max"),
                    "set, but there is no max_seconds to enforce".into(),
                ));
            }
            if r.sweep_interval_secs > 0 && r.sweep_keys_per_sec == 0 {
                return Err((
                    key("sweep_keys_per_sec"),
                    "must be at least 1 (sweep_interval_secs = 0 turns the sweeper off)".into(),
                ));
            }
            // Millisecond forms multiply by 1000; keep that inside an i64.
            if r.max_seconds.unwrap_or(r.default_seconds) > i64::MAX as u64 / 1000 {
                return Err((key("max_seconds"), "too large".into()));
            }
            rules.push(TtlRule {
                pattern: Pattern::new(r.pattern.as_bytes()),
                source: r.pattern.clone(),
                seconds: r.default_seconds,
                seconds_text: r.default_seconds.to_string(),
                max_text: r.max_seconds.map(|m| m.to_string()),
                mode: r.mode,
                max: r.max_seconds.map(|m| (m, r.over_max.unwrap_or_default())),
                sweep_interval: Duration::from_secs(r.sweep_interval_secs),
                sweep_keys_per_sec: r.sweep_keys_per_sec,
            });
        }
        Ok(TtlPolicy { rules })
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn describe(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| {
                let mut s = format!(
                    "{}: {}s ({})",
                    r.source,
                    r.seconds,
                    match r.mode {
                        TtlMode::Add => "added when missing",
                        TtlMode::Reject => "SET without expiry refused",
                    }
                );
                if let Some((max, over)) = r.max {
                    s.push_str(&format!(
                        ", at most {max}s ({})",
                        match over {
                            TtlOverMax::Reject => "longer refused",
                            TtlOverMax::Cap => "longer capped",
                        }
                    ));
                }
                if r.sweep_interval.is_zero() {
                    s.push_str(", no sweeper");
                } else {
                    s.push_str(&format!(
                        ", swept every {}s at {} keys/s",
                        r.sweep_interval.as_secs(),
                        r.sweep_keys_per_sec
                    ));
                }
                s
            })
            .collect()
    }

    /// The patterns the background sweeper walks (sweep interval above 0).
    pub fn sweeps(&self) -> Vec<SweepRule> {
        self.rules
            .iter()
            .filter(|r| !r.sweep_interval.is_zero())
            .map(|r| SweepRule {
                pattern: r.source.clone(),
                seconds: r.seconds,
                max: r.max.map(|(m, _)| m),
                interval: r.sweep_interval,
                keys_per_sec: r.sweep_keys_per_sec,
            })
            .collect()
    }

    fn rule_for(&self, key: &[u8]) -> Option<&TtlRule> {
        self.rules.iter().find(|r| r.pattern.matches(key))
    }

    /// Applies the policy to a request about to be forwarded (`keys` found already).
    pub fn apply(&self, info: &CommandInfo, args: Args<'_>, keys: &[KeyRef]) -> TtlDecision {
        // The request and its EXPIREs, written once into one buffer (a covered write
        // never has its request rewritten: only expiry arguments are capped).
        let mut job: Option<BytesMut> = None;
        let mut replies = 1;
        let checked = self.check(info, args, keys, |key, rule| {
            let out = job.get_or_insert_with(|| {
                let mut out = BytesMut::with_capacity(args.raw().len() + 64 + key.len());
                out.extend_from_slice(args.raw());
                out
            });
            replies += put_policy(out, key, rule);
        });
        match (checked, job) {
            (Err(refusal), _) => TtlDecision::Refuse(refusal),
            (Ok(None), None) => TtlDecision::Pass,
            (Ok(Some(request)), _) => TtlDecision::Rewrite {
                job: request,
                replies: 1,
            },
            (Ok(None), Some(job)) => TtlDecision::Rewrite {
                job: job.freeze(),
                replies,
            },
        }
    }

    /// Applies the policy to a command being queued in MULTI: its covered keys go to
    /// `pending` (sent before EXEC). `Ok(Some(bytes))`: queue these bytes instead (the
    /// expiry was capped); `Err`: the refusal.
    pub fn apply_queued(
        &self,
        info: &CommandInfo,
        args: Args<'_>,
        keys: &[KeyRef],
        pending: &mut PendingExpires,
    ) -> Result<Option<Bytes>, Bytes> {
        self.check(info, args, keys, |key, rule| pending.add(key, rule))
    }

    /// Appends `EXPIRE key N NX` to `out` for each of `keys` a rule covers; returns how
    /// many (an MSET part: every key is written).
    pub fn expire_covered<'k>(
        &self,
        out: &mut BytesMut,
        keys: impl Iterator<Item = &'k [u8]>,
    ) -> u32 {
        let mut n = 0;
        for key in keys {
            if let Some(rule) = self.rule_for(key) {
                n += put_policy(out, key, rule);
            }
        }
        n
    }

    /// The policy's verdict: `covered` is called for each key that must get the rule's
    /// EXPIRE; `Ok(Some(_))` is the request rewritten (an expiry capped).
    fn check<'p>(
        &'p self,
        info: &CommandInfo,
        args: Args<'_>,
        keys: &[KeyRef],
        mut covered: impl FnMut(&[u8], &'p TtlRule),
    ) -> Result<Option<Bytes>, Bytes> {
        let name = info.name.as_str();
        match name {
            "persist" => return self.refuse_persist(name, args),
            "getex" if has_word(args, b"persist") => return self.refuse_persist(name, args),
            // These set (or read) the expiry themselves; they never create a key.
            "expire" | "pexpire" | "expireat" | "pexpireat" | "getex" | "setex" | "psetex" => {
                return self.check_expiry(name, args)
            }
            "set" => {
                if let Some(found) = expiry_argument(name, args) {
                    return self.over_max(name, args, found);
                }
            }
            _ => {}
        }
        if !info.is_write() {
            return Ok(None);
        }
        for k in keys {
            if k.flags.contains(KeyFlags::NOT_KEY)
                || !k
                    .flags
                    .intersects(KeyFlags(KeyFlags::INSERT.0 | KeyFlags::UPDATE.0))
            {
                continue;
            }
            let key = k.key(args);
            let Some(rule) = self.rule_for(key) else {
                continue;
            };
            if rule.mode == TtlMode::Reject && name == "set" {
                return Err(Refusal::TtlNeeded {
                    pattern: rule.source.clone(),
                    max_secs: rule.max.map_or(rule.seconds, |(m, _)| m),
                }
                .reply());
            }
            covered(key, rule);
        }
        Ok(None)
    }

    fn refuse_persist(&self, name: &str, args: Args<'_>) -> Result<Option<Bytes>, Bytes> {
        match args.try_get(1).and_then(|k| self.rule_for(k)) {
            Some(r) => Err(Refusal::TtlMustStay {
                pattern: r.source.clone(),
                command: name.to_uppercase(),
            }
            .reply()),
            None => Ok(None),
        }
    }

    /// EXPIRE and friends, SETEX / PSETEX, GETEX: the expiry they give, against
    /// `max_seconds`.
    fn check_expiry(&self, name: &str, args: Args<'_>) -> Result<Option<Bytes>, Bytes> {
        match expiry_argument(name, args) {
            Some(found) => self.over_max(name, args, found),
            None => Ok(None),
        }
    }

    /// An expiry of `found.1` (unit `found.2`) at argument `found.0` for the key at 1:
    /// within the covering rule's `max_seconds`, refused, or capped.
    fn over_max(
        &self,
        name: &str,
        args: Args<'_>,
        (index, unit): (usize, Unit),
    ) -> Result<Option<Bytes>, Bytes> {
        let Some(rule) = args.try_get(1).and_then(|k| self.rule_for(k)) else {
            return Ok(None);
        };
        let Some((max, over)) = rule.max else {
            return Ok(None);
        };
        // Unparsable or non-positive: Redis's own error (or deletion) follows.
        let Some(given) = args
            .try_get(index)
            .and_then(crate::protocol::scan::parse_int)
        else {
            return Ok(None);
        };
        let max = max as i64;
        let max_ms = max.saturating_mul(1000);
        let (now_s, now_ms) = now();
        let (relative_ms, capped) = match unit {
            Unit::Seconds => (given.saturating_mul(1000), max),
            Unit::Millis => (given, max_ms),
            Unit::UnixSeconds => (
                given.saturating_sub(now_s).saturating_mul(1000),
                now_s.saturating_add(max),
            ),
            Unit::UnixMillis => (given.saturating_sub(now_ms), now_ms.saturating_add(max_ms)),
        };
        if relative_ms <= max_ms {
            return Ok(None);
        }
        if over == TtlOverMax::Reject {
            return Err(Refusal::TtlOverMax {
                command: name.to_uppercase(),
                value: String::from_utf8_lossy(args.get(index)).into_owned(),
                key: String::from_utf8_lossy(args.get(1)).into_owned(),
                max: max as u64,
                pattern: rule.source.clone(),
            }
            .reply());
        }
        metrics::counter!("respgate_ttl_capped_total").increment(1);
        let capped = capped.to_string();
        let words = args
            .iter()
            .enumerate()
            .map(|(i, a)| if i == index { capped.as_bytes() } else { a })
            .collect::<Vec<_>>();
        Ok(Some(reply::command(words)))
    }
}

/// `EXPIRE key seconds <flag>`.
fn put_expire(out: &mut BytesMut, key: &[u8], seconds: &[u8], flag: &[u8]) {
    out.extend_from_slice(b"*4\r\n$6\r\nEXPIRE\r\n");
    put_bulk(out, key);
    put_bulk(out, seconds);
    put_bulk(out, flag);
}

/// What a write to a covered key gets behind it: `EXPIRE key N NX` (a key without
/// expiry gets the default) and, with `max_seconds`, `EXPIRE key max LT` (an expiry the
/// key brought along, from RENAME, COPY or RESTORE of a longer-lived source, is lowered
/// to the maximum). Returns how many commands (and so replies) were written.
fn put_policy(out: &mut BytesMut, key: &[u8], rule: &TtlRule) -> u32 {
    put_expire(out, key, rule.seconds_text.as_bytes(), b"NX");
    match &rule.max_text {
        Some(max) => {
            put_expire(out, key, max.as_bytes(), b"LT");
            2
        }
        None => 1,
    }
}

/// Seconds and milliseconds since the Unix epoch.
fn now() -> (i64, i64) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.as_millis() as i64)
}

/// Where a command gives an expiry, and in which unit: `None` when it gives none.
fn expiry_argument(name: &str, args: Args<'_>) -> Option<(usize, Unit)> {
    let option = |from: usize| {
        (from..args.len().saturating_sub(1)).find_map(|i| {
            let a = args.get(i);
            let unit = if a.eq_ignore_ascii_case(b"ex") {
                Unit::Seconds
            } else if a.eq_ignore_ascii_case(b"px") {
                Unit::Millis
            } else if a.eq_ignore_ascii_case(b"exat") {
                Unit::UnixSeconds
            } else if a.eq_ignore_ascii_case(b"pxat") {
                Unit::UnixMillis
            } else {
                return None;
            };
            Some((i + 1, unit))
        })
    };
    match name {
        "expire" | "setex" => Some((2, Unit::Seconds)),
        "pexpire" | "psetex" => Some((2, Unit::Millis)),
        "expireat" => Some((2, Unit::UnixSeconds)),
        "pexpireat" => Some((2, Unit::UnixMillis)),
        // The options come after key and value.
        "set" => option(3),
        "getex" => option(2),
        _ => None,
    }
}

fn has_word(args: Args<'_>, word: &[u8]) -> bool {
    args.iter().skip(2).any(|a| a.eq_ignore_ascii_case(word))
}
