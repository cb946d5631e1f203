//! Why a `CROSSSLOT` was answered: Redis's text, and the reason respgate adds when it
//! could have computed the command (`compat.cross_slot = "compute"`) but will not.

/// Why a `CROSSSLOT` was answered, when respgate adds a reason to Redis's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrossSlotWhy {
    /// Redis's text alone.
    Plain,
    /// A transaction's keys span slots (one pinned node connection runs it).
    Transaction,
    /// WATCHed keys span slots.
    Watch,
    /// MSETNX over several slots cannot keep its all-or-nothing guarantee.
    Msetnx,
    /// A blocking command (or XREAD BLOCK) over several slots: respgate cannot wait on
    /// several nodes as one.
    Blocking,
    /// EVAL / FCALL over several slots: a script runs on one node.
    Script,
    /// A command respgate does not compute across slots (not in the README's list).
    NotComputed,
}

pub(super) fn cross_slot_why(why: CrossSlotWhy) -> &'static str {
    match why {
        CrossSlotWhy::Plain => "",
        CrossSlotWhy::Transaction => " (respgate: every key of a transaction must share one slot)",
        CrossSlotWhy::Watch => " (respgate: every watched key must share one slot)",
        CrossSlotWhy::Msetnx => {
            " (respgate cannot split MSETNX: it would lose its all-or-nothing guarantee)"
        }
        CrossSlotWhy::Blocking => {
            " (respgate does not compute blocking commands across slots: it cannot wait on several nodes as one)"
        }
        CrossSlotWhy::Script => {
            " (respgate does not compute scripts across slots: a script runs on one node)"
        }
        CrossSlotWhy::NotComputed => " (respgate does not compute this command across slots)",
    }
}
