//! The command table: what every Redis command is, loaded from the cluster's own `COMMAND`
//! reply at startup, and used per request to validate arity and find every key.
//!
//! **Job.** Given a request's [`Args`], say which command it is ([`CommandTable::lookup`]:
//! container commands such as `OBJECT ENCODING` resolve to their subcommand), whether its
//! argument count is acceptable, and which arguments are keys and how each is accessed
//! ([`CommandInfo::keys`], Redis's `getKeysUsingKeySpecs` plus the few hand-written rules
//! Redis itself needs). The router hashes those keys to slots; the ACL layer reads the
//! per-key read/write flags. When respgate rejects a request itself, [`replies`] gives
//! the exact error text Redis 7.0 would have sent.
//!
//! **Why from the server.** The table is whatever the backend says (`COMMAND`), not a
//! hard-coded list, so respgate agrees with the servers it fronts on arity, key positions
//! and flags, including for commands added by newer versions or modules: those load and
//! route through their key specs with no code change here.
//!
//! **May touch.** Nothing but its inputs: parsing is pure, the table is immutable once
//! built and shared behind an `Arc`; reloading means building a new table and swapping it.
//!
//! **Must not.** Allocate or lock on the hot path ([`CommandTable::lookup`],
//! [`CommandTable::get`], [`CommandInfo::keys`] into a reused vector): they run for every
//! request. Must not guess: when key specs cannot find all keys and there is no rule, it
//! reports [`KeysError::Incomplete`] instead of routing on a partial answer, and a malformed
//! `COMMAND` reply fails the load with a [`CommandTableError`] rather than producing a table
//! that routes wrongly. It does not do I/O, routing or ACL decisions itself.

mod info;
mod keys;
mod parse;
pub mod policy;
pub mod replies;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_policy;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

use crate::protocol::Args;

pub use info::{
    acl_category_bit, acl_category_name, cmd_flags, CommandInfo, CommandMetrics, RequestPolicy,
    ResponsePolicy, Tips, ACL_CATEGORIES,
};
pub use keys::{BeginSearch, FindKeys, KeyFlags, KeyRef, KeySpec, KeysError};

/// Why a `COMMAND` reply could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandTableError {
    /// The bytes are not valid RESP2.
    #[error("COMMAND reply is not valid RESP2: {0}")]
    Decode(String),
    /// The bytes end before the reply does.
    #[error("COMMAND reply is truncated")]
    Truncated,
    /// Bytes follow the reply.
    #[error("COMMAND reply is followed by {0} unexpected bytes")]
    TrailingBytes(usize),
    /// The server answered with an error (`NOAUTH`, `NOPERM`, ...).
    #[error("COMMAND failed on the server: {0}")]
    Server(String),
    /// The reply is RESP2 but not shaped like Redis 7's `COMMAND` reply.
    #[error("COMMAND reply is malformed (command {command:?}): {reason}")]
    Malformed { command: String, reason: String },
    /// Two entries share a name.
    #[error("COMMAND reply lists {0:?} twice")]
    Duplicate(String),
    /// The reply lists no commands.
    #[error("COMMAND reply lists no commands")]
    Empty,
}

