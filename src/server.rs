//! The listener: accepts clients within the connection limit, runs a session for each,
//! and drains them on shutdown.
//!
//! [`Proxy`] is the whole running respgate (listeners, topology refresher, sessions); the
//! binary, `respgate dev` and the integration tests all start it the same way.
//!
//! Two listeners share one accept loop, one `max_clients` and one set of sessions: the
//! plain one (`[server] listen`, may be disabled) and the TLS one (`[tls]`). The accept
//! loop takes a `max_clients` place first and refuses over the limit before any TLS; a
//! TLS client's handshake then runs in its own task under a timeout, with a bounded
//! number in flight (the admission module says why), so a slow or garbage handshake
//! never holds up the accept loop. The TLS server configuration sits behind an
//! `ArcSwap`: [`Proxy::reload_tls`] swaps certificates for new connections while
//! established ones keep their session. [`Proxy::reload`] applies what a SIGHUP can
//! change and names what needs a restart (the reload module).

use crate::acl::Security;
use crate::admission::{handshake, ClientSlots, TlsSettings};
use crate::cluster::Cluster;
use crate::config::{Config, TlsConfig};
use crate::protocol::scan::RequestLimits;
use crate::session::{self, ClientMeta, SessionContext};
use crate::shutdown::{Shutdown, DRAIN, RUNNING, STOP};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// Redis's reply when `maxclients` is reached.
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// A running respgate. Dropping it closes every connection at once; [`Proxy::shutdown`]
/// drains them first.
pub struct Proxy {
    addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    /// The TLS listener's settings, read once per accepted connection.
    tls: Option<Arc<ArcSwap<TlsSettings>>>,
    cluster: Arc<Cluster>,
    shutdown: Arc<Shutdown>,
    task: Option<JoinHandle<()>>,
    security: Arc<Security>,
    guards: Arc<crate::guards::Guards>,
    scripts: Arc<crate::scripts::Scripts>,
    /// The `max_clients` places (the limit is reloadable).
    slots: Arc<ClientSlots>,
    /// The configuration started with: what a reload is compared against for the
    /// settings that need a restart.
    running: Config,
}

