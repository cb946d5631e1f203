//! Every error respgate answers on its own, typed, and rendered in one place.
//!
//! **Job.** A [`Refusal`] names why a request is refused; its `Display` (by `thiserror`)
//! is the exact error text a client reads, and [`Refusal::reply`] frames it as a RESP
//! error. Where Redis 7.0 has the same refusal, the text is Redis's own, byte for byte
//! (`NOAUTH`, `WRONGPASS`, `NOPERM`, `CROSSSLOT`, `EXECABORT`, `ERR syntax error`, ...),
//! so a client written for one Redis branches on it unchanged. Where the refusal is
//! respgate's own, the text starts `ERR respgate:` (or the Redis code the situation
//! resembles, e.g. `CLUSTERDOWN respgate:`) and names the option or rule that refused,
//! so an operator knows which knob to turn.
//!
//! **Why typed.** As rustls does with its alerts: callers branch on a variant, not on
//! text; a test pins each variant's text (`tests` below lists every variant through an
//! exhaustive match, so a new variant without a pinned text does not compile); and the
//! wording lives here rather than in format strings scattered over the session.
//!
//! **Must not.** Be built on the hot path of a request that passes: a refusal may
//! allocate (it is the cold path). Errors a node sends are forwarded as the node wrote
//! them and never pass through here; Redis's errors that depend on the request bytes
//! (unknown command, wrong arity) are in `commands::replies`, which quotes the request.

use std::borrow::Cow;

use bytes::Bytes;

use super::refusal_cross_slot::cross_slot_why;
pub use super::refusal_cross_slot::CrossSlotWhy;

/// Which of respgate's own lockouts refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockedOutScope {
    /// This user at this address (`auth.max_failures`).
    User,
    /// Every user at this address (`auth.max_unknown_user_failures`).
    Address,
}

/// The limit rule a request ran into, as its refusals name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERR respgate: {what} is limited to {rate} {scope} (rule {rule})")]
pub struct GuardLimit {
    /// The command as the rule describes it.
    pub what: String,
    /// The rate (`10/minute`).
    pub rate: String,
    /// Per user, per address, ...
    pub scope: String,
    /// The rule's name.
    pub rule: String,
}