/// The result of resolving a request to a command.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// The command (the subcommand for container commands) with an acceptable arity.
    Found(&'a CommandInfo),
    /// No such command. Reply with [`replies::unknown_command_reply`].
    Unknown,
    /// The container command exists (given here) but not the subcommand `args[1]`.
    /// Reply with [`replies::unknown_subcommand_reply`].
    UnknownSubcommand(&'a CommandInfo),
    /// The command exists but the argument count is wrong for it.
    /// Reply with [`replies::wrong_arity_reply`].
    WrongArity(&'a CommandInfo),
}

impl Lookup<'_> {
    /// The error Redis sends for this outcome, or `None` for [`Lookup::Found`]. `args`
    /// must be the request that was looked up.
    pub fn error_reply(&self, args: Args<'_>) -> Option<Bytes> {
        match self {
            Lookup::Found(_) => None,
            Lookup::Unknown => Some(replies::unknown_command_reply(args)),
            Lookup::UnknownSubcommand(_) => Some(replies::unknown_subcommand_reply(args)),
            Lookup::WrongArity(cmd) => Some(replies::wrong_arity_reply(cmd)),
        }
    }
}

/// Where a name lives in the table: a top-level command, or one of its subcommands.
#[derive(Clone, Copy, Debug)]
struct Loc {
    top: u32,
    sub: u32,
}

const NO_SUB: u32 = u32::MAX;

/// Names up to this length are lowercased into a stack buffer and hashed.
const STACK_NAME: usize = 64;

/// The command table. Immutable once built; share it behind an `Arc`.
#[derive(Debug)]
pub struct CommandTable {
    commands: Vec<CommandInfo>,
    /// Lowercase names (`get`, `object|encoding`) up to [`STACK_NAME`] bytes.
    index: HashMap<Box<[u8]>, Loc, BuildHasherDefault<FxHasher>>,
    /// Longer names, searched linearly (none in stock Redis; the longest is 29 bytes).
    long: Vec<(Box<[u8]>, Loc)>,
    /// The longest name in the table: anything longer is unknown without hashing.
    max_name: usize,
    /// Commands and subcommands, i.e. one past the largest [`CommandInfo::id`].
    ids: usize,
    /// What each command is to respgate, by [`CommandInfo::id`].
    policy: policy::Policy,
}

/// Commands Redis 7.0 flags `may_replicate` without saying so in `COMMAND` (checked
/// against 7.0.15): the flag is set here, once, so that every reader of it (CLIENT PAUSE
/// WRITE holds them, monitor mode refuses them) sees what the server applies.
const HIDDEN_MAY_REPLICATE: &[&str] =
    &["eval", "evalsha", "fcall", "publish", "spublish", "pfcount"];

/// Commands whose request counter exists from the start (at 0) rather than from the
/// first use: `deploy/prometheus/alerts.yml` counts them with `increase()`, which cannot
/// see a series' first step, so a counter born at 1 would hide the first flush.
const ALERTED_FROM_ZERO: &[&str] = &["flushall", "flushdb"];

impl CommandTable {
    /// Loads the table from the raw RESP2 bytes of a `COMMAND` reply (exactly one frame).
    pub fn from_command_reply(reply: &[u8]) -> Result<CommandTable, CommandTableError> {
        CommandTable::from_commands(parse::parse_reply(reply)?)
    }

    /// Builds the table from parsed entries (subcommands nested in their container).
    fn from_commands(mut commands: Vec<CommandInfo>) -> Result<CommandTable, CommandTableError> {
        let mut next_id = 0u32;
        for cmd in &mut commands {
            if HIDDEN_MAY_REPLICATE.contains(&cmd.name.as_str()) {
                cmd.flags |= cmd_flags::MAY_REPLICATE;
            }
            if ALERTED_FROM_ZERO.contains(&cmd.name.as_str()) {
                // Registered now (the registry keeps it, at 0); the first use's handle
                // is the same series.
                let _ = metrics::counter!("respgate_command_requests_total", "command" => cmd.name.clone());
            }
            cmd.id = next_id;
            next_id += 1;
            for sub in &mut cmd.subcommands {
                sub.id = next_id;
                next_id += 1;
            }
        }
        if commands.is_empty() {
            return Err(CommandTableError::Empty);
        }
        let mut t = CommandTable {
            commands: Vec::new(),
            index: HashMap::default(),
            long: Vec::new(),
            max_name: 0,
            ids: 0,
            policy: policy::Policy::build(
                commands
                    .iter()
                    .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter())),
            ),
        };
        for (top, cmd) in commands.iter().enumerate() {
            t.insert(&cmd.name, top as u32, NO_SUB)?;
            for (sub, s) in cmd.subcommands.iter().enumerate() {
                t.insert(&s.name, top as u32, sub as u32)?;
            }
        }
        t.commands = commands;
        t.ids = next_id as usize;
        Ok(t)
    }

    fn insert(&mut self, name: &str, top: u32, sub: u32) -> Result<(), CommandTableError> {
        let key: Box<[u8]> = name.as_bytes().to_ascii_lowercase().into();
        let loc = Loc { top, sub };
        let dup = if key.len() <= STACK_NAME {
            self.index.insert(key, loc).is_some()
        } else if self.long.iter().any(|(k, _)| *k == key) {
            true
        } else {
            self.long.push((key, loc));
            false
        };
        if dup {
            return Err(CommandTableError::Duplicate(name.to_string()));
        }
        self.max_name = self.max_name.max(name.len());
        Ok(())
    }

    /// Number of top-level commands (subcommands not counted).
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// True when the table holds no commands (never, for a loaded table).
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Number of distinct [`CommandInfo::id`]s (commands and subcommands).
    pub fn id_count(&self) -> usize {
        self.ids
    }

    /// How respgate treats `info`, a command of this table ([`policy`]): an index, no
    /// hashing, no allocation.
    #[inline]
    pub fn policy(&self, info: &CommandInfo) -> policy::Row {
        self.policy.row(info)
    }

    /// Every command and subcommand.
    pub fn all(&self) -> impl Iterator<Item = &CommandInfo> {
        self.commands
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()))
    }

    /// The top-level commands, in the server's order.
    pub fn iter(&self) -> impl Iterator<Item = &CommandInfo> {
        self.commands.iter()
    }

    /// The command named `name`, ASCII case-insensitively, without allocating. Full
    /// subcommand names (`object|encoding`) resolve too; requests should go through
    /// [`CommandTable::lookup`], which also checks arity.
    pub fn get(&self, name: &[u8]) -> Option<&CommandInfo> {
        self.find(name, None).map(|loc| self.at(loc))
    }

    /// The subcommand `sub` of container `cmd` (`cmd|sub`), case-insensitively.
    pub fn subcommand(&self, cmd: &CommandInfo, sub: &[u8]) -> Option<&CommandInfo> {
        self.find(cmd.name.as_bytes(), Some(sub))
            .filter(|l| l.sub != NO_SUB)
            .map(|loc| self.at(loc))
    }

    /// Resolves a request as Redis's `lookupCommand` + arity check do: `args[0]` names the
    /// command; for a container command called with arguments, `args[1]` selects the
    /// subcommand. Allocation-free.
    pub fn lookup(&self, args: Args<'_>) -> Lookup<'_> {
        let Some(name) = args.try_get(0) else {
            return Lookup::Unknown;
        };
        let cmd = match self.find(name, None) {
            Some(loc) if loc.sub == NO_SUB => self.at(loc),
            _ => return Lookup::Unknown, // `object|encoding` is no top-level name
        };
        let cmd = match args.try_get(1) {
            Some(sub) if cmd.is_container() => match self.subcommand(cmd, sub) {
                Some(s) => s,
                None => return Lookup::UnknownSubcommand(cmd),
            },
            _ => cmd,
        };
        if cmd.arity_ok(args.len()) {
            Lookup::Found(cmd)
        } else {
            Lookup::WrongArity(cmd)
        }
    }

    fn at(&self, loc: Loc) -> &CommandInfo {
        let top = &self.commands[loc.top as usize];
        if loc.sub == NO_SUB {
            top
        } else {
            &top.subcommands[loc.sub as usize]
        }
    }

    /// Finds `name` or `name|sub`, ASCII case-insensitively.
    fn find(&self, name: &[u8], sub: Option<&[u8]>) -> Option<Loc> {
        let len = name.len() + sub.map_or(0, |s| s.len() + 1);
        if len > self.max_name {
            return None;
        }
        if len > STACK_NAME {
            return self.find_long(name, sub);
        }
        let mut buf = [0u8; STACK_NAME];
        buf[..name.len()].copy_from_slice(name);
        if let Some(s) = sub {
            buf[name.len()] = b'|';
            buf[name.len() + 1..len].copy_from_slice(s);
        }
        let key = &mut buf[..len];
        key.make_ascii_lowercase();
        self.index.get(&*key).copied()
    }

    #[cold]
    fn find_long(&self, name: &[u8], sub: Option<&[u8]>) -> Option<Loc> {
        self.long.iter().find_map(|(k, loc)| {
            let (head, tail) = k.split_at(name.len().min(k.len()));
            let hit = match sub {
                None => k.eq_ignore_ascii_case(name),
                Some(s) => {
                    head.eq_ignore_ascii_case(name)
                        && tail.first() == Some(&b'|')
                        && tail[1..].eq_ignore_ascii_case(s)
                }
            };
            hit.then_some(*loc)
        })
    }
}

/// The Fx hash (rustc's): a multiply-rotate over 8-byte words. Not DoS-resistant, which
/// is fine here: the table never grows after loading, so client-chosen names can only
/// probe it, never lengthen its chains.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}
