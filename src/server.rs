//! The listener: accepts clients within the connection limit, runs a session for each,
//! and drains them on shutdown.
//!
//! [`Proxy`] is the whole running respgate (listener, topology refresher, sessions); the
//! binary, `respgate dev` and the integration tests all start it the same way.

use crate::acl::Security;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::protocol::scan::RequestLimits;
use crate::session::{self, ClientMeta, SessionContext};
use crate::shutdown::{Shutdown, DRAIN, RUNNING, STOP};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

/// Redis's reply when `maxclients` is reached.
const MAX_CLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

/// A running respgate. Dropping it closes every connection at once; [`Proxy::shutdown`]
/// drains them first.
pub struct Proxy {
    addr: SocketAddr,
    cluster: Arc<Cluster>,
    shutdown: Arc<Shutdown>,
    task: Option<JoinHandle<()>>,
    security: Arc<Security>,
}

impl Proxy {
    /// Binds `config.server.listen` and starts serving. Discovery runs in the background:
    /// until it succeeds, requests are answered with `-CLUSTERDOWN`.
    pub async fn start(config: Config) -> std::io::Result<Proxy> {
        let listener = listen(&config.server.listen)?;
        let addr = listener.local_addr()?;
        let cluster = Cluster::new(config.cluster.clone());
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
        let s = &config.server;
        let ctx = Arc::new(SessionContext {
            cluster: cluster.clone(),
            limits: RequestLimits {
                max_bulk: s.max_bulk_bytes,
                max_request: s.max_request_bytes,
            },
            max_pending: s.max_pending_replies,
            idle_timeout: (s.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(s.idle_timeout_secs)),
            stall_timeout: Duration::from_secs(s.output_stall_timeout_secs.max(1)),
            retry_deadline: config.cluster.retry_deadline(),
            max_redirects: config.cluster.max_redirects,
            clients: std::sync::atomic::AtomicUsize::new(0),
            dedicated_slots: Arc::new(Semaphore::new(s.max_dedicated_connections)),
            max_dedicated: s.max_dedicated_connections,
            pubsub: crate::pubsub::PubSubHub::start(cluster.clone()),
            pubsub_queue: s.pubsub_queue_messages,
            registry: Default::default(),
            security: security.clone(),
        });
        let refresher = {
            let listener = shutdown.listen();
            tokio::spawn(cluster.clone().run_refresher(async move {
                listener.above(RUNNING).await;
            }))
        };
        let grace = Duration::from_secs(s.shutdown_grace_secs);
        let max_clients = s.max_clients;
        tracing::info!(%addr, "respgate listening");
        let signal = shutdown.clone();
        let task = tokio::spawn(async move {
            accept_loop(listener, ctx, max_clients, signal, grace).await;
            refresher.abort();
        });
        Ok(Proxy {
            addr,
            cluster,
            shutdown,
            task: Some(task),
            security,
        })
    }

    /// Applies a reloaded configuration's users and rules (SIGHUP). Connections stay up;
    /// each picks the change up from its next command. On error nothing changes.
    pub fn reload(&self, config: &Config) -> Result<(), String> {
        self.security.replace(&config.auth)?;
        tracing::info!("configuration reloaded: users and ACL rules replaced");
        Ok(())
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<SessionContext>,
    max_clients: usize,
    shutdown: Arc<Shutdown>,
    grace: Duration,
) {
    let stop = shutdown.listen();
    let slots = Arc::new(Semaphore::new(max_clients));
    let tracker = TaskTracker::new();
    let next_id = AtomicU64::new(1);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("respgate_clients_rejected_total", "reason" => "max_clients")
                .increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let meta = ClientMeta {
            id: next_id.fetch_add(1, Ordering::Relaxed),
            peer,
            local: stream.local_addr().unwrap_or(peer),
            connected_at: Instant::now(),
            cert_identity: None,
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.listen();
        tracker.spawn(async move {
            let _counted = ClientCount::new(ctx.clone());
            let mut stream = stream;
            let (rd, wr) = stream.split();
            session::run(rd, wr, meta, ctx, shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
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
