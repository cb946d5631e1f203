//! Key specs and key extraction: which arguments of a request are keys, and how each is
//! accessed.
//!
//! [`extract_with_specs`] is a transcription of Redis's `getKeysUsingKeySpecs` (db.c), and
//! the hand-written rules below transcribe the `getkeys_proc`s Redis falls back to for the
//! commands whose specs cannot describe their keys (`sortGetKeys`, `sortROGetKeys`,
//! `migrateGetKeys`, `setGetKeys`, `bitfieldGetKeys`). Everything here runs per request:
//! no allocation beyond the caller's output vector.

use std::fmt;
use std::ops::BitOr;

use crate::protocol::Args;

/// How a command accesses one key (Redis's `CMD_KEY_*` key-spec flags), as a small set.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KeyFlags(pub u16);

impl KeyFlags {
    /// Read-only: the value is read, never modified.
    pub const RO: KeyFlags = KeyFlags(1 << 0);
    /// Read-write: the value is read and modified.
    pub const RW: KeyFlags = KeyFlags(1 << 1);
    /// Overwrite: the value is replaced without being read.
    pub const OW: KeyFlags = KeyFlags(1 << 2);
    /// Remove: the key is deleted.
    pub const RM: KeyFlags = KeyFlags(1 << 3);
    /// User data of the key is returned, copied or otherwise exposed.
    pub const ACCESS: KeyFlags = KeyFlags(1 << 4);
    /// Existing data is updated.
    pub const UPDATE: KeyFlags = KeyFlags(1 << 5);
    /// Data is only added, never modified or removed.
    pub const INSERT: KeyFlags = KeyFlags(1 << 6);
    /// Data is deleted (part of the value or the whole key).
    pub const DELETE: KeyFlags = KeyFlags(1 << 7);
    /// Not a key but hashed like one (sharded pub/sub channels): routes, but names no data.
    pub const NOT_KEY: KeyFlags = KeyFlags(1 << 8);
    /// The spec may miss keys.
    pub const INCOMPLETE: KeyFlags = KeyFlags(1 << 9);
    /// The real flags depend on other arguments.
    pub const VARIABLE_FLAGS: KeyFlags = KeyFlags(1 << 10);

    /// Every flag with the name `COMMAND` uses for it.
    pub const NAMES: [(KeyFlags, &'static str); 11] = [
        (KeyFlags::RO, "RO"),
        (KeyFlags::RW, "RW"),
        (KeyFlags::OW, "OW"),
        (KeyFlags::RM, "RM"),
        (KeyFlags::ACCESS, "access"),
        (KeyFlags::UPDATE, "update"),
        (KeyFlags::INSERT, "insert"),
        (KeyFlags::DELETE, "delete"),
        (KeyFlags::NOT_KEY, "not_key"),
        (KeyFlags::INCOMPLETE, "incomplete"),
        (KeyFlags::VARIABLE_FLAGS, "variable_flags"),
    ];

    /// The flag `COMMAND` calls `name` (exact spelling), if known.
    pub fn from_name(name: &[u8]) -> Option<KeyFlags> {
        Self::NAMES
            .iter()
            .find(|(_, n)| n.as_bytes() == name)
            .map(|&(f, _)| f)
    }

    /// True when every flag of `other` is set.
    pub const fn contains(self, other: KeyFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when any flag of `other` is set.
    pub const fn intersects(self, other: KeyFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// True when the key may be modified or deleted (`RW`, `OW` or `RM`).
    pub const fn is_write(self) -> bool {
        self.intersects(KeyFlags(Self::RW.0 | Self::OW.0 | Self::RM.0))
    }

    /// True when the key's value is only read (`RO`).
    pub const fn is_read_only(self) -> bool {
        self.contains(Self::RO)
    }
}

impl BitOr for KeyFlags {
    type Output = KeyFlags;
    fn bitor(self, rhs: KeyFlags) -> KeyFlags {
        KeyFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for KeyFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("(none)")?;
        }
        Ok(())
    }
}

/// Where a key spec starts looking for its keys (`begin_search`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeginSearch {
    /// Keys start at this argument index.
    Index(i32),
    /// Keys start after `keyword`, searched from `startfrom` (forwards when positive,
    /// backwards from `argc + startfrom` otherwise), ASCII case-insensitively.
    Keyword { keyword: Box<[u8]>, startfrom: i32 },
    /// Not describable; a hand-written rule (or nothing) finds these keys.
    Unknown,
}

/// How a key spec finds its keys once it knows where to begin (`find_keys`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys up to `lastkey` (relative to the start when >= 0, to the end when negative;
    /// with `limit` > 0 and `lastkey` -1: 1/`limit` of the remaining arguments).
    Range {
        lastkey: i32,
        keystep: i32,
        limit: i32,
    },
    /// The number of keys is the integer at start + `keynumidx`; keys begin at start +
    /// `firstkey`.
    Keynum {
        keynumidx: i32,
        firstkey: i32,
        keystep: i32,
    },
    /// Not describable.
    Unknown,
}

