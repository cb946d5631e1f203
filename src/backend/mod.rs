//! Backend links: a few multiplexed, pipelined connections per Redis node, shared by
//! every client.
//!
//! Mechanism only. A [`Node`] owns `connections_per_node` link tasks; a client always uses
//! the same link of a node (`client_id % n`), so its requests to that node execute in the
//! order it sent them. Each link task owns its socket and its in-flight FIFO outright:
//! the writer side coalesces every queued request into one buffer (one syscall for many
//! requests), the reader side frames replies ([`framing`]: resuming where the last read
//! stopped, bounded by `cluster.max_reply_bytes`) and hands each back as a zero-copy
//! slice of the read buffer. Nothing here is locked per request.
//!
//! Policy (what a MOVED means, whether to retry) belongs to the session: a link only
//! reports what happened to each request ([`LinkError`]) and asks the cluster for a
//! topology refresh when its connection fails.
//!
//! Here: the handles ([`Node`], [`DedicatedLink`]) and what travels to a link ([`Job`],
//! [`LinkOptions`]). The link task, its write/read loop and its request timeout are in
//! `link.rs`; opening a connection and its handshake in `connect.rs`; reply framing in
//! `framing.rs`; the replication lag kept per node in `lag.rs`.

mod connect;
mod framing;
mod inflight;
pub mod lag;
mod link;
pub mod ready;
pub mod reply;

pub(crate) use connect::connect;
use link::run_link;
pub(crate) use link::write_or_flush;

use crate::tls::UpstreamTls;
use bytes::Bytes;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// What happened to a request that got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// Never written to the node (it could not be reached): safe to retry.
    NotSent(String),
    /// Written, then the connection was lost: it may or may not have run.
    Lost(String),
    /// Written, and the node did not answer within the request timeout.
    TimedOut(String),
    /// Never written: the node refused the identity the connection must run as (a
    /// user's script identity, see [`NodeIdentity`]). Not retried: it will not change
    /// until the node's or respgate's configuration does.
    Refused(String),
}

/// A node user that some requests run as instead of respgate's own (a client's script
/// identity). The link authenticates as respgate first, sends `setup` (the user's
/// `ACL SETUSER`, so a node that joined or restarted has it before it serves the user),
/// then `AUTH user secret`. If any step is refused the connection is not used: a
/// request meant for this identity never runs as respgate.
#[derive(Debug)]
pub struct NodeIdentity {
    pub user: Arc<str>,
    pub secret: String,
    pub setup: Option<Bytes>,
    /// Replaced by a reload: its links close, and none connects again (a reconnect
    /// would send its `setup`, putting the user's old rules back on the node).
    pub retired: std::sync::atomic::AtomicBool,
}

