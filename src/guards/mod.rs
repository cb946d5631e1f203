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
pub mod in_flight;
pub mod safe_defaults;
pub mod shared;
pub mod sweeper;
pub mod ttl;

pub use safe_defaults::{safe_rules, DANGEROUS};

use crate::commands::{CommandInfo, CommandTable};
use crate::config::{
    GuardAction, GuardRewrite, GuardRuleConfig, GuardScope, GuardsConfig, TtlRuleConfig,
};
use crate::protocol::{reply, Args};
use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Keys a keyed bucket map may hold before idle ones are dropped (a full bucket carries
/// no information, so dropping it changes no decision).
pub const MAX_KEYED: usize = 10_000;

/// A rate as written (`10/s`): count, period, and the unit's name for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
    pub text: String,
}

/// Parses `N/s`, `N/sec`, `N/min`, `N/h`, `N/hour`, `N/d`, `N/day`.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("{s:?} is not a rate like \"10/s\", \"1/min\", \"100/h\" or \"1000/d\"");
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("{s:?}: the count must be at least 1"));
    }
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(bad()),
    };
    Ok(Rate {
        count,
        period: Duration::from_secs(secs),
        text: s.trim().replace(' ', ""),
    })
}

/// One rule, ready to evaluate.
pub struct Rule {
    pub name: String,
    commands: Vec<String>,
    without_prefix: Option<bool>,
    scan_count_above: Option<u64>,
    users: Option<Vec<String>>,
    except_users: Vec<String>,
    action: GuardAction,
    rewrite: Option<GuardRewrite>,
    limiter: Limiter,
    rate: Option<Rate>,
    scope: GuardScope,
    shared: Option<Arc<shared::SharedBudget>>,
    denied: metrics::Counter,
    limited: metrics::Counter,
    passed: metrics::Counter,
    /// Checks of a keyed bucket map: every 256th looks at its size (`len()` read-locks
    /// every shard of the map) and prunes it past [`MAX_KEYED`], so neither the size
    /// nor a map full of active buckets is walked per request.
    prune_tick: std::sync::atomic::AtomicU32,
}

enum Limiter {
    None,
    Global(DefaultDirectRateLimiter),
    User(DefaultKeyedRateLimiter<String>),
    Addr(DefaultKeyedRateLimiter<IpAddr>),
}