/// One key spec of a command, as `COMMAND` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// How the keys this spec finds are accessed.
    pub flags: KeyFlags,
    pub begin_search: BeginSearch,
    pub find_keys: FindKeys,
    /// Free-text notes from the server, if any.
    pub notes: Option<String>,
}

impl KeySpec {
    /// True when this spec cannot be interpreted on its own.
    pub fn is_incomplete(&self) -> bool {
        self.flags.contains(KeyFlags::INCOMPLETE)
            || self.begin_search == BeginSearch::Unknown
            || self.find_keys == FindKeys::Unknown
    }
}

/// One key of a request: its argument index and how the command accesses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRef {
    /// Index into the request's arguments (0 is the command name, so never 0).
    pub index: u32,
    pub flags: KeyFlags,
}

impl KeyRef {
    /// The key's bytes.
    pub fn key<'a>(&self, args: Args<'a>) -> &'a [u8] {
        args.get(self.index as usize)
    }
}

/// Why the keys of a request could not be determined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeysError {
    /// The request does not fit the command's key specs (missing arguments, a bad
    /// numkeys, ...). Redis answers such a request with an error of its own, so the proxy
    /// forwards it anywhere and relays that answer.
    #[error("the request's arguments do not fit the command's key specs")]
    Invalid,
    /// The command's key specs are incomplete and respgate has no hand-written rule for
    /// it (a module or newer-server command): its keys cannot be known.
    #[error("the command's key specs are incomplete")]
    Incomplete,
}

/// How `CommandInfo::keys` finds keys for one command; chosen once when the table is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyRule {
    /// No key specs: no keys.
    None,
    /// Interpret the key specs (`getKeysUsingKeySpecs`). `zero_numkeys_ok`: a keynum of
    /// 0 is valid (commands flagged `no_mandatory_keys`: EVAL, FCALL, ...).
    Specs { zero_numkeys_ok: bool },
    /// `sortGetKeys`.
    Sort,
    /// `sortROGetKeys`.
    SortRo,
    /// `georadiusGetKeys`: the last `STORE`/`STOREDIST` wins, as the command runs it (the
    /// key specs name the first one; Redis 7.0's own ACL check follows the specs, so a
    /// user allowed the first destination could write the second).
    GeoRadius,
    /// `migrateGetKeys`.
    Migrate,
    /// `setGetKeys`: the key's flags depend on the `GET` option.
    Set,
    /// `bitfieldGetKeys`: read-only unless a SET/INCRBY subcommand is present.
    Bitfield,
    /// Specs are incomplete and there is no rule.
    Incomplete,
}

impl KeyRule {
    /// Picks the rule for a top-level command (`is_sub` false) or a subcommand.
    /// `no_mandatory_keys` is the command's `no_mandatory_keys` flag.
    pub(crate) fn choose(
        name: &str,
        is_sub: bool,
        no_mandatory_keys: bool,
        specs: &[KeySpec],
    ) -> KeyRule {
        if !is_sub {
            match name {
                "sort" => return KeyRule::Sort,
                "sort_ro" => return KeyRule::SortRo,
                "georadius" | "georadiusbymember" => return KeyRule::GeoRadius,
                "migrate" => return KeyRule::Migrate,
                "set" => return KeyRule::Set,
                "bitfield" => return KeyRule::Bitfield,
                _ => {}
            }
        }
        if specs.is_empty() {
            KeyRule::None
        } else if specs.iter().any(KeySpec::is_incomplete) {
            KeyRule::Incomplete
        } else {
            // VARIABLE_FLAGS without a rule: positions are exact, the flags are the
            // spec's worst case, which is what a security check wants.
            KeyRule::Specs {
                zero_numkeys_ok: no_mandatory_keys,
            }
        }
    }
}

/// Finds the keys of `args` by dispatching on `rule`. `out` is cleared first.
pub(crate) fn extract(
    rule: KeyRule,
    specs: &[KeySpec],
    args: Args<'_>,
    out: &mut Vec<KeyRef>,
) -> Result<(), KeysError> {
    out.clear();
    let res = match rule {
        KeyRule::None => Ok(()),
        KeyRule::Specs { zero_numkeys_ok } => extract_with_specs(specs, args, out, zero_numkeys_ok),
        KeyRule::Sort => sort_keys(args, out, true),
        KeyRule::SortRo => sort_keys(args, out, false),
        KeyRule::GeoRadius => georadius_keys(args, out),
        KeyRule::Migrate => migrate_keys(args, out),
        KeyRule::Set => set_keys(args, out),
        KeyRule::Bitfield => bitfield_keys(args, out),
        KeyRule::Incomplete => Err(KeysError::Incomplete),
    };
    if res.is_err() {
        out.clear();
    }
    res
}

