//! What one command is: [`CommandInfo`], its command flags, ACL categories and tips.

use crate::protocol::Args;

use super::keys::{self, KeyRef, KeyRule, KeySpec, KeysError};

/// Command flags (`COMMAND`'s third field) as bits of [`CommandInfo::flags`].
pub mod cmd_flags {
    /// May modify data.
    pub const WRITE: u32 = 1 << 0;
    /// Never modifies data.
    pub const READONLY: u32 = 1 << 1;
    /// May grow memory use: refused when the server is out of memory.
    pub const DENYOOM: u32 = 1 << 2;
    /// Implemented by a module.
    pub const MODULE: u32 = 1 << 3;
    /// Administrative.
    pub const ADMIN: u32 = 1 << 4;
    /// Pub/Sub related.
    pub const PUBSUB: u32 = 1 << 5;
    /// Not allowed from scripts.
    pub const NOSCRIPT: u32 = 1 << 6;
    /// May block the client.
    pub const BLOCKING: u32 = 1 << 7;
    /// Allowed while the server loads its dataset.
    pub const LOADING: u32 = 1 << 8;
    /// Allowed on a replica with stale data.
    pub const STALE: u32 = 1 << 9;
    /// Not propagated to MONITOR.
    pub const SKIP_MONITOR: u32 = 1 << 10;
    /// Not logged in the slow log.
    pub const SKIP_SLOWLOG: u32 = 1 << 11;
    /// Served by an importing cluster node after ASKING.
    pub const ASKING: u32 = 1 << 12;
    /// O(1) or O(log N).
    pub const FAST: u32 = 1 << 13;
    /// Allowed before authentication.
    pub const NO_AUTH: u32 = 1 << 14;
    /// May replicate even when not a write. Redis 7.0 hides this flag from `COMMAND`, so
    /// it is set only when a server does report it.
    pub const MAY_REPLICATE: u32 = 1 << 15;
    /// May legitimately have no keys even when its key specs say otherwise.
    pub const NO_MANDATORY_KEYS: u32 = 1 << 16;
    /// Refused during async loading.
    pub const NO_ASYNC_LOADING: u32 = 1 << 17;
    /// Not allowed inside MULTI.
    pub const NO_MULTI: u32 = 1 << 18;
    /// Key positions depend on the arguments.
    pub const MOVABLEKEYS: u32 = 1 << 19;
    /// Allowed while the server is busy with a script or module.
    pub const ALLOW_BUSY: u32 = 1 << 20;

    /// Every flag with the name `COMMAND` uses for it.
    pub const NAMES: [(u32, &str); 21] = [
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (MODULE, "module"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (SKIP_MONITOR, "skip_monitor"),
        (SKIP_SLOWLOG, "skip_slowlog"),
        (ASKING, "asking"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (MAY_REPLICATE, "may_replicate"),
        (NO_MANDATORY_KEYS, "no_mandatory_keys"),
        (NO_ASYNC_LOADING, "no_async_loading"),
        (NO_MULTI, "no_multi"),
        (MOVABLEKEYS, "movablekeys"),
        (ALLOW_BUSY, "allow_busy"),
    ];

    /// The bit of the flag `COMMAND` calls `name`, if known.
    pub fn from_name(name: &[u8]) -> Option<u32> {
        NAMES
            .iter()
            .find(|(_, n)| n.as_bytes() == name)
            .map(|&(f, _)| f)
    }
}

/// ACL category names (without `@`); category `i` is bit `1 << i` of
/// [`CommandInfo::acl_categories`]. The order is Redis's own.
pub const ACL_CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The bit of ACL category `name` (with or without the leading `@`, case-insensitive).
pub fn acl_category_bit(name: &[u8]) -> Option<u64> {
    let name = name.strip_prefix(b"@").unwrap_or(name);
    ACL_CATEGORIES
        .iter()
        .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 1u64 << i)
}

/// The name (without `@`) of the ACL category whose bit is `1 << index`.
pub fn acl_category_name(index: u32) -> Option<&'static str> {
    ACL_CATEGORIES.get(index as usize).copied()
}

/// Where a cluster client should send a keyless or multi-key command (`request_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequestPolicy {
    /// No tip: keyless commands go to any node, keyed ones to their slot's node.
    #[default]
    Default,
    AllNodes,
    AllShards,
    MultiShard,
    Special,
}

/// How replies of a fanned-out command combine (`response_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponsePolicy {
    /// No tip.
    #[default]
    Default,
    OneSucceeded,
    AllSucceeded,
    AggLogicalAnd,
    AggLogicalOr,
    AggMin,
    AggMax,
    AggSum,
    Special,
}

/// A command's tips (`COMMAND`'s eighth field), parsed where respgate cares, raw otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tips {
    /// Every tip as the server wrote it.
    pub raw: Vec<String>,
    pub request_policy: RequestPolicy,
    pub response_policy: ResponsePolicy,
    /// `nondeterministic_output`.
    pub nondeterministic_output: bool,
    /// `nondeterministic_output_order`.
    pub nondeterministic_output_order: bool,
}

