//! TLS: the client-facing listener's server configuration, the upstream (Redis node)
//! client configuration, the stream type backend connections use, and how a verified
//! client certificate becomes a user name.
//!
//! rustls with the `ring` provider, TLS 1.2 and 1.3 only (rustls has no older versions).
//! Every loader here returns `(key, message)` so configuration validation and a reload
//! can name the exact option and file that is wrong.

use crate::config::{CertUser, ClientAuth, TlsConfig, UpstreamTlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A configuration problem: the key path (`tls.cert`) and what is wrong with it.
pub type TlsError = (String, String);

/// The only protocol versions respgate speaks.
pub static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn err(key: &str, message: impl Into<String>) -> TlsError {
    (key.to_string(), message.into())
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| err(key, format!("{}: cannot read: {e}", path.display())))
}

/// Every certificate of a PEM file (a chain, or a CA bundle).
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(key, format!("{}: invalid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(
            key,
            format!(
                "{}: no certificate found (expected a PEM \"BEGIN CERTIFICATE\" block)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        err(
            key,
            format!(
                "{}: no private key found ({e}); expected a PEM \"PRIVATE KEY\" block",
                path.display()
            ),
        )
    })
}

fn roots(key: &str, path: &Path) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for cert in load_certs(key, path)? {
        store.add(cert).map_err(|e| {
            err(
                key,
                format!("{}: unusable CA certificate: {e}", path.display()),
            )
        })?;
    }
    Ok(Arc::new(store))
}

/// Builds the listener's server configuration from `[tls]`: reads and checks every file.
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = load_certs("tls.cert", &cfg.cert)?;
    let key = load_key("tls.key", &cfg.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| err("tls", e.to_string()))?;
    let builder = match cfg.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let Some(ca) = &cfg.client_ca else {
                return Err(err(
                    "tls.client_ca",
                    "required when client_auth is \"optional\" or \"required\"",
                ));
            };
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots("tls.client_ca", ca)?,
                provider(),
            );
            let verifier = match cfg.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|e| err("tls.client_ca", format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        err(
            "tls.key",
            format!(
                "{} does not fit the certificate {}: {e}",
                cfg.key.display(),
                cfg.cert.display()
            ),
        )
    })?;
    Ok(Arc::new(config))
}

/// How backend connections speak TLS to the Redis nodes (`[cluster.tls]`).
#[derive(Clone)]
pub struct UpstreamTls {
    connector: tokio_rustls::TlsConnector,
    /// The name certificates are checked against; `None`: the host part of the address.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// From `[cluster.tls]`; `None` when it is absent or not enabled.
    pub fn from_config(cfg: Option<&UpstreamTlsConfig>) -> Result<Option<UpstreamTls>, TlsError> {
        let Some(cfg) = cfg.filter(|c| c.enabled) else {
            return Ok(None);
        };
        let Some(ca) = &cfg.ca else {
            return Err(err(
                "cluster.tls.ca",
                "required when upstream TLS is enabled (the CA that signed the nodes' certificates)",
            ));
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| err("cluster.tls", e.to_string()))?
            .with_root_certificates(roots("cluster.tls.ca", ca)?);
        let config = match (&cfg.cert, &cfg.key) {
            (Some(cert), Some(key)) => {
                let chain = load_certs("cluster.tls.cert", cert)?;
                let pk = load_key("cluster.tls.key", key)?;
                builder.with_client_auth_cert(chain, pk).map_err(|e| {
                    err(
                        "cluster.tls.key",
                        format!(
                            "{} does not fit the certificate {}: {e}",
                            key.display(),
                            cert.display()
                        ),
                    )
                })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(err("cluster.tls.key", "required with cluster.tls.cert"))
            }
            (None, Some(_)) => {
                return Err(err("cluster.tls.cert", "required with cluster.tls.key"))
            }
        };
        let server_name = match &cfg.server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| {
                err(
                    "cluster.tls.server_name",
                    format!("{name:?} is not a DNS name or IP address: {e}"),
                )
            })?),
            None => None,
        };
        Ok(Some(UpstreamTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        }))
    }

    /// The TLS handshake over `tcp` to the node at `addr` (`host:port`).
    pub async fn connect(
        &self,
        addr: &str,
        tcp: TcpStream,
        timeout: Duration,
    ) -> io::Result<BackendStream> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let host = crate::config::split_host_port(addr)
                    .map(|(h, _)| h)
                    .unwrap_or(addr);
                ServerName::try_from(host.to_string()).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{host:?} cannot be verified as a TLS server name: {e}"),
                    )
                })?
            }
        };
        let tls = tokio::time::timeout(timeout, self.connector.connect(name, tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
        Ok(BackendStream::Tls(Box::new(tls)))
    }
}

/// Opens a connection to a node: TCP (no delay), then TLS when configured.
pub async fn connect_node(
    addr: &str,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> io::Result<BackendStream> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(BackendStream::Plain(tcp)),
        Some(tls) => tls.connect(addr, tcp, timeout).await,
    }
}

