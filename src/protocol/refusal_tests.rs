//! Each refusal's exact text (see `refusal.rs`).
use super::*;

fn limit() -> GuardLimit {
    GuardLimit {
        what: String::from("KEYS"),
        rate: String::from("10/minute"),
        scope: String::from("per user"),
        rule: String::from("keys"),
    }
}

fn addr() -> std::net::IpAddr {
    "10.0.0.7".parse().unwrap()
}

/// Checks one refusal's text and reply.
fn check(refusal: &Refusal, text: &str) {
    assert_eq!(refusal.to_string(), text);
    assert_eq!(refusal.reply(), Bytes::from(format!("-{text}\r\n")));
}

/// One test per variant (and per variant of its reason), as rustls pins each of its
/// alerts; `every` lists them for the exhaustiveness check below.
macro_rules! pinned_texts {
    ($($test:ident: $refusal:expr => $text:expr;)*) => {
        $(
            #[test]
            fn $test() {
                use Refusal::*;
                check(&$refusal, $text);
            }
        )*
        fn every() -> Vec<Refusal> {
            use Refusal::*;
            vec![$($refusal),*]
        }
    };
}

pinned_texts! {
    no_auth: NoAuth
        => "NOAUTH Authentication required.";
    hello_no_auth: HelloNoAuth
        => "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
    wrong_pass: WrongPass
        => "WRONGPASS invalid username-password pair or user is disabled.";
    no_default_password: NoDefaultPassword
        => "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
    no_perm_command: NoPermCommand(String::from("config|get"))
        => "NOPERM this user has no permissions to run the 'config|get' command";
    no_perm_key: NoPermKey
        => "NOPERM this user has no permissions to access one of the keys used as arguments";
    no_perm_channel: NoPermChannel
        => "NOPERM this user has no permissions to access one of the channels used as arguments";
    sort_option_denied: SortOptionDenied("BY")
        => "ERR BY option of SORT denied due to insufficient ACL permissions.";
    cross_slot_plain: CrossSlot(CrossSlotWhy::Plain)
        => "CROSSSLOT Keys in request don't hash to the same slot";
    cross_slot_transaction: CrossSlot(CrossSlotWhy::Transaction)
        => "CROSSSLOT Keys in request don't hash to the same slot (respgate: every key of a transaction must share one slot)";
    cross_slot_watch: CrossSlot(CrossSlotWhy::Watch)
        => "CROSSSLOT Keys in request don't hash to the same slot (respgate: every watched key must share one slot)";
    cross_slot_msetnx: CrossSlot(CrossSlotWhy::Msetnx)
        => "CROSSSLOT Keys in request don't hash to the same slot (respgate cannot split MSETNX: it would lose its all-or-nothing guarantee)";
    cross_slot_blocking: CrossSlot(CrossSlotWhy::Blocking)
        => "CROSSSLOT Keys in request don't hash to the same slot (respgate does not compute blocking commands across slots: it cannot wait on several nodes as one)";
    cross_slot_script: CrossSlot(CrossSlotWhy::Script)
        => "CROSSSLOT Keys in request don't hash to the same slot (respgate does not compute scripts across slots: a script runs on one node)";
    cross_slot_not_computed: CrossSlot(CrossSlotWhy::NotComputed)
        => "CROSSSLOT Keys in request don't hash to the same slot (respgate does not compute this command across slots)";
    cross_slot_too_large: CrossSlotTooLarge { command: "SUNION".into(), bytes: 100, max: 10 }
        => "ERR respgate: cross-slot SUNION would copy 100 bytes, over compat.max_cross_slot_bytes (10)";
    cross_slot_failed: CrossSlotFailed { command: "SMOVE".into(), why: "link lost".into() }
        => "ERR respgate: cross-slot SMOVE failed: link lost";
    cross_slot_internal_key: CrossSlotInternalKey
        => "NOPERM respgate: keys containing 'respgate:xslot:' are reserved for respgate's cross-slot copies";
    exec_abort: ExecAbort
        => "EXECABORT Transaction discarded because of previous errors.";
    exec_abort_because: ExecAbortBecause(String::from("NOAUTH Authentication required."))
        => "EXECABORT Transaction discarded because of: NOAUTH Authentication required.";
    nested_multi: NestedMulti
        => "ERR MULTI calls can not be nested";
    exec_without_multi: ExecWithoutMulti
        => "ERR EXEC without MULTI";
    discard_without_multi: DiscardWithoutMulti
        => "ERR DISCARD without MULTI";
    watch_in_multi: WatchInMulti
        => "ERR WATCH inside MULTI is not allowed";
    replica_keyspace: ReplicaKeyspace
        => "ERR Replica can't interact with the keyspace";
    subscribed_mode: SubscribedMode(String::from("get"))
        => "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context";
    syntax: Syntax
        => "ERR syntax error";
    not_an_integer: NotAnInteger
        => "ERR value is not an integer or out of range";
    not_positive: NotPositive
        => "ERR value is out of range, must be positive";
    db_index_out_of_range: DbIndexOutOfRange
        => "ERR DB index is out of range";
    cluster_support_disabled: ClusterSupportDisabled
        => "ERR This instance has cluster support disabled";
    bad_client_name: BadClientName => "ERR Client names cannot contain spaces, newlines or special characters.";
    hello_option: HelloOption(String::from("bogus")) => "ERR Syntax error in HELLO option 'bogus'";
    no_proto: NoProto => "NOPROTO unsupported protocol version";
    protocol_version: ProtocolVersion
        => "ERR Protocol version is not an integer or out of range";
    invalid_cursor: InvalidCursor
        => "ERR invalid cursor";
    invalid_client_id: InvalidClientId
        => "ERR Invalid client ID";
    client_id_not_positive: ClientIdNotPositive
        => "ERR client-id should be greater than 0";
    no_such_client: NoSuchClient
        => "ERR No such client";
    unknown_client_type: UnknownClientType(String::from("bogus"))
        => "ERR Unknown client type 'bogus'";
    unblock_reason: UnblockReason
        => "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR";
    caching_without_tracking: CachingWithoutTracking
        => "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled";
    no_node_reached: NoNodeReached
        => "CLUSTERDOWN The cluster is down (respgate has not reached any node yet)";
    no_master_known: NoMasterKnown
        => "CLUSTERDOWN The cluster is down (respgate knows no master yet)";
    no_node_known: NoNodeKnown
        => "CLUSTERDOWN The cluster is down (respgate knows no node yet)";
    not_sent: NotSent(String::from("node 10.0.0.1:7000 unreachable"))
        => "CLUSTERDOWN respgate: node 10.0.0.1:7000 unreachable";
    not_supported_yet: NotSupportedYet { what: "FUNCTION STATS".into(), why: "it would need every master's running script" }
        => "ERR respgate: FUNCTION STATS is not supported yet (it would need every master's running script)";
    config_managed: ConfigManaged { parameter: "requirepass".into(), why: "it would cut respgate off from the cluster nodes" }
        => "ERR respgate: CONFIG SET requirepass is managed by respgate (it would cut respgate off from the cluster nodes)";
    run_on_a_node: RunOnANode(String::from("SHUTDOWN"))
        => "ERR respgate: SHUTDOWN is not allowed through the proxy; run it on a node";
    only_database_zero: OnlyDatabaseZero(String::from("SWAPDB"))
        => "ERR respgate: SWAPDB is not allowed: a Redis Cluster has only database 0";
    script_debug: ScriptDebug
        => "ERR respgate: SCRIPT DEBUG is not supported (the Lua debugger would take over a node connection other clients share)";
    client_tracking: ClientTracking
        => "ERR respgate: CLIENT TRACKING is not supported: client-side caching needs invalidation messages from every node for this connection's keys, which respgate does not relay";
    function_code_admins_only: FunctionCodeAdminsOnly
        => "ERR respgate: FUNCTION LIST WITHCODE shows every team's library code: admins only ([guards] admins)";
    acl_in_config_file: AclInConfigFile(String::from("SETUSER"))
        => "ERR respgate: ACL SETUSER is not available: respgate's users live in its config file ([[auth.users]]); edit it and send SIGHUP";
    command_table_not_loaded: CommandTableNotLoaded
        => "ERR respgate: command table not loaded";
    scan_too_many_masters: ScanTooManyMasters
        => "ERR respgate: SCAN supports clusters of up to 255 masters";
    keys_unknown: KeysUnknown(String::from("mymodule.cmd"))
        => "ERR respgate: cannot tell which keys 'mymodule.cmd' touches, so it cannot be routed";
    not_queueable: NotQueueable(String::from("FLUSHALL"))
        => "ERR respgate: FLUSHALL cannot be queued in a transaction (it is not a single-node command)";
    guard_not_in_multi: GuardNotInMulti(String::from("KEYS"))
        => "ERR respgate: KEYS cannot be queued in MULTI under its guard rule (served by SCAN or counted in the cluster)";
    not_a_transaction_command: NotATransactionCommand
        => "ERR respgate: not a transaction command";
    locked_out_user: LockedOut { scope: LockedOutScope::User, addr: addr(), wait_secs: 30 }
        => "ERR respgate: too many failed authentication attempts for this user from 10.0.0.7 (auth.max_failures); retry in 30s";
    locked_out_address: LockedOut { scope: LockedOutScope::Address, addr: addr(), wait_secs: 1 }
        => "ERR respgate: too many failed authentication attempts from 10.0.0.7 (auth.max_unknown_user_failures); retry in 1s";
    client_name_too_long: ClientNameTooLong(4096)
        => "ERR respgate: client name longer than server.max_client_name_bytes (4096 bytes)";
    transaction_too_long: TransactionTooLong(67108864)
        => "ERR respgate: transaction longer than server.max_transaction_bytes (67108864 bytes)";
    client_buffers_full: ClientBuffersFull(134217728)
        => "ERR respgate: client buffers are full (server.max_client_buffer_bytes = 134217728); retry later";
    reply_too_large: ReplyTooLarge { addr: String::from("node:1"), limit: 1048576 }
        => "ERR respgate: reply from node:1 over cluster.max_reply_bytes (1048576 bytes); the command ran, its reply was discarded";
    merged_reply_too_large: MergedReplyTooLarge { parts: 3, limit: 1048576 }
        => "ERR respgate: reply merged from 3 parts over cluster.max_reply_bytes (1048576 bytes); the command ran, its reply was discarded";
    too_many_keys: TooManyKeys(10000)
        => "ERR respgate: KEYS matches more than 10000 keys (guards.max_keys_reply); use SCAN with MATCH and a narrower pattern";
    random_key_not_found: RandomKeyNotFound(64)
        => "ERR respgate: RANDOMKEY found none of this user's keys within 64 SCAN calls (its limit for users limited to key patterns); use SCAN with MATCH";
    too_many_walks: TooManyWalks { what: String::from("KEYS"), user: String::from("search"), held: 8, max: 8 }
        => "ERR respgate: KEYS refused: user 'search' already has 8 keyspace walks (KEYS, SCAN, RANDOMKEY searches) in flight, its limit (guards.max_keyspace_walks_per_user = 8); retry once one is answered";
    dedicated_per_user: DedicatedPerUser { what: "WATCH", user: String::from("a"), held: 2, limit: String::from("server.max_dedicated_per_user = 2") }
        => "ERR respgate: WATCH refused: user 'a' already holds 2 connections of its own (blocking commands, WATCH), its limit (server.max_dedicated_per_user = 2)";
    dedicated_global: DedicatedGlobal { what: "WATCH", max: 1000 }
        => "ERR respgate: WATCH refused: every connection of clients' own is taken (server.max_dedicated_connections = 1000, for all users together)";
    guard_denied: GuardDenied { what: String::from("FLUSHALL"), rule: String::from("no-flush") }
        => "ERR respgate: FLUSHALL is denied by rule 'no-flush' (ask an admin)";
    guard_limited: GuardLimited { limit: limit(), retry: String::from("0.3s") }
            => "ERR respgate: KEYS is limited to 10/minute per user (rule keys); retry in 0.3s";
    guard_uncounted: GuardUncounted { limit: limit(), why: String::from("timed out") }
            => "ERR respgate: KEYS is limited to 10/minute per user (rule keys); the shared budget cannot be counted right now (timed out), so the request is refused";
    ttl_needed: TtlNeeded { pattern: String::from("session:*"), max_secs: 86400 }
        => "ERR respgate: keys matching 'session:*' need an expiry: add EX, PX, EXAT or PXAT (TTL policy, at most 86400s)";
    ttl_must_stay: TtlMustStay { pattern: String::from("session:*"), command: String::from("PERSIST") }
        => "ERR respgate: keys matching 'session:*' must keep an expiry (PERSIST refused by the TTL policy)";
    ttl_over_max: TtlOverMax { command: String::from("EXPIRE"), value: String::from("999999"), key: String::from("session:1"), max: 86400, pattern: String::from("session:*") }
        => "ERR respgate: EXPIRE 999999 on 'session:1' is over the TTL policy's max_seconds (86400) for keys matching 'session:*'";
    no_script_identity: NoScriptIdentity(String::from("inventory"))
        => "ERR respgate: no node identity for user 'inventory' yet; scripts cannot run";
    script_not_allowed: ScriptNotAllowed(String::from("abc123"))
        => "NOPERM respgate: script abc123 is not in scripts.allowed_sha1 (isolation \"allowlist\": restricted users run only allow-listed scripts)";
    functions_not_allowed: FunctionsNotAllowed
        => "NOPERM respgate: functions are not available to restricted users with scripts.isolation = \"allowlist\"";
    refused_as_user: RefusedAsUser(String::from("its ACL user could not log in"))
        => "ERR respgate: this runs on the node as your own user, and its ACL user could not log in";
    backend: Backend(String::from("node 10.0.0.1:7000 did not answer within 5000 ms"))
        => "ERR respgate: node 10.0.0.1:7000 did not answer within 5000 ms";
    config_set_unread: ConfigSetUnread { addr: String::from("n:1"), why: String::from("timed out") }
        => "ERR respgate: CONFIG SET not applied: cannot read the values on n:1: timed out";
    config_set_failed: ConfigSetFailed { addr: String::from("n:1"), why: String::from("ERR bad") }
        => "ERR respgate: CONFIG SET on n:1: ERR bad";
    scan_failed: ScanFailed { what: String::from("KEYS"), addr: String::from("n:1"), why: String::from("lost") }
        => "ERR respgate: KEYS (served by SCAN) failed on n:1: lost";
    unreadable_scan: UnreadableScan
        => "ERR respgate: unreadable SCAN reply";
    unmergeable: Unmergeable
        => "ERR respgate: a node's reply could not be merged";
    malformed_transaction_reply: MalformedTransactionReply
        => "ERR respgate: malformed transaction reply";
    task_ended: TaskEnded
        => "ERR respgate: the command's task ended without a reply";
    reframe: Reframe
        => "ERR respgate: request could not be framed again";
}