impl Proxy {
    /// Binds `config.server.listen` (unless `""`) and `[tls] listen` (if configured) and
    /// starts serving. Discovery runs in the background: until it succeeds, requests are
    /// answered with `-CLUSTERDOWN`.
    pub async fn start(config: Config) -> std::io::Result<Proxy> {
        let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
        let plain = match config.server.listen.as_str() {
            "" => None,
            addr => Some(listen(addr)?),
        };
        let tls = match &config.tls {
            Some(t) => {
                let settings = TlsSettings::load(t, None).map_err(invalid)?;
                Some((
                    listen(&t.listen)?,
                    Arc::new(ArcSwap::from_pointee(settings)),
                ))
            }
            None => None,
        };
        if plain.is_none() && tls.is_none() {
            return Err(invalid(
                "no listener: server.listen is \"\" and there is no [tls] section".into(),
            ));
        }
        let addr = plain.as_ref().map(TcpListener::local_addr).transpose()?;
        let tls_addr = tls.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
        let tls_settings = tls.as_ref().map(|(_, s)| s.clone());
        let cluster = Cluster::try_new(config.cluster.clone())
            .map_err(|(key, e)| invalid(format!("{key}: {e}")))?;
        let shutdown = Shutdown::new();
        let security = Arc::new(
            Security::new(&config.auth)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        );
        if !security.users().required {
            tracing::warn!(
                "auth.mode = \"none\": every client runs as the unrestricted default user"
            );
        }
        let guards = Arc::new(
            crate::guards::Guards::new(&config.guards, &config.ttl)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        );
        let scripts = Arc::new(crate::scripts::Scripts::new(
            &config.scripts,
            security.clone(),
            guards.clone(),
            config.cluster.upstream_password(),
        ));
        tracing::info!("{}", config.scripts.describe());
        let s = &config.server;
        let read_policy = crate::cluster::replicas::ReadPolicy::new(&config.replica_reads);
        let client_buffers = crate::budget::ClientBuffers::new(s.max_client_buffer_bytes);
        let ctx = Arc::new(SessionContext {
            cluster: cluster.clone(),
            limits: RequestLimits {
                max_bulk: s.max_bulk_bytes,
                max_request: s.max_request_bytes,
                pre_auth: false,
            },
            output_limits: crate::budget::OutputLimits {
                replies: s.max_pending_reply_bytes,
                messages: s.pubsub_queue_bytes,
            },
            client_buffers: client_buffers.clone(),
            max_pending: s.max_pending_replies,
            max_transaction: s.max_transaction_bytes,
            max_client_name: s.max_client_name_bytes,
            idle_timeout: (s.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(s.idle_timeout_secs)),
            stall_timeout: Duration::from_secs(s.output_stall_timeout_secs.max(1)),
            retry_deadline: config.cluster.retry_deadline(),
            max_redirects: config.cluster.max_redirects,
            clients: std::sync::atomic::AtomicUsize::new(0),
            dedicated: crate::session::DedicatedQuota::new(
                s.max_dedicated_connections,
                s.max_dedicated_per_user,
            ),
            pubsub: crate::pubsub::PubSubHub::start(cluster.clone()),
            pubsub_queue: s.pubsub_queue_messages,
            registry: Default::default(),
            security: security.clone(),
            read_policy: read_policy.clone(),
            guards: guards.clone(),
            scripts: scripts.clone(),
        });
        // Script identities, built once the command table is known (their rules name
        // only commands the nodes have), then pushed to every node.
        if scripts.isolation() == crate::config::ScriptIsolation::Acl {
            let (cluster, scripts) = (cluster.clone(), scripts.clone());
            tokio::spawn(async move {
                loop {
                    if let (Some(table), Some(_)) =
                        (cluster.commands().as_ref(), cluster.topology().as_ref())
                    {
                        scripts.rebuild(table);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                crate::scripts::sync(cluster, scripts, Vec::new()).await;
            });
        }
        // Replica reads: the lag tracker runs while the proxy does.
        let tracker = read_policy.map(|policy| {
            tracing::info!(
                bounds = policy.bounds.len(),
                "replica reads enabled: measuring replication lag every {} ms",
                policy.poll_interval.as_millis()
            );
            let listener = shutdown.listen();
            tokio::spawn(crate::cluster::replicas::run_tracker(
                cluster.clone(),
                policy,
                async move {
                    listener.above(RUNNING).await;
                },
            ))
        });
        let refresher = {
            let listener = shutdown.listen();
            tokio::spawn(cluster.clone().run_refresher(async move {
                listener.above(RUNNING).await;
            }))
        };
        // The TTL policy's sweeper (idle while no [[ttl]] rule sweeps).
        let sweeper = {
            let listener = shutdown.listen();
            tokio::spawn(crate::guards::sweeper::run(
                cluster.clone(),
                guards.clone(),
                async move {
                    listener.above(RUNNING).await;
                },
            ))
        };
        // `server.max_client_buffer_bytes`: woken when the budget is crossed, disconnects
        // the clients holding the most.
        let evictor = {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                loop {
                    ctx.client_buffers.over.notified().await;
                    // Only an excess that lasts: within one pass of a session the same
                    // bytes may be counted twice for a moment (a large request copied
                    // out of a read buffer whose charge is given back at the end of the
                    // pass), and evicting on that closed an innocent client. Closed
                    // clients give their bytes back at their next pass; others may keep
                    // growing meanwhile: look again until the budget holds.
                    loop {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if ctx.client_buffers.excess() == 0 {
                            break;
                        }
                        ctx.registry.evict_largest(&ctx.client_buffers);
                    }
                }
            })
        };
        let trimmer = {
            let buffers = ctx.client_buffers.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    crate::budget::trim_after_spike(&buffers, 16 << 20);
                }
            })
        };
        let grace = Duration::from_secs(s.shutdown_grace_secs);
        let slots = ClientSlots::new(s.max_clients);
        if let Some(addr) = addr {
            tracing::info!(%addr, "respgate listening");
        }
        if let Some(addr) = tls_addr {
            tracing::info!(%addr, "respgate listening (TLS)");
        }
        let signal = shutdown.clone();
        let accept_slots = slots.clone();
        let task = tokio::spawn(async move {
            accept_loop(plain, tls, ctx, accept_slots, signal, grace).await;
            refresher.abort();
            sweeper.abort();
            evictor.abort();
            trimmer.abort();
            if let Some(t) = tracker {
                t.abort();
            }
        });
        Ok(Proxy {
            addr,
            tls_addr,
            tls: tls_settings,
            cluster,
            shutdown,
            task: Some(task),
            security,
            guards,
            scripts,
            slots,
            running: config,
        })
    }

    /// Applies a reloaded configuration (SIGHUP): users, ACL rules and lockout
    /// settings, guards and TTL policy, the TLS listener's certificates and settings,
    /// and `server.max_clients`. Connections stay up; each picks up the new rules from
    /// its next command, new TLS connections get the new certificate. Everything is
    /// loaded and checked before anything is swapped: on error nothing changes. Every
    /// other setting is read once at start: the answer names those that differ from
    /// the running values (each also logged as a warning), which keep running until a
    /// restart.
    pub fn reload(&self, config: &Config) -> Result<Vec<String>, String> {
        let tls = match (&self.tls, &config.tls) {
            (Some(current), Some(cfg)) => Some(TlsSettings::load(cfg, Some(&current.load()))?),
            (None, None) => None,
            (Some(_), None) => return Err("removing the TLS listener needs a restart".into()),
            (None, Some(_)) => return Err("adding a TLS listener ([tls]) needs a restart".into()),
        };
        crate::guards::validate(&config.guards, &config.ttl)
            .map_err(|(k, m)| format!("{k}: {m}"))?;
        // Guards first, users last: a session that sees the new users (it compares their
        // generation) sees the new guards too.
        self.guards.replace(&config.guards, &config.ttl)?;
        self.security.replace(&config.auth)?;
        // Script identities follow the new users and guards: rebuilt here (new links
        // per identity), pushed to every node, removed users' mirrors deleted.
        let removed = match self.cluster.commands().as_ref() {
            Some(table) => self.scripts.rebuild(table),
            None => Vec::new(),
        };
        if self.scripts.isolation() == crate::config::ScriptIsolation::Acl {
            tokio::spawn(crate::scripts::sync(
                self.cluster.clone(),
                self.scripts.clone(),
                removed,
            ));
        }
        if let (Some(current), Some(settings)) = (&self.tls, tls) {
            current.store(Arc::new(settings));
        }
        self.slots.set_limit(config.server.max_clients);
        tracing::info!(
            max_clients = config.server.max_clients,
            "configuration reloaded: users, ACL rules, lockout, guards, TTL policy, TLS certificates and server.max_clients replaced"
        );
        let restart = crate::reload::needs_restart(&self.running, config);
        if !restart.is_empty() {
            tracing::warn!(
                settings = %restart.join(", "),
                "these settings changed but need a restart: they keep their running values"
            );
        }
        Ok(restart)
    }

    /// The address plain-TCP clients connect to (the TLS address when the plain
    /// listener is disabled).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
            .or(self.tls_addr)
            .expect("Proxy::start refuses a configuration without listeners")
    }

    /// The plain-TCP listener's address, `None` when it is disabled.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// The TLS listener's address, `None` without a `[tls]` section.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Rebuilds the TLS listener's settings from `cfg` (certificate, key, client CA,
    /// `client_auth`, `cert_user`, handshake timeout) and uses them for every connection
    /// accepted from now on; established connections keep their session. The address
    /// cannot change without a restart (`cfg.listen` is ignored). On error nothing
    /// changes and the message names the option and file at fault.
    pub fn reload_tls(&self, cfg: &TlsConfig) -> Result<(), String> {
        let Some(current) = &self.tls else {
            return Err("no TLS listener is running: adding one ([tls]) needs a restart".into());
        };
        current.store(Arc::new(TlsSettings::load(cfg, Some(&current.load()))?));
        tracing::info!(cert = %cfg.cert.display(), "TLS certificates reloaded");
        Ok(())
    }

    /// The cluster state this proxy routes by.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Waits until the command table is loaded and every slot has a master.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let ready = self.cluster.commands().is_some()
                && self
                    .cluster
                    .topology()
                    .as_ref()
                    .is_some_and(|t| t.layout().covered_slots() == crate::cluster::slot::SLOTS);
            if ready {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "respgate not ready after {} ms: cluster not discovered or slots uncovered",
                    timeout.as_millis()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops accepting, lets sessions deliver what is in flight (up to the grace period)
    /// and returns when everything is closed.
    pub async fn shutdown(mut self) {
        self.shutdown.raise(DRAIN);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.raise(STOP);
    }
}

/// Accepts on `listener`, or never when there is none.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(
    plain: Option<TcpListener>,
    tls: Option<(TcpListener, Arc<ArcSwap<TlsSettings>>)>,
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
        let ctx = ctx.clone();
        let shutdown = shutdown.listen();
        let Ok(stream) = Handoff::new(stream) else {
            continue;
        };
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
    drop(plain);
    drop(tls);
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
fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Counts a connected client for as long as it lives, however its session ends.
struct ClientCount(Arc<SessionContext>);

impl ClientCount {
    fn new(ctx: Arc<SessionContext>) -> ClientCount {
        metrics::gauge!("respgate_connected_clients").increment(1.0);
        ctx.clients.fetch_add(1, Ordering::Relaxed);
        ClientCount(ctx)
    }
}

impl Drop for ClientCount {
    fn drop(&mut self) {
        metrics::gauge!("respgate_connected_clients").decrement(1.0);
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