impl Rule {
    fn from_config(r: &GuardRuleConfig, key: &str) -> Result<Rule, (String, String)> {
        let bad = |field: &str, m: String| (format!("{key}.{field}"), m);
        if r.name.is_empty()
            || !r
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return Err(bad(
                "name",
                format!("{:?}: use letters, digits and - _ . : only", r.name),
            ));
        }
        if r.commands.is_empty() {
            return Err(bad("commands", "list at least one command".into()));
        }
        let mut commands = Vec::new();
        for (i, c) in r.commands.iter().enumerate() {
            let c = c.trim().to_ascii_lowercase().replace(' ', "|");
            let ok = !c.is_empty()
                && c.split('|').count() <= 2
                && c.split('|').all(|p| !p.is_empty())
                && c.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(bad(
                    &format!("commands[{i}]"),
                    format!(
                        "{:?} is not a command like \"flushall\", \"config|set\" or \"cluster|*\"",
                        r.commands[i]
                    ),
                ));
            }
            commands.push(c);
        }
        if r.users.is_some() && !r.except_users.is_empty() {
            return Err(bad(
                "except_users",
                "set either users or except_users, not both".into(),
            ));
        }
        if r.scan_count_above.is_some() && !commands.iter().any(|c| c == "scan") {
            return Err(bad(
                "scan_count_above",
                "only applies to SCAN: add \"scan\" to commands".into(),
            ));
        }
        if r.key_pattern_without_prefix.is_some()
            && !commands.iter().any(|c| c == "keys" || c == "scan")
        {
            return Err(bad(
                "key_pattern_without_prefix",
                "only applies to KEYS and SCAN's MATCH".into(),
            ));
        }
        if r.rewrite == Some(GuardRewrite::Scan) {
            if commands.iter().any(|c| c != "keys") {
                return Err(bad(
                    "rewrite",
                    "\"scan\" rewrites KEYS only: list only \"keys\" in commands".into(),
                ));
            }
            if r.action == GuardAction::Deny {
                return Err(bad(
                    "rewrite",
                    "a denied command is not rewritten: use action \"allow\" or \"limit\"".into(),
                ));
            }
        }
        let rate = match (r.action, &r.rate) {
            (GuardAction::Limit, Some(rate)) => Some(parse_rate(rate).map_err(|m| bad("rate", m))?),
            (GuardAction::Limit, None) => {
                return Err(bad(
                    "rate",
                    "action \"limit\" needs a rate, e.g. \"1/min\"".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(bad("rate", "only for action \"limit\"".into()));
            }
            (_, None) => None,
        };
        if r.burst == Some(0) {
            return Err(bad("burst", "must be at least 1".into()));
        }
        if r.shared && !(r.action == GuardAction::Limit && r.scope == GuardScope::Global) {
            return Err(bad(
                "shared",
                "only for action \"limit\" with scope \"global\"".into(),
            ));
        }
        let mut limiter = Limiter::None;
        let mut shared_budget = None;
        if let Some(rate) = &rate {
            let burst = r.burst.unwrap_or(rate.count);
            if r.shared {
                shared_budget = Some(Arc::new(shared::SharedBudget {
                    rule: r.name.clone(),
                    budget: u64::from(burst),
                    window: rate.period,
                    on_error: r.on_error,
                    limited: metrics::counter!("respgate_guard_decisions_total", "rule" => r.name.clone(), "action" => "limit"),
                    passed: metrics::counter!("respgate_guard_decisions_total", "rule" => r.name.clone(), "action" => "pass"),
                }));
            } else {
                let per = rate.period / rate.count;
                let quota = Quota::with_period(per.max(Duration::from_nanos(1)))
                    .expect("non-zero period")
                    .allow_burst(NonZeroU32::new(burst).expect("checked above"));
                limiter = match r.scope {
                    GuardScope::Global => Limiter::Global(DefaultDirectRateLimiter::direct(quota)),
                    GuardScope::User => Limiter::User(DefaultKeyedRateLimiter::dashmap(quota)),
                    GuardScope::ClientAddr => {
                        Limiter::Addr(DefaultKeyedRateLimiter::dashmap(quota))
                    }
                };
            }
        }
        let counter = |action: &'static str| metrics::counter!("respgate_guard_decisions_total", "rule" => r.name.clone(), "action" => action);
        Ok(Rule {
            name: r.name.clone(),
            commands,
            without_prefix: r.key_pattern_without_prefix,
            scan_count_above: r.scan_count_above,
            users: r.users.clone(),
            except_users: r.except_users.clone(),
            action: r.action,
            rewrite: r.rewrite,
            limiter,
            rate,
            scope: r.scope,
            shared: shared_budget,
            denied: counter("deny"),
            limited: counter("limit"),
            passed: counter("pass"),
            prune_tick: Default::default(),
        })
    }

    /// Whether this rule names `cmd` (`name`, `container|sub`, or a container's name or
    /// `container|*` for all of it).
    fn names(&self, cmd: &CommandInfo) -> bool {
        self.names_directly(&cmd.name)
            || counts_as::may_count_as(&cmd.name).is_some_and(|other| self.names_directly(other))
    }

    /// Whether this rule names the command `name` itself (not what it may count as).
    fn names_directly(&self, name: &str) -> bool {
        self.commands.iter().any(|c| spec_names(c, name))
    }

    /// Whether the request (already known to be one of the rule's commands) matches the
    /// rule's user and argument conditions.
    fn matches(&self, info: &CommandInfo, args: Args<'_>, user: &str) -> bool {
        // Named only through what the command may count as: only when it does.
        if !self.names_directly(&info.name)
            && counts_as::counts_as(&info.name, args)
                .is_none_or(|(other, _)| !self.names_directly(other))
        {
            return false;
        }
        if let Some(users) = &self.users {
            if !users.iter().any(|u| u == user) {
                return false;
            }
        }
        if self.except_users.iter().any(|u| u == user) {
            return false;
        }
        if let Some(want) = self.without_prefix {
            let pattern = match info.name.as_str() {
                "keys" => Some(args.get(1)),
                "scan" => scan_option(args, b"match"),
                _ => return false,
            };
            // SCAN without MATCH walks every key: no prefix.
            let without = pattern.is_none_or(no_literal_prefix);
            if without != want {
                return false;
            }
        }
        if let Some(limit) = self.scan_count_above {
            if info.name != "scan" {
                return false;
            }
            let count = scan_option(args, b"count")
                .and_then(crate::protocol::scan::parse_int)
                .unwrap_or(10);
            if count <= limit as i64 {
                return false;
            }
        }
        true
    }

    /// How the request is described in a refusal (`KEYS without a prefix`).
    fn what(&self, info: &CommandInfo, args: Args<'_>) -> String {
        let mut s = info.name.to_uppercase().replace('|', " ");
        if let Some((other, option)) = counts_as::counts_as(&info.name, args) {
            s = format!(
                "{s} {} (counts as {})",
                String::from_utf8_lossy(option).to_uppercase(),
                other.to_uppercase().replace('|', " ")
            );
        }
        match self.without_prefix {
            Some(true) => s.push_str(" without a prefix"),
            Some(false) => s.push_str(" with a prefix"),
            None => {}
        }
        if let Some(n) = self.scan_count_above {
            s.push_str(&format!(" with COUNT above {n}"));
        }
        s
    }

    fn scope_text(&self) -> &'static str {
        match (self.scope, self.shared.is_some()) {
            (_, true) => "for all respgate instances together",
            (GuardScope::User, _) => "per user",
            (GuardScope::ClientAddr, _) => "per client address",
            (GuardScope::Global, _) => "for all clients",
        }
    }

    fn prune_due(&self) -> bool {
        self.prune_tick.fetch_add(1, Ordering::Relaxed) % 256 == 0
    }

    /// Keys held by a keyed bucket map (tests).
    #[cfg(test)]
    fn keyed_len(&self) -> usize {
        match &self.limiter {
            Limiter::User(l) => l.len(),
            Limiter::Addr(l) => l.len(),
            _ => 0,
        }
    }

    /// Takes a token; `Err(wait)` when the bucket is empty.
    fn take(&self, user: &String, addr: IpAddr, clock: &DefaultClock) -> Result<(), Duration> {
        let result = match &self.limiter {
            Limiter::None => Ok(()),
            Limiter::Global(l) => l.check(),
            Limiter::User(l) => {
                let r = l.check_key(user);
                // The tick first: `len()` read-locks every shard of the map.
                if self.prune_due() && l.len() > MAX_KEYED {
                    l.retain_recent();
                    l.shrink_to_fit();
                }
                r
            }
            Limiter::Addr(l) => {
                let r = l.check_key(&addr);
                if self.prune_due() && l.len() > MAX_KEYED {
                    l.retain_recent();
                    l.shrink_to_fit();
                }
                r
            }
        };
        result.map_err(|not_until| not_until.wait_time_from(clock.now()))
    }
}