/// Compiles only while every variant is named: a new one must be added to
/// [`every`] (the count check below then fails until it is).
fn pinned(r: &Refusal) -> usize {
    use Refusal::*;
    match r {
        NoAuth => 0,
        HelloNoAuth => 1,
        WrongPass => 2,
        NoDefaultPassword => 3,
        NoPermCommand(_) => 4,
        NoPermKey => 5,
        NoPermChannel => 6,
        SortOptionDenied(_) => 7,
        CrossSlot(_) => 8,
        ExecAbort => 9,
        ExecAbortBecause(_) => 10,
        NestedMulti => 11,
        ExecWithoutMulti => 12,
        DiscardWithoutMulti => 13,
        WatchInMulti => 14,
        SubscribedMode(_) => 15,
        ReplicaKeyspace => 80,
        Syntax => 16,
        NotAnInteger => 17,
        NotPositive => 18,
        DbIndexOutOfRange => 19,
        ClusterSupportDisabled => 20,
        ProtocolVersion => 21,
        NoProto => 76,
        BadClientName => 77,
        HelloOption(_) => 78,
        InvalidCursor => 22,
        InvalidClientId => 23,
        ClientIdNotPositive => 24,
        NoSuchClient => 25,
        UnknownClientType(_) => 26,
        UnblockReason => 27,
        CachingWithoutTracking => 28,
        NoNodeReached => 29,
        NoMasterKnown => 30,
        NoNodeKnown => 31,
        NotSent(_) => 32,
        NotSupportedYet { .. } => 33,
        RunOnANode(_) => 34,
        OnlyDatabaseZero(_) => 35,
        ScriptDebug => 36,
        ClientTracking => 37,
        FunctionCodeAdminsOnly => 38,
        AclInConfigFile(_) => 39,
        CommandTableNotLoaded => 40,
        ScanTooManyMasters => 41,
        KeysUnknown(_) => 42,
        NotQueueable(_) => 43,
        GuardNotInMulti(_) => 44,
        NotATransactionCommand => 45,
        LockedOut { .. } => 46,
        ClientNameTooLong(_) => 47,
        TransactionTooLong(_) => 48,
        ClientBuffersFull(_) => 49,
        ReplyTooLarge { .. } => 50,
        MergedReplyTooLarge { .. } => 51,
        TooManyKeys(_) => 52,
        RandomKeyNotFound(_) => 53,
        TooManyWalks { .. } => 54,
        DedicatedPerUser { .. } => 55,
        DedicatedGlobal { .. } => 56,
        GuardDenied { .. } => 57,
        GuardLimited { .. } => 58,
        GuardUncounted { .. } => 75,
        TtlNeeded { .. } => 59,
        TtlMustStay { .. } => 60,
        TtlOverMax { .. } => 61,
        NoScriptIdentity(_) => 62,
        ScriptNotAllowed(_) => 63,
        FunctionsNotAllowed => 64,
        RefusedAsUser(_) => 65,
        Backend(_) => 66,
        ConfigSetUnread { .. } => 67,
        ConfigSetFailed { .. } => 68,
        ScanFailed { .. } => 69,
        UnreadableScan => 70,
        Unmergeable => 71,
        MalformedTransactionReply => 72,
        TaskEnded => 73,
        Reframe => 74,
        ConfigManaged { .. } => 79,
        CrossSlotTooLarge { .. } => 81,
        CrossSlotFailed { .. } => 82,
        CrossSlotInternalKey => 83,
    }
}

const VARIANTS: usize = 84;

#[test]
fn every_variant_has_a_pinned_text() {
    let mut seen = [false; VARIANTS];
    for refusal in every() {
        seen[pinned(&refusal)] = true;
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|i| !seen[*i]).collect();
    assert!(
        missing.is_empty(),
        "variants without a pinned text: {missing:?}"
    );
}

#[test]
fn interpolated_text_cannot_desync_a_client() {
    let r = Refusal::UnknownClientType("a\r\n+OK".into());
    assert_eq!(&r.reply()[..], b"-ERR Unknown client type 'a  +OK'\r\n");
}

#[test]
fn command_names_print_as_redis_spells_them() {
    assert_eq!(Refusal::command_text("config|get"), "CONFIG GET");
    assert_eq!(Refusal::command_text("keys"), "KEYS");
}

#[test]
fn every_kind_has_a_counter_handle() {
    for r in every() {
        assert!(
            super::KINDS.contains(&r.kind()),
            "{} missing from KINDS",
            r.kind()
        );
    }
}
