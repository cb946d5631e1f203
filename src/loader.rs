//! Loading a configuration file: `config` parses it and checks what it can alone
//! (syntax, ranges, fields against each other); each module that owns a section checks
//! the rest with its own code (TLS files and keys: `tls`; ACL rules: `acl`; guard and
//! TTL rules: `guards`). Kept above all of them so `config` imports nothing above it.
//! `respgate check-config`, start-up and SIGHUP all load through here.

use crate::config::{Config, ConfigError};
use std::path::Path;

/// Reads `path` and runs every check.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::read(path)?;
    check(&config, path)?;
    Ok(config)
}

/// [`load`] for TOML text; `path` only names the file in errors.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let config = Config::from_toml(text, path)?;
    check(&config, path)?;
    Ok(config)
}

/// The checks of the modules that own a section, in the file's order.
fn check(config: &Config, path: &Path) -> Result<(), ConfigError> {
    let bad = |(key, message): (String, String)| ConfigError::Invalid {
        file: path.to_owned(),
        key,
        message,
    };
    if let Some(t) = &config.tls {
        crate::tls::server_config(t).map_err(bad)?;
    }
    crate::tls::UpstreamTls::from_config(config.cluster.tls.as_ref()).map_err(bad)?;
    crate::acl::Users::from_config(&config.auth).map_err(|e| {
        bad(match e.split_once(": ") {
            Some((key, msg)) => (key.to_string(), msg.to_string()),
            None => ("auth".to_string(), e),
        })
    })?;
    crate::guards::validate(&config.guards, &config.ttl).map_err(bad)
}