/// Whether the command spec `c` (`name`, `container|sub`, `container`, `container|*`)
/// names `cmd`.
fn spec_names(c: &str, name: &str) -> bool {
    let container = name.split('|').next().unwrap_or("");
    c == name || c == container || c.strip_suffix("|*").is_some_and(|p| p == container)
}

/// The value of SCAN's option `name` (`MATCH`, `COUNT`).
fn scan_option<'a>(args: Args<'a>, name: &[u8]) -> Option<&'a [u8]> {
    let mut i = 2;
    while i + 1 < args.len() {
        if args.get(i).eq_ignore_ascii_case(name) {
            return Some(args.get(i + 1));
        }
        i += 2;
    }
    None
}

/// A glob with no literal prefix: it starts with a wildcard (`*`, `?`, `[`).
pub fn no_literal_prefix(pattern: &[u8]) -> bool {
    matches!(pattern.first(), Some(b'*' | b'?' | b'['))
}

/// What the guards decided about one request that a rule matched.
pub enum Verdict {
    /// Refused: this error.
    Refuse(Bytes),
    /// Serve this KEYS by SCAN on every master, at most `max` keys (once `charge`, if
    /// a limit rule matched, is paid).
    SafeKeys { max: usize, charge: Option<Charge> },
    /// A limit rule matched: the request runs if its token can be paid.
    Charge(Charge),
    /// Count it against a budget kept in the cluster first.
    Shared(Arc<shared::SharedBudget>, String),
}

