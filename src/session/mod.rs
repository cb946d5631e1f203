//! One client connection: frame its requests, route each, and write the replies back in
//! the order the requests came.
//!
//! A session is a single task that owns its socket halves, its read buffer, its output
//! buffer and its queue of pending replies ([`Pending`]), so nothing here is shared or
//! locked. Each request becomes one entry in the queue: a reply respgate composed itself,
//! or a oneshot receiver for the backend's reply. Replies are written strictly in queue
//! order, whichever backend answers first, so a reply can never reach the wrong request.
//! Redirections (MOVED, ASK) and retryable failures (TRYAGAIN, CLUSTERDOWN, a node that
//! could not be reached) are handled when the entry reaches the head of the queue, which
//! keeps the client's own ordering even across a slot migration.
//!
//! Bounds: the read buffer never holds more than one request beyond `max_request_bytes`
//! (before login, Redis's small limits: 10 arguments of 16 KiB); at `max_pending_replies`
//! or `max_pending_reply_bytes` the session stops reading (back-pressure); a client
//! holding twice that many reply bytes, or that does not read its replies for
//! `output_stall_timeout_secs`, is disconnected ([`crate::budget`], `buffers.rs`).

mod auth;
mod buffers;
mod client_scope;
use crate::clients;
mod config_get;
mod config_set;
mod dedicated;
mod hedge;
mod local;
pub mod merge;
mod outgoing;
mod random_key;
mod routing;
mod safe_keys;
mod subscribe;
mod transaction;

pub use dedicated::Quota as DedicatedQuota;

use crate::backend::{DedicatedLink, ReplyResult};
use crate::cluster::Cluster;
use crate::protocol::reply;
use crate::protocol::scan::{scan_request, split_inline, ProtocolError, Request, RequestLimits};
use crate::shutdown::{ShutdownListener, RUNNING, STOP};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

/// Settings and shared state every session reads.
pub struct SessionContext {
    pub cluster: Arc<Cluster>,
    pub limits: RequestLimits,
    /// Per-client byte bounds (`max_pending_reply_bytes`, `pubsub_queue_bytes`).
    pub output_limits: crate::budget::OutputLimits,
    /// The process-wide budget for client buffers (`max_client_buffer_bytes`).
    pub client_buffers: Arc<crate::budget::ClientBuffers>,
    pub max_pending: usize,
    /// `server.max_transaction_bytes`: bytes one transaction may queue.
    pub max_transaction: usize,
    /// `server.max_client_name_bytes`: the longest client name.
    pub max_client_name: usize,
    pub idle_timeout: Option<Duration>,
    pub stall_timeout: Duration,
    pub retry_deadline: Duration,
    pub max_redirects: u32,
    /// Connected clients (for INFO's Proxy section).
    pub clients: std::sync::atomic::AtomicUsize,
    /// Bounds on clients' own backend connections (blocking commands, WATCH), for all
    /// and per user.
    pub dedicated: dedicated::Quota,
    /// The shared pub/sub subscription.
    pub pubsub: crate::pubsub::PubSubHub,
    /// Messages a subscriber may have queued before it is disconnected.
    pub pubsub_queue: usize,
    /// Every connected client (CLIENT LIST / KILL).
    pub registry: clients::ClientRegistry,
    /// Users and their permissions (swapped on reload), lockout counters.
    pub security: Arc<crate::acl::Security>,
    /// `[replica_reads]`, when any read may go to a replica.
    pub read_policy: Option<Arc<crate::cluster::replicas::ReadPolicy>>,
    /// Guard rules and the TTL policy (swapped on reload).
    pub guards: Arc<crate::guards::Guards>,
    /// How scripts run under their caller's rules (mirrors rebuilt on reload).
    pub scripts: Arc<crate::scripts::Scripts>,
}

/// Who the client is, for CLIENT INFO / ID and logs.
pub struct ClientMeta {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub connected_at: Instant,
    /// Connected through the TLS listener.
    pub tls: bool,
    /// The name a verified client certificate stands for (its CN or SAN, per `[tls]
    /// cert_user`); `None` without TLS or without a client certificate.
    pub cert_identity: Option<String>,
    /// The client presented a certificate the TLS listener verified.
    pub client_cert: bool,
}

/// Per-connection state that commands can change.
pub struct ClientState {
    pub meta: ClientMeta,
    /// Commands queued since MULTI.
    pub tx: Option<Transaction>,
    /// Channels and patterns subscribed to (subscribed mode while `Some`).
    pub subs: Option<Box<subscribe::Subscriptions>>,
    /// This client in the registry CLIENT LIST reads.
    pub entry: Arc<clients::ClientEntry>,
    /// The client said HELLO 3: replies in RESP3.
    pub resp3: bool,
    /// The slot of the keys WATCHed on the client's pinned connection.
    pub watch_slot: Option<u16>,
    /// The identity that pinned connection runs as (the user's script identity at
    /// WATCH, so a script queued in the transaction runs as the caller; kept across a
    /// later AUTH, as the WATCH itself is).
    pub watch_identity: Option<Arc<crate::backend::NodeIdentity>>,
    /// CLIENT REPLY.
    pub reply: ReplyMode,
    /// Who the client authenticated as.
    pub auth: auth::SessionAuth,
    /// The guards as this session last read them.
    pub guards: crate::guards::GuardCache,
    /// Read-your-writes: per shard master, this client's writes in flight and when the
    /// last one was answered (ms, `replicas::now_ms`).
    pub ryw: Vec<RywEntry>,
}

