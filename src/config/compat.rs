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
