//! The command policy: what each command *is* to respgate, one row per command and
//! subcommand, built once beside the [`CommandTable`](super::CommandTable) it describes.
//!
//! **Job.** Say, for a command the table resolved, how respgate treats it: its routing
//! [`Class`] (answered here, forwarded by its keys' slot, split by slot, sent to every
//! master, refused, a transaction or subscription command...), whether it may be queued
//! in MULTI ([`Multi`]), whether it may run in RESP2 subscribed mode, and which extra ACL
//! check its arguments need ([`AclCheck`]). The session looks the row up by
//! [`CommandInfo::id`] (an index into a `Vec`: no hashing of names, no allocation, no
//! lock) and matches on the class; adding a command to respgate's own handling is one
//! row in the tables below.
//!
//! **Explicit rows and derived rows.** Most commands have no row here: their class is
//! derived from what the server says of them (`COMMAND`): `@transaction` category, then
//! `blocking` flag, then `pubsub` flag, then no keys at all, else keyed. An explicit row
//! takes effect only where respgate has always applied it (its *gate*, see
//! [`resolve`]): a command respgate answers, fans out or refuses only when the server
//! says it is blocking, pub/sub or keyless (MOVE excepted); a split or SCAN-capped
//! command only when it is a plain keyed one; XREAD's blocking rule only when it is
//! flagged blocking; the transaction commands only in `@transaction`. So a server that
//! describes a command differently routes it the way its description says, as before.
//!
//! **Must not.** Know about sessions, nodes or replies being merged: a class names a
//! [`MergeKind`], which the session maps to its own merge (which carries runtime data).

use super::CommandInfo;
use crate::protocol::refusal::Refusal;
use crate::protocol::scan::parse_int;
use crate::protocol::Args;

mod rows;
pub use rows::{ACL_CHECKS, CLASSES, IMMEDIATE_IN_MULTI, IN_SUBSCRIBED_MODE, NOT_IN_MULTI};
use rows::{EVEN_KEYED, NOT_YET_TRANSACTIONS};

/// How respgate routes a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// A plain keyed command: to the master of its keys' slot; CROSSSLOT when the keys
    /// span slots.
    Keyed,
    /// HSCAN / SSCAN / ZSCAN: keyed, with a COUNT above `guards.max_scan_count` lowered.
    KeyScan,
    /// Keyed; keys spanning slots are split into one request per slot (in the order the
    /// slots first appear) and the replies merged.
    SplitBySlot { layout: Layout, merge: MergeKind },
    /// Keyed, never split: it would lose its all-or-nothing guarantee (MSETNX).
    AllOrNothing,
    /// No keys: to any master (or a slot the arguments name).
    Keyless,
    /// May hold the connection: on the client's own connection when it does block.
    Blocking(Block),
    /// A `pubsub` command respgate does not handle itself: forwarded.
    PubSub,
    /// Answered (or decided) by respgate: a handler of the session's. Some handlers hand
    /// the request back to the forward path (PUBLISH with nothing to adjust, ...).
    Local(Local),
    /// Sent as it is to every master; the replies merged.
    FanOut(MergeKind),
    /// Refused by respgate for this reason.
    Refused(RefuseReason),
    /// MULTI / EXEC / DISCARD / WATCH / UNWATCH (`@transaction`).
    Transaction(Tx),
    /// SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE: served by the pub/sub hub.
    Subscribe(Channels),
    /// UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE.
    Unsubscribe(Channels),
}

impl Class {
    /// The plain keyed path: the request's own checks decide before a guard's token is
    /// paid (anything else pays first, then respgate decides).
    pub fn is_plain_keyed(self) -> bool {
        matches!(
            self,
            Class::Keyed | Class::KeyScan | Class::SplitBySlot { .. } | Class::AllOrNothing
        )
    }
}

/// How a request split by slot is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Every argument after the name is a key (MGET, DEL, EXISTS, ...).
    Keys,
    /// Key-value pairs (MSET).
    Pairs,
}

/// How the replies of several nodes become one (the session's `Merge` does it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeKind {
    /// Integers added.
    Sum,
    /// `+OK` when every node said so.
    AllOk,
    /// The first node's reply.
    First,
    /// Arrays of 0/1 ANDed element-wise (SCRIPT EXISTS).
    AndArrays,
    /// Arrays joined without duplicates.
    Union,
    /// Arrays joined.
    Concat,
    /// The first non-null reply.
    AnyNonNull,
    /// A split's values put back in the order of the client's keys (MGET).
    ByPosition,
}

