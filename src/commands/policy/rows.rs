//! The policy's explicit rows: one line per command respgate treats other than its
//! `COMMAND` flags say. Adding a command's special treatment is adding a row here.

use super::{AclCheck, Block, Channels, Class, Layout, Local, MergeKind, RefuseReason, Tx};

/// The explicit classes: full names (`script|flush`), or `family|*` for every subcommand
/// of a container without a row of its own.
pub const CLASSES: &[(&str, Class)] = &[
    // Connection commands: a standalone Redis's answers.
    ("ping", Class::Local(Local::Ping)),
    ("echo", Class::Local(Local::Echo)),
    ("quit", Class::Local(Local::Quit)),
    ("reset", Class::Local(Local::Reset)),
    ("select", Class::Local(Local::Select)),
    // Cluster-only, as a standalone Redis answers them (a client that believes it
    // talks to a cluster node would be misled by an OK).
    ("readonly", Class::Refused(RefuseReason::ClusterDisabled)),
    ("readwrite", Class::Refused(RefuseReason::ClusterDisabled)),
    ("auth", Class::Local(Local::Auth)),
    ("hello", Class::Local(Local::Hello)),
    ("command", Class::Local(Local::Command)),
    ("command|count", Class::Local(Local::CommandCount)),
    ("cluster", Class::Refused(RefuseReason::ClusterDisabled)),
    ("cluster|*", Class::Refused(RefuseReason::ClusterDisabled)),
    // Forwarded, it would flag a shared node link for another client's next command.
    ("asking", Class::Refused(RefuseReason::ClusterDisabled)),
    ("acl|*", Class::Local(Local::Acl)),
    ("client|*", Class::Local(Local::Client)),
    ("multi", Class::Transaction(Tx::Multi)),
    ("exec", Class::Transaction(Tx::Exec)),
    ("discard", Class::Transaction(Tx::Discard)),
    ("watch", Class::Transaction(Tx::Watch)),
    ("unwatch", Class::Transaction(Tx::Unwatch)),
    ("monitor", Class::Local(Local::Monitor)),
    // The whole keyspace.
    ("keys", Class::Local(Local::Keys)),
    ("scan", Class::Local(Local::Scan)),
    ("randomkey", Class::Local(Local::RandomKey)),
    ("dbsize", Class::FanOut(MergeKind::Sum)),
    ("flushall", Class::Local(Local::Flush)),
    ("flushdb", Class::Local(Local::Flush)),
    ("swapdb", Class::Refused(RefuseReason::SingleDatabase)),
    ("move", Class::Refused(RefuseReason::SingleDatabase)),
    // Scripts and functions live on every master.
    ("script|flush", Class::FanOut(MergeKind::AllOk)),
    ("script|load", Class::FanOut(MergeKind::First)),
    ("script|exists", Class::FanOut(MergeKind::AndArrays)),
    ("script|debug", Class::Refused(RefuseReason::ScriptDebug)),
    ("script|kill", Class::Local(Local::KillScript)),
    ("function|flush", Class::FanOut(MergeKind::AllOk)),
    ("function|delete", Class::FanOut(MergeKind::AllOk)),
    ("function|restore", Class::FanOut(MergeKind::AllOk)),
    ("function|load", Class::FanOut(MergeKind::First)),
    ("function|list", Class::Local(Local::FunctionList)),
    ("function|kill", Class::Local(Local::KillScript)),
    ("function|stats", Class::Refused(NOT_YET_SCRIPTS)),
    // Server state.
    ("config|get", Class::Local(Local::ConfigGet)),
    ("config|set", Class::Local(Local::ConfigSet)),
    ("config|resetstat", Class::FanOut(MergeKind::AllOk)),
    ("config|rewrite", Class::FanOut(MergeKind::AllOk)),
    ("info", Class::Local(Local::Info)),
    ("save", Class::FanOut(MergeKind::AllOk)),
    ("bgsave", Class::FanOut(MergeKind::First)),
    ("bgrewriteaof", Class::FanOut(MergeKind::First)),
    ("latency|histogram", Class::Local(Local::LatencyHistogram)),
    ("slowlog|len", Class::FanOut(MergeKind::Sum)),
    ("slowlog|reset", Class::FanOut(MergeKind::AllOk)),
    ("slowlog|get", Class::FanOut(MergeKind::Concat)),
    ("debug", Class::Local(Local::Debug)),
    ("sync", Class::Refused(RefuseReason::NodeOnly)),
    ("psync", Class::Refused(RefuseReason::NodeOnly)),
    ("replicaof", Class::Refused(RefuseReason::NodeOnly)),
    ("slaveof", Class::Refused(RefuseReason::NodeOnly)),
    ("shutdown", Class::Refused(RefuseReason::NodeOnly)),
    ("failover", Class::Refused(RefuseReason::NodeOnly)),
    // WAIT counts acknowledgements of the connection's own writes, and a client's
    // writes go over shared connections: the answer would mean nothing.
    ("wait", Class::Refused(NOT_YET_WAIT)),
    ("waitaof", Class::Refused(NOT_YET_WAIT)),
    // Pub/sub.
    ("subscribe", Class::Subscribe(Channels::Channel)),
    ("psubscribe", Class::Subscribe(Channels::Pattern)),
    ("ssubscribe", Class::Subscribe(Channels::Shard)),
    ("unsubscribe", Class::Unsubscribe(Channels::Channel)),
    ("punsubscribe", Class::Unsubscribe(Channels::Pattern)),
    ("sunsubscribe", Class::Unsubscribe(Channels::Shard)),
    ("publish", Class::Local(Local::Publish)),
    ("spublish", Class::Local(Local::SPublish)),
    ("pubsub|channels", Class::FanOut(MergeKind::Union)),
    ("pubsub|shardchannels", Class::FanOut(MergeKind::Union)),
    ("pubsub|numpat", Class::FanOut(MergeKind::Sum)),
    (
        "pubsub|numsub",
        Class::Local(Local::NumSub(Channels::Channel)),
    ),
    (
        "pubsub|shardnumsub",
        Class::Local(Local::NumSub(Channels::Shard)),
    ),
    // Keyed commands with rules of their own.
    ("mget", split(Layout::Keys, MergeKind::ByPosition)),
    ("del", split(Layout::Keys, MergeKind::Sum)),
    ("unlink", split(Layout::Keys, MergeKind::Sum)),
    ("exists", split(Layout::Keys, MergeKind::Sum)),
    ("touch", split(Layout::Keys, MergeKind::Sum)),
    ("mset", split(Layout::Pairs, MergeKind::AllOk)),
    ("msetnx", Class::AllOrNothing),
    ("hscan", Class::KeyScan),
    ("sscan", Class::KeyScan),
    ("zscan", Class::KeyScan),
    ("xread", Class::Blocking(Block::WithBlockOption)),
    ("xreadgroup", Class::Blocking(Block::WithBlockOption)),
];

