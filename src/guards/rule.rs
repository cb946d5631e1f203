//! One guard rule: checked and built from its `[[guards.rules]]` (its bucket or shared
//! budget with it), whether a request matches it, how a refusal describes the request,
//! and taking a token from its bucket.

use super::rate::{parse_rate, Rate};
use super::{counts_as, shared, MAX_KEYED};
use crate::commands::CommandInfo;
use crate::config::{GuardAction, GuardRewrite, GuardRuleConfig, GuardScope};
use crate::protocol::Args;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One rule, ready to evaluate.
pub struct Rule {
    pub name: String,
    pub(super) commands: Vec<String>,
    pub(super) without_prefix: Option<bool>,
    pub(super) scan_count_above: Option<u64>,
    pub(super) users: Option<Vec<String>>,
    pub(super) except_users: Vec<String>,
    pub(super) action: GuardAction,
    pub(super) rewrite: Option<GuardRewrite>,
    limiter: Limiter,
    pub(super) rate: Option<Rate>,
    scope: GuardScope,
    pub(super) shared: Option<Arc<shared::SharedBudget>>,
    pub(super) denied: metrics::Counter,
    pub(super) limited: metrics::Counter,
    pub(super) passed: metrics::Counter,
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
    /// Checks one `[[guards.rules]]` (`key` names it in errors) and builds it: its
    /// commands, its conditions, its rate and the bucket (or shared budget) it draws
    /// from.
    pub(super) fn from_config(r: &GuardRuleConfig, key: &str) -> Result<Rule, (String, String)> {
        check_name(r, key)?;
        let commands = parse_commands(r, key)?;
        check_conditions(r, &commands, key)?;
        let rate = parse_limit(r, key)?;
        let (limiter, shared_budget) = limiter(r, rate.as_ref());
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
    pub(super) fn names(&self, cmd: &CommandInfo) -> bool {
        self.names_directly(&cmd.name)
            || counts_as::may_count_as(&cmd.name).is_some_and(|other| self.names_directly(other))
    }

    /// Whether this rule names the command `name` itself (not what it may count as).
    fn names_directly(&self, name: &str) -> bool {
        self.commands.iter().any(|c| spec_names(c, name))
    }

    /// Whether the request (already known to be one of the rule's commands) matches the
    /// rule's user and argument conditions.
    pub(super) fn matches(&self, info: &CommandInfo, args: Args<'_>, user: &str) -> bool {
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
    pub(super) fn what(&self, info: &CommandInfo, args: Args<'_>) -> String {
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

    /// The rule as its refusals name it, for the command `info` / `args`.
    pub(super) fn limit(
        &self,
        info: &CommandInfo,
        args: Args<'_>,
    ) -> crate::protocol::refusal::GuardLimit {
        crate::protocol::refusal::GuardLimit {
            what: self.what(info, args),
            rate: self
                .rate
                .as_ref()
                .map_or("", |r| r.text.as_str())
                .to_string(),
            scope: self.scope_text().to_string(),
            rule: self.name.clone(),
        }
    }

    pub(super) fn scope_text(&self) -> &'static str {
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
    pub(super) fn take(
        &self,
        user: &String,
        addr: IpAddr,
        clock: &DefaultClock,
    ) -> Result<(), Duration> {
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

/// `(key.field, message)`: a rule's problem, named by its key path.
fn bad_field(key: &str, field: &str, m: String) -> (String, String) {
    (format!("{key}.{field}"), m)
}

/// A name fit for logs and metrics labels.
fn check_name(r: &GuardRuleConfig, key: &str) -> Result<(), (String, String)> {
    let bad = |field: &str, m: String| bad_field(key, field, m);
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
    Ok(())
}

/// The rule's commands, normalized (`CONFIG SET` -> `config|set`).
fn parse_commands(r: &GuardRuleConfig, key: &str) -> Result<Vec<String>, (String, String)> {
    let bad = |field: &str, m: String| bad_field(key, field, m);
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
    Ok(commands)
}

/// The user and argument conditions, and the rewrite, against the rule's commands.
fn check_conditions(
    r: &GuardRuleConfig,
    commands: &[String],
    key: &str,
) -> Result<(), (String, String)> {
    let bad = |field: &str, m: String| bad_field(key, field, m);
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
    Ok(())
}

/// The rate of a `limit` rule (none for the others), its burst and `shared`.
fn parse_limit(r: &GuardRuleConfig, key: &str) -> Result<Option<Rate>, (String, String)> {
    let bad = |field: &str, m: String| bad_field(key, field, m);
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
    Ok(rate)
}

/// What a checked `limit` rule draws from: a local bucket of its scope, or a budget
/// counted in the cluster (`shared`).
fn limiter(
    r: &GuardRuleConfig,
    rate: Option<&Rate>,
) -> (Limiter, Option<Arc<shared::SharedBudget>>) {
    let mut limiter = Limiter::None;
    let mut shared_budget = None;
    if let Some(rate) = rate {
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
                GuardScope::ClientAddr => Limiter::Addr(DefaultKeyedRateLimiter::dashmap(quota)),
            };
        }
    }
    (limiter, shared_budget)
}

/// Whether the command spec `c` (`name`, `container|sub`, `container`, `container|*`)
/// names `cmd`.
pub(super) fn spec_names(c: &str, name: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