/// One configuration's guards.
pub struct GuardSet {
    rules: Vec<Rule>,
    pub ttl: ttl::TtlPolicy,
    pub max_keys_reply: usize,
    /// `guards.max_scan_count`: a client's SCAN COUNT above it is lowered to it.
    pub max_scan_count: u64,
    /// `guards.max_keyspace_walks_per_user`.
    pub max_walks: usize,
    /// The rule indices per command id for one command table.
    compiled: ArcSwapOption<(usize, Arc<ById>)>,
    /// `[guards] admins`: who may act on every tenant's connections (CLIENT LIST /
    /// KILL), besides running the dangerous commands.
    admins: Vec<String>,
    /// `"default"`, for keyed buckets of clients without a user.
    default_user: String,
    clock: DefaultClock,
}

/// Per [`CommandInfo::id`]: the indices (into the rules) of the rules naming it, in
/// order; empty for commands no rule names.
pub struct ById(Vec<Box<[u16]>>);

impl GuardSet {
    pub fn from_config(
        cfg: &GuardsConfig,
        ttl: &[TtlRuleConfig],
    ) -> Result<GuardSet, (String, String)> {
        let mut rules = Vec::new();
        if cfg.enabled {
            for (i, r) in cfg.rules.iter().enumerate() {
                rules.push(Rule::from_config(r, &format!("guards.rules[{i}]"))?);
            }
            if cfg.safe_defaults {
                parse_rate(&cfg.admin_rate).map_err(|m| ("guards.admin_rate".to_string(), m))?;
                for r in safe_rules(&cfg.admins, &cfg.admin_rate) {
                    if cfg.rules.iter().any(|own| own.name == r.name) {
                        continue; // the file's own rule of that name replaces it
                    }
                    rules.push(Rule::from_config(&r, "guards.safe_defaults")?);
                }
            }
        }
        for (i, r) in rules.iter().enumerate() {
            if rules[..i].iter().any(|o| o.name == r.name) {
                return Err((
                    format!("guards.rules[{i}].name"),
                    format!("rule {:?} is defined twice", r.name),
                ));
            }
        }
        if rules.len() > u16::MAX as usize {
            return Err(("guards.rules".into(), "too many rules".into()));
        }
        for (key, value) in [
            ("guards.max_keys_reply", cfg.max_keys_reply as u64),
            ("guards.max_scan_count", cfg.max_scan_count),
            (
                "guards.max_keyspace_walks_per_user",
                cfg.max_keyspace_walks_per_user as u64,
            ),
        ] {
            if value == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        Ok(GuardSet {
            rules,
            ttl: ttl::TtlPolicy::from_config(ttl)?,
            max_keys_reply: cfg.max_keys_reply,
            max_scan_count: cfg.max_scan_count,
            max_walks: cfg.max_keyspace_walks_per_user,
            compiled: ArcSwapOption::empty(),
            admins: cfg.admins.clone(),
            default_user: "default".into(),
            clock: DefaultClock::default(),
        })
    }

    /// The rule indices per command id of `table` (computed once per table).
    pub fn by_id(&self, table: &Arc<CommandTable>) -> Arc<ById> {
        let id = Arc::as_ptr(table) as usize;
        if let Some(c) = self.compiled.load_full() {
            if c.0 == id {
                return c.1.clone();
            }
        }
        let mut v: Vec<Box<[u16]>> = vec![Box::default(); table.id_count()];
        for cmd in table.all() {
            let list: Vec<u16> = self
                .rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.names(cmd))
                .map(|(i, _)| i as u16)
                .collect();
            v[cmd.id as usize] = list.into_boxed_slice();
        }
        for r in &self.rules {
            for c in &r.commands {
                let newer = safe_defaults::NEWER_THAN_7_0.contains(&c.as_str());
                if !newer && !table.all().any(|cmd| spec_names(c, &cmd.name)) {
                    tracing::warn!(rule = %r.name, command = %c, "guard rule names a command the cluster does not have");
                }
            }
        }
        let c = Arc::new(ById(v));
        self.compiled.store(Some(Arc::new((id, c.clone()))));
        c
    }