impl Tips {
    /// Parses tips; unknown tips are kept in `raw` only.
    pub fn from_raw(raw: Vec<String>) -> Tips {
        let mut t = Tips::default();
        for tip in &raw {
            match tip.as_str() {
                "nondeterministic_output" => t.nondeterministic_output = true,
                "nondeterministic_output_order" => t.nondeterministic_output_order = true,
                "request_policy:all_nodes" => t.request_policy = RequestPolicy::AllNodes,
                "request_policy:all_shards" => t.request_policy = RequestPolicy::AllShards,
                "request_policy:multi_shard" => t.request_policy = RequestPolicy::MultiShard,
                "request_policy:special" => t.request_policy = RequestPolicy::Special,
                "response_policy:one_succeeded" => t.response_policy = ResponsePolicy::OneSucceeded,
                "response_policy:all_succeeded" => t.response_policy = ResponsePolicy::AllSucceeded,
                "response_policy:agg_logical_and" => {
                    t.response_policy = ResponsePolicy::AggLogicalAnd
                }
                "response_policy:agg_logical_or" => {
                    t.response_policy = ResponsePolicy::AggLogicalOr
                }
                "response_policy:agg_min" => t.response_policy = ResponsePolicy::AggMin,
                "response_policy:agg_max" => t.response_policy = ResponsePolicy::AggMax,
                "response_policy:agg_sum" => t.response_policy = ResponsePolicy::AggSum,
                "response_policy:special" => t.response_policy = ResponsePolicy::Special,
                _ => {}
            }
        }
        t.raw = raw;
        t
    }
}

/// One command (or subcommand) as the server describes it through `COMMAND`.
#[derive(Clone, Debug)]
pub struct CommandInfo {
    /// Lowercase name; `container|sub` for subcommands (`object|encoding`), as Redis's
    /// `fullname`.
    pub name: String,
    /// Index of this command or subcommand in its table (ACL decisions are vectors
    /// indexed by it).
    pub id: u32,
    /// Redis arity: > 0 exact argument count, < 0 at least `-arity` (name included).
    pub arity: i32,
    /// [`cmd_flags`] bits.
    pub flags: u32,
    /// Legacy key range (first key, last key, step); the key specs supersede it.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// ACL category bits; see [`ACL_CATEGORIES`].
    pub acl_categories: u64,
    pub tips: Tips,
    pub key_specs: Vec<KeySpec>,
    /// Subcommands of a container command (`OBJECT`, `CONFIG`, ...); empty otherwise.
    pub subcommands: Vec<CommandInfo>,
    pub(crate) key_rule: KeyRule,
    /// Per-command metric handles, registered on the command's first use (see
    /// [`CommandInfo::metrics`]).
    pub(crate) metrics: LazyMetrics,
}

/// The metric handles of one command: requests seen and reply latency.
#[derive(Clone, Debug)]
pub struct CommandMetrics {
    pub requests: metrics::Counter,
    pub latency: metrics::Histogram,
}

impl CommandMetrics {
    /// Registers `respgate_command_requests_total{command}` and
    /// `respgate_command_duration_seconds{command}` with the installed recorder (handles
    /// that record nothing when none is).
    pub fn register(name: &str) -> CommandMetrics {
        CommandMetrics {
            requests: metrics::counter!("respgate_command_requests_total", "command" => name.to_string()),
            latency: metrics::histogram!("respgate_command_duration_seconds", "command" => name.to_string()),
        }
    }
}

/// A command's [`CommandMetrics`], registered when the command is first used rather than
/// when the table is built: a registered histogram is exported even while empty, and
/// registering all ~370 commands and subcommands made every scrape carry ~6,600 series
/// (~480 KB, ~2.8 ms of respgate's CPU) for commands nobody sends. After the first use
/// a lookup is one atomic load: no lock, no allocation.
#[derive(Clone, Debug, Default)]
pub(crate) struct LazyMetrics(std::sync::OnceLock<CommandMetrics>);

impl CommandInfo {
    /// This command's metric handles (registered on first use).
    #[inline]
    pub fn metrics(&self) -> &CommandMetrics {
        self.metrics
            .0
            .get_or_init(|| CommandMetrics::register(&self.name))
    }

    /// True when the command has the [`cmd_flags`] bit(s) `flag`.
    pub fn has_flag(&self, flag: u32) -> bool {
        self.flags & flag == flag
    }

    /// `write`: may modify data.
    pub fn is_write(&self) -> bool {
        self.has_flag(cmd_flags::WRITE)
    }

    /// `readonly`.
    pub fn is_readonly(&self) -> bool {
        self.has_flag(cmd_flags::READONLY)
    }

