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
//!
//! Here: [`Proxy`], its start and its reloads. The accept loop and what it does per
//! connection are in `accept.rs`; the tasks that run beside it (topology refresher, lag
//! tracker, TTL sweeper, client-buffer evictor, script identities) in `background.rs`.

mod accept;
mod background;

use crate::acl::Security;
use crate::admission::{ClientSlots, TlsSettings};
use crate::cluster::Cluster;
use crate::config::{Config, TlsConfig};
use crate::protocol::scan::RequestLimits;
use crate::session::{Bounds, SessionContext};
use crate::shutdown::{Shutdown, DRAIN, STOP};
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running respgate. Dropping it closes every connection at once; [`Proxy::shutdown`]
/// drains them first.
pub struct Proxy {
    addr: Option<SocketAddr>,
    tls_addr: Option<SocketAddr>,
    /// The admin listener's address (`[admin]`), `None` when it is off.
    admin_addr: Option<SocketAddr>,
    /// The TLS listener's settings, read once per accepted connection.
    tls: Option<Arc<ArcSwap<TlsSettings>>>,
    cluster: Arc<Cluster>,
    shutdown: Arc<Shutdown>,
    task: Option<JoinHandle<()>>,
    security: Arc<Security>,
    guards: Arc<crate::guards::Guards>,
    scripts: Arc<crate::scripts::Scripts>,
    /// `[compat]` as sessions read it (reloadable).
    cross_slot: Arc<crate::session::CrossSlotSettings>,
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
        let (plain, tls) = bind(&config)?;
        let admin = crate::admin::bind(&config.admin).await?;
        let admin_addr = admin.as_ref().map(TcpListener::local_addr).transpose()?;
        // Before the cluster: the command table's metric handles bind to it. Gauges
        // expire after three periods of their slowest periodic writer.
        let metrics = admin.as_ref().map(|_| {
            crate::admin::install_recorder(crate::admin::idle_after(&[
                Duration::from_secs(config.admin.cluster_metrics_interval_secs),
                Duration::from_millis(config.replica_reads.poll_interval_ms),
            ]))
        });
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
        let read_policy = crate::cluster::replicas::ReadPolicy::new(&config.replica_reads);
        let ctx = session_context(
            &config,
            &cluster,
            &security,
            &read_policy,
            &guards,
            &scripts,
        );
        let cross_slot = ctx.cross_slot.clone();
        let mut background = background::spawn(&ctx, &scripts, read_policy.clone(), &shutdown);
        if let (Some(listener), Some(metrics)) = (admin, metrics) {
            background.extend(crate::admin::spawn(
                listener,
                admin_state(&config, &ctx, read_policy, &shutdown, metrics),
            ));
            // Cluster metrics (INFO ALL per node, off the request path) are exported by
            // the admin listener, so they are collected only when it runs.
            let every = config.admin.cluster_metrics_interval_secs;
            if every > 0 {
                let collector = crate::cluster::stats::spawn_collector(
                    cluster.clone(),
                    Duration::from_secs(every),
                );
                background.push(collector.abort_handle());
            }
        }
        let s = &config.server;
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
            accept::accept_loop(plain, tls, ctx, accept_slots, signal, grace).await;
            for task in background {
                task.abort();
            }
        });
        Ok(Proxy {
            addr,
            tls_addr,
            admin_addr,
            tls: tls_settings,
            cluster,
            shutdown,
            task: Some(task),
            security,
            guards,
            scripts,
            cross_slot,
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
        self.cross_slot.apply(&config.compat, &config.auth);
        tracing::info!(
            max_clients = config.server.max_clients,
            "configuration reloaded: users, ACL rules, lockout, guards, TTL policy, TLS certificates, server.max_clients and [compat] replaced"
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

    /// The admin listener's address, `None` without `[admin] listen`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
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

/// The TLS listener and its settings, swapped whole by a reload.
type TlsListener = (TcpListener, Arc<ArcSwap<TlsSettings>>);

/// The listeners of `config`: the plain one (none when `server.listen` is `""`) and the
/// TLS one with its swappable settings; an error when there is neither.
fn bind(config: &Config) -> std::io::Result<(Option<TcpListener>, Option<TlsListener>)> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let plain = match config.server.listen.as_str() {
        "" => None,
        addr => Some(accept::listen(addr)?),
    };
    let tls = match &config.tls {
        Some(t) => {
            let settings = TlsSettings::load(t, None).map_err(invalid)?;
            Some((
                accept::listen(&t.listen)?,
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
    Ok((plain, tls))
}

/// What every session shares: the cluster, the limits of `[server]`, the policies.
/// What the admin endpoints read of the running proxy.
fn admin_state(
    config: &Config,
    ctx: &Arc<SessionContext>,
    read_policy: Option<Arc<crate::cluster::replicas::ReadPolicy>>,
    shutdown: &Arc<Shutdown>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> crate::admin::AdminState {
    let sessions = ctx.clone();
    crate::admin::AdminState {
        cluster: ctx.cluster.clone(),
        read_policy,
        shutdown: shutdown.clone(),
        metrics,
        token: config
            .admin
            .bearer_token()
            .map(|t| crate::admin::TokenDigest::of(t.as_bytes())),
        ready: Default::default(),
        clients: Box::new(move || sessions.clients.load(std::sync::atomic::Ordering::Relaxed)),
        client_buffers: ctx.client_buffers.clone(),
        security: ctx.security.clone(),
    }
}

fn session_context(
    config: &Config,
    cluster: &Arc<Cluster>,
    security: &Arc<Security>,
    read_policy: &Option<Arc<crate::cluster::replicas::ReadPolicy>>,
    guards: &Arc<crate::guards::Guards>,
    scripts: &Arc<crate::scripts::Scripts>,
) -> Arc<SessionContext> {
    let s = &config.server;
    let client_buffers = crate::budget::ClientBuffers::new(s.max_client_buffer_bytes);
    Arc::new(SessionContext {
        cluster: cluster.clone(),
        bounds: Bounds {
            limits: RequestLimits {
                max_bulk: s.max_bulk_bytes,
                max_request: s.max_request_bytes,
                pre_auth: false,
            },
            output_limits: crate::budget::OutputLimits {
                replies: s.max_pending_reply_bytes,
                messages: s.pubsub_queue_bytes,
            },
            max_pending: s.max_pending_replies,
            max_transaction: s.max_transaction_bytes,
            max_client_name: s.max_client_name_bytes,
            idle_timeout: (s.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(s.idle_timeout_secs)),
            stall_timeout: Duration::from_secs(s.output_stall_timeout_secs.max(1)),
            retry_deadline: config.cluster.retry_deadline(),
            max_redirects: config.cluster.max_redirects,
            pubsub_queue: s.pubsub_queue_messages,
        },
        client_buffers,
        clients: std::sync::atomic::AtomicUsize::new(0),
        dedicated: crate::session::DedicatedQuota::new(
            s.max_dedicated_connections,
            s.max_dedicated_per_user,
        ),
        pubsub: crate::pubsub::PubSubHub::start(cluster.clone()),
        registry: Default::default(),
        security: security.clone(),
        read_policy: read_policy.clone(),
        guards: guards.clone(),
        scripts: scripts.clone(),
        pause: Default::default(),
        cross_slot: Arc::new(crate::session::CrossSlotSettings::new(
            &config.compat,
            &config.auth,
        )),
    })
}
