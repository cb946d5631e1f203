//! Configuration: the TOML file, its defaults, and validation with precise messages.
//!
//! Everything an operator can set lives here, with the default an operator would expect
//! from Redis where Redis has one. `config/production.example.toml` documents each
//! option; keep the two in step. Loading never panics: every problem becomes a
//! [`ConfigError`] naming the file, the key path and what is wrong.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Lag bounds `[replica_reads]` may define: the default's and one per rule (each node
/// keeps, per bound, when it was last outside it).
pub const MAX_LAG_BOUNDS: usize = 8;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// The TLS listener; absent: plain TCP only.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Ops guardrails. A file without `[guards]` gets the built-in safe defaults
    /// ([`GuardsConfig::file_default`]); a `Config` built in code has none.
    #[serde(default = "GuardsConfig::file_default")]
    pub guards: GuardsConfig,
    /// Expiry policy for sensitive key patterns (`[[ttl]]`).
    #[serde(default)]
    pub ttl: Vec<TtlRuleConfig>,
    #[serde(default)]
    pub replica_reads: ReplicaReadsConfig,
    /// How scripts and functions are kept inside their caller's rules (`[scripts]`).
    #[serde(default)]
    pub scripts: ScriptsConfig,
}

/// How EVAL / EVALSHA / FCALL (and their `_RO` forms) are kept inside the caller's rules
/// (`[scripts]`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptsConfig {
    pub isolation: ScriptIsolation,
    /// With `isolation = "allowlist"`: SHA1s (hex) of the scripts restricted users may
    /// run (EVAL by its body's SHA1, EVALSHA by its argument).
    pub allowed_sha1: Vec<String>,
}

/// Where a script's rules are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScriptIsolation {
    /// Each respgate user is mirrored onto every node as a Redis ACL user carrying its
    /// rules; scripts run as that user, so Redis enforces the rules inside them.
    #[default]
    Acl,
    /// The nodes do not let respgate manage ACL users (a managed service): restricted
    /// users may run only the scripts in `allowed_sha1`, and no functions.
    Allowlist,
}

impl ScriptsConfig {
    /// Checks the allow-list's entries (40 hex digits each).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, sha) in self.allowed_sha1.iter().enumerate() {
            if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err((
                    format!("scripts.allowed_sha1[{i}]"),
                    format!("{sha:?} is not a SHA1 (40 hex digits)"),
                ));
            }
        }
        Ok(())
    }

    /// The mode in words, for startup logs and `check-config`.
    pub fn describe(&self) -> String {
        match self.isolation {
            ScriptIsolation::Acl => "script isolation: acl (scripts and functions run on the nodes as a per-user ACL mirror of the caller's rules; respgate's node user needs ACL SETUSER rights)".into(),
            ScriptIsolation::Allowlist => format!(
                "script isolation: allowlist (restricted users may run {} allow-listed script(s) and no functions; scripts run as respgate's node user)",
                self.allowed_sha1.len()
            ),
        }
    }
}

/// Reads served by replicas while provably fresh enough (`[replica_reads]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicaReadsConfig {
    /// Policy for keys no rule matches: `master` or `prefer_replica`.
    pub default_policy: ReadPolicyKind,
    /// Bounds of `default_policy = "prefer_replica"`.
    pub max_lag_ms: u64,
    pub max_lag_bytes: u64,
    /// Per key pattern, first match wins.
    pub rules: Vec<ReadRuleConfig>,
    /// How often replication lag is measured (heartbeat written and read back).
    pub poll_interval_ms: u64,
    /// A replica that left a bound serves reads again only after staying inside it
    /// this long (no flapping).
    pub recover_ms: u64,
    /// Key prefix of the heartbeat keys respgate writes on each master (one per shard,
    /// per respgate process, with a 60 s expiry).
    pub heartbeat_prefix: String,
    /// Users whose reads on a shard go to its master until a replica has everything
    /// they wrote there (`["*"]`: everyone; with auth "none" the user is `default`).
    pub read_your_writes: Vec<String>,
    /// A read sent to a replica that has not answered after this long is sent to the
    /// shard's master as well, and the first answer wins (a frozen replica then costs a
    /// read this much, not `cluster.request_timeout_ms`). 0: never hedge.
    pub hedge_after_ms: u64,
}

impl Default for ReplicaReadsConfig {
    fn default() -> Self {
        ReplicaReadsConfig {
            default_policy: ReadPolicyKind::Master,
            max_lag_ms: default_max_lag_ms(),
            max_lag_bytes: default_max_lag_bytes(),
            rules: Vec::new(),
            poll_interval_ms: 100,
            recover_ms: 1000,
            heartbeat_prefix: "respgate:heartbeat".into(),
            read_your_writes: Vec::new(),
            hedge_after_ms: 100,
        }
    }
}

/// Where reads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadPolicyKind {
    #[default]
    Master,
    PreferReplica,
}

/// One `[[replica_reads.rules]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRuleConfig {
    /// Redis glob on the key (the first key of the command).
    pub pattern: String,
    pub policy: ReadPolicyKind,
    #[serde(default = "default_max_lag_ms")]
    pub max_lag_ms: u64,
    #[serde(default = "default_max_lag_bytes")]
    pub max_lag_bytes: u64,
}

fn default_max_lag_ms() -> u64 {
    1000
}

fn default_max_lag_bytes() -> u64 {
    1024 * 1024
}

