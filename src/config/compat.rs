//! `[compat]`: where respgate goes beyond "a cluster with one address" to behave like
//! one Redis. Today: multi-key commands whose keys span slots (`cross_slot`), which a
//! cluster refuses with CROSSSLOT and respgate may compute itself (issue 16; the
//! mechanism is `session::cross_slot`, its costs and guarantees in the README's
//! "Cross-slot commands").

use super::{invalid, Invalid};
use serde::Deserialize;

/// `[compat]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompatConfig {
    /// What a cross-slot multi-key command gets (a `[[auth.users]]` entry may override
    /// it for its user).
    pub cross_slot: CrossSlotMode,
    /// The most bytes (DUMP payloads) one computed command may copy between nodes;
    /// above it the command is refused with an error naming this limit.
    pub max_cross_slot_bytes: u64,
}

/// The default `max_cross_slot_bytes`: 64 MiB.
pub const DEFAULT_MAX_CROSS_SLOT_BYTES: u64 = 64 << 20;

impl Default for CompatConfig {
    fn default() -> Self {
        CompatConfig {
            cross_slot: CrossSlotMode::Refuse,
            max_cross_slot_bytes: DEFAULT_MAX_CROSS_SLOT_BYTES,
        }
    }
}

/// `refuse` (a cluster's CROSSSLOT, today's behaviour) or `compute` (respgate copies
/// the sources next to the destination and runs the command there: not atomic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CrossSlotMode {
    #[default]
    Refuse,
    Compute,
}

impl CompatConfig {
    /// A size limit that can let a command through.
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.max_cross_slot_bytes == 0 {
            return Err(invalid(
                "compat.max_cross_slot_bytes",
                "must be above 0 (set compat.cross_slot = \"refuse\" to turn computing off)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    fn load(text: &str) -> Result<Config, String> {
        let base = "[auth]\nmode = \"users\"\n[[auth.users]]\nname = \"u\"\nrules = \"on nopass ~* +@all\"\n";
        Config::from_toml(&format!("{base}{text}"), Path::new("t.toml")).map_err(|e| match e {
            ConfigError::Invalid { .. } | ConfigError::Parse { .. } => e.to_string(),
            other => panic!("{other}"),
        })
    }

    #[test]
    fn refuse_unless_said_and_per_user_overrides_parse() {
        let c = load("").unwrap();
        assert_eq!(c.compat.cross_slot, CrossSlotMode::Refuse);
        assert_eq!(c.compat.max_cross_slot_bytes, DEFAULT_MAX_CROSS_SLOT_BYTES);
        assert_eq!(c.auth.users[0].cross_slot, None);
        let c = load("cross_slot = \"compute\"\n[compat]\ncross_slot = \"compute\"\nmax_cross_slot_bytes = 10\n")
            .unwrap();
        assert_eq!(c.compat.cross_slot, CrossSlotMode::Compute);
        assert_eq!(c.compat.max_cross_slot_bytes, 10);
        assert_eq!(c.auth.users[0].cross_slot, Some(CrossSlotMode::Compute));
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let e = load("[compat]\ncross_slot = \"sometimes\"\n").unwrap_err();
        assert!(e.starts_with("t.toml: compat.cross_slot: "), "{e}");
        let e = load("[compat]\nmax_cross_slot_bytes = 0\n").unwrap_err();
        assert!(
            e.starts_with("t.toml: compat.max_cross_slot_bytes: must be above 0"),
            "{e}"
        );
        let e = load("[compat]\nbytes = 1\n").unwrap_err();
        assert!(e.contains("bytes"), "{e}");
    }
}
