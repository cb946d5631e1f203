//! The accept loop: takes a `max_clients` place for each client (refusing over the
//! limit before any TLS), hands the client to a worker (its TLS handshake runs there,
//! never in the loop), and drains the sessions on shutdown.

use crate::admission::{handshake, ClientSlot, ClientSlots, TlsSettings};
use crate::session::{self, ClientMeta, SessionContext};
use crate::shutdown::{Shutdown, RUNNING, STOP};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;

/// Redis's reply when `maxclients` is reached.
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// Accepts on `listener`, or never when there is none.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Accepts on both listeners until shutdown is signalled, then drains the sessions.
pub(super) async fn accept_loop(
    plain: Option<TcpListener>,
    tls: Option<super::TlsListener>,
    ctx: Arc<SessionContext>,
    slots: Arc<ClientSlots>,
    shutdown: Arc<Shutdown>,
    grace: Duration,
) {
    let stop = shutdown.listen();
    let tracker = TaskTracker::new();
    let next_id = AtomicU64::new(1);
    loop {
        let (accepted, is_tls) = tokio::select! {
            a = accept(plain.as_ref()) => (a, false),
            a = accept(tls.as_ref().map(|(l, _)| l)) => (a, true),
            _ = stop.above(RUNNING) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // The place first, before any TLS: a TLS client over the limit is closed
        // without a handshake (see the admission module).
        let Some(permit) = slots.try_take() else {
            metrics::counter!("respgate_clients_rejected_total", "reason" => "max_clients")
                .increment(1);
            if !is_tls {
                tokio::spawn(refuse(stream));
            }
            continue;
        };
        // One load per connection (never per request): a reload applies from the next.
        let settings = match (&tls, is_tls) {
            (Some((_, s)), true) => Some(s.load_full()),
            _ => None,
        };
        let _ = stream.set_nodelay(true);
        let meta = ClientMeta {
            id: next_id.fetch_add(1, Ordering::Relaxed),
            peer,
            local: stream.local_addr().unwrap_or(peer),
            connected_at: Instant::now(),
            tls: is_tls,
            cert_identity: None,
            client_cert: false,
        };
        let Ok(stream) = Handoff::new(stream) else {
            continue;
        };
        serve_client(stream, meta, settings, permit, &ctx, &shutdown, &tracker);
    }
    drop(plain);
    drop(tls);
    drain(tracker, grace, &shutdown).await;
}

/// Runs the session of an accepted client (after its TLS handshake, with `settings`)
/// on a worker, holding its `max_clients` place (`permit`) until it ends.
fn serve_client(
    stream: Handoff,
    meta: ClientMeta,
    settings: Option<Arc<TlsSettings>>,
    permit: ClientSlot,
    ctx: &Arc<SessionContext>,
    shutdown: &Arc<Shutdown>,
    tracker: &TaskTracker,
) {
    let ctx = ctx.clone();
    let shutdown = shutdown.listen();
    let peer = meta.peer;
    match settings {
        None => {
            crate::workers::spawn_client(tracker.track_future(async move {
                let Ok(mut stream) = stream.into_stream() else {
                    return;
                };
                let _counted = ClientCount::new(ctx.clone());
                let (rd, wr) = stream.split();
                session::run(rd, wr, meta, ctx, shutdown).await;
                drop(permit);
            }));
        }
        Some(settings) => {
            crate::workers::spawn_client(tracker.track_future(async move {
                let Ok(stream) = stream.into_stream() else {
                    return;
                };
                let mut meta = meta;
                // The handshake holds the max_clients place but no accept-loop time.
                let stream = tokio::select! {
                    s = handshake(stream, peer, &settings) => s,
                    _ = shutdown.above(RUNNING) => None,
                };
                let Some(stream) = stream else { return };
                let conn = stream.get_ref().1;
                meta.client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty());
                meta.cert_identity = crate::tls::peer_identity(conn, settings.cert_user);
                drop(settings);
                let _counted = ClientCount::new(ctx.clone());
                // The TLS session is one state machine for both directions: split()
                // shares it between the session's reader and writer halves.
                let (rd, wr) = tokio::io::split(stream);
                session::run(rd, wr, meta, ctx, shutdown).await;
                drop(permit);
            }));
        }
    }
}

/// Lets sessions finish within `grace` after the listeners closed, then stops the rest.
async fn drain(tracker: TaskTracker, grace: Duration, shutdown: &Shutdown) {
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            remaining = tracker.len(),
            "shutdown grace period over; closing remaining connections"
        );
        shutdown.raise(STOP);
        tracker.wait().await;
    }
}

/// An accepted connection on its way to the worker that will serve it. With a worker
/// pool it travels as a std socket and is registered with that worker's own reactor, so
/// its readiness events never wake another thread (see `crate::workers`).
enum Handoff {
    Here(TcpStream),
    Std(std::net::TcpStream),
}

impl Handoff {
    fn new(stream: TcpStream) -> std::io::Result<Handoff> {
        if crate::workers::count() == 0 {
            return Ok(Handoff::Here(stream));
        }
        stream.into_std().map(Handoff::Std)
    }

    /// The connection, registered with the runtime of the calling task.
    fn into_stream(self) -> std::io::Result<TcpStream> {
        match self {
            Handoff::Here(s) => Ok(s),
            Handoff::Std(s) => TcpStream::from_std(s),
        }
    }
}

/// Binds with a listen backlog of 1024: tokio's default (128) overflows when hundreds of
/// clients reconnect at once (after a failover, a deploy), and each overflowed client
/// then waits a full second to retry its SYN.
pub(super) fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    // Name the address: "Address already in use" alone does not say which listener.
    let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{addr}: {e}"));
    socket.bind(addr).map_err(named)?;
    socket.listen(1024).map_err(named)
}

/// Counts a connected client for as long as it lives, however its session ends (the
/// admin endpoint samples the count into `respgate_connected_clients` at scrape time).
struct ClientCount(Arc<SessionContext>);

impl ClientCount {
    fn new(ctx: Arc<SessionContext>) -> ClientCount {
        ctx.clients.fetch_add(1, Ordering::Relaxed);
        ClientCount(ctx)
    }
}

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(MAX_CLIENTS_REPLY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