impl ReplicaReadsConfig {
    /// Whether any read may go to a replica.
    pub fn enabled(&self) -> bool {
        self.default_policy == ReadPolicyKind::PreferReplica
            || self
                .rules
                .iter()
                .any(|r| r.policy == ReadPolicyKind::PreferReplica)
    }
}

/// `[guards]`: rules that deny or rate-limit commands, evaluated in order, first match
/// wins; the built-in safe rules (`safe_defaults`) come after the file's own rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardsConfig {
    /// `false` turns every guard off (rules included), for test rigs and development.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Append the built-in safe rules (see config/production.example.toml) after
    /// `rules`. Default in a file: true.
    #[serde(default = "yes")]
    pub safe_defaults: bool,
    /// Users the safe defaults let run the dangerous admin commands (at `admin_rate`
    /// per user).
    #[serde(default)]
    pub admins: Vec<String>,
    /// The admins' rate for the dangerous admin commands.
    #[serde(default = "default_admin_rate")]
    pub admin_rate: String,
    /// The most keys a KEYS served by SCAN (`rewrite = "scan"`) may return.
    #[serde(default = "default_max_keys_reply")]
    pub max_keys_reply: usize,
    /// A client's SCAN COUNT above this is lowered to it (SCAN may return fewer keys
    /// than COUNT): no SCAN step walks more of a node's keyspace at once. A bound, not
    /// a rule: it applies with `enabled = false` too.
    #[serde(default = "default_max_scan_count")]
    pub max_scan_count: u64,
    /// Keyspace walks (KEYS, SCAN, RANDOMKEY's search for a user limited to key
    /// patterns) one user may have in flight at once, over all its connections; past
    /// it the command is refused. A bound, not a rule: it applies with `enabled =
    /// false` too.
    #[serde(default = "default_max_keyspace_walks_per_user")]
    pub max_keyspace_walks_per_user: usize,
    #[serde(default)]
    pub rules: Vec<GuardRuleConfig>,
}

fn default_admin_rate() -> String {
    "10/min".into()
}

fn default_max_keys_reply() -> usize {
    100_000
}

fn default_max_scan_count() -> u64 {
    1000
}

fn default_max_keyspace_walks_per_user() -> usize {
    8
}

impl Default for GuardsConfig {
    /// In code: no guards (tests build their `Config` this way).
    fn default() -> Self {
        GuardsConfig::none()
    }
}

impl GuardsConfig {
    /// What a file without `[guards]` gets: the built-in safe rules, no admins.
    pub fn file_default() -> GuardsConfig {
        GuardsConfig {
            enabled: true,
            safe_defaults: true,
            admins: Vec::new(),
            admin_rate: default_admin_rate(),
            max_keys_reply: default_max_keys_reply(),
            max_scan_count: default_max_scan_count(),
            max_keyspace_walks_per_user: default_max_keyspace_walks_per_user(),
            rules: Vec::new(),
        }
    }

    /// No guard at all (`Config::default()`, `respgate dev --no-guards`).
    pub fn none() -> GuardsConfig {
        GuardsConfig {
            enabled: false,
            safe_defaults: false,
            ..GuardsConfig::file_default()
        }
    }
}

/// One `[[guards.rules]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardRuleConfig {
    /// Named in errors, logs and metrics.
    pub name: String,
    /// `flushall`, `config|set` (one subcommand), `config` or `config|*` (the container
    /// and every subcommand).
    pub commands: Vec<String>,
    /// KEYS (and SCAN's MATCH) whose pattern has no literal prefix (`true`) or has one
    /// (`false`).
    #[serde(default)]
    pub key_pattern_without_prefix: Option<bool>,
    /// SCAN with a COUNT above this.
    #[serde(default)]
    pub scan_count_above: Option<u64>,
    /// Only these users (names from `[auth]`; `default` under `mode = "none"`).
    #[serde(default)]
    pub users: Option<Vec<String>>,
    /// Everyone but these users.
    #[serde(default)]
    pub except_users: Vec<String>,
    pub action: GuardAction,
    /// For `limit`: `N/s`, `N/min`, `N/h` or `N/d`.
    #[serde(default)]
    pub rate: Option<String>,
    /// For `limit`: requests allowed at once (default: N of the rate).
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub scope: GuardScope,
    /// For `scope = "global"`: count in the Redis Cluster, shared by every respgate.
    #[serde(default)]
    pub shared: bool,
    /// For `shared`: what happens when the cluster cannot count.
    #[serde(default)]
    pub on_error: FailMode,
    /// `"scan"`: serve KEYS by SCAN on every master.
    #[serde(default)]
    pub rewrite: Option<GuardRewrite>,
}

impl GuardRuleConfig {
    /// A rule named `name` for `commands` with `action`, every option at its default
    /// (as a `[[guards.rules]]` with only those three keys).
    pub fn new(name: &str, commands: &[&str], action: GuardAction) -> GuardRuleConfig {
        GuardRuleConfig {
            name: name.into(),
            commands: commands.iter().map(|c| c.to_string()).collect(),
            key_pattern_without_prefix: None,
            scan_count_above: None,
            users: None,
            except_users: Vec::new(),
            action,
            rate: None,
            burst: None,
            scope: GuardScope::default(),
            shared: false,
            on_error: FailMode::default(),
            rewrite: None,
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardAction {
    /// Let it through (ends the evaluation: later rules are not consulted).
    Allow,
    Deny,
    Limit,
}

/// Whose bucket a `limit` rule draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GuardScope {
    #[default]
    User,
    ClientAddr,
    Global,
}

/// A shared budget the cluster cannot count: let the request pass (`open`) or refuse it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    Open,
    #[default]
    Closed,
}

/// `rewrite` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardRewrite {
    Scan,
}