/// One shard master's read-your-writes state for a client.
pub struct RywEntry {
    /// The master, by its `Arc<Node>` address.
    pub master: usize,
    pub in_flight: u32,
    pub answered_ms: u64,
}

/// CLIENT REPLY's state, as the session applies it to each request's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// The CLIENT REPLY SKIP request itself (no reply), then the next one.
    SkipThis,
    SkipNext,
}

/// A transaction being queued: sent as one job (`MULTI`, the commands, `EXEC`) to the
/// master of its slot when EXEC arrives, so no other client's request can come between.
#[derive(Default)]
pub struct Transaction {
    pub queued: Vec<Bytes>,
    /// The slot of the keys queued so far (all must share it, as in Redis Cluster).
    pub slot: Option<u16>,
    /// A queued command was refused: EXEC answers EXECABORT.
    pub aborted: bool,
    /// A queued script runs as this identity: the whole transaction does.
    pub run_as: Option<Arc<crate::backend::NodeIdentity>>,
    /// The TTL policy's EXPIREs for the covered keys written, sent before EXEC.
    pub expires: crate::guards::ttl::PendingExpires,
    /// The bytes of `queued`, taken from the process budget (given back when the
    /// transaction is dropped).
    pub charge: Option<crate::budget::Charge>,
}

impl ClientState {
    /// The CLIENT INFO line.
    pub fn info_line(&self) -> String {
        self.entry
            .info_line(self.tx.as_ref().map(|t| t.queued.len()))
    }

    /// A refused command inside MULTI: EXEC will answer EXECABORT.
    pub fn abort_transaction(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            tx.aborted = true;
        }
    }

    /// CLIENT SETNAME / HELLO SETNAME / RESET. The name lives in the registry entry,
    /// where CLIENT LIST reads it too.
    pub fn set_name(&mut self, name: Option<Bytes>) {
        self.entry.set_name(name);
    }
}

/// A reply the client is owed, in request order.
enum Pending {
    /// Composed by respgate, ready to write.
    Ready(Bytes),
    /// Forwarded to a backend.
    Remote(Remote),
    /// Split over several shards (or sent to every master); merged when all answered.
    Split(Box<Split>),
    /// A subscription reply, written once the hub confirms the subscription is active.
    Waiting(oneshot::Receiver<()>, Bytes),
    /// CLIENT REPLY OFF / SKIP: the next entry's reply is not written.
    MuteNext,
    /// Computed by a task of its own (CONFIG SET); nothing after it is dispatched until
    /// it is done.
    Task(oneshot::Receiver<Bytes>),
    /// A request waiting for its shared guard budget (`None`: passed, route it; else
    /// the refusal). Nothing after it is dispatched until it is done.
    Gate(oneshot::Receiver<Option<Bytes>>, Bytes),
    /// A routed request held until every earlier request is answered, because it goes
    /// on another connection than requests still in flight ([`Session::must_hold`]).
    /// Nothing after it is dispatched until it is sent.
    Held(Box<Held>),
}

/// A routing decision waiting for the client's earlier requests to finish.
struct Held {
    decision: routing::Route,
    raw: Bytes,
    arrived: Instant,
}

struct Split {
    parts: Vec<Remote>,
    done: Vec<Option<Bytes>>,
    merge: merge::Merge,
    started: Instant,
    latency: metrics::Histogram,
    /// Bytes of this request's parts handed over and still counted (shared with the
    /// links: parts of one request are not a pile, [`crate::budget`]).
    part_of: Arc<std::sync::atomic::AtomicUsize>,
    /// Bytes of the parts in `done` (`None` once over `cluster.max_reply_bytes`: parts
    /// are dropped as they come and the reply is an error).
    kept: Option<usize>,
    /// Of those, the bytes still counted against the client: given back once merged.
    counted: usize,
}

struct Remote {
    rx: oneshot::Receiver<ReplyResult>,
    /// The request as forwarded (kept for redirections and retries: a cheap `Bytes` clone).
    request: Bytes,
    /// The slot the request routes by (`None`: keyless, any master).
    slot: Option<u16>,
    redirects: u32,
    retries: u32,
    started: Instant,
    /// Set while waiting out a retry backoff.
    retry_at: Option<Instant>,
    latency: metrics::Histogram,
    /// Replies the request produces (N+2 for a transaction sent as one job).
    replies: u32,
    /// Sent on this client's own connection, and why (blocking commands, WATCH).
    dedicated: Option<dedicated::Pin>,
    /// Sent to this replica (replica reads): errors send it to the master instead.
    replica: Option<Arc<crate::backend::Node>>,
    /// A replica read's hedge: when the master is asked too, and its reply.
    hedge: hedge::Hedge,
    /// The lag bound a replica may serve it under (re-checked when it is re-sent).
    bound: Option<u8>,
    /// A transaction: elements at the end of EXEC's reply that answer respgate's own
    /// queued commands (the TTL policy's EXPIREs), taken out before the client sees it.
    hidden: u32,
    /// A write tracked for read-your-writes: the master it went to.
    ryw_master: Option<usize>,
    /// Runs on the node as this identity (a script, or a transaction holding one).
    run_as: Option<Arc<crate::backend::NodeIdentity>>,
    /// A script call: how its replies are trusted ([`crate::cluster::redirect`]).
    script: Option<Box<ScriptCall>>,
    /// One part of a split request: its parts' bytes held ([`Split::part_of`]).
    part_of: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// A large request, kept in an allocation of its own: counted against the client
    /// and the process until the entry goes ([`REQUEST_COUNTED_MIN`]).
    _charge: Option<crate::budget::HeldRequest>,
}