const fn split(layout: Layout, merge: MergeKind) -> Class {
    Class::SplitBySlot { layout, merge }
}

const NOT_YET_SCRIPTS: RefuseReason = RefuseReason::NotYet {
    what: None,
    why: "it would need every master's running script",
};
const NOT_YET_WAIT: RefuseReason = RefuseReason::NotYet {
    what: None,
    why: "the client's writes travel on shared backend connections",
};
/// The transaction commands where the server does not list them in `@transaction`.
pub(super) const NOT_YET_TRANSACTIONS: RefuseReason = RefuseReason::NotYet {
    what: Some("MULTI/EXEC/WATCH"),
    why: "transactions need a pinned backend connection",
};

/// Command families (a command and all its subcommands) never queued in MULTI: what
/// respgate answers itself, fans out or refuses, and connection state that would land
/// on a shared backend connection. SELECT 0 and COMMAND run on the node as they would
/// on a standalone Redis.
pub const NOT_IN_MULTI: &[&str] = &[
    "readonly",
    "readwrite",
    "asking",
    "acl",
    "auth",
    "hello",
    "cluster",
    "client",
    "keys",
    "scan",
    "dbsize",
    "flushall",
    "flushdb",
    "randomkey",
    "script",
    "function",
    "config",
    "info",
    "swapdb",
    "move",
    "sync",
    "psync",
    "replicaof",
    "slaveof",
    "shutdown",
    "debug",
    "failover",
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "pubsub",
    "monitor",
    "wait",
    "waitaof",
];

/// Acting at once even inside MULTI, as in Redis.
pub const IMMEDIATE_IN_MULTI: &[&str] = &["reset", "quit"];

/// What a RESP2 client may run in subscribed mode (Redis's list).
pub const IN_SUBSCRIBED_MODE: &[&str] = &[
    "subscribe",
    "psubscribe",
    "ssubscribe",
    "unsubscribe",
    "punsubscribe",
    "sunsubscribe",
    "ping",
    "quit",
    "reset",
];

/// The ACL checks beyond command and keys.
pub const ACL_CHECKS: &[(&str, AclCheck)] = &[
    ("flushall", AclCheck::WritesAllKeys),
    ("flushdb", AclCheck::WritesAllKeys),
    ("sort", AclCheck::SortPatterns),
    ("sort_ro", AclCheck::SortPatterns),
    ("publish", AclCheck::FirstChannel),
    ("spublish", AclCheck::FirstChannel),
    ("subscribe", AclCheck::AllChannels),
    ("ssubscribe", AclCheck::AllChannels),
    ("psubscribe", AclCheck::AllPatterns),
];

/// Applied whatever the server says of their keys (MOVE has one).
pub(super) const EVEN_KEYED: &[&str] = &["move"];