/// A refusal respgate answers itself. `Display` is the error text without the leading
/// `-` and the trailing CRLF.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    // ---- Redis's own texts --------------------------------------------------------
    /// A command before AUTH.
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// HELLO with a protocol version before AUTH.
    #[error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")]
    HelloNoAuth,
    /// Wrong user name or password (the same text for both).
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    /// `AUTH <password>` while the default user has none.
    #[error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")]
    NoDefaultPassword,
    /// The user may not run this command (its lowercase name, `config|get` style).
    #[error("NOPERM this user has no permissions to run the '{0}' command")]
    NoPermCommand(String),
    /// The user may not touch one of the keys.
    #[error("NOPERM this user has no permissions to access one of the keys used as arguments")]
    NoPermKey,
    /// The user may not use one of the channels.
    #[error("NOPERM this user has no permissions to access one of the channels used as arguments")]
    NoPermChannel,
    /// SORT's BY or GET option needs read access to every key.
    #[error("ERR {0} option of SORT denied due to insufficient ACL permissions.")]
    SortOptionDenied(&'static str),
    /// Keys (or shard channels) of more than one slot.
    #[error("CROSSSLOT Keys in request don't hash to the same slot{}", cross_slot_why(*.0))]
    CrossSlot(CrossSlotWhy),
    /// EXEC after a refused command in the transaction.
    #[error("EXECABORT Transaction discarded because of previous errors.")]
    ExecAbort,
    /// A refused EXEC: Redis words the refusal as the transaction's abort.
    #[error("EXECABORT Transaction discarded because of: {0}")]
    ExecAbortBecause(String),
    /// MULTI inside MULTI.
    #[error("ERR MULTI calls can not be nested")]
    NestedMulti,
    /// EXEC with no MULTI.
    #[error("ERR EXEC without MULTI")]
    ExecWithoutMulti,
    /// DISCARD with no MULTI.
    #[error("ERR DISCARD without MULTI")]
    DiscardWithoutMulti,
    /// WATCH inside MULTI.
    #[error("ERR WATCH inside MULTI is not allowed")]
    WatchInMulti,
    /// A command other than (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, PING, QUIT, RESET in
    /// subscribed mode (the command's lowercase name).
    #[error("ERR Can't execute '{0}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")]
    SubscribedMode(String),
    /// A command that reads or writes the keyspace from a client in MONITOR mode (Redis
    /// counts a monitor as a replica).
    #[error("ERR Replica can't interact with the keyspace")]
    ReplicaKeyspace,
    /// CLIENT SETNAME / HELLO SETNAME with a space, newline or special character.
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    BadClientName,
    /// HELLO with an option it does not know (the option as sent).
    #[error("ERR Syntax error in HELLO option '{0}'")]
    HelloOption(String),
    /// A malformed request.
    #[error("ERR syntax error")]
    Syntax,
    /// An argument that should be an integer.
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    /// A count that must be positive.
    #[error("ERR value is out of range, must be positive")]
    NotPositive,
    /// SELECT of a database other than 0.
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    /// CLUSTER and ASKING: respgate presents a standalone server.
    #[error("ERR This instance has cluster support disabled")]
    ClusterSupportDisabled,
    /// HELLO with a version that is not 2 or 3.
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolVersion,
    /// HELLO with a number that is no supported version.
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    /// SCAN with a cursor respgate did not hand out.
    #[error("ERR invalid cursor")]
    InvalidCursor,
    /// CLIENT KILL ID / CLIENT UNBLOCK with an id that is not a number.
    #[error("ERR Invalid client ID")]
    InvalidClientId,
    /// CLIENT KILL ID 0 or below.
    #[error("ERR client-id should be greater than 0")]
    ClientIdNotPositive,
    /// CLIENT KILL of a client that does not exist (or is not the caller's to see).
    #[error("ERR No such client")]
    NoSuchClient,
    /// CLIENT LIST TYPE with an unknown type.
    #[error("ERR Unknown client type '{0}'")]
    UnknownClientType(String),
    /// CLIENT UNBLOCK with a reason other than TIMEOUT or ERROR.
    #[error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")]
    UnblockReason,
    /// CLIENT CACHING outside OPTIN/OPTOUT tracking.
    #[error("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled")]
    CachingWithoutTracking,

    // ---- respgate's own: the cluster is not (yet) reachable -----------------------
    /// No command table yet: respgate has not reached any node.
    #[error("CLUSTERDOWN The cluster is down (respgate has not reached any node yet)")]
    NoNodeReached,
    /// No topology yet.
    #[error("CLUSTERDOWN The cluster is down (respgate knows no master yet)")]
    NoMasterKnown,
    /// No node known yet.
    #[error("CLUSTERDOWN The cluster is down (respgate knows no node yet)")]
    NoNodeKnown,
    /// A request that could not be sent before `retry_deadline_ms` (never written to a
    /// node, so it did not run).
    #[error("CLUSTERDOWN respgate: {0}")]
    NotSent(String),

    // ---- respgate's own: not supported or not allowed through one endpoint ---------
    /// Not supported yet, with what it would need.
    #[error("ERR respgate: {what} is not supported yet ({why})")]
    NotSupportedYet {
        /// The command, uppercase with spaces (`SCRIPT KILL`).
        what: Cow<'static, str>,
        /// What it would need.
        why: &'static str,
    },
    /// Administrative commands that belong on a node (uppercase name).
    #[error("ERR respgate: {0} is not allowed through the proxy; run it on a node")]
    RunOnANode(String),
    /// SWAPDB / MOVE: a cluster has only database 0 (uppercase name).
    #[error("ERR respgate: {0} is not allowed: a Redis Cluster has only database 0")]
    OnlyDatabaseZero(String),
    /// SCRIPT DEBUG.
    #[error("ERR respgate: SCRIPT DEBUG is not supported (the Lua debugger would take over a node connection other clients share)")]
    ScriptDebug,
    /// CLIENT TRACKING ON.
    #[error("ERR respgate: CLIENT TRACKING is not supported: client-side caching needs invalidation messages from every node for this connection's keys, which respgate does not relay")]
    ClientTracking,
    /// FUNCTION LIST WITHCODE by a restricted user who is no admin.
    #[error("ERR respgate: FUNCTION LIST WITHCODE shows every team's library code: admins only ([guards] admins)")]
    FunctionCodeAdminsOnly,
    /// ACL SETUSER and friends: users live in the config file (uppercase subcommand).
    #[error("ERR respgate: ACL {0} is not available: respgate's users live in its config file ([[auth.users]]); edit it and send SIGHUP")]
    AclInConfigFile(String),
    /// COMMAND before the table is loaded.
    #[error("ERR respgate: command table not loaded")]
    CommandTableNotLoaded,
    /// SCAN's cursor has 8 bits for the shard.
    #[error("ERR respgate: SCAN supports clusters of up to 255 masters")]
    ScanTooManyMasters,
    /// Key positions respgate cannot find: it never routes on a guess (lowercase name).
    #[error("ERR respgate: cannot tell which keys '{0}' touches, so it cannot be routed")]
    KeysUnknown(String),
    /// A command that runs on several nodes, queued in MULTI (uppercase, spaced name).
    #[error(
        "ERR respgate: {0} cannot be queued in a transaction (it is not a single-node command)"
    )]
    NotQueueable(String),
    /// A guarded command served by SCAN or counted in the cluster, in MULTI.
    #[error("ERR respgate: {0} cannot be queued in MULTI under its guard rule (served by SCAN or counted in the cluster)")]
    GuardNotInMulti(String),
    /// The transaction module asked about a command that is not one of its own.
    #[error("ERR respgate: not a transaction command")]
    NotATransactionCommand,

    // ---- respgate's own: a limit refused (each names its option) -------------------
    /// A login locked out after failures.
    #[error("ERR respgate: too many failed authentication attempts{} from {addr} ({}); retry in {wait_secs}s", locked_whom(*.scope), locked_option(*.scope))]
    LockedOut {
        /// User-and-address or address-wide.
        scope: LockedOutScope,
        /// The client's address.
        addr: std::net::IpAddr,
        /// Seconds until the lockout ends (at least 1).
        wait_secs: u64,
    },
    /// CLIENT SETNAME over `server.max_client_name_bytes`.
    #[error("ERR respgate: client name longer than server.max_client_name_bytes ({0} bytes)")]
    ClientNameTooLong(usize),
    /// A transaction's queued bytes over `server.max_transaction_bytes`.
    #[error("ERR respgate: transaction longer than server.max_transaction_bytes ({0} bytes)")]
    TransactionTooLong(usize),
    /// The process budget for client buffers is spent.
    #[error(
        "ERR respgate: client buffers are full (server.max_client_buffer_bytes = {0}); retry later"
    )]
    ClientBuffersFull(usize),
    /// One node's reply over `cluster.max_reply_bytes`.
    #[error("ERR respgate: reply from {addr} over cluster.max_reply_bytes ({limit} bytes); the command ran, its reply was discarded")]
    ReplyTooLarge {
        /// The node.
        addr: String,
        /// The limit.
        limit: usize,
    },
    /// A reply merged from several nodes over `cluster.max_reply_bytes`.
    #[error("ERR respgate: reply merged from {parts} parts over cluster.max_reply_bytes ({limit} bytes); the command ran, its reply was discarded")]
    MergedReplyTooLarge {
        /// How many nodes' replies.
        parts: usize,
        /// The limit.
        limit: usize,
    },
    /// KEYS served by SCAN matched more than `guards.max_keys_reply`.
    #[error("ERR respgate: KEYS matches more than {0} keys (guards.max_keys_reply); use SCAN with MATCH and a narrower pattern")]
    TooManyKeys(usize),
    /// RANDOMKEY for a user limited to key patterns found none of its keys.
    #[error("ERR respgate: RANDOMKEY found none of this user's keys within {0} SCAN calls (its limit for users limited to key patterns); use SCAN with MATCH")]
    RandomKeyNotFound(usize),
    /// A user over `guards.max_keyspace_walks_per_user`.
    #[error("ERR respgate: {what} refused: user '{user}' already has {held} keyspace walks (KEYS, SCAN, RANDOMKEY searches) in flight, its limit (guards.max_keyspace_walks_per_user = {max}); retry once one is answered")]
    TooManyWalks {
        /// KEYS, SCAN or RANDOMKEY.
        what: String,
        /// The user.
        user: String,
        /// Walks in flight.
        held: usize,
        /// The limit.
        max: usize,
    },
    /// A user at its own quota of dedicated connections.
    #[error("ERR respgate: {what} refused: user '{user}' already holds {held} connections of its own (blocking commands, WATCH), its limit ({limit})")]
    DedicatedPerUser {
        /// What needed the connection (WATCH, a blocking command).
        what: &'static str,
        /// The user.
        user: String,
        /// Connections it holds.
        held: usize,
        /// The limit and the option that set it.
        limit: String,
    },
    /// Every dedicated connection is taken.
    #[error("ERR respgate: {what} refused: every connection of clients' own is taken (server.max_dedicated_connections = {max}, for all users together)")]
    DedicatedGlobal {
        /// What needed the connection.
        what: &'static str,
        /// `server.max_dedicated_connections`.
        max: usize,
    },

    // ---- respgate's own: guards, TTL policy, scripts ------------------------------
    /// A deny rule matched (`what` as the rule words the command).
    #[error("ERR respgate: {what} is denied by rule '{rule}' (ask an admin)")]
    GuardDenied {
        /// The command as the rule describes it.
        what: String,
        /// The rule's name.
        rule: String,
    },
    /// A limit rule's bucket (or its budget counted in the cluster) is empty.
    #[error("{limit}; retry in {retry}")]
    GuardLimited {
        /// The rule and the command.
        limit: GuardLimit,
        /// `42s`, `0.3s`.
        retry: String,
    },
    /// A limit rule whose budget is counted in the cluster, refused because it cannot
    /// be counted (`on_error = "closed"`).
    #[error(
        "{limit}; the shared budget cannot be counted right now ({why}), so the request is refused"
    )]
    GuardUncounted {
        /// The rule and the command.
        limit: GuardLimit,
        /// Why it could not be counted.
        why: String,
    },
    /// SET without an expiry on keys whose TTL rule rejects that.
    #[error("ERR respgate: keys matching '{pattern}' need an expiry: add EX, PX, EXAT or PXAT (TTL policy, at most {max_secs}s)")]
    TtlNeeded {
        /// The rule's pattern.
        pattern: String,
        /// The most the rule allows.
        max_secs: u64,
    },
    /// PERSIST (or the like) on keys that must keep an expiry (uppercase command).
    #[error("ERR respgate: keys matching '{pattern}' must keep an expiry ({command} refused by the TTL policy)")]
    TtlMustStay {
        /// The rule's pattern.
        pattern: String,
        /// The refused command.
        command: String,
    },
    /// An expiry over the rule's `max_seconds`.
    #[error("ERR respgate: {command} {value} on '{key}' is over the TTL policy's max_seconds ({max}) for keys matching '{pattern}'")]
    TtlOverMax {
        /// The command, uppercase.
        command: String,
        /// The expiry as the client wrote it.
        value: String,
        /// The key.
        key: String,
        /// The rule's `max_seconds`.
        max: u64,
        /// The rule's pattern.
        pattern: String,
    },
    /// A script before the user's node identity exists.
    #[error("ERR respgate: no node identity for user '{0}' yet; scripts cannot run")]
    NoScriptIdentity(String),
    /// A script outside `scripts.allowed_sha1` (allowlist isolation).
    #[error("NOPERM respgate: script {0} is not in scripts.allowed_sha1 (isolation \"allowlist\": restricted users run only allow-listed scripts)")]
    ScriptNotAllowed(String),
    /// FCALL by a restricted user under allowlist isolation.
    #[error("NOPERM respgate: functions are not available to restricted users with scripts.isolation = \"allowlist\"")]
    FunctionsNotAllowed,
    /// A node refused a script's caller identity (the link's reason).
    #[error("ERR respgate: this runs on the node as your own user, and {0}")]
    RefusedAsUser(String),

    // ---- respgate's own: a node or a task failed ----------------------------------
    /// A request written to a node that then failed or did not answer in time: it may
    /// have run, so it is not re-sent.
    #[error("ERR respgate: {0}")]
    Backend(String),
    /// A computed cross-slot command whose copies would exceed the size limit.
    #[error("ERR respgate: cross-slot {command} would copy {bytes} bytes, over compat.max_cross_slot_bytes ({max})")]
    CrossSlotTooLarge {
        command: String,
        bytes: u64,
        max: u64,
    },
    /// A step of a computed cross-slot command failed (it may have run in part).
    #[error("ERR respgate: cross-slot {command} failed: {why}")]
    CrossSlotFailed { command: String, why: String },
    /// A client's command on a key reserved for respgate's cross-slot copies.
    #[error("NOPERM respgate: keys containing 'respgate:xslot:' are reserved for respgate's cross-slot copies")]
    CrossSlotInternalKey,
    /// CONFIG SET could not read the values to restore on a node.
    #[error("ERR respgate: CONFIG SET not applied: cannot read the values on {addr}: {why}")]
    ConfigSetUnread {
        /// The node.
        addr: String,
        /// Why.
        why: String,
    },
    /// CONFIG SET of a parameter respgate manages (the parameter as sent).
    #[error("ERR respgate: CONFIG SET {parameter} is managed by respgate ({why})")]
    ConfigManaged {
        /// The parameter, as the client wrote it.
        parameter: String,
        /// Why respgate manages it.
        why: &'static str,
    },
    /// CONFIG SET failed on a node.
    #[error("ERR respgate: CONFIG SET on {addr}: {why}")]
    ConfigSetFailed {
        /// The node.
        addr: String,
        /// Why.
        why: String,
    },
    /// A walk served by SCAN failed on a node.
    #[error("ERR respgate: {what} (served by SCAN) failed on {addr}: {why}")]
    ScanFailed {
        /// KEYS, RANDOMKEY, ...
        what: String,
        /// The node.
        addr: String,
        /// Why.
        why: String,
    },
    /// A SCAN reply respgate could not read.
    #[error("ERR respgate: unreadable SCAN reply")]
    UnreadableScan,
    /// Nodes' replies that could not be merged into one.
    #[error("ERR respgate: a node's reply could not be merged")]
    Unmergeable,
    /// An EXEC reply that is not an array of the queued commands' replies.
    #[error("ERR respgate: malformed transaction reply")]
    MalformedTransactionReply,
    /// A task (CONFIG SET, RANDOMKEY, ...) ended without answering.
    #[error("ERR respgate: the command's task ended without a reply")]
    TaskEnded,
    /// A held request no longer framed (never expected).
    #[error("ERR respgate: request could not be framed again")]
    Reframe,
}