/// When a command flagged `blocking` blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// Always (BLPOP, BZPOPMIN, ...).
    Always,
    /// Only with a BLOCK option before STREAMS (XREAD, XREADGROUP).
    WithBlockOption,
}

impl Block {
    /// Whether this request may block.
    pub fn blocks(self, args: Args<'_>) -> bool {
        match self {
            Block::Always => true,
            Block::WithBlockOption => args
                .iter()
                .skip(1)
                .take_while(|a| !a.eq_ignore_ascii_case(b"streams"))
                .any(|a| a.eq_ignore_ascii_case(b"block")),
        }
    }
}

/// The transaction commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tx {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    /// Another `@transaction` command (none in Redis 7.0): refused.
    Other,
}

/// Which channels a (un)subscription names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channels {
    Channel,
    Pattern,
    Shard,
}

/// respgate's own handlers (the session's `local` module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    Ping,
    Echo,
    Quit,
    Reset,
    Select,
    Auth,
    Hello,
    /// COMMAND: the nodes' reply as loaded.
    Command,
    CommandCount,
    /// ACL subcommands (respgate's users).
    Acl,
    /// CLIENT subcommands (respgate's clients).
    Client,
    /// KEYS on every node (or by SCAN under a guard rule).
    Keys,
    /// FLUSHALL / FLUSHDB: audited, then on every master.
    Flush,
    ConfigGet,
    ConfigSet,
    /// SCRIPT KILL / FUNCTION KILL: to every node, each on a connection of its own.
    KillScript,
    RandomKey,
    /// INFO: every master's, with respgate's own section.
    Info,
    /// SCAN over the whole cluster, one shard at a time.
    Scan,
    /// FUNCTION LIST: WITHCODE for admins only.
    FunctionList,
    Publish,
    SPublish,
    /// PUBSUB NUMSUB / SHARDNUMSUB: counts of respgate's own subscribers.
    NumSub(Channels),
    /// LATENCY HISTOGRAM: every master's, added up.
    LatencyHistogram,
    /// DEBUG OBJECT to the key's master; any other DEBUG refused.
    Debug,
    /// MONITOR: every master's stream, merged.
    Monitor,
}

/// Why respgate refuses a command: a row's reason, turned into the typed
/// [`Refusal`](crate::protocol::refusal::Refusal) that renders its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// The error a standalone Redis gives (CLUSTER, ASKING, READONLY, READWRITE).
    ClusterDisabled,
    /// Not supported yet; `what` defaults to the command's name in capitals.
    NotYet {
        what: Option<&'static str>,
        why: &'static str,
    },
    /// The Lua debugger would take over a shared node connection.
    ScriptDebug,
    /// SWAPDB, MOVE: a cluster has only database 0.
    SingleDatabase,
    /// Replication and server control: run it on a node.
    NodeOnly,
}

impl RefuseReason {
    /// The refusal of command `name` (`script|kill`).
    pub fn refusal(self, name: &str) -> Refusal {
        let upper = || Refusal::command_text(name);
        match self {
            RefuseReason::ClusterDisabled => Refusal::ClusterSupportDisabled,
            RefuseReason::NotYet { what, why } => Refusal::NotSupportedYet {
                what: what.map_or_else(|| upper().into(), Into::into),
                why,
            },
            RefuseReason::ScriptDebug => Refusal::ScriptDebug,
            RefuseReason::SingleDatabase => Refusal::OnlyDatabaseZero(upper()),
            RefuseReason::NodeOnly => Refusal::RunOnANode(upper()),
        }
    }
}

/// Whether a command may be queued in MULTI (run by the node inside EXEC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multi {
    /// Queued.
    Queue,
    /// Only as `SELECT 0`.
    SelectZero,
    /// Refused: respgate answers it, fans it out or refuses it, or it is connection
    /// state that would land on a shared backend connection.
    Refuse,
    /// Acts at once even inside MULTI, as in Redis (RESET, QUIT).
    Immediate,
}

impl Multi {
    /// Whether this request can be queued.
    pub fn queueable(self, args: Args<'_>) -> bool {
        match self {
            Multi::Queue => true,
            Multi::SelectZero => args.len() == 2 && parse_int(args.get(1)) == Some(0),
            Multi::Refuse | Multi::Immediate => false,
        }
    }
}

/// ACL checks beyond the command and its keys, for users limited to some keys or channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclCheck {
    /// None.
    Plain,
    /// Needs write permission on every key (FLUSHALL, FLUSHDB).
    WritesAllKeys,
    /// SORT's BY pattern and GET read keys the key specs do not name.
    SortPatterns,
    /// The channels it names: the first argument only (PUBLISH).
    FirstChannel,
    /// Every argument, channels (SUBSCRIBE, SSUBSCRIBE).
    AllChannels,
    /// Every argument, patterns matched literally (PSUBSCRIBE).
    AllPatterns,
}

