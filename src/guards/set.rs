//! One configuration's guards ([`GuardSet`]): its rules in order (the file's, then the
//! built-in safe ones), the TTL policy and the bounds, checked as a whole; the rules
//! compiled per command table ([`ById`]); and what they mean for scripts and the logs.

use super::rate::parse_rate;
use super::rule::{spec_names, Rule};
use super::{safe_defaults, safe_rules, ttl};
use crate::commands::CommandTable;
use crate::config::{GuardAction, GuardsConfig, TtlRuleConfig};
use arc_swap::ArcSwapOption;
use governor::clock::DefaultClock;
use std::sync::Arc;

/// One configuration's guards.
pub struct GuardSet {
    pub(super) rules: Vec<Rule>,
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
    pub(super) default_user: String,
    pub(super) clock: DefaultClock,
}

/// Per [`CommandInfo::id`]: the indices (into the rules) of the rules naming it, in
/// order; empty for commands no rule names.
pub struct ById(pub(super) Vec<Box<[u16]>>);

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