/// A script call in flight. Its error replies are data: only a MOVED for its own slot
/// that a newer topology confirms makes respgate send it again.
#[derive(Default)]
struct ScriptCall {
    /// The master it was last sent to.
    sent_to: Option<String>,
    /// A MOVED waiting for a newer topology: the reply, and the discoveries counted
    /// when it came.
    moved: Option<(Bytes, u64)>,
    /// The verdict on that MOVED is in: the reply now waiting is final as it is.
    settled: bool,
}

/// Which kind of backend connection a request goes on. Two connections give no order
/// between them, so a request on another kind than requests in flight waits for them
/// ([`Session::must_hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// The shared links of the client's worker.
    Shared,
    /// The client's own connection (blocking commands, WATCH).
    Own,
    /// The links that run as the client's script identity.
    Identity,
}

/// A lane and, for [`Lane::Identity`], which identity (links of two identities give no
/// order between them either: a client that re-authenticated as another user).
type LaneKey = (Lane, usize);

impl Lane {
    fn of(dedicated: bool, identity: Option<&Arc<crate::backend::NodeIdentity>>) -> LaneKey {
        match (dedicated, identity) {
            (true, id) => (Lane::Own, id.map_or(0, |id| Arc::as_ptr(id) as usize)),
            (false, Some(id)) => (Lane::Identity, Arc::as_ptr(id) as usize),
            (false, None) => (Lane::Shared, 0),
        }
    }
}

impl Remote {
    fn lane(&self) -> LaneKey {
        Lane::of(self.dedicated.is_some(), self.run_as.as_ref())
    }
}

/// What the head of the queue produced (for a split request: which part).
enum HeadEvent {
    Reply(usize, ReplyResult),
    RetryDue(usize),
    /// A replica read has not been answered within `hedge_after_ms`.
    HedgeDue(usize),
    Confirmed,
    TaskDone(Bytes),
    GateDone(Option<Bytes>),
}

/// What became of one backend reply.
enum Step {
    /// The reply the client gets (or that is merged).
    Final(Bytes),
    /// Re-sent (redirection) or waiting to retry.
    Again,
}

/// The reply of `r` if it has arrived (and `r` is not waiting out a retry backoff).
fn try_reply(r: &mut Remote) -> Option<ReplyResult> {
    if r.retry_at.is_some() {
        return None;
    }
    hedge::try_reply(r)
}

/// Output beyond this is flushed before more replies are moved into it.
const OUT_HIGH_WATER: usize = 256 * 1024;
/// Replies held back for coalescing never exceed this.
const COALESCE_MAX: usize = 16 * 1024;
/// Read buffers start small (an idle connection should cost a few KiB, not 16) and
/// double, up to [`READ_MAX`], while reads keep filling them.
const READ_MIN: usize = 1024;
const READ_MAX: usize = 64 * 1024;
/// Buffers emptied above this size are given back instead of kept for reuse.
const KEEP_MAX: usize = 64 * 1024;
/// Requests from this size up, kept for their reply, are counted ([`Remote::_charge`]).
const REQUEST_COUNTED_MIN: usize = 64 * 1024;
/// The output buffer beyond this is charged to the process budget (`buffers.rs`).
const OUT_FLOOR: usize = 64 * 1024;