fn push(out: &mut Vec<KeyRef>, index: usize, flags: KeyFlags) {
    out.push(KeyRef {
        index: index as u32,
        flags,
    });
}

/// `getKeysUsingKeySpecs` with `GET_KEYSPEC_INCLUDE_NOT_KEYS` (not-key specs such as
/// sharded channels are reported, flagged [`KeyFlags::NOT_KEY`], since they route like
/// keys) and without `GET_KEYSPEC_RETURN_PARTIAL` (any bad spec makes the request invalid).
///
/// A keynum of 0 fails the spec in Redis, which then falls back to the command's getkeys
/// proc; the net effect, reproduced here without the procs, is: no keys from that spec
/// when `zero_numkeys_ok` (EVAL/FCALL, flagged `no_mandatory_keys`), invalid otherwise
/// (`ZUNIONSTORE d 0 a`, `LMPOP 0 ...`, which the commands reject).
pub(crate) fn extract_with_specs(
    specs: &[KeySpec],
    args: Args<'_>,
    out: &mut Vec<KeyRef>,
    zero_numkeys_ok: bool,
) -> Result<(), KeysError> {
    let argc = args.len() as i64;
    for spec in specs {
        let mut first: i64 = match &spec.begin_search {
            BeginSearch::Index(i) => i64::from(*i),
            BeginSearch::Keyword { keyword, startfrom } => {
                match find_keyword(args, keyword, i64::from(*startfrom)) {
                    Some(i) => i + 1,
                    None => continue, // keyword absent: this spec has no keys
                }
            }
            BeginSearch::Unknown => return Err(KeysError::Incomplete),
        };
        let (last, step) = match spec.find_keys {
            FindKeys::Range {
                lastkey,
                keystep,
                limit,
            } => {
                let (lastkey, limit) = (i64::from(lastkey), i64::from(limit));
                let last = if lastkey >= 0 {
                    first + lastkey
                } else if limit == 0 {
                    argc + lastkey
                } else {
                    // Redis asserts lastkey == -1 here; the loader guarantees it.
                    first + ((argc - first) / limit + lastkey)
                };
                (last, i64::from(keystep))
            }
            FindKeys::Keynum {
                keynumidx,
                firstkey,
                keystep,
            } => {
                let idx = first + i64::from(keynumidx);
                if idx < 0 || idx >= argc {
                    return Err(KeysError::Invalid);
                }
                let numkeys = parse_i64(args.get(idx as usize)).ok_or(KeysError::Invalid)?;
                if numkeys < 0 || (numkeys == 0 && !zero_numkeys_ok) {
                    return Err(KeysError::Invalid);
                }
                if numkeys == 0 {
                    continue;
                }
                first += i64::from(firstkey);
                // As Redis: the span is numkeys arguments whatever the step.
                (first.saturating_add(numkeys - 1), i64::from(keystep))
            }
            FindKeys::Unknown => return Err(KeysError::Incomplete),
        };
        if first < 1 || last >= argc || last < first || first >= argc {
            return Err(KeysError::Invalid);
        }
        let mut i = first;
        while i <= last {
            push(out, i as usize, spec.flags);
            i += step.max(1);
        }
        if spec.flags.contains(KeyFlags::INCOMPLETE) {
            return Err(KeysError::Incomplete);
        }
    }
    Ok(())
}

/// Redis's keyword search: forwards from `startfrom` up to argc-2, or backwards from
/// `argc + startfrom` down to 2 (the bounds are exclusive in Redis's loop, so the last
/// argument and argument 1 are never taken for the keyword).
fn find_keyword(args: Args<'_>, keyword: &[u8], startfrom: i64) -> Option<i64> {
    let argc = args.len() as i64;
    let hit = |i: i64| args.get(i as usize).eq_ignore_ascii_case(keyword);
    if startfrom > 0 {
        (startfrom..argc - 1).find(|&i| hit(i))
    } else {
        // startfrom 0 starts at argc, out of range: Redis's loop stops at once.
        let start = argc + startfrom;
        if start >= argc {
            return None;
        }
        (2..=start).rev().find(|&i| hit(i))
    }
}

/// Redis's `string2ll`: an optional `-`, no leading zeros or `+`, no blanks, no overflow.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !neg => return Some(0),
        [b'1'..=b'9', ..] => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// `sortGetKeys` / `sortROGetKeys`: the sorted key at 1; for SORT the last `STORE dst`,
