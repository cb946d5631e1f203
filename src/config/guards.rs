//! `[guards]`: the guard rules as written, with their defaults. Compiling and checking
//! the rules (commands, rates, users) is the `guards` module's work, run by the loader.

use super::yes;
use serde::Deserialize;

/// `[guards]`: rules that deny or rate-limit commands, evaluated in order, first match
/// wins; the built-in safe rules (`safe_defaults`) come after the file's own rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardsConfig {
    /// `false` turns every guard off (rules included), for test rigs and development.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Append the built-in safe rules (see config/production.example.toml) after
    /// `rules`. Default in a file: true.
    #[serde(default = "yes")]
    pub safe_defaults: bool,
    /// Users the safe defaults let run the dangerous admin commands (at `admin_rate`
    /// per user).
    #[serde(default)]
    pub admins: Vec<String>,
    /// The admins' rate for the dangerous admin commands.
    #[serde(default = "default_admin_rate")]
    pub admin_rate: String,
    /// The most keys a KEYS served by SCAN (`rewrite = "scan"`) may return.
    #[serde(default = "default_max_keys_reply")]
    pub max_keys_reply: usize,
    /// A client's SCAN COUNT above this is lowered to it (SCAN may return fewer keys
    /// than COUNT): no SCAN step walks more of a node's keyspace at once. A bound, not
    /// a rule: it applies with `enabled = false` too.
    #[serde(default = "default_max_scan_count")]
    pub max_scan_count: u64,
    /// Keyspace walks (KEYS, SCAN, RANDOMKEY's search for a user limited to key
    /// patterns) one user may have in flight at once, over all its connections; past
    /// it the command is refused. A bound, not a rule: it applies with `enabled =
    /// false` too.
    #[serde(default = "default_max_keyspace_walks_per_user")]
    pub max_keyspace_walks_per_user: usize,
    #[serde(default)]
    pub rules: Vec<GuardRuleConfig>,
}

fn default_admin_rate() -> String {
    "10/min".into()
}

fn default_max_keys_reply() -> usize {
    100_000
}

fn default_max_scan_count() -> u64 {
    1000
}

fn default_max_keyspace_walks_per_user() -> usize {
    8
}

impl Default for GuardsConfig {
    /// In code: no guards (tests build their `Config` this way).
    fn default() -> Self {
        GuardsConfig::none()
    }
}

impl GuardsConfig {
    /// What a file without `[guards]` gets: the built-in safe rules, no admins.
    pub fn file_default() -> GuardsConfig {
        GuardsConfig {
            enabled: true,
            safe_defaults: true,
            admins: Vec::new(),
            admin_rate: default_admin_rate(),
            max_keys_reply: default_max_keys_reply(),
            max_scan_count: default_max_scan_count(),
            max_keyspace_walks_per_user: default_max_keyspace_walks_per_user(),
            rules: Vec::new(),
        }
    }

    /// No guard at all (`Config::default()`, `respgate dev --no-guards`).
    pub fn none() -> GuardsConfig {
        GuardsConfig {
            enabled: false,
            safe_defaults: false,
            ..GuardsConfig::file_default()
        }
    }
}

/// One `[[guards.rules]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardRuleConfig {
    /// Named in errors, logs and metrics.
    pub name: String,
    /// `flushall`, `config|set` (one subcommand), `config` or `config|*` (the container
    /// and every subcommand).
    pub commands: Vec<String>,
    /// KEYS (and SCAN's MATCH) whose pattern has no literal prefix (`true`) or has one
    /// (`false`).
    #[serde(default)]
    pub key_pattern_without_prefix: Option<bool>,
    /// SCAN with a COUNT above this.
    #[serde(default)]
    pub scan_count_above: Option<u64>,
    /// Only these users (names from `[auth]`; `default` under `mode = "none"`).
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// Everyone but these users.
    #[serde(default)]
    pub except_users: Vec<String>,
    pub action: GuardAction,
    /// For `limit`: `N/s`, `N/min`, `N/h` or `N/d`.
    #[serde(default)]
    pub rate: Option<String>,
    /// For `limit`: requests allowed at once (default: N of the rate).
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub scope: GuardScope,
    /// For `scope = "global"`: count in the Redis Cluster, shared by every respgate.
    #[serde(default)]
    pub shared: bool,
    /// For `shared`: what happens when the cluster cannot count.
    #[serde(default)]
    pub on_error: FailMode,
    /// `"scan"`: serve KEYS by SCAN on every master.
    #[serde(default)]
    pub rewrite: Option<GuardRewrite>,
}

impl GuardRuleConfig {
    /// A rule named `name` for `commands` with `action`, every option at its default
    /// (as a `[[guards.rules]]` with only those three keys).
    pub fn new(name: &str, commands: &[&str], action: GuardAction) -> GuardRuleConfig {
        GuardRuleConfig {
            name: name.into(),
            commands: commands.iter().map(|c| c.to_string()).collect(),
            key_pattern_without_prefix: None,
            scan_count_above: None,
            users: None,
            except_users: Vec::new(),
            action,
            rate: None,
            burst: None,
            scope: GuardScope::default(),
            shared: false,
            on_error: FailMode::default(),
            rewrite: None,
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardAction {
    /// Let it through (ends the evaluation: later rules are not consulted).
    Allow,
    Deny,
    Limit,
}

/// Whose bucket a `limit` rule draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GuardScope {
    #[default]
    User,
    ClientAddr,
    Global,
}

/// A shared budget the cluster cannot count: let the request pass (`open`) or refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Open,
    #[default]
    Closed,
}

/// `rewrite` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardRewrite {
    Scan,
}