impl NodeIdentity {
    pub fn new(user: &str, secret: String, setup: Option<Bytes>) -> NodeIdentity {
        NodeIdentity {
            user: Arc::from(user),
            secret,
            setup,
            retired: Default::default(),
        }
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Marks the identity replaced (see [`NodeIdentity::retired`]).
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The reply to one request: the raw reply bytes, or why there is none.
pub type ReplyResult = Result<Bytes, LinkError>;

/// One request for a link: bytes already in RESP, forwarded as they are.
pub struct Job {
    pub bytes: Bytes,
    /// Send `ASKING` right before it on the same connection (an ASK redirection).
    pub asking: bool,
    /// Send on a connection that speaks RESP3 (the client said HELLO 3), so replies come
    /// back in the client's protocol.
    pub resp3: bool,
    /// How many replies `bytes` produces (1, or N+2 for `MULTI`, N commands, `EXEC`
    /// written as one job so no other client's request can come between them). They
    /// are handed back together, as one contiguous slice.
    pub replies: u32,
    pub reply: reply::ReplyTx,
    /// The client's reply bytes (`None` for respgate's own requests): the link counts
    /// each reply it hands over, the session takes it back ([`crate::budget`]).
    pub budget: Option<Arc<crate::budget::OutputBytes>>,
    /// One part of a request split over several nodes: the bytes of that request's
    /// parts held ([`crate::budget::OutputBytes::hand_part`]).
    pub part_of: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

/// How links connect and how long they wait.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Send `READONLY` after connecting (links to replicas).
    pub readonly: bool,
    /// A connection owned by one client (blocking commands): no request timeout (BLPOP
    /// may wait forever) and closed as soon as its owner lets go of it, which is what
    /// unblocks the node when that client disconnects.
    pub dedicated: bool,
    /// Send `HELLO 3` after connecting: replies in RESP3.
    pub resp3: bool,
    /// Speak TLS to the nodes (`[cluster.tls]`).
    pub tls: Option<UpstreamTls>,
    /// Ask the node for the connection's `CLIENT ID` after connecting and keep it here
    /// (dedicated links: CLIENT UNBLOCK names the blocked connection by it).
    pub client_id: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// Run as this node user after authenticating as respgate ([`NodeIdentity`]).
    pub identity: Option<Arc<NodeIdentity>>,
    /// Largest reply (or run of replies of one job) buffered (`cluster.max_reply_bytes`,
    /// see [`framing`]).
    pub max_reply_bytes: usize,
}

impl LinkOptions {
    /// The `AUTH [user] password` to send first, when a password is configured.
    pub fn auth_command(&self) -> Option<Bytes> {
        let password = self.password.as_deref()?;
        Some(match &self.username {
            Some(user) => crate::protocol::reply::command(["AUTH", user.as_str(), password]),
            None => crate::protocol::reply::command(["AUTH", password]),
        })
    }
}

/// A Redis node as respgate reaches it.
pub struct Node {
    addr: Arc<str>,
    links: Box<[mpsc::UnboundedSender<Job>]>,
    /// The same for RESP3 clients (connections that said HELLO 3).
    links3: Box<[mpsc::UnboundedSender<Job>]>,
    /// Links that sent `READONLY` (RESP2, RESP3), for replica reads only: the shared
    /// links never do, so a node demoted to replica answers their reads with MOVED
    /// instead of serving them possibly stale.
    links_ro: Box<[mpsc::UnboundedSender<Job>]>,
    links_ro3: Box<[mpsc::UnboundedSender<Job>]>,
    /// Replication lag measured by the replica-read tracker (when this is a replica).
    lag: lag::Lag,
    /// Links that run as a client's script identity ([`Node::send_as`]), opened on first
    /// use per identity; an entry whose identity was retired (reload) is pruned when the
    /// next one is added.
    identity_links: arc_swap::ArcSwap<Vec<IdentityLinks>>,
    /// Serialises adding to `identity_links` (rare: once per identity and node).
    identity_lock: std::sync::Mutex<()>,
    /// How links connect, for the identity links opened later.
    opts: LinkOptions,
    on_failure: Arc<Notify>,
    /// Shared-pool and identity links connected right now (the link tasks count
    /// themselves in and out on connect and loss; the admin endpoint reads it at scrape
    /// time: `respgate_backend_links_connected`).
    links_up: Arc<LinkState>,
}

/// What a node's link tasks share: how many are connected, and one throttle for their
/// connect-failure warning (a dead node logs once per interval, not once per link).
#[derive(Default)]
pub(crate) struct LinkState {
    pub(crate) up: AtomicUsize,
    pub(crate) failures: std::sync::Mutex<crate::logging::throttle::Throttle>,
}

/// One identity's links to a node (RESP2 and RESP3 sets, one link per worker each).
struct IdentityLinks {
    identity: Arc<NodeIdentity>,
    links: Box<[mpsc::UnboundedSender<Job>]>,
    links3: Box<[mpsc::UnboundedSender<Job>]>,
}

/// Starts `per_worker` link tasks per worker thread for `addr` with `opts`, laid out
/// worker by worker (see `crate::workers`); they connect on first use.
fn spawn_link_set(
    addr: &Arc<str>,
    per_worker: usize,
    opts: LinkOptions,
    on_failure: &Arc<Notify>,
    links_up: &Arc<LinkState>,
) -> Box<[mpsc::UnboundedSender<Job>]> {
    let opts = Arc::new(opts);
    let total = crate::workers::links_per_node(per_worker);
    (0..total)
        .map(|i| {
            let (tx, rx) = mpsc::unbounded_channel();
            crate::workers::spawn_on(
                crate::workers::worker_of_link(i, total),
                run_link(
                    addr.clone(),
                    opts.clone(),
                    rx,
                    on_failure.clone(),
                    links_up.clone(),
                ),
            );
            tx
        })
        .collect()
}

impl Node {
    /// Starts `links` link tasks for `addr` per worker thread (they connect on first use). `on_failure` is
    /// notified whenever a connection to this node fails, so the topology is refreshed.
    pub fn spawn(addr: &str, links: usize, opts: LinkOptions, on_failure: Arc<Notify>) -> Node {
        let addr: Arc<str> = Arc::from(addr);
        let links_up = Arc::new(LinkState::default());
        let spawn_links = |resp3: bool, readonly: bool| {
            let opts = LinkOptions {
                resp3,
                readonly,
                ..opts.clone()
            };
            spawn_link_set(&addr, links, opts, &on_failure, &links_up)
        };
        // Links connect on first use: the RESP3 set costs two idle tasks until a RESP3
        // client shows up.
        let (links, links3) = (spawn_links(false, false), spawn_links(true, false));
        let (links_ro, links_ro3) = (spawn_links(false, true), spawn_links(true, true));
        Node {
            addr,
            links,
            links3,
            links_ro,
            links_ro3,
            lag: Default::default(),
            identity_links: Default::default(),
            identity_lock: Default::default(),
            opts,
            on_failure,
            links_up,
        }
    }

    /// This node's shared and identity links connected right now (dedicated links of
    /// blocking clients are not counted).
    pub fn links_connected(&self) -> usize {
        self.links_up.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues `job` on a link that runs as `identity` (a client's script identity),
    /// opening this node's links for it on first use. Not a per-request path of plain
    /// commands: only scripts and transactions that hold one come here.
    pub fn send_as(&self, identity: &Arc<NodeIdentity>, client_id: u64, job: Job) {
        if identity.is_retired() {
            let why = format!(
                "{}: identity {} retired by a reload",
                self.addr, identity.user
            );
            let _ = job.reply.send(Err(LinkError::Refused(why)));
            return;
        }
        let current = self.identity_links.load();
        if let Some(set) = current.iter().find(|l| Arc::ptr_eq(&l.identity, identity)) {
            let links = if job.resp3 { &set.links3 } else { &set.links };
            return self.send_on(links, client_id, job);
        }
        drop(current);
        {
            let _adding = self.identity_lock.lock().unwrap_or_else(|p| p.into_inner());
            let current = self.identity_links.load_full();
            if !current.iter().any(|l| Arc::ptr_eq(&l.identity, identity)) {
                let spawn = |resp3: bool| {
                    let opts = LinkOptions {
                        resp3,
                        readonly: false,
                        identity: Some(identity.clone()),
                        ..self.opts.clone()
                    };
                    spawn_link_set(&self.addr, 1, opts, &self.on_failure, &self.links_up)
                };
                // Retired identities' links are dropped here: their tasks close once
                // their last reply is delivered.
                let mut next: Vec<IdentityLinks> = current
                    .iter()
                    .filter(|l| !l.identity.is_retired())
                    .map(|l| IdentityLinks {
                        identity: l.identity.clone(),
                        links: l.links.clone(),
                        links3: l.links3.clone(),
                    })
                    .collect();
                next.push(IdentityLinks {
                    identity: identity.clone(),
                    links: spawn(false),
                    links3: spawn(true),
                });
                self.identity_links.store(Arc::new(next));
            }
        }
        self.send_as(identity, client_id, job)
    }

    /// Replication lag measurements (replica reads).
    pub fn lag(&self) -> &lag::Lag {
        &self.lag
    }

    /// `host:port` of the node.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Queues `job` on the link that serves `client_id`. If the link task is gone the job
    /// is answered at once with [`LinkError::NotSent`].
    pub fn send(&self, client_id: u64, job: Job) {
        let links = if job.resp3 { &self.links3 } else { &self.links };
        self.send_on(links, client_id, job);
    }

    /// Like [`Node::send`], on a link that sent `READONLY` (reads from a replica).
    pub fn send_readonly(&self, client_id: u64, job: Job) {
        let links = if job.resp3 {
            &self.links_ro3
        } else {
            &self.links_ro
        };
        self.send_on(links, client_id, job);
    }

    /// Queues one request (one reply) on the link that serves `client_id` (control-plane
    /// tasks speaking for a client); the reply arrives on the receiver ([`answer`]).
    pub fn request(&self, client_id: u64, resp3: bool, bytes: Bytes) -> reply::ReplyRx {
        self.request_replies(client_id, resp3, bytes, 1)
    }

    /// [`Node::request`] for `bytes` that produce `replies` replies (a pipeline),
    /// handed back together.
    pub fn request_replies(
        &self,
        client_id: u64,
        resp3: bool,
        bytes: Bytes,
        replies: u32,
    ) -> reply::ReplyRx {
        let (tx, rx) = reply::channel();
        self.send(
            client_id,
            Job {
                bytes,
                asking: false,
                resp3,
                replies,
                reply: tx,
                budget: None,
                part_of: None,
            },
        );
        rx
    }

    /// [`Node::request`] and its [`answer`].
    pub async fn ask(&self, client_id: u64, resp3: bool, bytes: Bytes) -> Result<Bytes, String> {
        answer(self.request(client_id, resp3, bytes)).await
    }

    fn send_on(&self, links: &[mpsc::UnboundedSender<Job>], client_id: u64, job: Job) {
        // On a worker thread, one of that worker's own links: the request never leaves
        // the thread (see `crate::workers`).
        let link = &links[crate::workers::link_index(links.len(), client_id)];
        if let Err(mpsc::error::SendError(job)) = link.send(job) {
            let _ = job.reply.send(Err(LinkError::NotSent(format!(
                "{} link closed",
                self.addr
            ))));
        }
    }
}

/// The reply a [`Node::request`] got, or why there is none, in words.
pub async fn answer(rx: reply::ReplyRx) -> Result<Bytes, String> {
    match rx.await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(
            LinkError::NotSent(why)
            | LinkError::Lost(why)
            | LinkError::TimedOut(why)
            | LinkError::Refused(why),
        )) => Err(why),
        Err(_) => Err("backend link dropped".into()),
    }
}

/// One client's own connection to a node (see [`LinkOptions::dedicated`]).
pub struct DedicatedLink {
    addr: Arc<str>,
    tx: mpsc::UnboundedSender<Job>,
    resp3: bool,
    /// The connection's `CLIENT ID` on the node (-1 until connected).
    backend_id: Arc<std::sync::atomic::AtomicI64>,
    /// The identity the connection runs as (`None`: respgate's own).
    identity: Option<Arc<NodeIdentity>>,
}

impl DedicatedLink {
    /// Starts a link task for `addr` with `opts` (`dedicated` is forced on).
    pub fn spawn(addr: &str, mut opts: LinkOptions, on_failure: Arc<Notify>) -> DedicatedLink {
        opts.dedicated = true;
        let backend_id = Arc::new(std::sync::atomic::AtomicI64::new(-1));
        opts.client_id = Some(backend_id.clone());
        let resp3 = opts.resp3;
        let identity = opts.identity.clone();
        let addr: Arc<str> = Arc::from(addr);
        let (tx, rx) = mpsc::unbounded_channel();
        // Not counted in a node's connected links nor throttled with them: one client's own.
        let uncounted = Arc::new(LinkState::default());
        tokio::spawn(run_link(
            addr.clone(),
            Arc::new(opts),
            rx,
            on_failure,
            uncounted,
        ));
        DedicatedLink {
            addr,
            tx,
            resp3,
            backend_id,
            identity,
        }
    }

    /// Whether the link runs as `identity` (`None`: as respgate).
    pub fn runs_as(&self, identity: Option<&Arc<NodeIdentity>>) -> bool {
        match (&self.identity, identity) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The node's `CLIENT ID` for this connection, shared (-1 until it connects).
    pub fn backend_id(&self) -> Arc<std::sync::atomic::AtomicI64> {
        self.backend_id.clone()
    }

    /// Whether the link speaks RESP3.
    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// Queues `job`; answered at once with [`LinkError::NotSent`] if the link is gone.
    pub fn send(&self, job: Job) {
        if let Err(mpsc::error::SendError(job)) = self.tx.send(job) {
            let _ = job.reply.send(Err(LinkError::NotSent(format!(
                "{} link closed",
                self.addr
            ))));
        }
    }
}
