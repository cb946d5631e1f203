//! `[admin]`: the operators' HTTP listener (metrics, health, readiness, topology), off
//! unless `listen` is set, and the checks it can make alone.

use super::{invalid, Invalid};
use serde::Deserialize;

/// The admin listener (`[admin]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the HTTP listener, e.g. `"127.0.0.1:9121"`; absent: no admin
    /// listener and no metrics recorder (the `metrics` calls stay no-ops).
    pub listen: Option<String>,
    /// Bearer token: when set, every request but `GET /healthz` must carry
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Name of an environment variable that holds the token (instead of `token`).
    pub token_env: Option<String>,
    /// How often the cluster metrics are collected from every node (one `INFO` each);
    /// 0 turns the collection off.
    pub cluster_metrics_interval_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            token: None,
            token_env: None,
            cluster_metrics_interval_secs: 15,
        }
    }
}

/// The longest collection interval accepted (a day).
pub const MAX_CLUSTER_METRICS_INTERVAL_SECS: u64 = 86_400;

impl AdminConfig {
    /// Whether the admin listener runs.
    pub fn enabled(&self) -> bool {
        self.listen.is_some()
    }

    /// The bearer token, from the file or the environment (`None`: no token required).
    pub fn bearer_token(&self) -> Option<String> {
        super::secret(&self.token, &self.token_env)
    }

    /// The address, the token's source and syntax, the interval; `others` are the
    /// client listeners' addresses (the admin one must differ from them).
    pub(super) fn check(&self, others: &[&str]) -> Result<(), Invalid> {
        let Some(listen) = &self.listen else {
            if self.token.is_some() || self.token_env.is_some() {
                return Err(invalid(
                    "admin.token",
                    "set, but admin.listen is not: the admin listener is off without it",
                ));
            }
            return Ok(());
        };
        if listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "admin.listen",
                format!("{listen:?} is not an address like \"127.0.0.1:9121\""),
            ));
        }
        if let Some(same) = others.iter().find(|o| *o == listen) {
            return Err(invalid(
                "admin.listen",
                format!("{same:?} is also a client listener's address"),
            ));
        }
        super::check_secret("admin", "token", &self.token, &self.token_env)?;
        if let Some(token) = self.bearer_token() {
            let key = if self.token_env.is_some() {
                "admin.token_env"
            } else {
                "admin.token"
            };
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    key,
                    "the token must be non-empty printable ASCII without spaces",
                ));
            }
        }
        if self.cluster_metrics_interval_secs > MAX_CLUSTER_METRICS_INTERVAL_SECS {
            return Err(invalid(
                "admin.cluster_metrics_interval_secs",
                format!(
                    "{} is above the largest allowed, {MAX_CLUSTER_METRICS_INTERVAL_SECS} (0 turns the collection off)",
                    self.cluster_metrics_interval_secs
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<AdminConfig, String> {
        let c: AdminConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check(&["127.0.0.1:6380"])
            .map(|()| c)
            .map_err(|(k, m)| format!("{k}: {m}"))
    }

    #[test]
    fn off_unless_listen_is_set() {
        let c = check("").unwrap();
        assert!(!c.enabled());
        assert_eq!(c.cluster_metrics_interval_secs, 15);
        let e = check("token = \"t\"").unwrap_err();
        assert!(
            e.starts_with("admin.token: set, but admin.listen is not"),
            "{e}"
        );
        assert!(check("listen = \"127.0.0.1:9121\"").unwrap().enabled());
    }

    /// A token variable whose value is not UTF-8 would read as "no token" and leave the
    /// listener open: refused at load instead.
    #[test]
    fn a_token_env_that_is_not_utf8_is_refused_not_ignored() {
        use std::os::unix::ffi::OsStrExt;
        let var = "RESPGATE_TEST_ADMIN_TOKEN_NOT_UTF8";
        std::env::set_var(var, std::ffi::OsStr::from_bytes(b"tok\xffen"));
        let e = check(&format!(
            "listen = \"127.0.0.1:9121\"\ntoken_env = \"{var}\""
        ))
        .unwrap_err();
        assert!(
            e.starts_with("admin.token_env: environment variable"),
            "{e}"
        );
        std::env::remove_var(var);
    }

    #[test]
    fn bad_values_are_named() {
        let e = check("listen = \"nowhere\"").unwrap_err();
        assert!(
            e.starts_with("admin.listen: \"nowhere\" is not an address"),
            "{e}"
        );
        let e = check("listen = \"127.0.0.1:6380\"").unwrap_err();
        assert!(e.contains("also a client listener"), "{e}");
        let e = check("listen = \"127.0.0.1:9121\"\ntoken = \"a b\"").unwrap_err();
        assert!(e.starts_with("admin.token: the token must be"), "{e}");
        let e = check("listen = \"127.0.0.1:9121\"\ntoken = \"\"").unwrap_err();
        assert!(e.starts_with("admin.token: "), "{e}");
        let e = check("listen = \"127.0.0.1:9121\"\ntoken = \"a\"\ntoken_env = \"X\"").unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = check("listen = \"127.0.0.1:9121\"\ntoken_env = \"RESPGATE_NO_SUCH_VAR_14\"")
            .unwrap_err();
        assert!(
            e.starts_with("admin.token_env: environment variable"),
            "{e}"
        );
        let e = check("listen = \"127.0.0.1:9121\"\ncluster_metrics_interval_secs = 86401")
            .unwrap_err();
        assert!(
            e.starts_with("admin.cluster_metrics_interval_secs: 86401 is above"),
            "{e}"
        );
        let c = check("listen = \"127.0.0.1:9121\"\ncluster_metrics_interval_secs = 0").unwrap();
        assert_eq!(c.cluster_metrics_interval_secs, 0);
        assert_eq!(
            check("listen = \"127.0.0.1:9121\"\ntoken = \"s3cr3t\"")
                .unwrap()
                .bearer_token()
                .as_deref(),
            Some("s3cr3t")
        );
    }
}
