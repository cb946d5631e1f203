//! `[scripts]`: how scripts and functions are kept inside their caller's rules, and the
//! allow-list's syntax check.

use serde::Deserialize;

/// How EVAL / EVALSHA / FCALL (and their `_RO` forms) are kept inside the caller's rules
/// (`[scripts]`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptsConfig {
    pub isolation: ScriptIsolation,
    /// With `isolation = "allowlist"`: SHA1s (hex) of the scripts restricted users may
    /// run (EVAL by its body's SHA1, EVALSHA by its argument).
    pub allowed_sha1: Vec<String>,
}

/// Where a script's rules are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScriptIsolation {
    /// Each respgate user is mirrored onto every node as a Redis ACL user carrying its
    /// rules; scripts run as that user, so Redis enforces the rules inside them.
    #[default]
    Acl,
    /// The nodes do not let respgate manage ACL users (a managed service): restricted
    /// users may run only the scripts in `allowed_sha1`, and no functions.
    Allowlist,
}

impl ScriptsConfig {
    /// Checks the allow-list's entries (40 hex digits each).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, sha) in self.allowed_sha1.iter().enumerate() {
            if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err((
                    format!("scripts.allowed_sha1[{i}]"),
                    format!("{sha:?} is not a SHA1 (40 hex digits)"),
                ));
            }
        }
        Ok(())
    }

    /// The mode in words, for startup logs and `check-config`.
    pub fn describe(&self) -> String {
        match self.isolation {
            ScriptIsolation::Acl => "script isolation: acl (scripts and functions run on the nodes as a per-user ACL mirror of the caller's rules; respgate's node user needs ACL SETUSER rights)".into(),
            ScriptIsolation::Allowlist => format!(
                "script isolation: allowlist (restricted users may run {} allow-listed script(s) and no functions; scripts run as respgate's node user)",
                self.allowed_sha1.len()
            ),
        }
    }
}