/// What respgate knows of one command or subcommand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub class: Class,
    pub multi: Multi,
    /// May run in RESP2 subscribed mode.
    pub subscribed: bool,
    pub acl: AclCheck,
}

/// One row per [`CommandInfo::id`] of a table.
#[derive(Debug, Default)]
pub struct Policy {
    rows: Vec<Row>,
}

impl Policy {
    /// The rows of `commands` (each with its subcommands), whose ids are dense.
    pub(super) fn build<'a>(commands: impl Iterator<Item = &'a CommandInfo>) -> Policy {
        let mut rows = Vec::new();
        for info in commands {
            let id = info.id as usize;
            if rows.len() <= id {
                rows.resize(id + 1, None);
            }
            rows[id] = Some(row(info));
        }
        Policy {
            rows: rows.into_iter().map(|r| r.unwrap_or(FALLBACK)).collect(),
        }
    }

    /// The row of `info` (a command of the table this policy was built with).
    #[inline]
    pub fn row(&self, info: &CommandInfo) -> Row {
        match self.rows.get(info.id as usize) {
            Some(r) => *r,
            None => row(info),
        }
    }
}

/// Only for ids no command has (never, for a table's own ids).
const FALLBACK: Row = Row {
    class: Class::Keyed,
    multi: Multi::Queue,
    subscribed: false,
    acl: AclCheck::Plain,
};

/// The row of one command.
fn row(info: &CommandInfo) -> Row {
    let name = info.name.as_str();
    let family = name.split('|').next().unwrap_or(name);
    let multi = if family == "select" {
        Multi::SelectZero
    } else if IMMEDIATE_IN_MULTI.contains(&family) {
        Multi::Immediate
    } else if NOT_IN_MULTI.contains(&family) {
        Multi::Refuse
    } else {
        Multi::Queue
    };
    Row {
        class: resolve(info, explicit(name), derived(info)),
        multi,
        subscribed: IN_SUBSCRIBED_MODE.contains(&name),
        acl: ACL_CHECKS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(AclCheck::Plain, |(_, c)| *c),
    }
}

/// The explicit class of `name` (`cmd|sub`, else `cmd|*`), if any.
pub fn explicit(name: &str) -> Option<Class> {
    let find = |n: &str| CLASSES.iter().find(|(k, _)| *k == n).map(|(_, c)| *c);
    find(name).or_else(|| {
        let (family, _) = name.split_once('|')?;
        CLASSES
            .iter()
            .find(|(k, _)| k.strip_suffix("|*") == Some(family))
            .map(|(_, c)| *c)
    })
}

/// The class the server's description gives a command with no row.
pub fn derived(info: &CommandInfo) -> Class {
    if info.in_acl_category(b"transaction") {
        Class::Transaction(Tx::Other)
    } else if info.is_blocking() {
        Class::Blocking(Block::Always)
    } else if info.is_pubsub() {
        Class::PubSub
    } else if info.has_no_keys() {
        Class::Keyless
    } else {
        Class::Keyed
    }
}

/// The class of a command: its explicit row where the row's gate holds (see the module
/// docs), else `derived`.
pub fn resolve(info: &CommandInfo, explicit: Option<Class>, derived: Class) -> Class {
    let Some(class) = explicit else {
        return derived;
    };
    // Blocking, pub/sub or keyless: what respgate answers first.
    let special = matches!(derived, Class::Blocking(_) | Class::PubSub | Class::Keyless);
    match class {
        Class::Transaction(_) if matches!(derived, Class::Transaction(_)) => class,
        Class::Transaction(_) if special => Class::Refused(NOT_YET_TRANSACTIONS),
        Class::Transaction(_) => derived,
        Class::Keyed | Class::KeyScan | Class::SplitBySlot { .. } | Class::AllOrNothing => {
            if derived == Class::Keyed {
                class
            } else {
                derived
            }
        }
        Class::Blocking(_) if matches!(derived, Class::Blocking(_)) => class,
        Class::Subscribe(_) | Class::Unsubscribe(_) if info.is_pubsub() => class,
        Class::Local(_) | Class::FanOut(_) | Class::Refused(_)
            if special || (derived == Class::Keyed && EVEN_KEYED.contains(&info.name.as_str())) =>
        {
            class
        }
        _ => derived,
    }
}