/// Runs one client connection to completion. `shutdown` at DRAIN asks the session to
/// stop reading, deliver what is in flight and close.
pub async fn run<R, W>(
    mut rd: R,
    mut wr: W,
    meta: ClientMeta,
    ctx: Arc<SessionContext>,
    shutdown: ShutdownListener,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (entry, kill) = ctx.registry.register(
        meta.id,
        meta.peer,
        meta.local,
        meta.connected_at,
        ctx.output_limits,
        &ctx.client_buffers,
    );
    let _registered = Registered(ctx.clone(), meta.id);
    let auth = auth::SessionAuth::new(&ctx.security, meta.cert_identity.as_deref());
    if meta.client_cert {
        auth::audit_certificate(&ctx.security, &auth, &meta);
    }
    entry.set_user(Arc::from(auth.name()));
    let login_deadline = auth::LoginDeadline::new(&ctx.security, &auth, meta.connected_at);
    let limits = match auth.user() {
        Some(_) => ctx.limits,
        None => ctx.limits.before_login(),
    };
    let output = entry.output.clone();
    let mut s = Session {
        limits,
        output,
        read_charged: 0,
        out_charged: 0,
        client: ClientState {
            meta,
            tx: None,
            subs: None,
            entry,
            resp3: false,
            watch_slot: None,
            watch_identity: None,
            reply: ReplyMode::On,
            auth,
            guards: Default::default(),
            ryw: Vec::new(),
        },
        ctx,
        rbuf: BytesMut::with_capacity(READ_MIN),
        read_hint: READ_MIN,
        write_deferred: false,
        clock: None,
        dedicated: Vec::new(),
        identity_used: false,
        mute_next: false,
        task_pending: false,
        out: BytesMut::new(),
        pending: VecDeque::new(),
        ranges: Vec::with_capacity(8),
        keys: Vec::with_capacity(4),
        closing: false,
        linger: false,
        reads: 0,
        writes: 0,
        checked_reads: 0,
        checked_writes: 0,
        stall_strikes: 0,
        idle_strikes: 0,
        login_deadline,
    };
    let housekeeping = tokio::time::sleep(s.next_check());
    tokio::pin!(housekeeping);
    let mut eof = false;
    let mut stop_seen = RUNNING;
    // A TLS writer may keep bytes a write accepted (records not yet on the socket): it is
    // flushed once the output buffer drains. Never set for plain TCP.
    let buffered = s.client.meta.tls;
    let mut flush_owed = false;

    loop {
        // Everything handled in one pass happened "now": one clock read per pass.
        s.clock = None;
        if !s.closing {
            s.parse_requests();
        }
        s.drain_ready_heads();
        if s.out.len() > OUT_FLOOR || s.out_charged > 0 {
            s.recharge_output();
        }
        if (s.closing || eof) && s.pending.is_empty() && s.out.is_empty() {
            break;
        }
        let can_read = !s.closing
            && !eof
            && !s.task_pending
            && s.pending.len() < s.ctx.max_pending
            && s.within_reply_bytes();
        if s.rbuf.is_empty() && s.rbuf.capacity() > KEEP_MAX {
            s.rbuf = BytesMut::with_capacity(READ_MIN);
            s.read_hint = READ_MIN;
        }
        if s.read_charged > 0 {
            s.recharge_read_buffer();
        }
        if can_read && s.rbuf.capacity() - s.rbuf.len() < 256 && !s.grow_read_buffer() {
            continue;
        }
        let spare = s.rbuf.capacity() - s.rbuf.len();
        let head_waiting = matches!(
            s.pending.front(),
            Some(
                Pending::Remote(_)
                    | Pending::Split(_)
                    | Pending::Waiting(..)
                    | Pending::Task(_)
                    | Pending::Gate(..)
            )
        ) && s.out.len() < OUT_HIGH_WATER;
        // Messages go out between replies, never ahead of a reply still owed (so a
        // channel's first message never precedes its subscription's confirmation).
        let messages_now =
            s.client.subs.is_some() && s.pending.is_empty() && s.out.len() < OUT_HIGH_WATER;
        // Coalesce replies: while later replies of a pipeline are still owed, give the
        // backends one scheduling round to deliver them before writing, so one write
        // carries many replies. A single request (nothing else owed) is written at once.
        let write_now = !s.out.is_empty()
            && (s.pending.is_empty() || s.out.len() >= COALESCE_MAX || s.write_deferred);
        tokio::select! {
            biased;
            written = crate::backend::write_or_flush(&mut wr, &s.out, write_now),
                if write_now || (flush_owed && s.out.is_empty()) => {
                s.write_deferred = false;
                match written {
                    Ok(Some(n)) if n > 0 => {
                        let _ = s.out.split_to(n);
                        s.writes += 1;
                        flush_owed = buffered;
                        if s.out.is_empty() && s.out.capacity() > KEEP_MAX {
                            s.out = BytesMut::new();
                        }
                    }
                    Ok(None) => flush_owed = false,
                    _ => break,
                }
            }
            event = wait_head(s.pending.front_mut()), if head_waiting => {
                s.clock = None; // time has passed while waiting
                s.on_head_event(event);
            }
            read = rd.read_buf(&mut s.rbuf), if can_read => {
                match read {
                    // Half-closed (`printf ... | nc`): requests already buffered are still
                    // served; the session ends once they are answered.
                    Ok(0) => {
                        eof = true;
                        // A client gone while blocked (BLPOP 0) would otherwise hold its
                        // backend connection, and consume a value pushed later, forever:
                        // do as Redis does on EOF and end the session now.
                        if s.pending.iter().any(|p| matches!(p, Pending::Remote(r) if r.dedicated.is_some())) {
                            break;
                        }
                    }
                    Ok(n) => {
                        s.reads += 1;
                        if n == spare {
                            s.read_hint = (s.read_hint * 2).min(READ_MAX);
                        }
                    }
                    Err(_) => break,
                }
            }
            message = next_message(&mut s.client.subs), if messages_now => {
                match message {
                    Some(m) => {
                        let resp3 = s.client.resp3;
                        s.output.take_message(m.len());
                        if let Some(subs) = s.client.subs.as_mut() {
                            if subs.wants(&m) {
                                push_message(&mut s.out, &m, resp3);
                            }
                            while s.out.len() < OUT_HIGH_WATER {
                                match subs.rx.try_recv() {
                                    Ok(m) => {
                                        s.output.take_message(m.len());
                                        if subs.wants(&m) {
                                            push_message(&mut s.out, &m, resp3);
                                        }
                                    }
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                    None => {
                        tracing::info!(client = s.client.meta.id, "closing subscriber that did not keep up with its messages");
                        break;
                    }
                }
            }
            _ = tokio::task::yield_now(), if !s.out.is_empty() && !write_now => {
                s.write_deferred = true;
            }
            _ = &mut housekeeping => {
                if !s.housekeeping() {
                    break;
                }
                housekeeping.as_mut().reset(tokio::time::Instant::now() + s.next_check());
            }
            // CLIENT KILL.
            _ = kill.above(RUNNING) => break,
            level = shutdown.above(stop_seen) => {
                stop_seen = level;
                if level >= STOP {
                    break;
                }
                s.closing = true;
            }
        }
    }
    s.log_overflow();
    // What the client held (counted bytes, its own backend connections, walk places)
    // goes back now, not after the goodbye: a TLS flush waits for a peer that may never
    // read (a client closed for not reading), so the goodbye gets a bounded time.
    let linger = s.linger;
    drop(s);
    let _ = tokio::time::timeout(GOODBYE, async {
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
        if linger {
            // Refused mid-request: the client may still be sending. Closing with its
            // bytes unread would reset the connection, and a reset can discard the
            // error reply before the client reads it; read and drop them until it
            // closes (within GOODBYE).
            let mut scratch = [0u8; 4096];
            while matches!(rd.read(&mut scratch).await, Ok(n) if n > 0) {}
        }
    })
    .await;
}

/// How long a closing session tries to flush and shut down its socket.
const GOODBYE: Duration = Duration::from_secs(1);

/// Appends a pub/sub message frame (RESP2 `*3 message ...`), as a push (`>3 ...`) for a
/// RESP3 client: the frames differ only in their first byte.
fn push_message(out: &mut BytesMut, frame: &[u8], resp3: bool) {
    if resp3 && frame.first() == Some(&b'*') {
        out.extend_from_slice(b">");
        out.extend_from_slice(&frame[1..]);
    } else {
        out.extend_from_slice(frame);
    }
}

/// Keeps a client in the registry for as long as its session runs, however it ends.
struct Registered(Arc<SessionContext>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.registry.remove(self.1);
    }
}

async fn wait_head(head: Option<&mut Pending>) -> HeadEvent {
    match head {
        Some(Pending::Remote(r)) => wait_remote(r, 0).await,
        Some(Pending::Split(split)) => {
            // Parts were all sent at once; waiting for them in order costs the slowest.
            match split.done.iter().position(Option::is_none) {
                Some(i) => wait_remote(&mut split.parts[i], i).await,
                None => std::future::pending().await,
            }
        }
        Some(Pending::Waiting(rx, _)) => {
            let _ = rx.await;
            HeadEvent::Confirmed
        }
        Some(Pending::Task(rx)) => HeadEvent::TaskDone(task_reply(rx.await.ok())),
        Some(Pending::Gate(rx, _)) => HeadEvent::GateDone(gate_reply(rx.await)),
        _ => std::future::pending().await,
    }
}

/// A task's reply, or an error if the task died without one.
fn task_reply(reply: Option<Bytes>) -> Bytes {
    reply.unwrap_or_else(|| reply::error("ERR respgate: the command's task ended without a reply"))
}

/// A gate's verdict; a task that died without one refuses.
fn gate_reply(verdict: Result<Option<Bytes>, oneshot::error::RecvError>) -> Option<Bytes> {
    verdict.unwrap_or_else(|_| Some(task_reply(None)))
}

/// The next pub/sub message for this client (`None`: the hub dropped it).
async fn next_message(subs: &mut Option<Box<subscribe::Subscriptions>>) -> Option<Bytes> {
    match subs {
        Some(s) => s.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn wait_remote(r: &mut Remote, part: usize) -> HeadEvent {
    if let Some(at) = r.retry_at {
        tokio::time::sleep_until(at.into()).await;
        return HeadEvent::RetryDue(part);
    }
    hedge::wait(r, part).await
}

struct Session {
    client: ClientState,
    ctx: Arc<SessionContext>,
    /// The framing limits for the client's login state ([`Session::relimit`]).
    limits: RequestLimits,
    /// The client's reply and message bytes (also in its registry entry).
    output: Arc<crate::budget::OutputBytes>,
    /// Bytes of `rbuf` beyond [`READ_MAX`] taken from the process budget.
    read_charged: usize,
    /// Bytes of `out` beyond [`OUT_FLOOR`] charged to the process budget.
    out_charged: usize,
    rbuf: BytesMut,
    /// How much to reserve when the read buffer runs low.
    read_hint: usize,
    /// Output was held back one scheduling round already: write it now.
    write_deferred: bool,
    /// The time of this pass of the main loop, read at most once ([`Session::now`]).
    clock: Option<Instant>,
    /// CLIENT REPLY OFF / SKIP: the next finished reply is dropped.
    mute_next: bool,
    /// A [`Pending::Task`] is queued (always last): no request is read or dispatched
    /// until it is done, so the client's next commands run after it.
    task_pending: bool,
    /// This client's own backend connections (blocking commands, WATCH), each with its
    /// place in the bounds on them (`dedicated::Quota`).
    dedicated: Vec<(DedicatedLink, dedicated::Place)>,
    /// A request went on the script identity's links: later ones check their lane.
    identity_used: bool,
    out: BytesMut,
    pending: VecDeque<Pending>,
    ranges: Vec<Range<u32>>,
    keys: Vec<crate::commands::KeyRef>,
    /// No more requests are read; the session ends once every reply is written.
    closing: bool,
    /// Closing mid-request (a protocol error, a refused large request): the client's
    /// remaining input is drained before the socket closes.
    linger: bool,
    /// Successful reads and writes, compared at each housekeeping check.
    reads: u64,
    writes: u64,
    checked_reads: u64,
    checked_writes: u64,
    stall_strikes: u32,
    idle_strikes: u32,
    /// `auth.login_timeout_secs` for a connection not authenticated yet.
    login_deadline: auth::LoginDeadline,
}

impl Session {
    /// Writes a finished reply to the output, unless CLIENT REPLY muted it.
    #[inline]
    fn emit(&mut self, reply: &[u8]) {
        if std::mem::take(&mut self.mute_next) {
            return;
        }
        self.out.extend_from_slice(reply);
    }

    /// The current pass's time (requests framed and replies completed in one pass share
    /// it).
    fn now(&mut self) -> Instant {
        *self.clock.get_or_insert_with(Instant::now)
    }

    /// Frames and dispatches every complete request in the read buffer, up to the
    /// pending-replies bound.
    fn parse_requests(&mut self) {
        if !self.within_reply_bytes() {
            return;
        }
        while !self.closing && !self.task_pending && self.pending.len() < self.ctx.max_pending {
            let framed = scan_request(&self.rbuf, &self.limits, &mut self.ranges);
            let request = match framed {
                Ok(None) => break,
                Ok(Some(Request::Empty { len })) => {
                    let _ = self.rbuf.split_to(len);
                    continue;
                }
                Ok(Some(Request::Multibulk { len })) => Ok(self.rbuf.split_to(len).freeze()),
                Ok(Some(Request::Inline { len })) => {
                    let line = self.rbuf.split_to(len);
                    self.inline_as_multibulk(&line[..len - 1])
                }
                Err(e) => Err(e),
            };
            match request {
                Ok(raw) => {
                    let now = self.now();
                    self.client.entry.touch(now);
                    self.dispatch(raw, now);
                    // AUTH, HELLO, RESET or a reload may have changed the login state.
                    if self.limits.pre_auth != self.client.auth.user().is_none() {
                        self.relimit();
                    }
                }
                Err(e) => {
                    tracing::debug!(client = self.client.meta.id, error = ?e, "protocol error");
                    metrics::counter!("respgate_protocol_errors_total").increment(1);
                    self.pending
                        .push_back(Pending::Ready(Bytes::from(e.reply())));
                    self.rbuf.clear();
                    self.closing = true;
                    self.linger = true;
                }
            }
        }
    }

    /// Re-encodes an inline command line as the multibulk a client would have sent, and
    /// frames it (filling `ranges`) so it routes like any other request.
    fn inline_as_multibulk(&mut self, line: &[u8]) -> Result<Bytes, ProtocolError> {
        let words = split_inline(line)?;
        let encoded = reply::command(words.iter());
        scan_request(&encoded, &self.limits, &mut self.ranges)?;
        Ok(encoded)
    }

    /// Routes one request (`raw`, its arguments in `ranges`) that arrived at `arrived`.
    fn dispatch(&mut self, raw: Bytes, arrived: Instant) {
        // Messages that arrived before this request go out before its reply (an
        // UNSUBSCRIBE confirmation must follow every message of that channel).
        if let Some(subs) = self.client.subs.as_mut() {
            while let Ok(m) = subs.rx.try_recv() {
                self.output.take_message(m.len());
                if subs.wants(&m) {
                    let mut out = BytesMut::new();
                    push_message(&mut out, &m, self.client.resp3);
                    self.pending.push_back(Pending::Ready(out.freeze()));
                }
            }
        }
        let decision = routing::route(
            &self.ctx,
            &mut self.client,
            crate::protocol::Args::new(&raw, &self.ranges),
            &mut self.keys,
        );
        // CLIENT REPLY: OFF mutes every reply (its own included), SKIP the next one.
        let mute = match self.client.reply {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::SkipThis => {
                self.client.reply = ReplyMode::SkipNext;
                true
            }
            ReplyMode::SkipNext => {
                self.client.reply = ReplyMode::On;
                true
            }
        };
        if mute {
            self.pending.push_back(Pending::MuteNext);
        }
        self.apply_route(decision, raw, arrived);
    }

    /// Routes a request again (after its shared guard budget passed).
    fn route_request(&mut self, raw: Bytes, arrived: Instant) {
        let decision = routing::route(
            &self.ctx,
            &mut self.client,
            crate::protocol::Args::new(&raw, &self.ranges),
            &mut self.keys,
        );
        self.apply_route(decision, raw, arrived);
    }

    /// Whether a request sent on the client's own connection (`dedicated`) or on the
    /// shared links (`!dedicated`) must wait for the client's earlier requests: some are
    /// still in flight on the other kind of connection, and two connections give no
    /// order between them. Without this a pipelined `SET k v` + `WATCH k` could watch
    /// before the SET ran (and EXEC would fail), or `LPUSH k a` + `BLPOP k 0` block
    /// before the push. Clients that never used their own connection pay one check;
    /// others look back to the newest request in flight.
    fn must_hold(&self, lane: LaneKey) -> bool {
        if lane.0 == Lane::Shared && self.dedicated.is_empty() && !self.identity_used {
            return false;
        }
        // Every request in flight uses the same kind of connection (one of the other kind
        // is held until they are answered), so the newest one tells which.
        self.pending
            .iter()
            .rev()
            .find_map(|p| match p {
                Pending::Remote(r) => Some(r.lane()),
                Pending::Split(_) => Some((Lane::Shared, 0)),
                _ => None,
            })
            .is_some_and(|l| l != lane)
    }

    /// Queues what routing decided for `raw`.
    fn apply_route(&mut self, decision: routing::Route, raw: Bytes, arrived: Instant) {
        let lane = match &decision {
            routing::Route::Forward {
                dedicated, run_as, ..
            } => Some(Lane::of(dedicated.is_some(), run_as.as_ref())),
            routing::Route::Split { .. } | routing::Route::FanOut { .. } => Some((Lane::Shared, 0)),
            _ => None,
        };
        if lane.is_some_and(|lane| self.must_hold(lane)) {
            self.pending.push_back(Pending::Held(Box::new(Held {
                decision,
                raw,
                arrived,
            })));
            self.task_pending = true;
            return;
        }
        match decision {
            routing::Route::Reply(bytes) => self.pending.push_back(Pending::Ready(bytes)),
            routing::Route::Task(rx) => {
                self.pending.push_back(Pending::Task(rx));
                self.task_pending = true;
            }
            routing::Route::Gate(rx) => {
                self.pending.push_back(Pending::Gate(rx, raw));
                self.task_pending = true;
            }
            routing::Route::Subscribed(replies) => {
                for (wait, bytes) in replies {
                    self.pending.push_back(match wait {
                        Some(rx) => Pending::Waiting(rx, bytes),
                        None => Pending::Ready(bytes),
                    });
                }
            }
            routing::Route::Queue(rewritten) => {
                let reply = match self.client.tx.as_mut() {
                    Some(tx) => transaction::hold(
                        tx,
                        rewritten.unwrap_or(raw),
                        self.ctx.max_transaction,
                        self.output.process(),
                    ),
                    None => Bytes::from_static(b"+QUEUED\r\n"),
                };
                self.pending.push_back(Pending::Ready(reply));
            }
            routing::Route::ReplyAndClose(bytes) => {
                self.pending.push_back(Pending::Ready(bytes));
                self.closing = true;
            }
            routing::Route::FanOut { merge, latency } => {
                let topo = self.ctx.cluster.topology();
                let parts: Vec<(Option<u16>, Bytes, u32)> = match topo.as_ref() {
                    Some(t) => (0..t.shards().len())
                        .map(|i| (t.shard_slot(i), raw.clone(), 1))
                        .collect(),
                    None => Vec::new(),
                };
                drop(topo);
                self.push_split(parts, merge, latency, arrived);
            }
            routing::Route::Split {
                parts,
                merge,
                latency,
            } => self.push_split(parts, merge, latency, arrived),
            routing::Route::Forward {
                slot,
                rewritten,
                latency,
                replies,
                dedicated,
                replica,
                run_as,
                script,
                hidden,
            } => {
                let request = rewritten.unwrap_or(raw);
                self.identity_used |= run_as.is_some();
                let how = outgoing::Sending {
                    replies,
                    dedicated,
                    replica,
                    run_as,
                    script,
                    hidden,
                    part_of: None,
                };
                let remote = self.forward(request, slot, arrived, latency, how);
                self.pending.push_back(Pending::Remote(remote));
            }
        }
    }

    /// The head request's shared budget was counted: refused (its reply is the error)
    /// or passed, and then routed again, past that guard, as if it arrived now.
    fn gate_done(&mut self, verdict: Option<Bytes>) {
        let Some(Pending::Gate(_, raw)) = self.pending.pop_front() else {
            return;
        };
        self.task_pending = false;
        if let Some(refusal) = verdict {
            self.emit(&refusal);
            return;
        }
        if scan_request(&raw, &self.limits, &mut self.ranges).is_err() {
            self.emit(&reply::error(
                "ERR respgate: request could not be framed again",
            ));
            return;
        }
        self.client.guards.bypass_once = true;
        let now = self.now();
        self.route_request(raw, now);
        self.client.guards.bypass_once = false;
    }

    /// Moves every reply that is already available at the head of the queue to the
    /// output, stopping at the first one still outstanding.
    fn drain_ready_heads(&mut self) {
        while self.out.len() < OUT_HIGH_WATER {
            let ready = match self.pending.front_mut() {
                Some(Pending::Ready(_)) => {
                    if let Some(Pending::Ready(b)) = self.pending.pop_front() {
                        self.emit(&b);
                    }
                    continue;
                }
                Some(Pending::MuteNext) => {
                    self.pending.pop_front();
                    self.mute_next = true;
                    continue;
                }
                Some(Pending::Waiting(rx, _)) => {
                    if matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                        return;
                    }
                    if let Some(Pending::Waiting(_, bytes)) = self.pending.pop_front() {
                        self.emit(&bytes);
                    }
                    continue;
                }
                Some(Pending::Task(rx)) => {
                    let reply = match rx.try_recv() {
                        Err(oneshot::error::TryRecvError::Empty) => return,
                        Ok(reply) => task_reply(Some(reply)),
                        Err(oneshot::error::TryRecvError::Closed) => task_reply(None),
                    };
                    self.pending.pop_front();
                    self.task_pending = false;
                    self.emit(&reply);
                    continue;
                }
                Some(Pending::Gate(rx, _)) => {
                    let verdict = match rx.try_recv() {
                        Err(oneshot::error::TryRecvError::Empty) => return,
                        Ok(v) => v,
                        Err(oneshot::error::TryRecvError::Closed) => Some(task_reply(None)),
                    };
                    self.gate_done(verdict);
                    continue;
                }
                Some(Pending::Held(_)) => {
                    // Every earlier request is answered: send it, then read on.
                    if let Some(Pending::Held(held)) = self.pending.pop_front() {
                        self.task_pending = false;
                        let Held {
                            decision,
                            raw,
                            arrived,
                        } = *held;
                        self.apply_route(decision, raw, arrived);
                        self.parse_requests();
                    }
                    continue;
                }
                Some(Pending::Remote(r)) => try_reply(r).map(|res| (0, res)),
                Some(Pending::Split(split)) => split
                    .parts
                    .iter_mut()
                    .zip(&split.done)
                    .enumerate()
                    .filter(|(_, (_, done))| done.is_none())
                    .find_map(|(i, (r, _))| try_reply(r).map(|res| (i, res))),
                None => None,
            };
            match ready {
                Some((part, result)) => self.on_reply(part, result),
                None => return,
            }
        }
    }

    fn on_head_event(&mut self, event: HeadEvent) {
        match event {
            HeadEvent::Reply(part, result) => self.on_reply(part, result),
            HeadEvent::Confirmed => {
                if let Some(Pending::Waiting(_, bytes)) = self.pending.pop_front() {
                    self.emit(&bytes);
                }
            }
            HeadEvent::GateDone(verdict) => self.gate_done(verdict),
            HeadEvent::TaskDone(reply) => {
                if let Some(Pending::Task(_)) = self.pending.pop_front() {
                    self.task_pending = false;
                    self.emit(&reply);
                }
            }
            HeadEvent::RetryDue(part) => match self.pending.pop_front() {
                Some(Pending::Remote(mut r)) => {
                    self.send(&mut r, None, false);
                    self.pending.push_front(Pending::Remote(r));
                }
                Some(Pending::Split(mut split)) => {
                    self.send(&mut split.parts[part], None, false);
                    self.pending.push_front(Pending::Split(split));
                }
                Some(other) => self.pending.push_front(other),
                None => {}
            },
            HeadEvent::HedgeDue(part) => match self.pending.pop_front() {
                Some(Pending::Remote(mut r)) => {
                    self.hedge(&mut r);
                    self.pending.push_front(Pending::Remote(r));
                }
                Some(Pending::Split(mut split)) => {
                    self.hedge(&mut split.parts[part]);
                    self.pending.push_front(Pending::Split(split));
                }
                Some(other) => self.pending.push_front(other),
                None => {}
            },
        }
    }

    /// Handles a reply for the head request (for a split request, for its part `part`):
    /// follows redirections and retries, and once the head's reply is final, moves it
    /// (merged, for a split request) to the output.
    fn on_reply(&mut self, part: usize, result: ReplyResult) {
        let len = result.as_ref().map_or(0, Bytes::len);
        let Some(mut head) = self.pending.pop_front() else {
            self.output.take_reply(len);
            return;
        };
        // A split request's parts stay counted until merged (`merge_part`).
        if !matches!(head, Pending::Split(_)) {
            self.output.take_reply(len);
        }
        let finished = match &mut head {
            Pending::Ready(b) | Pending::Waiting(_, b) => Some((b.clone(), None)),
            Pending::MuteNext | Pending::Task(_) | Pending::Gate(..) | Pending::Held(_) => None,
            Pending::Remote(r) => match self.advance(r, result) {
                Step::Final(bytes) => Some((bytes, Some((r.started, r.latency.clone())))),
                Step::Again => None,
            },
            Pending::Split(split) => match self.advance(&mut split.parts[part], result) {
                Step::Final(bytes) => self
                    .merge_part(split, part, bytes, len)
                    .map(|merged| (merged, Some((split.started, split.latency.clone())))),
                Step::Again => {
                    self.give_back_parts(split, len);
                    None
                }
            },
        };
        match finished {
            Some((bytes, timing)) => {
                if let Some((started, latency)) = timing {
                    let now = self.now();
                    latency.record(now.saturating_duration_since(started).as_secs_f64());
                }
                self.emit(&bytes);
            }
            None => self.pending.push_front(head),
        }
    }

    /// Periodic checks, run every half stall/idle period; returns false when the client
    /// must be disconnected. Progress is judged by counters the hot path bumps anyway, so
    /// no clock is read per request.
    fn housekeeping(&mut self) -> bool {
        if self.login_deadline.expired(&self.client) {
            return false;
        }
        let wrote = self.writes != self.checked_writes;
        let read = self.reads != self.checked_reads;
        self.checked_writes = self.writes;
        self.checked_reads = self.reads;
        let stalled_before = self.stall_strikes > 0;
        self.stall_strikes = if !self.out.is_empty() && !wrote { 1 } else { 0 };
        if stalled_before && self.stall_strikes > 0 {
            tracing::info!(
                client = self.client.meta.id,
                peer = %self.client.meta.peer,
                unwritten_bytes = self.out.len(),
                "closing client that stopped reading its replies"
            );
            metrics::counter!("respgate_clients_disconnected_total", "reason" => "output_stall")
                .increment(1);
            return false;
        }
        if self.ctx.idle_timeout.is_some()
            && !read
            && self.pending.is_empty()
            && self.out.is_empty()
        {
            self.idle_strikes += 1;
            if self.idle_strikes >= 2 {
                metrics::counter!("respgate_clients_disconnected_total", "reason" => "idle")
                    .increment(1);
                return false;
            }
        } else {
            self.idle_strikes = 0;
        }
        true
    }

    fn next_check(&self) -> Duration {
        let mut period = self.ctx.stall_timeout;
        if let Some(idle) = self.ctx.idle_timeout {
            period = period.min(idle);
        }
        let period = (period / 2).max(Duration::from_millis(50));
        // Woken at the login deadline itself, not a half period early or late.
        match self.login_deadline.remaining() {
            Some(left) => period.min(left.max(Duration::from_millis(50))),
            None => period,
        }
    }
}