fn locked_whom(scope: LockedOutScope) -> &'static str {
    match scope {
        LockedOutScope::User => " for this user",
        LockedOutScope::Address => "",
    }
}

fn locked_option(scope: LockedOutScope) -> &'static str {
    match scope {
        LockedOutScope::User => "auth.max_failures",
        LockedOutScope::Address => "auth.max_unknown_user_failures",
    }
}

impl Refusal {
    /// The refusal as a RESP error reply (`-<text>\r\n`; CR and LF in interpolated
    /// text become spaces, so a refusal can never desync a client). Counted in
    /// `respgate_error_replies_total{kind}` (the one place a refusal becomes bytes, and
    /// the cold path: the registry lookup costs a passing request nothing).
    pub fn reply(&self) -> Bytes {
        error_replies(self.kind()).increment(1);
        self.reply_uncounted()
    }

    /// The error reply, not counted: for a refusal that wraps an error already counted
    /// (`EXECABORT Transaction discarded because of: NOAUTH ...`).
    pub fn reply_uncounted(&self) -> Bytes {
        super::reply::error(&self.to_string())
    }

    /// A command name as respgate's refusals print it: `config|get` -> `CONFIG GET`.
    pub fn command_text(name: &str) -> String {
        name.to_uppercase().replace('|', " ")
    }

