//! `[tls]` (the TLS listener) and `[cluster.tls]` (TLS to the nodes): the settings and
//! the checks they allow alone. Reading the files and building the rustls
//! configurations is the `tls` module's check, run by the loader.

use super::{invalid, yes, Invalid};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

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

impl TlsConfig {
    /// The listener's own fields, and that it is not the plain listener's address.
    pub(super) fn check(&self, plain_listen: &str) -> Result<(), Invalid> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "tls.listen",
                format!("{:?} is not an address like \"0.0.0.0:6390\"", self.listen),
            ));
        }
        if self.listen == plain_listen {
            return Err(invalid(
                "tls.listen",
                format!("{:?} is also server.listen: use another port", self.listen),
            ));
        }
        if self.client_auth == ClientAuth::None && self.client_ca.is_some() {
            return Err(invalid(
                "tls.client_ca",
                "set, but client_auth is \"none\": set client_auth = \"optional\" or \
                 \"required\", or remove client_ca",
            ));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(invalid("tls.handshake_timeout_ms", "must be above 0"));
        }
        if self.max_handshakes_in_flight == 0 {
            return Err(invalid(
                "tls.max_handshakes_in_flight",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