    /// The commands a script run by `user` must not call, as `ACL SETUSER` rules
    /// (`-flushall`, `-config|set`): every command a deny or limit rule names for that
    /// user, unless an earlier unconditional allow rule exempts it. Inside a script
    /// respgate cannot count or look at arguments, so a limit (or a rule with an
    /// argument condition) becomes a plain deny there: stricter, never looser.
    /// Only commands `table` has are named (a node refuses `ACL SETUSER` rules for
    /// commands it does not know).
    pub fn script_denials(&self, user: &str, table: &CommandTable) -> Vec<String> {
        let mut exempt: Vec<&str> = Vec::new();
        let mut denied: Vec<String> = Vec::new();
        for r in &self.rules {
            let applies = r.users.as_ref().is_none_or(|u| u.iter().any(|n| n == user))
                && !r.except_users.iter().any(|n| n == user);
            if !applies {
                continue;
            }
            let unconditional = r.without_prefix.is_none() && r.scan_count_above.is_none();
            for c in &r.commands {
                let spec = c.strip_suffix("|*").unwrap_or(c);
                match r.action {
                    GuardAction::Allow if unconditional && r.rewrite.is_none() => exempt.push(spec),
                    GuardAction::Allow => {}
                    GuardAction::Deny | GuardAction::Limit => {
                        let known = table.all().any(|cmd| spec_names(spec, &cmd.name));
                        if known
                            && !exempt.contains(&spec)
                            && !denied.iter().any(|d| d[1..] == *spec)
                        {
                            denied.push(format!("-{spec}"));
                        }
                    }
                }
            }
        }
        denied
    }

    /// One line per rule, for the startup log.
    pub fn describe(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| {
                let mut s = format!("{}: {} -> ", r.name, r.commands.join(","));
                match r.action {
                    GuardAction::Allow => s.push_str("allow"),
                    GuardAction::Deny => s.push_str("deny"),
                    GuardAction::Limit => s.push_str(&format!(
                        "limit {} {}",
                        r.rate.as_ref().map_or("", |x| x.text.as_str()),
                        r.scope_text()
                    )),
                }
                if let Some(u) = &r.users {
                    s.push_str(&format!(" (users {})", u.join(",")));
                }
                if !r.except_users.is_empty() {
                    s.push_str(&format!(" (except {})", r.except_users.join(",")));
                }
                if r.rewrite.is_some() {
                    s.push_str(" (KEYS served by SCAN)");
                }
                s
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.ttl.is_empty()
    }

    /// Whether `user` is one of `[guards] admins`.
    pub fn is_admin(&self, user: &str) -> bool {
        self.admins.iter().any(|a| a == user)
    }
}

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
                Err(reply::error(&format!(
                    "ERR respgate: {what} refused: user '{user}' already has {held} keyspace walks (KEYS, SCAN, RANDOMKEY searches) in flight, its limit (guards.max_keyspace_walks_per_user = {max}); retry once one is answered"
                )))
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

/// A session's view of the guards: the set and its compiled vector, as of `generation`
/// and the table at `table`.
#[derive(Default)]
pub struct GuardCache {
    generation: u64,
    table: usize,
    set: Option<Arc<GuardSet>>,
    by_id: Option<Arc<ById>>,
    /// The next request already passed its shared budget: do not count it again.
    pub bypass_once: bool,
}

impl GuardCache {
    #[inline]
    fn refresh(&mut self, guards: &Guards, table: &Arc<CommandTable>) {
        let generation = guards.generation();
        let table_id = Arc::as_ptr(table) as usize;
        if self.set.is_none() || generation != self.generation || table_id != self.table {
            let set = guards.current();
            self.by_id = Some(set.by_id(table));
            self.set = Some(set);
            self.generation = generation;
            self.table = table_id;
        }
    }

