//! The built-in safe rules (`[guards] safe_defaults = true`): what no tenant may run
//! through respgate unless it is one of the `admins`.
//!
//! **Why these.** Each command here either wipes or freezes what every tenant shares
//! (FLUSHALL, SHUTDOWN, CLIENT PAUSE, DEBUG, ...), changes the cluster under everyone
//! (CONFIG SET, CLUSTER's write subcommands, REPLICAOF), or acts on something no tenant
//! owns. Function libraries are the last kind: a library is cluster-wide and has no
//! owner, so any user allowed `@scripting` could replace or delete another team's
//! library (FUNCTION LOAD REPLACE, FUNCTION DELETE) or wipe them all (FUNCTION RESTORE
//! ... FLUSH, which counts as FUNCTION FLUSH, see `counts_as`). Teams ship libraries
//! through an admin (a deploy step), as they would ship a schema migration.
//!
//! **Must not.** Name a command that a tenant needs for its own data: a rule here is a
//! refusal for every non-admin user.

use crate::config::{GuardAction, GuardRewrite, GuardRuleConfig};

/// The commands the safe defaults deny to everyone but admins.
pub const DANGEROUS: &[&str] = &[
    "flushall",
    "flushdb",
    "save",
    "bgsave",
    "bgrewriteaof",
    "shutdown",
    "debug",
    "config|set",
    "config|rewrite",
    "config|resetstat",
    "cluster|addslots",
    "cluster|addslotsrange",
    "cluster|delslots",
    "cluster|delslotsrange",
    "cluster|failover",
    "cluster|forget",
    "cluster|meet",
    "cluster|replicate",
    "cluster|reset",
    "cluster|setslot",
    "cluster|set-config-epoch",
    "cluster|bumpepoch",
    "cluster|flushslots",
    "cluster|saveconfig",
    "replicaof",
    "slaveof",
    "module",
    "monitor",
    "script|flush",
    // Libraries have no owner: loading, replacing, deleting or restoring one acts on
    // every team's functions.
    "function|load",
    "function|delete",
    "function|restore",
    "function|flush",
    // Every team's library code, dumped.
    "function|dump",
    // Node-wide client controls: they freeze or change every tenant's connections.
    "client|pause",
    "client|unpause",
    "client|no-evict",
    "client|no-touch",
    "acl|setuser",
    "acl|deluser",
];

/// Commands of [`DANGEROUS`] that older Redis versions do not have (CLIENT NO-TOUCH
/// came with 7.2): a cluster without them is not worth a warning.
pub const NEWER_THAN_7_0: &[&str] = &["client|no-touch"];

/// The built-in safe rules: admins may run the dangerous commands at `admin_rate` per
/// user, nobody else may. Every KEYS is served by SCAN (a node walks its whole keyspace
/// for KEYS whatever the pattern: a literal prefix saves nothing), and KEYS without a
/// literal prefix at most once a minute per user.
pub fn safe_rules(admins: &[String], admin_rate: &str) -> Vec<GuardRuleConfig> {
    let commands: Vec<String> = DANGEROUS.iter().map(|s| s.to_string()).collect();
    let base = GuardRuleConfig {
        commands: commands.clone(),
        ..GuardRuleConfig::new("", &[], GuardAction::Deny)
    };
    let mut rules = Vec::new();
    if !admins.is_empty() {
        rules.push(GuardRuleConfig {
            name: "dangerous-admin-rate".into(),
            users: Some(admins.to_vec()),
            action: GuardAction::Limit,
            rate: Some(admin_rate.to_string()),
            ..base.clone()
        });
    }
    rules.push(GuardRuleConfig {
        name: "dangerous-admin-only".into(),
        ..base.clone()
    });
    rules.push(GuardRuleConfig {
        name: "keys-scan".into(),
        commands: vec!["keys".into()],
        key_pattern_without_prefix: Some(true),
        action: GuardAction::Limit,
        rate: Some("1/min".into()),
        rewrite: Some(GuardRewrite::Scan),
        ..base.clone()
    });
    rules.push(GuardRuleConfig {
        name: "keys-by-scan".into(),
        commands: vec!["keys".into()],
        action: GuardAction::Allow,
        rewrite: Some(GuardRewrite::Scan),
        ..base
    });
    rules
}
