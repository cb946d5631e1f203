//! The generic computation's plan, read off the command's key specs: the slot the
//! command runs in, which keys must be copied there, and the command with those keys
//! replaced by their copies' names.
//!
//! **Where it runs.** The slot of the keys the command writes (its destination: the
//! specs' `RW`/`OW`/`RM` keys), else the first key's slot. Keys already in that slot stay
//! as they are; every other key must be one the command only reads, and is copied.
//! A command that writes keys in two slots has no such plan (it is not computed).
//! PFCOUNT is the one command of the list whose specs say `RW` for keys it only reads
//! (with several keys it caches nothing): its keys are all sources.

use super::internal;
use crate::cluster::key_slot;
use crate::commands::KeyRef;
use crate::protocol::Args;
use bytes::Bytes;

/// One key copied next to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub key: Bytes,
    pub slot: u16,
    /// The copy's name (in the run slot).
    pub internal: Bytes,
}

/// How one command is computed.
#[derive(Debug)]
pub struct Plan {
    pub run_slot: u16,
    /// Distinct keys to copy, in the order they first appear.
    pub sources: Vec<Source>,
    /// The command as it runs: every source key replaced by its copy's name.
    pub args: Vec<Bytes>,
}

/// The plan for `args` (command `name`, lowercase) whose keys are `keys`; `None` when
/// the command writes keys in more than one slot (or has no keys).
pub fn plan(name: &str, args: Args<'_>, keys: &[KeyRef]) -> Option<Plan> {
    plan_with(name, args, keys, internal::name)
}

fn plan_with(
    name: &str,
    args: Args<'_>,
    keys: &[KeyRef],
    mut fresh: impl FnMut(u16) -> Bytes,
) -> Option<Plan> {
    let all_read = name == "pfcount";
    let writes = |k: &KeyRef| !all_read && k.flags.is_write();
    let anchor = keys.iter().find(|k| writes(k)).or(keys.first())?;
    let run_slot = key_slot(anchor.key(args));
    let mut sources: Vec<Source> = Vec::new();
    let mut out: Vec<Bytes> = args.iter().map(Bytes::copy_from_slice).collect();
    for k in keys {
        let key = k.key(args);
        let slot = key_slot(key);
        if slot == run_slot {
            continue;
        }
        if writes(k) {
            return None;
        }
        let internal = match sources.iter().find(|s| s.key == key) {
            Some(s) => s.internal.clone(),
            None => {
                let internal = fresh(run_slot);
                sources.push(Source {
                    key: Bytes::copy_from_slice(key),
                    slot,
                    internal: internal.clone(),
                });
                internal
            }
        };
        out[k.index as usize] = internal;
    }
    Some(Plan {
        run_slot,
        sources,
        args: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::KeyFlags;
    use crate::protocol::OwnedArgs;

    fn at(index: u32, flags: KeyFlags) -> KeyRef {
        KeyRef { index, flags }
    }

    fn names() -> impl FnMut(u16) -> Bytes {
        let mut n = 0;
        move |slot| {
            n += 1;
            Bytes::from(format!("copy{n}@{slot}"))
        }
    }

    #[test]
    fn sources_are_copied_into_the_destinations_slot() {
        // SUNIONSTORE dst a b a: dst written, a and b read (a twice: one copy).
        let owned = OwnedArgs::new(["SUNIONSTORE", "dst", "a", "b", "a", "{dst}x"]);
        let args = owned.args();
        let keys = [
            at(1, KeyFlags::OW),
            at(2, KeyFlags::RO),
            at(3, KeyFlags::RO),
            at(4, KeyFlags::RO),
            at(5, KeyFlags::RO),
        ];
        let p = plan_with("sunionstore", args, &keys, names()).unwrap();
        let dst = key_slot(b"dst");
        assert_eq!(p.run_slot, dst);
        assert_eq!(p.sources.len(), 2);
        assert_eq!(p.sources[0].key, "a");
        assert_eq!(p.sources[1].key, "b");
        let want = format!("copy1@{dst}");
        assert_eq!(p.args[2], want);
        assert_eq!(p.args[4], want, "the same key, the same copy");
        assert_eq!(p.args[5], "{dst}x", "a key in the run slot stays");
    }

    #[test]
    fn without_a_destination_the_first_key_anchors() {
        let owned = OwnedArgs::new(["PFCOUNT", "a", "b"]);
        let keys = [at(1, KeyFlags::RW), at(2, KeyFlags::RW)];
        let p = plan_with("pfcount", owned.args(), &keys, names()).unwrap();
        assert_eq!(p.run_slot, key_slot(b"a"));
        assert_eq!(p.sources.len(), 1);
        assert_eq!(p.sources[0].key, "b");
    }

    #[test]
    fn writes_in_two_slots_have_no_plan() {
        let owned = OwnedArgs::new(["SMOVE", "a", "b", "m"]);
        let keys = [at(1, KeyFlags::RW), at(2, KeyFlags::RW)];
        assert!(plan_with("smove", owned.args(), &keys, names()).is_none());
    }
}