/// One `[[ttl]]`: keys matching `pattern` never live without an expiry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlRuleConfig {
    /// A Redis glob (`session:*`).
    pub pattern: String,
    pub default_seconds: u64,
    #[serde(default)]
    pub mode: TtlMode,
    /// The longest expiry a client may give such a key (EXPIRE and friends, SET EX,
    /// SETEX, GETEX EX ...); absent: no cap.
    #[serde(default)]
    pub max_seconds: Option<u64>,
    /// What happens to an expiry above `max_seconds` (default: `reject`).
    #[serde(default)]
    pub over_max: Option<TtlOverMax>,
    /// Seconds between two passes of the background sweeper (SCAN MATCH pattern on
    /// every master, `EXPIRE key default_seconds NX` on each key found); 0: no sweeper.
    #[serde(default = "TtlRuleConfig::default_sweep_interval_secs")]
    pub sweep_interval_secs: u64,
    /// Keys the sweeper may examine per second (its SCAN COUNT budget), per pattern.
    #[serde(default = "TtlRuleConfig::default_sweep_keys_per_sec")]
    pub sweep_keys_per_sec: u64,
}

impl TtlRuleConfig {
    pub const fn default_sweep_interval_secs() -> u64 {
        60
    }

    pub const fn default_sweep_keys_per_sec() -> u64 {
        5000
    }

    /// A rule for `pattern` with `default_seconds`, everything else at its default.
    pub fn new(pattern: &str, default_seconds: u64) -> TtlRuleConfig {
        TtlRuleConfig {
            pattern: pattern.into(),
            default_seconds,
            mode: TtlMode::default(),
            max_seconds: None,
            over_max: None,
            sweep_interval_secs: Self::default_sweep_interval_secs(),
            sweep_keys_per_sec: Self::default_sweep_keys_per_sec(),
        }
    }
}

/// `over_max` of a `[[ttl]]` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TtlOverMax {
    /// Refuse the command.
    #[default]
    Reject,
    /// Rewrite the expiry to `max_seconds`.
    Cap,
}

/// `add`: an `EXPIRE key N NX` follows the write; `reject`: SET without expiry refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TtlMode {
    #[default]
    Add,
    Reject,
}

/// The TLS listener (`[tls]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the TLS listener.
    pub listen: String,
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key of that certificate.
    pub key: PathBuf,
    /// Whether clients present certificates.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM bundle of the CAs client certificates must chain to (not with `none`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Which name of a verified client certificate is the client's user name.
    #[serde(default)]
    pub cert_user: CertUser,
    /// A client that has not finished its TLS handshake this long after connecting is
    /// closed (it holds a `max_clients` place meanwhile; the wait for a handshake
    /// permit counts too).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Handshakes past their ClientHello at once; more wait for a permit (within
    /// `handshake_timeout_ms`), so a flood of handshakes cannot take all CPU and memory.
    #[serde(default = "default_max_handshakes_in_flight")]
    pub max_handshakes_in_flight: usize,
}

fn default_handshake_timeout_ms() -> u64 {
    5000
}

pub fn default_max_handshakes_in_flight() -> usize {
    128
}

impl TlsConfig {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// `[tls] client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates asked for.
    #[default]
    None,
    /// Asked for; a client without one connects anyway, one with an invalid one does not.
    Optional,
    /// A client without a valid certificate fails the handshake.
    Required,
}

/// `[tls] cert_user`: how a verified client certificate maps to a user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertUser {
    /// The subject's common name.
    #[default]
    Cn,
    /// The first subject alternative name (DNS, else e-mail, else URI).
    San,
}

/// TLS to the Redis nodes (`[cluster.tls]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// Writing the section turns it on; `enabled = false` keeps the paths but speaks
    /// plain TCP.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// PEM bundle of the CAs the nodes' certificates chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM chain) for nodes that check clients (`tls-auth-clients`).
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// The name the nodes' certificates are checked against; default: the host part of
    /// each node's address (an IP address, as the cluster announces them).
    pub server_name: Option<String>,
}

fn yes() -> bool {
    true
}

/// Client authentication. A file must choose: `mode = "users"` with `[[auth.users]]`, or
/// `mode = "none"` to let every client in as an unrestricted `default` user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Required in a file (no silent open proxy). A `Config` built in code without it
    /// runs as `none`.
    pub mode: Option<AuthMode>,
    /// Failed authentications of one user from one address within
    /// `failure_window_secs` that lock that user out from that address (0: never).
    /// Other users behind the same address are not affected.
    pub max_failures: u32,
    pub failure_window_secs: u64,
    /// How long a locked-out user (or address) is refused. It and the window are at
    /// most [`MAX_LOCKOUT_SECS`].
    pub lockout_secs: u64,
    /// Failed authentications from one address (IPv6: one /64) within
    /// `failure_window_secs`, on any user names, existing or not, that lock the whole
    /// address out (0: never): stops one address spraying guesses over many names.
    /// Known names count too, so the lock does not tell whether a name exists.
    pub max_unknown_user_failures: u32,
    /// (user, address) and address entries the lockout tracks at most (memory bound);
    /// when full, expired entries go first, then the oldest.
    pub lockout_max_entries: usize,
    /// A connection that has not authenticated this long after connecting is closed
    /// (0: never). Only where a login is needed (`mode = "users"` without a `nopass`
    /// default user). respgate's own: Redis has none, but without it silent connections
    /// would hold `server.max_clients` places for good.
    pub login_timeout_secs: u64,
    pub users: Vec<UserConfig>,
}