    /// The refusal's family, the `kind` label of `respgate_error_replies_total`: a small
    /// fixed set, so the metric's cardinality stays bounded whatever the texts say.
    pub fn kind(&self) -> &'static str {
        use Refusal::*;
        match self {
            NoAuth | HelloNoAuth => "noauth",
            WrongPass | NoDefaultPassword => "wrongpass",
            LockedOut { .. } => "locked_out",
            NoPermCommand(_) | NoPermKey | NoPermChannel | SortOptionDenied(_)
            | ScriptNotAllowed(_) | FunctionsNotAllowed | RefusedAsUser(_)
            | CrossSlotInternalKey => "noperm",
            CrossSlot(_) => "crossslot",
            ExecAbort
            | ExecAbortBecause(_)
            | NestedMulti
            | ExecWithoutMulti
            | DiscardWithoutMulti
            | WatchInMulti
            | NotQueueable(_)
            | NotATransactionCommand => "transaction",
            SubscribedMode(_)
            | ReplicaKeyspace
            | BadClientName
            | HelloOption(_)
            | Syntax
            | NotAnInteger
            | NotPositive
            | DbIndexOutOfRange
            | ClusterSupportDisabled
            | ProtocolVersion
            | NoProto
            | InvalidCursor
            | InvalidClientId
            | ClientIdNotPositive
            | NoSuchClient
            | UnknownClientType(_)
            | UnblockReason
            | CachingWithoutTracking => "request",
            NoNodeReached | NoMasterKnown | NoNodeKnown | NotSent(_) => "clusterdown",
            NotSupportedYet { .. }
            | RunOnANode(_)
            | OnlyDatabaseZero(_)
            | ScriptDebug
            | ClientTracking
            | AclInConfigFile(_)
            | CommandTableNotLoaded
            | ScanTooManyMasters
            | KeysUnknown(_)
            | ConfigManaged { .. } => "unsupported",
            ClientNameTooLong(_)
            | TransactionTooLong(_)
            | ClientBuffersFull(_)
            | ReplyTooLarge { .. }
            | MergedReplyTooLarge { .. }
            | TooManyKeys(_)
            | RandomKeyNotFound(_)
            | TooManyWalks { .. }
            | DedicatedPerUser { .. }
            | DedicatedGlobal { .. }
            | CrossSlotTooLarge { .. } => "limit",
            GuardDenied { .. }
            | GuardLimited { .. }
            | GuardUncounted { .. }
            | GuardNotInMulti(_)
            | FunctionCodeAdminsOnly => "guard",
            TtlNeeded { .. } | TtlMustStay { .. } | TtlOverMax { .. } => "ttl_policy",
            NoScriptIdentity(_)
            | Backend(_)
            | CrossSlotFailed { .. }
            | ConfigSetUnread { .. }
            | ConfigSetFailed { .. }
            | ScanFailed { .. }
            | UnreadableScan
            | Unmergeable
            | MalformedTransactionReply
            | TaskEnded
            | Reframe => "backend",
        }
    }
}

impl From<Refusal> for Bytes {
    fn from(r: Refusal) -> Bytes {
        r.reply()
    }
}

/// Every value of [`Refusal::kind`].
const KINDS: [&str; 13] = [
    "noauth",
    "wrongpass",
    "locked_out",
    "noperm",
    "crossslot",
    "transaction",
    "request",
    "clusterdown",
    "unsupported",
    "limit",
    "guard",
    "ttl_policy",
    "backend",
];

/// `respgate_error_replies_total{kind}`'s handle: registered on the kind's first refusal
/// and kept, so a refusal repeated under load (a throttled tenant, an outage) costs an
/// increment, not a key built and looked up in the registry each time. Like the command
/// table's handles, it binds to the recorder installed when it is first made (respgate
/// installs it before serving anyone).
fn error_replies(kind: &'static str) -> &'static metrics::Counter {
    static HANDLES: [std::sync::OnceLock<metrics::Counter>; KINDS.len()] =
        [const { std::sync::OnceLock::new() }; KINDS.len()];
    let i = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
    HANDLES[i].get_or_init(|| metrics::counter!("respgate_error_replies_total", "kind" => KINDS[i]))
}

#[cfg(test)]
#[path = "refusal_tests.rs"]
mod tests;