    /// `blocking`: may hold the connection until data arrives.
    pub fn is_blocking(&self) -> bool {
        self.has_flag(cmd_flags::BLOCKING)
    }

    /// Whether this command can wake a client blocked on a key, so that its order
    /// against blocking commands other workers are reading matters
    /// (`workers::fence`): writes to lists, sorted sets (and geo sets), streams or keys
    /// as a whole (RENAME, RESTORE, COPY create them), and EXEC and scripts that are not
    /// read-only. Not blocking commands themselves: a fenced blocking command would wait
    /// behind the very write it must precede. Not on the GET/SET path: asked only while
    /// fencing is active.
    pub fn wakes_blocked(&self) -> bool {
        static BITS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
        let (data, calls) = *BITS.get_or_init(|| {
            let bits = |names: &[&str]| {
                names
                    .iter()
                    .map(|n| acl_category_bit(n.as_bytes()).unwrap_or(0))
                    .fold(0, |a, b| a | b)
            };
            (
                bits(&["list", "sortedset", "geo", "stream", "keyspace"]),
                bits(&["transaction", "scripting"]),
            )
        });
        !self.is_blocking()
            && ((self.is_write() && self.acl_categories & data != 0)
                || (!self.is_readonly() && self.acl_categories & calls != 0))
    }

    /// Runs code on the node: EVAL, EVALSHA, FCALL and their `_RO` forms (`@scripting`
    /// commands other than SCRIPT and FUNCTION subcommands). One bit test for every
    /// other command.
    #[inline]
    pub fn runs_script(&self) -> bool {
        static BIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let bit = *BIT.get_or_init(|| acl_category_bit(b"scripting").unwrap_or(0));
        self.acl_categories & bit != 0
            && matches!(
                self.name.as_str(),
                "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
            )
    }

    /// `admin`.
    pub fn is_admin(&self) -> bool {
        self.has_flag(cmd_flags::ADMIN)
    }

    /// `pubsub`.
    pub fn is_pubsub(&self) -> bool {
        self.has_flag(cmd_flags::PUBSUB)
    }

    /// `movablekeys`: key positions depend on the arguments.
    pub fn has_movable_keys(&self) -> bool {
        self.has_flag(cmd_flags::MOVABLEKEYS)
    }

    /// `no_multi`: refused inside MULTI.
    pub fn is_no_multi(&self) -> bool {
        self.has_flag(cmd_flags::NO_MULTI)
    }

    /// A container command (has subcommands selected by its first argument).
    pub fn is_container(&self) -> bool {
        !self.subcommands.is_empty()
    }

    /// True when the command is in the ACL category `name` (`"read"` or `"@read"`).
    pub fn in_acl_category(&self, name: &[u8]) -> bool {
        acl_category_bit(name).is_some_and(|b| self.acl_categories & b != 0)
    }

    /// The command's ACL category names (without `@`), in Redis's order.
    pub fn acl_category_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        ACL_CATEGORIES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.acl_categories & (1 << i) != 0)
            .map(|(_, n)| *n)
    }

    /// The names of the command's flags.
    pub fn flag_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        cmd_flags::NAMES
            .iter()
            .filter(|(f, _)| self.flags & f != 0)
            .map(|(_, n)| *n)
    }

    /// Redis's arity rule for `argc` arguments (the name included): exactly `arity` when
    /// positive, at least `-arity` when negative.
    pub fn arity_ok(&self, argc: usize) -> bool {
        if self.arity >= 0 {
            argc == self.arity as usize
        } else {
            argc >= self.arity.unsigned_abs() as usize
        }
    }

    /// True when `keys` can only ever report an empty list (no key specs, no rule).
    pub fn has_no_keys(&self) -> bool {
        self.key_rule == KeyRule::None
    }

    /// Appends (argument index, key-spec flags) of every key of `args` to `out`, after
    /// clearing it, as Redis's `getKeysFromCommandWithSpecs` finds them: the key specs,
    /// or a hand-written rule for SORT, SORT_RO, MIGRATE, SET and BITFIELD. Shard
    /// channels (SPUBLISH, SSUBSCRIBE, ...) are reported with [`KeyFlags::NOT_KEY`]
    /// because they route like keys; filter them out where only data keys matter.
    ///
    /// `args` is the whole request (index 0 is the command name, also for subcommands).
    /// Errors: [`KeysError::Invalid`] when the request is malformed for the specs (let the
    /// backend answer it), [`KeysError::Incomplete`] when the specs cannot find every key
    /// and there is no rule. `out` is empty after an error. Allocation-free when `out` has
    /// room for the keys.
    ///
    /// [`KeyFlags::NOT_KEY`]: super::KeyFlags::NOT_KEY
    pub fn keys(&self, args: Args<'_>, out: &mut Vec<KeyRef>) -> Result<(), KeysError> {
        keys::extract(self.key_rule, &self.key_specs, args, out)
    }
}