/// A connection to a Redis node: plain TCP or TLS. The link's hot path never uses this
/// type for I/O on a plain connection: it splits the `TcpStream` itself (see
/// `backend::serve`); the control plane and the pub/sub hub use it as it is.
pub enum BackendStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The user name a verified client certificate stands for: its subject's first common
/// name (`cn`), or its first subject alternative name (`san`: a DNS name, else an e-mail
/// address, else a URI). `None` if the certificate cannot be parsed or has no such name.
pub fn cert_identity(cert: &[u8], mode: CertUser) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert).ok()?;
    match mode {
        CertUser::Cn => cert
            .subject()
            .iter_common_name()
            .next()?
            .as_str()
            .ok()
            .map(str::to_owned),
        CertUser::San => {
            use x509_parser::extensions::GeneralName;
            let san = cert.subject_alternative_name().ok()??;
            let names = &san.value.general_names;
            // DNS names first, then e-mail addresses, then URIs.
            for rank in 0..3 {
                for name in names {
                    let found = match (rank, name) {
                        (0, GeneralName::DNSName(s)) => s,
                        (1, GeneralName::RFC822Name(s)) => s,
                        (2, GeneralName::URI(s)) => s,
                        _ => continue,
                    };
                    return Some(found.to_string());
                }
            }
            None
        }
    }
}

/// The identity of the client certificate a finished handshake verified, if any.
pub fn peer_identity(conn: &rustls::ServerConnection, mode: CertUser) -> Option<String> {
    let end_entity = conn.peer_certificates()?.first()?;
    cert_identity(end_entity, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cert(cn: Option<&str>, sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn identity_from_common_name() {
        let c = cert(Some("alice"), vec![]);
        assert_eq!(cert_identity(&c, CertUser::Cn).as_deref(), Some("alice"));
        assert_eq!(cert_identity(&c, CertUser::San), None);
    }

    #[test]
    fn identity_from_subject_alt_name_prefers_dns_then_email_then_uri() {
        use rcgen::SanType;
        let dns = cert(
            Some("cn-name"),
            vec![
                SanType::URI("spiffe://x/y".try_into().unwrap()),
                SanType::Rfc822Name("bob@example.com".try_into().unwrap()),
                SanType::DnsName("svc.example.com".try_into().unwrap()),
            ],
        );
        assert_eq!(
            cert_identity(&dns, CertUser::San).as_deref(),
            Some("svc.example.com")
        );
        assert_eq!(
            cert_identity(&dns, CertUser::Cn).as_deref(),
            Some("cn-name")
        );
        let email = cert(
            None,
            vec![
                SanType::URI("spiffe://x/y".try_into().unwrap()),
                SanType::Rfc822Name("bob@example.com".try_into().unwrap()),
            ],
        );
        assert_eq!(
            cert_identity(&email, CertUser::San).as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(cert_identity(&email, CertUser::Cn), None);
        let uri = cert(None, vec![SanType::URI("spiffe://x/y".try_into().unwrap())]);
        assert_eq!(
            cert_identity(&uri, CertUser::San).as_deref(),
            Some("spiffe://x/y")
        );
    }

    /// A CA, a server certificate and a client certificate with `client_cn` and `san`,
    /// as PEM files in `dir`.
    fn pki(dir: &Path, client_cn: &str, san: &str) -> TlsConfig {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str, cn: &str, sans: Vec<String>| {
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        leaf("server", "server", vec!["localhost".into()]);
        leaf("client", client_cn, vec![san.into()]);
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        TlsConfig {
            listen: "127.0.0.1:0".into(),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_auth: ClientAuth::Required,
            client_ca: Some(dir.join("ca.pem")),
            cert_user: CertUser::Cn,
            handshake_timeout_ms: 1000,
            max_handshakes_in_flight: crate::config::default_max_handshakes_in_flight(),
        }
    }

    /// A real handshake (in memory) with a client certificate; returns the identity the
    /// server side extracts as the listener does.
    async fn handshake_identity(dir: &Path, cfg: &TlsConfig) -> Option<String> {
        let server = tokio_rustls::TlsAcceptor::from(server_config(cfg).unwrap());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(dir.join("client.pem")).unwrap()],
                PrivateKeyDer::from_pem_file(dir.join("client.key")).unwrap(),
            )
            .unwrap();
        let client = tokio_rustls::TlsConnector::from(Arc::new(client));
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("localhost").unwrap();
        let (c, s) = tokio::join!(client.connect(name, a), server.accept(b));
        c.unwrap();
        peer_identity(s.unwrap().get_ref().1, cfg.cert_user)
    }

    #[tokio::test]
    async fn verified_client_certificate_gives_the_identity_per_cert_user() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = pki(dir.path(), "alice", "alice.svc.example");
        let got = handshake_identity(dir.path(), &cfg).await;
        assert_eq!(got.as_deref(), Some("alice"));
        cfg.cert_user = CertUser::San;
        let got = handshake_identity(dir.path(), &cfg).await;
        assert_eq!(got.as_deref(), Some("alice.svc.example"));
    }

    #[test]
    fn loader_errors_name_the_option_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = pki(dir.path(), "alice", "a.example");
        cfg.key = dir.path().join("client.key");
        let (key, e) = server_config(&cfg).unwrap_err();
        assert_eq!(key, "tls.key");
        assert!(e.contains("does not fit the certificate"), "{e}");
        cfg.key = dir.path().join("ca.pem");
        let (key, e) = server_config(&cfg).unwrap_err();
        assert_eq!(key, "tls.key");
        assert!(e.contains("no private key found"), "{e}");
        cfg.cert = dir.path().join("server.key");
        let (key, e) = server_config(&cfg).unwrap_err();
        assert_eq!(key, "tls.cert");
        assert!(e.contains("no certificate found"), "{e}");
        cfg.cert = dir.path().join("nope.pem");
        let (key, e) = server_config(&cfg).unwrap_err();
        assert_eq!(key, "tls.cert");
        assert!(e.contains("nope.pem: cannot read"), "{e}");
    }

    #[test]
    fn garbage_is_no_identity() {
        assert_eq!(cert_identity(b"not a certificate", CertUser::Cn), None);
    }
}
