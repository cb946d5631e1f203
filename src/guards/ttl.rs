//! Expiry policy for sensitive key patterns (`[[ttl]]`): such keys never live without a
//! TTL.
//!
//! **Which writes.** A command that can create a key is one the command table flags
//! `write` and `denyoom` (SET, SETNX, SETRANGE, APPEND, INCR*, HSET, LPUSH, SADD, ZADD,
//! XADD, MSET, COPY, ...); its keys written to (key-spec flags `RW` or `OW`) that match
//! a pattern are the ones the policy covers. SET with EX / PX / EXAT / PXAT carries its
//! own expiry and is left alone; SETEX / PSETEX likewise. `KEEPTTL` may create a key
//! without one, so it counts as "no expiry".
//!
//! **add.** Each covered key gets `EXPIRE key N NX` written right behind the command,
//! in the same job on the same connection (so the same node, in order; a redirection
//! re-sends both). The client sees only the command's reply. `NX`: a key that already
//! has a TTL keeps it.
//!
//! **reject.** SET without an expiry on a covered key is refused; writes that cannot
//! carry an expiry (HSET, LPUSH, ...) get the EXPIRE as with `add`.
//!
//! PERSIST (and GETEX ... PERSIST) on a covered key is refused in both modes, queued in
//! MULTI too (aborting it). The EXPIREs are not added to commands queued in MULTI, nor
//! to MSET split over several slots.

use crate::acl::glob::Pattern;
use crate::commands::{cmd_flags, CommandInfo, KeyFlags, KeyRef};
use crate::config::{TtlMode, TtlRuleConfig};
use crate::protocol::reply::{self, put_bulk};
use crate::protocol::Args;
use bytes::{Bytes, BytesMut};

struct TtlRule {
    pattern: Pattern,
    source: String,
    seconds: u64,
    seconds_text: String,
    mode: TtlMode,
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
    /// Send these bytes (the request plus EXPIREs) expecting `replies` replies; the
    /// client gets the first.
    Expire { job: Bytes, replies: u32 },
}

impl TtlPolicy {
    pub fn from_config(cfg: &[TtlRuleConfig]) -> Result<TtlPolicy, (String, String)> {
        let mut rules = Vec::new();
        for (i, r) in cfg.iter().enumerate() {
            if r.pattern.is_empty() {
                return Err((format!("ttl[{i}].pattern"), "must not be empty".into()));
            }
            if r.default_seconds == 0 {
                return Err((
                    format!("ttl[{i}].default_seconds"),
                    "must be at least 1".into(),
                ));
            }
            rules.push(TtlRule {
                pattern: Pattern::new(r.pattern.as_bytes()),
                source: r.pattern.clone(),
                seconds: r.default_seconds,
                seconds_text: r.default_seconds.to_string(),
                mode: r.mode,
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
                format!(
                    "{}: {}s ({})",
                    r.source,
                    r.seconds,
                    match r.mode {
                        TtlMode::Add => "added when missing",
                        TtlMode::Reject => "SET without expiry refused",
                    }
                )
            })
            .collect()
    }

    fn rule_for(&self, key: &[u8]) -> Option<&TtlRule> {
        self.rules.iter().find(|r| r.pattern.matches(key))
    }

    /// Applies the policy to a request about to be forwarded (`keys` found already).
    pub fn apply(&self, info: &CommandInfo, args: Args<'_>, keys: &[KeyRef]) -> TtlDecision {
        let name = info.name.as_str();
        if name == "persist" || (name == "getex" && has_word(args, b"persist")) {
            if let Some(r) = args.try_get(1).and_then(|k| self.rule_for(k)) {
                return TtlDecision::Refuse(reply::error(&format!(
                    "ERR respgate: keys matching '{}' must keep an expiry ({} refused by the TTL policy)",
                    r.source,
                    name.to_uppercase()
                )));
            }
            return TtlDecision::Pass;
        }
        let creates = info.flags & (cmd_flags::WRITE | cmd_flags::DENYOOM)
            == (cmd_flags::WRITE | cmd_flags::DENYOOM);
        if !creates || matches!(name, "setex" | "psetex") {
            return TtlDecision::Pass;
        }
        if name == "set" && has_expiry_option(args) {
            return TtlDecision::Pass;
        }
        let mut job: Option<BytesMut> = None;
        let mut replies = 1;
        for k in keys {
            if k.flags.contains(KeyFlags::NOT_KEY)
                || !k
                    .flags
                    .intersects(KeyFlags(KeyFlags::RW.0 | KeyFlags::OW.0))
            {
                continue;
            }
            let key = k.key(args);
            let Some(rule) = self.rule_for(key) else {
                continue;
            };
            if rule.mode == TtlMode::Reject && name == "set" {
                return TtlDecision::Refuse(reply::error(&format!(
                    "ERR respgate: keys matching '{}' need an expiry: add EX, PX, EXAT or PXAT (TTL policy, at most {}s)",
                    rule.source, rule.seconds
                )));
            }
            let out = job.get_or_insert_with(|| {
                let mut b = BytesMut::with_capacity(args.raw().len() + 48 + key.len());
                b.extend_from_slice(args.raw());
                b
            });
            out.extend_from_slice(b"*4\r\n$6\r\nEXPIRE\r\n");
            put_bulk(out, key);
            put_bulk(out, rule.seconds_text.as_bytes());
            out.extend_from_slice(b"$2\r\nNX\r\n");
            replies += 1;
        }
        match job {
            Some(job) => TtlDecision::Expire {
                job: job.freeze(),
                replies,
            },
            None => TtlDecision::Pass,
        }
    }
}

fn has_word(args: Args<'_>, word: &[u8]) -> bool {
    args.iter().skip(2).any(|a| a.eq_ignore_ascii_case(word))
}

/// SET ... EX/PX/EXAT/PXAT (the options come after key and value).
fn has_expiry_option(args: Args<'_>) -> bool {
    args.iter().skip(3).any(|a| {
        [&b"ex"[..], b"px", b"exat", b"pxat"]
            .iter()
            .any(|o| a.eq_ignore_ascii_case(o))
    })
}