/// The longest `auth.lockout_secs` / `auth.failure_window_secs` (one day).
pub const MAX_LOCKOUT_SECS: u64 = 86_400;

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: None,
            max_failures: 20,
            failure_window_secs: 60,
            lockout_secs: 300,
            max_unknown_user_failures: 100,
            lockout_max_entries: 100_000,
            login_timeout_secs: 10,
            users: Vec::new(),
        }
    }
}

/// `none` or `users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    None,
    Users,
}

/// One user: a name and its rules in Redis ACL syntax (`on #<sha256> ~prefix:* +@read`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub rules: String,
    /// Connections of its own (blocking commands, WATCH) this user's clients may hold
    /// together; absent: `server.max_dedicated_per_user`.
    #[serde(default)]
    pub max_dedicated_connections: Option<usize>,
}

/// The client-facing side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the plain-TCP listener; `""` disables it (TLS only).
    pub listen: String,
    /// Connections beyond this get `-ERR max number of clients reached` and are closed.
    pub max_clients: usize,
    /// Largest single argument (Redis's `proto-max-bulk-len`).
    pub max_bulk_bytes: usize,
    /// Largest whole request; checked from the headers, before the payload is buffered.
    pub max_request_bytes: usize,
    /// Replies a client may have outstanding; past it respgate stops reading that
    /// client's requests until replies drain (back-pressure, not an error).
    pub max_pending_replies: usize,
    /// Close clients idle this long (0 = never, like Redis's `timeout 0`).
    pub idle_timeout_secs: u64,
    /// A client that does not read its replies for this long is disconnected.
    pub output_stall_timeout_secs: u64,
    /// On SIGTERM / Ctrl-C, how long in-flight replies may take before connections close.
    pub shutdown_grace_secs: u64,
    /// Worker threads, each a single-threaded runtime serving its share of the clients
    /// with its own links to every node (0: one per core; 1: one thread for everything,
    /// the cheapest per request when the proxy shares a small machine). See
    /// the workers module.
    pub worker_threads: usize,
    /// Backend connections owned by one client, for blocking commands (BLPOP, ...) and
    /// WATCH, for all clients together; past it, such a command gets an error instead
    /// of a connection.
    pub max_dedicated_connections: usize,
    /// The same, per user (all its clients together), unless the user sets its own
    /// `max_dedicated_connections` in `[[auth.users]]`: no tenant can take every place.
    pub max_dedicated_per_user: usize,
    /// Messages a subscriber may have waiting; one that falls further behind is
    /// disconnected (Redis's pubsub output-buffer limit, counted in messages).
    pub pubsub_queue_messages: usize,
    /// Bytes of messages a subscriber may have waiting; one that falls further behind is
    /// disconnected (Redis's `client-output-buffer-limit pubsub 32mb` hard limit).
    pub pubsub_queue_bytes: usize,
    /// Bytes of replies a client may have waiting (handed over by the nodes, not yet
    /// written to its socket): past it respgate stops reading its requests
    /// (back-pressure); past twice it the client is disconnected, as Redis does past
    /// its `client-output-buffer-limit` hard limit. Replies under 4 KiB are not counted
    /// (`max_pending_replies` bounds those).
    pub max_pending_reply_bytes: usize,
    /// One budget for every client's waiting replies and messages and for read buffers
    /// grown beyond 64 KiB for large requests. When it is spent, a request needing more
    /// buffer gets `-ERR respgate: client buffers are full (server.max_client_buffer_bytes
    /// = N); retry later` and the connection closes, and the clients holding the most
    /// are disconnected until the rest fits (Redis 7's `maxmemory-clients`).
    pub max_client_buffer_bytes: usize,
    /// Bytes of commands one transaction may queue between MULTI and EXEC (respgate's
    /// own bound: Redis counts them only in `maxmemory-clients`). The command crossing it
    /// gets `-ERR respgate: transaction longer than server.max_transaction_bytes (N
    /// bytes)` and EXEC answers EXECABORT. Queued commands are also taken from
    /// `max_client_buffer_bytes` until EXEC, DISCARD or RESET.
    pub max_transaction_bytes: usize,
    /// Longest client name (CLIENT SETNAME, HELLO ... SETNAME), kept for CLIENT LIST:
    /// respgate's own bound (Redis has none).
    pub max_client_name_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:6380".into(),
            max_clients: 10_000,
            max_bulk_bytes: 512 * 1024 * 1024,
            max_request_bytes: 512 * 1024 * 1024,
            max_pending_replies: 1024,
            idle_timeout_secs: 0,
            output_stall_timeout_secs: 60,
            shutdown_grace_secs: 10,
            worker_threads: 0,
            max_dedicated_connections: 1000,
            max_dedicated_per_user: 250,
            pubsub_queue_messages: 10_000,
            pubsub_queue_bytes: 32 * 1024 * 1024,
            max_pending_reply_bytes: 32 * 1024 * 1024,
            max_client_buffer_bytes: 128 * 1024 * 1024,
            max_transaction_bytes: 64 * 1024 * 1024,
            max_client_name_bytes: 4096,
        }
    }
}

