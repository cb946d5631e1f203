//! The internal keys a computed command copies its sources into: their names, and the
//! test that keeps clients off them.
//!
//! **Names.** `respgate:xslot:{<tag>}:<process>:<n>:<random>`. The hash tag is taken from a
//! table built once (for every slot, the first short base-36 string whose CRC16 lands
//! in it), never from a client's key text: a key like `a}b{c` cannot move a copy out of
//! the slot it must be in. `<process>` is random per process and `<n>` a counter, so two
//! respgate instances (or two commands) never share a name; `<random>` (64 bits per
//! name) makes the next name unguessable from one seen in SLOWLOG or MONITOR.
//!
//! **Lifetime.** A copy is RESTOREd with a TTL of [`TTL_MS`] and deleted inside the same
//! MULTI/EXEC that runs the command (`copy.rs`): no other client ever sees it, and if
//! that EXEC were never run the TTL removes it. [`is_internal`] lets respgate refuse a
//! client's own command on such a name (a tenant must not read another's copy).

use crate::cluster::key_slot;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// What every internal key's name contains.
pub const MARKER: &[u8] = b"respgate:xslot:";

/// The TTL (ms) every internal key is created with: nothing outlives a dead respgate
/// by more than this.
pub const TTL_MS: u64 = 10_000;

/// True when `key` contains [`MARKER`].
pub fn is_internal(key: &[u8]) -> bool {
    key.len() >= MARKER.len() && key.windows(MARKER.len()).any(|w| w == MARKER)
}

/// A fresh internal key name in `slot`.
pub fn name(slot: u16) -> Bytes {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    static PROCESS: OnceLock<u32> = OnceLock::new();
    let process = PROCESS.get_or_init(rand::random::<u32>);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    // And 64 random bits per name: a name seen once (SLOWLOG, MONITOR) says nothing
    // of the next, so none can be planted ahead of a copy.
    let unique = rand::random::<u64>();
    Bytes::from(format!(
        "respgate:xslot:{{{}}}:{process:08x}:{n}:{unique:016x}",
        tag(slot)
    ))
}

/// The hash tag that puts a key in `slot`.
pub fn tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(tags)[usize::from(slot) % 16384]
}

/// For every slot, the first base-36 string (in counting order) hashing to it (about
/// 170k CRC16s, once per process).
fn tags() -> Vec<String> {
    let mut table = vec![String::new(); 16384];
    let mut missing = table.len();
    let mut i: u64 = 0;
    while missing > 0 {
        let s = base36(i);
        let slot = usize::from(key_slot(s.as_bytes()));
        if table[slot].is_empty() {
            table[slot] = s;
            missing -= 1;
        }
        i += 1;
    }
    table
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_tag_and_names_land_in_their_slot() {
        for slot in [0u16, 1, 866, 5000, 12182, 16383] {
            let n = name(slot);
            assert_eq!(key_slot(&n), slot, "{n:?}");
            assert!(is_internal(&n));
        }
        for slot in 0..16384u16 {
            assert_eq!(key_slot(format!("{{{}}}", tag(slot)).as_bytes()), slot);
        }
    }

    #[test]
    fn names_are_unique_and_clients_keys_are_told_apart() {
        assert_ne!(name(7), name(7));
        assert!(!is_internal(b"a}b{c"));
        assert!(!is_internal(b"respgate:xslot"));
        assert!(is_internal(b"x:respgate:xslot:{y}"));
    }
}