    /// The set in force (for the TTL policy).
    pub fn set(&mut self, guards: &Guards, table: &Arc<CommandTable>) -> &Arc<GuardSet> {
        self.refresh(guards, table);
        self.set.as_ref().expect("refreshed")
    }
}

/// Evaluates the rules naming `info` for this request; `None` lets it through as it is.
#[inline]
pub fn check(
    guards: &Guards,
    cache: &mut GuardCache,
    table: &Arc<CommandTable>,
    info: &CommandInfo,
    args: Args<'_>,
    user: Option<&String>,
    addr: IpAddr,
) -> Option<Verdict> {
    cache.refresh(guards, table);
    if cache.by_id.as_ref()?.0.get(info.id as usize)?.is_empty() {
        return None;
    }
    evaluate(cache, info, args, user, addr)
}

#[cold]
fn evaluate(
    cache: &mut GuardCache,
    info: &CommandInfo,
    args: Args<'_>,
    user: Option<&String>,
    addr: IpAddr,
) -> Option<Verdict> {
    let bypass = std::mem::take(&mut cache.bypass_once);
    // Borrowed, not cloned: no reference count touched (shared by every session).
    let set = cache.set.as_deref()?;
    let list = cache.by_id.as_deref()?.0.get(info.id as usize)?;
    let user = user.unwrap_or(&set.default_user);
    for &i in list.iter() {
        let rule = &set.rules[i as usize];
        if !rule.matches(info, args, user) {
            continue;
        }
        let safe_keys = |charge| Verdict::SafeKeys {
            max: set.max_keys_reply,
            charge,
        };
        match rule.action {
            GuardAction::Allow => {
                rule.passed.increment(1);
                return rule.rewrite.map(|GuardRewrite::Scan| safe_keys(None));
            }
            GuardAction::Deny => {
                rule.denied.increment(1);
                crate::audit::guard_denied(&rule.name, user, addr, &info.name);
                return Some(Verdict::Refuse(reply::error(&format!(
                    "ERR respgate: {} is denied by rule '{}' (ask an admin)",
                    rule.what(info, args),
                    rule.name
                ))));
            }
            GuardAction::Limit => {
                if let Some(budget) = &rule.shared {
                    if bypass {
                        return rule.rewrite.map(|GuardRewrite::Scan| safe_keys(None));
                    }
                    let rate = rule.rate.as_ref().map_or("", |r| r.text.as_str());
                    let prefix = format!(
                        "ERR respgate: {} is limited to {} {} (rule {})",
                        rule.what(info, args),
                        rate,
                        rule.scope_text(),
                        rule.name
                    );
                    return Some(Verdict::Shared(budget.clone(), prefix));
                }
                // The token is taken only once nothing else refuses the request.
                let charge = Charge {
                    set: cache.set.clone()?,
                    rule: i,
                };
                return Some(match rule.rewrite {
                    Some(GuardRewrite::Scan) => safe_keys(Some(charge)),
                    None => Verdict::Charge(charge),
                });
            }
        }
    }
    None
}

/// A limit rule's token, owed by a request the rule matched: taken by [`Charge::pay`]
/// when the request is about to run, after every other check that could refuse it
/// (MULTI's rules, subscribed mode, CROSSSLOT, ...), so a refused command spends none.
pub struct Charge {
    set: Arc<GuardSet>,
    rule: u16,
}

impl Charge {
    /// Takes the token; the refusal (naming the rule, its rate and the wait) when the
    /// bucket is empty.
    pub fn pay(
        self,
        info: &CommandInfo,
        args: Args<'_>,
        user: Option<&String>,
        addr: IpAddr,
    ) -> Result<(), Bytes> {
        let set = &*self.set;
        let rule = &set.rules[self.rule as usize];
        let user = user.unwrap_or(&set.default_user);
        match rule.take(user, addr, &set.clock) {
            Ok(()) => {
                rule.passed.increment(1);
                Ok(())
            }
            Err(wait) => {
                rule.limited.increment(1);
                crate::audit::guard_limited(&rule.name, user, addr, &info.name);
                Err(reply::error(&format!(
                    "ERR respgate: {} is limited to {} {} (rule {}); retry in {}",
                    rule.what(info, args),
                    rule.rate.as_ref().map_or("", |r| r.text.as_str()),
                    rule.scope_text(),
                    rule.name,
                    retry_text(wait)
                )))
            }
        }
    }
}

/// `42s`, or `0.3s` under a second (never `0s`).
pub fn retry_text(wait: Duration) -> String {
    if wait >= Duration::from_secs(1) {
        format!("{}s", wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    } else {
        format!("{:.1}s", (wait.as_secs_f64()).max(0.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let r = parse_rate("1/min").unwrap();
        assert_eq!((r.count, r.period), (1, Duration::from_secs(60)));
        assert_eq!(parse_rate("10/s").unwrap().count, 10);
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/week").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn prefixes() {
        assert!(no_literal_prefix(b"*"));
        assert!(no_literal_prefix(b"*foo*"));
        assert!(no_literal_prefix(b"?x"));
        assert!(no_literal_prefix(b"[ab]*"));
        assert!(!no_literal_prefix(b"session:42:*"));
    }

    fn rule_config(scope: GuardScope, rate: &str) -> GuardRuleConfig {
        let mut r = GuardRuleConfig::new("t", &["echo"], GuardAction::Limit);
        r.rate = Some(rate.into());
        r.scope = scope;
        r
    }

    #[test]
    fn keyed_buckets_stay_bounded() {
        let rule =
            Rule::from_config(&rule_config(GuardScope::ClientAddr, "1000000/s"), "r").unwrap();
        let clock = DefaultClock::default();
        let user = String::from("default");
        for i in 0..(MAX_KEYED as u32 + 2000) {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(rule.take(&user, addr, &clock).is_ok());
        }
        std::thread::sleep(Duration::from_millis(5));
        for i in 0..300u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            let _ = rule.take(&user, addr, &clock);
        }
        assert!(
            rule.keyed_len() < MAX_KEYED,
            "{} buckets kept",
            rule.keyed_len()
        );
    }

    #[test]
    fn buckets_refuse_past_the_burst_with_the_wait() {
        let rule = Rule::from_config(&rule_config(GuardScope::User, "2/min"), "r").unwrap();
        let clock = DefaultClock::default();
        let (a, b) = (String::from("a"), String::from("b"));
        let addr = IpAddr::from([127, 0, 0, 1]);
        assert!(rule.take(&a, addr, &clock).is_ok());
        assert!(rule.take(&a, addr, &clock).is_ok());
        let wait = rule.take(&a, addr, &clock).unwrap_err();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(rule.take(&b, addr, &clock).is_ok());
    }

    #[test]
    fn retry_texts() {
        assert_eq!(retry_text(Duration::from_millis(41_200)), "42s");
        assert_eq!(retry_text(Duration::from_secs(60)), "60s");
        assert_eq!(retry_text(Duration::from_millis(10)), "0.1s");
    }
}