/// The Redis Cluster behind respgate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `host:port` of nodes to discover the cluster from; any may be down.
    pub seeds: Vec<String>,
    /// Multiplexed connections per backend node and worker thread, shared by that
    /// worker's clients.
    pub connections_per_node: usize,
    pub connect_timeout_ms: u64,
    /// A backend that has not answered its oldest request for this long is considered
    /// hung: the link is closed and the requests on it fail with an error.
    pub request_timeout_ms: u64,
    /// TRYAGAIN / CLUSTERDOWN / unreachable node: retried with backoff until this
    /// deadline (from the request's arrival), then the client gets the error.
    pub retry_deadline_ms: u64,
    /// MOVED / ASK redirections followed for one request before giving up.
    pub max_redirects: u32,
    /// Periodic topology refresh.
    pub refresh_interval_ms: u64,
    /// Refreshes triggered by MOVED or connection loss are at most this frequent.
    pub refresh_min_interval_ms: u64,
    /// Upstream `AUTH` user (omit for the `default` user).
    pub username: Option<String>,
    /// Upstream `AUTH` password. Prefer `password_env`.
    pub password: Option<String>,
    /// Name of an environment variable that holds the upstream password.
    pub password_env: Option<String>,
    /// TLS to the nodes (`[cluster.tls]`); absent: plain TCP.
    pub tls: Option<UpstreamTlsConfig>,
    /// Largest reply (or a transaction's replies together) respgate buffers from a node.
    /// A larger one is never buffered whole: the client gets an error naming this
    /// option and the rest of the reply is discarded as it arrives.
    pub max_reply_bytes: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            seeds: vec!["127.0.0.1:7000".into()],
            connections_per_node: 1,
            connect_timeout_ms: 1000,
            request_timeout_ms: 5000,
            retry_deadline_ms: 3000,
            max_redirects: 5,
            refresh_interval_ms: 10_000,
            refresh_min_interval_ms: 100,
            username: None,
            password: None,
            password_env: None,
            tls: None,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

