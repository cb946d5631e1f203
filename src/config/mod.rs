//! Configuration: the TOML file, its defaults, and the checks it allows alone, with
//! precise messages.
//!
//! Plain data: one file per section (`server`, `cluster`, `tls`, `auth`, `guards`,
//! `ttl`, `replica_reads`, `scripts`, `admin`, `log`), each with its structs, its defaults (the ones an
//! operator would expect from Redis where Redis has one) and the checks its own fields
//! allow (syntax, ranges, fields against each other). The checks that need another
//! module (TLS files and keys, ACL rules, guard and TTL rules) are that module's, run by
//! the `loader`; so this module imports nothing of the crate.
//! `config/production.example.toml` documents each option; keep the two in step.
//! Loading never panics: every problem becomes a [`ConfigError`] naming the file, the
//! key path and what is wrong.

use serde::Deserialize;
use std::path::{Path, PathBuf};

mod admin;
mod auth;
mod cluster;
mod compat;
mod guards;
mod log;
mod replica_reads;
mod scripts;
mod server;
mod tls;
mod ttl;

pub use admin::{AdminConfig, MAX_CLUSTER_METRICS_INTERVAL_SECS};
pub use auth::{AuthConfig, AuthMode, UserConfig, MAX_LOCKOUT_SECS};
pub use cluster::{split_host_port, ClusterConfig, DEFAULT_MAX_REPLY_BYTES, MIN_MAX_REPLY_BYTES};
pub use compat::{CompatConfig, CrossSlotMode, DEFAULT_MAX_CROSS_SLOT_BYTES};
pub use guards::{FailMode, GuardAction, GuardRewrite, GuardRuleConfig, GuardScope, GuardsConfig};
pub use log::{LogConfig, LogFormat, MAX_REPEAT_INTERVAL_SECS};
pub use replica_reads::{ReadPolicyKind, ReadRuleConfig, ReplicaReadsConfig, MAX_LAG_BOUNDS};
pub use scripts::{ScriptIsolation, ScriptsConfig};
pub use server::ServerConfig;
pub use tls::{
    default_max_handshakes_in_flight, CertUser, ClientAuth, TlsConfig, UpstreamTlsConfig,
};
pub use ttl::{TtlMode, TtlOverMax, TtlRuleConfig};

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
    /// The operators' HTTP listener (`[admin]`): off unless `listen` is set.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Behaving like one Redis beyond what a cluster does (`[compat]`).
    #[serde(default)]
    pub compat: CompatConfig,
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
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                file: path.to_owned(),
                key,
                message,
            })?;
        Ok(config)
    }

    /// Each section's own checks, in the file's order (the first problem is reported).
    fn validate(&self) -> Result<(), Invalid> {
        self.server.check_listen(self.tls.is_some())?;
        if let Some(t) = &self.tls {
            t.check(&self.server.listen)?;
        }
        self.server
            .check_counts(self.cluster.connections_per_node)?;
        self.cluster.check()?;
        self.replica_reads.check(self.cluster.request_timeout_ms)?;
        self.auth.check()?;
        self.log.check()?;
        self.scripts.validate()?;
        self.compat.check()?;
        let tls_listen = self.tls.as_ref().map_or("", |t| t.listen.as_str());
        self.admin.check(&[self.server.listen.as_str(), tls_listen])
    }
}

/// What a check found wrong: the key path and the reason (the caller adds the file).
type Invalid = (String, String);

fn invalid(key: &str, message: impl Into<String>) -> Invalid {
    (key.to_string(), message.into())
}

/// A secret given in the file (`literal`) or named by an environment variable (`env`):
/// its value, the variable's when one is named (`None` when unset or not UTF-8).
fn secret(literal: &Option<String>, env: &Option<String>) -> Option<String> {
    match env {
        Some(var) => std::env::var(var).ok(),
        None => literal.clone(),
    }
}

/// Checks a [`secret`] whose keys are `<section>.<name>` and `<section>.<name>_env`: not
/// both, and a named variable must be set, as UTF-8 (the same read as [`secret`]: a
/// value that is not UTF-8 would read as no secret at all and leave respgate without
/// the password or the admin token).
fn check_secret(
    section: &str,
    name: &str,
    literal: &Option<String>,
    env: &Option<String>,
) -> Result<(), Invalid> {
    if literal.is_some() && env.is_some() {
        return Err(invalid(
            &format!("{section}.{name}"),
            format!("set either {name} or {name}_env, not both"),
        ));
    }
    if let Some(var) = env {
        if std::env::var(var).is_err() {
            return Err(invalid(
                &format!("{section}.{name}_env"),
                format!("environment variable {var} is not set (or not UTF-8)"),
            ));
        }
    }
    Ok(())
}

/// serde's default for switches that are on unless turned off.
fn yes() -> bool {
    true
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
    fn log_format_is_text_unless_json_is_asked() {
        let c = parse("").unwrap();
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.repeat_interval_secs, 30);
        let c = parse("[log]\nformat = \"json\"\nlevel = \"warn\"\n").unwrap();
        assert_eq!(
            (c.log.format, c.log.level.as_str()),
            (LogFormat::Json, "warn")
        );
        let e = parse("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(
            e.starts_with("t.toml: log.format: unknown variant `xml`"),
            "{e}"
        );
        let e = parse("[log]\nrepeat_interval_secs = 0\n").unwrap_err();
        assert!(
            e.starts_with("t.toml: log.repeat_interval_secs: 0 is outside"),
            "{e}"
        );
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