/// skipping the arguments of `LIMIT offset count`, `BY pattern` and `GET pattern`.
fn sort_keys(args: Args<'_>, out: &mut Vec<KeyRef>, store: bool) -> Result<(), KeysError> {
    if args.len() < 2 {
        return Err(KeysError::Invalid);
    }
    push(out, 1, KeyFlags::RO | KeyFlags::ACCESS);
    if !store {
        return Ok(());
    }
    let argc = args.len();
    let mut dst = None;
    let mut i = 2;
    while i < argc {
        let a = args.get(i);
        if a.eq_ignore_ascii_case(b"limit") {
            i += 2;
        } else if a.eq_ignore_ascii_case(b"store") && i + 1 < argc {
            dst = Some(i + 1); // keep scanning: the last STORE wins, as in SORT
        } else if a.eq_ignore_ascii_case(b"get") || a.eq_ignore_ascii_case(b"by") {
            i += 1;
        }
        i += 1;
    }
    if let Some(d) = dst {
        push(out, d, KeyFlags::OW | KeyFlags::UPDATE);
    }
    Ok(())
}

/// `georadiusGetKeys`: the source at 1, and the key after the last `STORE` or
/// `STOREDIST` from argument 5 on (the key after one is skipped, as Redis skips it).
fn georadius_keys(args: Args<'_>, out: &mut Vec<KeyRef>) -> Result<(), KeysError> {
    if args.len() < 2 {
        return Err(KeysError::Invalid);
    }
    push(out, 1, KeyFlags::RO | KeyFlags::ACCESS);
    let argc = args.len();
    let mut dst = None;
    let mut i = 5;
    while i < argc {
        let a = args.get(i);
        if (a.eq_ignore_ascii_case(b"store") || a.eq_ignore_ascii_case(b"storedist"))
            && i + 1 < argc
        {
            dst = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    if let Some(d) = dst {
        push(out, d, KeyFlags::OW | KeyFlags::UPDATE);
    }
    Ok(())
}

/// `migrateGetKeys`: `MIGRATE host port key db timeout [COPY] [REPLACE] [AUTH pw]
/// [AUTH2 user pw] [KEYS k...]`. With KEYS the key argument must be empty and the keys
/// are everything after KEYS; a non-empty key with KEYS is a syntax error.
fn migrate_keys(args: Args<'_>, out: &mut Vec<KeyRef>) -> Result<(), KeysError> {
    let argc = args.len();
    if argc < 4 {
        return Err(KeysError::Invalid);
    }
    let (mut first, mut num) = (3, 1);
    let mut i = 6;
    while i < argc {
        let a = args.get(i);
        if a.eq_ignore_ascii_case(b"keys") {
            if !args.get(3).is_empty() {
                return Err(KeysError::Invalid);
            }
            first = i + 1;
            num = argc - first;
            break;
        } else if a.eq_ignore_ascii_case(b"auth") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"auth2") {
            i += 2;
        }
        i += 1;
    }
    let flags = KeyFlags::RW | KeyFlags::ACCESS | KeyFlags::DELETE;
    for k in first..first + num {
        push(out, k, flags);
    }
    Ok(())
}

/// `setGetKeys`: the key at 1; read-write with a `GET` option (from argument 3 on),
/// overwrite otherwise.
fn set_keys(args: Args<'_>, out: &mut Vec<KeyRef>) -> Result<(), KeysError> {
    if args.len() < 2 {
        return Err(KeysError::Invalid);
    }
    let get = (3..args.len()).any(|i| args.get(i).eq_ignore_ascii_case(b"get"));
    let flags = if get {
        KeyFlags::RW | KeyFlags::ACCESS | KeyFlags::UPDATE
    } else {
        KeyFlags::OW | KeyFlags::UPDATE
    };
    push(out, 1, flags);
    Ok(())
}

/// `bitfieldGetKeys`: the key at 1; read-only when only `GET`/`OVERFLOW` subcommands
/// appear, read-write otherwise (including on a syntax error, the safe side).
fn bitfield_keys(args: Args<'_>, out: &mut Vec<KeyRef>) -> Result<(), KeysError> {
    let argc = args.len();
    if argc < 2 {
        return Err(KeysError::Invalid);
    }
    let mut readonly = true;
    let mut i = 2;
    while i < argc {
        let rem = argc - i - 1;
        let a = args.get(i);
        if a.eq_ignore_ascii_case(b"get") && rem >= 2 {
            i += 2;
        } else if (a.eq_ignore_ascii_case(b"set") || a.eq_ignore_ascii_case(b"incrby")) && rem >= 3
        {
            readonly = false;
            break;
        } else if a.eq_ignore_ascii_case(b"overflow") && rem >= 1 {
            i += 1;
        } else {
            readonly = false;
            break;
        }
        i += 1;
    }
    let flags = if readonly {
        KeyFlags::RO | KeyFlags::ACCESS
    } else {
        KeyFlags::RW | KeyFlags::ACCESS | KeyFlags::UPDATE
    };
    push(out, 1, flags);
    Ok(())
}
