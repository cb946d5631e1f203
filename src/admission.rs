//! Who gets in, and what it costs before a client has a session: the `max_clients`
//! places and the TLS handshakes in flight.
//!
//! **`max_clients` first, before any TLS.** The accept loop takes a place
//! ([`ClientSlots`]) before anything else. A plain client over the limit is told
//! `-ERR max number of clients reached`, as by Redis; a TLS client over the limit is
//! closed at once, without a handshake: nothing can be said to it before a handshake, and
//! a handshake per refused connection is exactly what a flood of connections would buy
//! (CPU for the key exchange and signature, memory for the TLS state) for nothing. The
//! client sees its handshake fail; the operator sees
//! `respgate_clients_rejected_total{reason="max_clients"}`.
//!
//! **Reloadable.** The limit is an atomic a SIGHUP reload sets (`server.max_clients`).
//! Lowering it below the clients connected closes none of them (as Redis's `CONFIG SET
//! maxclients`): new connections are refused until enough have left.
//!
//! **Handshakes in flight are bounded** (`tls.max_handshakes_in_flight`). The
//! ClientHello is read without a permit: a client that connects and says nothing costs
//! a socket and its `max_clients` place, never a handshake permit. From the ClientHello
//! on, the handshake (key exchange, signature, client-certificate check) holds a permit;
//! over the bound it waits for one, all within `tls.handshake_timeout_ms` from the
//! connection's start. Waiting rather than refusing: a reconnect storm after a deploy
//! or a failover is legitimate and queues briefly instead of failing, while the queue
//! itself stays bounded by `max_clients` and by the timeout.

use crate::config::{CertUser, TlsConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// The `max_clients` places: taken at accept, given back when the connection ends.
pub struct ClientSlots {
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl ClientSlots {
    pub fn new(limit: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
        })
    }

    /// A new limit for new connections (reload); connected clients stay.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    /// A place, if the limit allows one more client.
    pub fn try_take(self: &Arc<Self>) -> Option<ClientSlot> {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < limit).then_some(used + 1)
            })
            .ok()
            .map(|_| ClientSlot(self.clone()))
    }
}

/// One taken place; dropping it gives it back.
pub struct ClientSlot(Arc<ClientSlots>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the TLS listener needs per connection; replaced whole by a reload.
pub struct TlsSettings {
    config: Arc<rustls::ServerConfig>,
    pub cert_user: CertUser,
    pub handshake_timeout: Duration,
    /// Permits for handshakes past their ClientHello (`tls.max_handshakes_in_flight`).
    handshakes: Arc<Semaphore>,
    max_handshakes: usize,
}

impl TlsSettings {
    /// Loads `cfg`'s certificates and keys. `current`: the settings in force, whose
    /// handshake permits are kept when the bound is unchanged (a reload that only swaps
    /// certificates does not let twice the bound in while old handshakes finish).
    pub fn load(cfg: &TlsConfig, current: Option<&TlsSettings>) -> Result<TlsSettings, String> {
        let config = crate::tls::server_config(cfg).map_err(|(key, e)| format!("{key}: {e}"))?;
        let max = cfg.max_handshakes_in_flight;
        let handshakes = match current {
            Some(c) if c.max_handshakes == max => c.handshakes.clone(),
            _ => Arc::new(Semaphore::new(max)),
        };
        Ok(TlsSettings {
            config,
            cert_user: cfg.cert_user,
            handshake_timeout: cfg.handshake_timeout(),
            handshakes,
            max_handshakes: max,
        })
    }
}

/// The server side of a TLS handshake, within the handshake timeout and holding a
/// handshake permit from the ClientHello on; `None` (logged and counted) when it fails
/// or times out.
pub async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    settings: &TlsSettings,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut queued = false;
    let run = async {
        let hello =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await?;
        let _permit = match settings.handshakes.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                queued = true;
                metrics::counter!("respgate_tls_handshakes_queued_total").increment(1);
                settings.handshakes.clone().acquire_owned().await.ok()
            }
        };
        queued = false;
        hello.into_stream(settings.config.clone()).await
    };
    let outcome = tokio::time::timeout(settings.handshake_timeout, run).await;
    let reason = match outcome {
        Ok(Ok(s)) => return Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            if refused_client_certificate(&e) {
                crate::audit::certificate_refused(peer.ip(), None, &e.to_string());
                "client_certificate"
            } else {
                "error"
            }
        }
        Err(_) if queued => {
            tracing::debug!(%peer, "TLS handshake timed out waiting for tls.max_handshakes_in_flight");
            "max_handshakes_in_flight"
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            "timeout"
        }
    };
    metrics::counter!("respgate_tls_handshake_failures_total", "reason" => reason).increment(1);
    None
}

/// Whether a failed handshake failed over the client's certificate (none where one is
/// required, or one the client CA does not vouch for): an audit line, not just a debug
/// one.
fn refused_client_certificate(e: &std::io::Error) -> bool {
    use rustls::Error;
    matches!(
        e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()),
        Some(
            Error::InvalidCertificate(_)
                | Error::NoCertificatesPresented
                | Error::InvalidCertRevocationList(_)
        )
    )
}