/// Redis's proto-max-bulk-len: the largest string a node stores, so any one value can
/// still be read whole.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 512 * 1024 * 1024;
/// Below this, respgate's own control-plane replies (`COMMAND`, `CLUSTER SHARDS`)
/// could be refused.
pub const MIN_MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `respgate=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// A configuration problem, phrased for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: PathBuf, message: String },
    #[error("{file}: {key}: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads and parses `path`, with the checks this module can make alone (syntax,
    /// ranges, consistency between fields). The checks that need other modules (TLS
    /// files, ACL rules, guard rules) are theirs: the loader module runs both.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// [`Config::read`] for TOML text; `path` only names the file in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
            file: path.to_owned(),
            message: e.to_string(),
        })?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Parse {
                file: path.to_owned(),
                message: format!("{key}: {}", inner.message().trim()),
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            file: path.to_owned(),
            key: key.to_string(),
            message,
        };
        let s = &self.server;
        if s.listen.is_empty() {
            if self.tls.is_none() {
                return Err(bad(
                    "server.listen",
                    "\"\" disables the plain listener, but there is no [tls] listener either: \
                     configure at least one"
                        .into(),
                ));
            }
        } else if s.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad(
                "server.listen",
                format!("{:?} is not an address like \"127.0.0.1:6380\"", s.listen),
            ));
        }
        if let Some(t) = &self.tls {
            if t.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(bad(
                    "tls.listen",
                    format!("{:?} is not an address like \"0.0.0.0:6390\"", t.listen),
                ));
            }
            if t.listen == s.listen {
                return Err(bad(
                    "tls.listen",
                    format!("{:?} is also server.listen: use another port", t.listen),
                ));
            }
            if t.client_auth == ClientAuth::None && t.client_ca.is_some() {
                return Err(bad(
                    "tls.client_ca",
                    "set, but client_auth is \"none\": set client_auth = \"optional\" or \
                     \"required\", or remove client_ca"
                        .into(),
                ));
            }
            if t.handshake_timeout_ms == 0 {
                return Err(bad("tls.handshake_timeout_ms", "must be above 0".into()));
            }
            if t.max_handshakes_in_flight == 0 {
                return Err(bad(
                    "tls.max_handshakes_in_flight",
                    "must be at least 1".into(),
                ));
            }
        }
        for (key, v) in [
            ("server.max_clients", s.max_clients),
            ("server.max_bulk_bytes", s.max_bulk_bytes),
            ("server.max_request_bytes", s.max_request_bytes),
            ("server.max_pending_replies", s.max_pending_replies),
            ("server.pubsub_queue_bytes", s.pubsub_queue_bytes),
            ("server.max_pending_reply_bytes", s.max_pending_reply_bytes),
            ("server.max_client_buffer_bytes", s.max_client_buffer_bytes),
            ("server.max_transaction_bytes", s.max_transaction_bytes),
            ("server.max_client_name_bytes", s.max_client_name_bytes),
            (
                "cluster.connections_per_node",
                self.cluster.connections_per_node,
            ),
        ] {
            if v == 0 {
                return Err(bad(key, "must be at least 1".into()));
            }
        }
        if s.max_request_bytes > u32::MAX as usize - 1 {
            return Err(bad(
                "server.max_request_bytes",
                format!("must be below 4 GiB, got {}", s.max_request_bytes),
            ));
        }
        let c = &self.cluster;
        if c.seeds.is_empty() {
            return Err(bad(
                "cluster.seeds",
                "list at least one node, e.g. [\"10.0.0.1:6379\"]".into(),
            ));
        }
        for (i, seed) in c.seeds.iter().enumerate() {
            if split_host_port(seed).is_none() {
                return Err(bad(
                    &format!("cluster.seeds[{i}]"),
                    format!("{seed:?} is not host:port"),
                ));
            }
        }
        if c.password.is_some() && c.password_env.is_some() {
            return Err(bad(
                "cluster.password",
                "set either password or password_env, not both".into(),
            ));
        }
        if let Some(var) = &c.password_env {
            if std::env::var_os(var).is_none() {
                return Err(bad(
                    "cluster.password_env",
                    format!("environment variable {var} is not set"),
                ));
            }
        }
        if c.max_reply_bytes < MIN_MAX_REPLY_BYTES {
            return Err(bad(
                "cluster.max_reply_bytes",
                format!(
                    "must be at least {MIN_MAX_REPLY_BYTES} (1 MiB), got {}",
                    c.max_reply_bytes
                ),
            ));
        }
        for (key, ms) in [
            ("cluster.request_timeout_ms", c.request_timeout_ms),
            ("cluster.connect_timeout_ms", c.connect_timeout_ms),
        ] {
            if ms == 0 {
                return Err(bad(key, "timeouts must be above 0".into()));
            }
        }
        let r = &self.replica_reads;
        if r.poll_interval_ms == 0 {
            return Err(bad(
                "replica_reads.poll_interval_ms",
                "must be at least 1".into(),
            ));
        }
        for (i, rule) in r.rules.iter().enumerate() {
            if rule.policy == ReadPolicyKind::PreferReplica && rule.max_lag_ms < r.poll_interval_ms
            {
                return Err(bad(
                    &format!("replica_reads.rules[{i}].max_lag_ms"),
                    format!(
                        "{} ms is below poll_interval_ms ({} ms): no replica could ever be proven that fresh",
                        rule.max_lag_ms, r.poll_interval_ms
                    ),
                ));
            }
        }
        if r.enabled() && r.hedge_after_ms >= c.request_timeout_ms {
            return Err(bad(
                "replica_reads.hedge_after_ms",
                format!(
                    "{} ms is not below cluster.request_timeout_ms ({} ms): the master would never be asked in time",
                    r.hedge_after_ms, c.request_timeout_ms
                ),
            ));
        }
        if r.rules.len() + 1 > MAX_LAG_BOUNDS {
            return Err(bad(
                "replica_reads.rules",
                format!(
                    "at most {} rules (each has its own lag bound)",
                    MAX_LAG_BOUNDS - 1
                ),
            ));
        }
        self.validate_auth(path)?;
        self.scripts
            .validate()
            .map_err(|(key, message)| bad(&key, message))
    }

    fn validate_auth(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            file: path.to_owned(),
            key: key.to_string(),
            message,
        };
        let a = &self.auth;
        match a.mode {
            None => {
                return Err(bad(
                    "auth.mode",
                    "choose mode = \"users\" (with [[auth.users]]) or mode = \"none\" to run without authentication".into(),
                ))
            }
            Some(AuthMode::None) if !a.users.is_empty() => {
                return Err(bad(
                    "auth.users",
                    "users are listed but auth.mode is \"none\"; set mode = \"users\"".into(),
                ))
            }
            Some(AuthMode::Users) if a.users.is_empty() => {
                return Err(bad(
                    "auth.users",
                    "mode = \"users\" needs at least one [[auth.users]]".into(),
                ))
            }
            _ => {}
        }
        for (i, u) in a.users.iter().enumerate() {
            if u.name.is_empty() || !u.name.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
                return Err(bad(
                    &format!("auth.users[{i}].name"),
                    format!(
                        "{:?} is not a valid user name (no spaces or control characters)",
                        u.name
                    ),
                ));
            }
        }
        let lockout = a.max_failures > 0 || a.max_unknown_user_failures > 0;
        if lockout && (a.failure_window_secs == 0 || a.lockout_secs == 0) {
            return Err(bad(
                "auth.lockout_secs",
                "failure_window_secs and lockout_secs must be above 0 when max_failures or \
                 max_unknown_user_failures is set"
                    .into(),
            ));
        }
        for (name, secs) in [
            ("auth.lockout_secs", a.lockout_secs),
            ("auth.failure_window_secs", a.failure_window_secs),
        ] {
            if secs > MAX_LOCKOUT_SECS {
                return Err(bad(
                    name,
                    format!("{secs} is above the largest allowed, {MAX_LOCKOUT_SECS} (one day)"),
                ));
            }
        }
        if lockout && a.lockout_max_entries == 0 {
            return Err(bad(
                "auth.lockout_max_entries",
                "must be at least 1 while a lockout is on".into(),
            ));
        }
        Ok(())
    }
}

impl ClusterConfig {
    /// The upstream password, from the file or the environment.
    pub fn upstream_password(&self) -> Option<String> {
        match &self.password_env {
            Some(var) => std::env::var(var).ok(),
            None => self.password.clone(),
        }
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn retry_deadline(&self) -> Duration {
        Duration::from_millis(self.retry_deadline_ms)
    }
}

/// Splits `host:port` (IPv6 as `[::1]:6379`).
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` with `[auth] mode = "none"` in front (a file must choose a mode).
    fn parse(text: &str) -> Result<Config, String> {
        let text = format!("[auth]\nmode = \"none\"\n{text}");
        crate::loader::parse(&text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_zero_timeout_is_refused_by_its_own_name() {
        // Found by tests/fuzz (config): connect_timeout_ms = 0 was refused as
        // cluster.request_timeout_ms.
        let e = parse("[cluster]\nconnect_timeout_ms = 0\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml: cluster.connect_timeout_ms: timeouts must be above 0"
        );
        let e = parse("[cluster]\nrequest_timeout_ms = 0\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml: cluster.request_timeout_ms: timeouts must be above 0"
        );
    }

    #[test]
    fn a_file_must_choose_an_auth_mode() {
        let e = crate::loader::parse("", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml: auth.mode: choose mode"), "{e}");
        let e = parse("[[auth.users]]\nname = \"a\"\nrules = \"on\"\n").unwrap_err();
        assert!(
            e.contains("auth.users: users are listed but auth.mode is \"none\""),
            "{e}"
        );
        let users = |rules: &str| {
            crate::loader::parse(
                &format!("[auth]\nmode = \"users\"\n[[auth.users]]\nname = \"svc\"\nrules = \"{rules}\"\n"),
                Path::new("t.toml"),
            )
            .map_err(|e| e.to_string())
        };
        assert!(users("on ~a:* +@read").is_ok());
        assert_eq!(
            users("on >secret").unwrap_err(),
            "t.toml: auth.users[0].rules: '>...': plain-text passwords are not stored; use '#<sha256>' (see `respgate hash-password`)"
        );
        assert_eq!(
            users("on +@nosuch").unwrap_err(),
            "t.toml: auth.users[0].rules: '+@nosuch': unknown command category 'nosuch'"
        );
    }

    #[test]
    fn hedge_after_ms_must_be_below_the_request_timeout() {
        let c = parse("").unwrap();
        assert_eq!(c.replica_reads.hedge_after_ms, 100);
        let replicas = "[replica_reads]\ndefault_policy = \"prefer_replica\"\n";
        let e = parse(&format!("[cluster]\nrequest_timeout_ms = 100\n{replicas}")).unwrap_err();
        assert!(
            e.starts_with("t.toml: replica_reads.hedge_after_ms: 100 ms is not below cluster.request_timeout_ms (100 ms)"),
            "{e}"
        );
        assert!(parse(&format!("{replicas}hedge_after_ms = 0\n")).is_ok());
    }

    #[test]
    fn lockout_and_window_are_at_most_a_day() {
        let e = parse("lockout_secs = 18446744073709551615\n").unwrap_err();
        assert!(e.starts_with("t.toml: auth.lockout_secs: 18446744073709551615 is above the largest allowed, 86400"), "{e}");
        let e = parse("failure_window_secs = 86401\n").unwrap_err();
        assert!(
            e.starts_with("t.toml: auth.failure_window_secs: 86401 is above"),
            "{e}"
        );
        assert!(parse("lockout_secs = 86400\nfailure_window_secs = 86400\n").is_ok());
        assert_eq!(parse("").unwrap().auth.login_timeout_secs, 10);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:6380");
        assert_eq!(c.cluster.connections_per_node, 1);
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let e = parse("[server]\nlisen = \"x\"\n").unwrap_err();
        assert!(e.starts_with("t.toml: server"), "{e}");
        assert!(e.contains("unknown field `lisen`"), "{e}");
    }

    #[test]
    fn wrong_types_are_named_with_their_path() {
        let e = parse("[cluster]\nconnections_per_node = \"two\"\n").unwrap_err();
        assert!(e.contains("cluster.connections_per_node"), "{e}");
    }

    #[test]
    fn invalid_values_are_explained() {
        let e = parse("[server]\nlisten = \"nowhere\"\n").unwrap_err();
        assert_eq!(
            e,
            "t.toml: server.listen: \"nowhere\" is not an address like \"127.0.0.1:6380\""
        );
        let e = parse("[cluster]\nseeds = [\"a:1\", \"b\"]\n").unwrap_err();
        assert_eq!(e, "t.toml: cluster.seeds[1]: \"b\" is not host:port");
    }

    /// A server certificate and key (self-signed) in `dir`.
    fn cert_files(dir: &Path) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join("server.pem"), dir.join("server.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    #[test]
    fn tls_sections_are_checked_with_precise_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = cert_files(dir.path());
        let tls = |extra: &str| {
            format!("[tls]\nlisten = \"127.0.0.1:6390\"\ncert = {cert:?}\nkey = {key:?}\n{extra}")
        };
        // TLS only.
        let c = parse(&format!("[server]\nlisten = \"\"\n{}", tls(""))).unwrap();
        let t = c.tls.unwrap();
        assert_eq!(t.client_auth, ClientAuth::None);
        assert_eq!(t.cert_user, CertUser::Cn);
        // No listener at all.
        let e = parse("[server]\nlisten = \"\"\n").unwrap_err();
        assert!(
            e.starts_with("t.toml: server.listen: \"\" disables the plain listener"),
            "{e}"
        );
        let e = parse(&tls("client_auth = \"required\"")).unwrap_err();
        assert_eq!(
            e,
            "t.toml: tls.client_ca: required when client_auth is \"optional\" or \"required\""
        );
        let e = parse(&tls(&format!("client_ca = {cert:?}"))).unwrap_err();
        assert!(
            e.starts_with("t.toml: tls.client_ca: set, but client_auth is"),
            "{e}"
        );
        let e = parse(&tls("client_auth = \"sometimes\"")).unwrap_err();
        assert!(
            e.contains("tls.client_auth") && e.contains("unknown variant `sometimes`"),
            "{e}"
        );
        let e = parse(&tls("cert_user = \"email\"")).unwrap_err();
        assert!(
            e.ends_with("tls.cert_user: unknown variant `email`, expected `cn` or `san`"),
            "{e}"
        );
        let e = parse("[tls]\nlisten = \"127.0.0.1:6390\"\n").unwrap_err();
        assert!(
            e.contains("tls") && e.contains("missing field `cert`"),
            "{e}"
        );
        let missing = dir.path().join("nope.pem").display().to_string();
        let e = parse(&format!(
            "[tls]\nlisten = \"127.0.0.1:6390\"\ncert = {missing:?}\nkey = {key:?}\n"
        ))
        .unwrap_err();
        assert!(
            e.starts_with(&format!("t.toml: tls.cert: {missing}: cannot read: ")),
            "{e}"
        );
        let e = parse(&tls("").replace("6390", "6380")).unwrap_err();
        assert!(
            e.contains("tls.listen: \"127.0.0.1:6380\" is also server.listen"),
            "{e}"
        );
        // Upstream.
        let e = parse("[cluster.tls]\nenabled = true\n").unwrap_err();
        assert!(e.starts_with("t.toml: cluster.tls.ca: required"), "{e}");
        let e = parse(&format!("[cluster.tls]\nca = {cert:?}\ncert = {cert:?}\n")).unwrap_err();
        assert_eq!(e, "t.toml: cluster.tls.key: required with cluster.tls.cert");
        let e = parse(&format!(
            "[cluster.tls]\nca = {cert:?}\nserver_name = \"not a name!\"\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("t.toml: cluster.tls.server_name: "), "{e}");
        let c = parse(&format!(
            "[cluster.tls]\nca = {cert:?}\ncert = {cert:?}\nkey = {key:?}\n"
        ))
        .unwrap();
        assert!(c.cluster.tls.unwrap().enabled);
        // Disabled: the files are not even read.
        parse("[cluster.tls]\nenabled = false\nca = \"/nonexistent\"\n").unwrap();
    }

    #[test]
    fn guards_default_to_safe_in_files_and_to_none_in_code() {
        let c = parse("").unwrap();
        assert!(c.guards.enabled && c.guards.safe_defaults && c.guards.admins.is_empty());
        let c = parse("[guards]\nadmins = [\"ops\"]\n").unwrap();
        assert!(c.guards.enabled && c.guards.safe_defaults);
        let c = parse("[guards]\nenabled = false\n").unwrap();
        assert!(!c.guards.enabled);
        let d = Config::default();
        assert!(!d.guards.enabled && !d.guards.safe_defaults && d.guards.rules.is_empty());
        for f in ["config/respgate.toml", "config/production.example.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            std::env::set_var("RESPGATE_UPSTREAM_PASSWORD", "x");
            let c = crate::loader::load(&path).unwrap();
            assert!(
                c.guards.enabled && c.guards.safe_defaults,
                "{f} is not protective"
            );
        }
    }

    #[test]
    fn guard_rules_are_checked_with_precise_errors() {
        let rule = |extra: &str| {
            parse(&format!(
                "[[guards.rules]]\nname = \"r\"\ncommands = [\"keys\"]\n{extra}\n"
            ))
        };
        assert!(rule("action = \"deny\"").is_ok());
        assert_eq!(
            rule("action = \"limit\"").unwrap_err(),
            "t.toml: guards.rules[0].rate: action \"limit\" needs a rate, e.g. \"1/min\""
        );
        assert_eq!(
            rule("action = \"limit\"\nrate = \"fast\"").unwrap_err(),
            "t.toml: guards.rules[0].rate: \"fast\" is not a rate like \"10/s\", \"1/min\", \"100/h\" or \"1000/d\""
        );
        assert_eq!(
            rule("action = \"limit\"\nrate = \"1/s\"\nshared = true").unwrap_err(),
            "t.toml: guards.rules[0].shared: only for action \"limit\" with scope \"global\""
        );
        assert_eq!(
            rule("action = \"deny\"\nusers = [\"a\"]\nexcept_users = [\"b\"]").unwrap_err(),
            "t.toml: guards.rules[0].except_users: set either users or except_users, not both"
        );
        assert!(rule("action = \"dance\"")
            .unwrap_err()
            .contains("guards.rules[0].action: unknown variant `dance`"));
        assert_eq!(
            parse("[[ttl]]\npattern = \"s:*\"\ndefault_seconds = 0\n").unwrap_err(),
            "t.toml: ttl[0].default_seconds: must be at least 1"
        );
        let ttl = |extra: &str| {
            parse(&format!(
                "[[ttl]]\npattern = \"s:*\"\ndefault_seconds = 100\n{extra}\n"
            ))
        };
        assert!(ttl("max_seconds = 100\nover_max = \"cap\"").is_ok());
        assert!(ttl("sweep_interval_secs = 0\nsweep_keys_per_sec = 0").is_ok());
        assert_eq!(
            ttl("max_seconds = 99").unwrap_err(),
            "t.toml: ttl[0].max_seconds: 99 is below default_seconds (100): the policy's own EXPIRE would be over the cap"
        );
        assert_eq!(
            ttl("over_max = \"cap\"").unwrap_err(),
            "t.toml: ttl[0].over_max: set, but there is no max_seconds to enforce"
        );
        assert_eq!(
            ttl("sweep_keys_per_sec = 0").unwrap_err(),
            "t.toml: ttl[0].sweep_keys_per_sec: must be at least 1 (sweep_interval_secs = 0 turns the sweeper off)"
        );
        assert!(ttl("over_max = \"clip\"")
            .unwrap_err()
            .contains("ttl[0].over_max: unknown variant `clip`"));
    }

    #[test]
    fn shipped_configs_are_valid() {
        for f in ["config/respgate.toml", "config/production.example.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            let text = std::fs::read_to_string(&path).unwrap();
            // The production example reads its password from the environment.
            std::env::set_var("RESPGATE_UPSTREAM_PASSWORD", "x");
            crate::loader::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
