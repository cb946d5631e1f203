//! The entries of a session's queue of replies owed ([`Pending`]), one per request in
//! the order the requests came, and waiting on the entry at its head. The pipeline
//! (`pipeline.rs`, `head.rs`) decides what goes in and what a resolved head means; this
//! file only says what an entry is and how the head is waited for.

use super::route;
use super::{dedicated, hedge, merge};
use crate::backend::ReplyResult;
use crate::protocol::refusal::Refusal;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// A reply the client is owed, in request order.
pub(super) enum Pending {
    /// Composed by respgate, ready to write.
    Ready(Bytes),
    /// Forwarded to a backend.
    Remote(Remote),
    /// Split over several shards (or sent to every master); merged when all answered.
    Split(Box<Split>),
    /// A (un)subscription confirmation, written once the hub confirms the change (`None`:
    /// nothing to wait for). A push, as in Redis 7.0: written even under CLIENT REPLY
    /// OFF / SKIP, while the request still uses up a SKIP ([`Session::emit_push`](super::Session::emit_push)).
    Waiting(Option<oneshot::Receiver<()>>, Bytes),
    /// CLIENT REPLY OFF / SKIP: the next entry's reply is not written.
    MuteNext,
    /// Computed by a task of its own (CONFIG SET); nothing after it is dispatched until
    /// it is done.
    Task(oneshot::Receiver<Bytes>),
    /// A request waiting for its shared guard budget (`None`: passed, route it; else
    /// the refusal). Nothing after it is dispatched until it is done.
    Gate(oneshot::Receiver<Option<Bytes>>, Bytes),
    /// A routed request held until every earlier request is answered, because it goes
    /// on another connection than requests still in flight ([`Session::must_hold`](super::Session::must_hold)).
    /// Nothing after it is dispatched until it is sent.
    Held(Box<Held>),
}

/// A routing decision waiting for the client's earlier requests to finish.
pub(super) struct Held {
    pub(super) decision: route::Route,
    pub(super) raw: Bytes,
    pub(super) arrived: Instant,
}

pub(super) struct Split {
    pub(super) parts: Vec<Remote>,
    pub(super) done: Vec<Option<Bytes>>,
    pub(super) merge: merge::Merge,
    pub(super) started: Instant,
    pub(super) latency: metrics::Histogram,
    /// Bytes of this request's parts handed over and still counted (shared with the
    /// links: parts of one request are not a pile, [`crate::budget`]).
    pub(super) part_of: Arc<std::sync::atomic::AtomicUsize>,
    /// Bytes of the parts in `done` (`None` once over `cluster.max_reply_bytes`: parts
    /// are dropped as they come and the reply is an error).
    pub(super) kept: Option<usize>,
    /// Of those, the bytes still counted against the client: given back once merged.
    pub(super) counted: usize,
}

pub(super) struct Remote {
    pub(super) rx: crate::backend::reply::ReplyRx,
    /// The request as forwarded (kept for redirections and retries: a cheap `Bytes` clone).
    pub(super) request: Bytes,
    /// The slot the request routes by (`None`: keyless, any master).
    pub(super) slot: Option<u16>,
    pub(super) redirects: u32,
    pub(super) retries: u32,
    pub(super) started: Instant,
    /// Set while waiting out a retry backoff.
    pub(super) retry_at: Option<Instant>,
    pub(super) latency: metrics::Histogram,
    /// Replies the request produces (N+2 for a transaction sent as one job).
    pub(super) replies: u32,
    /// Sent on this client's own connection, and why (blocking commands, WATCH).
    pub(super) dedicated: Option<dedicated::Pin>,
    /// Sent to this replica (replica reads): errors send it to the master instead.
    pub(super) replica: Option<Arc<crate::backend::Node>>,
    /// A replica read's hedge: when the master is asked too, and its reply.
    pub(super) hedge: hedge::Hedge,
    /// The lag bound a replica may serve it under (re-checked when it is re-sent).
    pub(super) bound: Option<u8>,
    /// A transaction: elements at the end of EXEC's reply that answer respgate's own
    /// queued commands (the TTL policy's EXPIREs), taken out before the client sees it.
    pub(super) hidden: u32,
    /// A write tracked for read-your-writes: the master it went to.
    pub(super) ryw_master: Option<usize>,
    /// Runs on the node as this identity (a script, or a transaction holding one).
    pub(super) run_as: Option<Arc<crate::backend::NodeIdentity>>,
    /// A script call: how its replies are trusted ([`crate::cluster::redirect`]).
    pub(super) script: Option<Box<ScriptCall>>,
    /// One part of a split request: its parts' bytes held ([`Split::part_of`]).
    pub(super) part_of: Option<Arc<std::sync::atomic::AtomicUsize>>,
    /// A large request, kept in an allocation of its own: counted against the client
    /// and the process until the entry goes ([`REQUEST_COUNTED_MIN`]).
    pub(super) _charge: Option<crate::budget::HeldRequest>,
}

/// A script call in flight. Its error replies are data: only a MOVED for its own slot
/// that a newer topology confirms makes respgate send it again.
#[derive(Default)]
pub(super) struct ScriptCall {
    /// The master it was last sent to.
    pub(super) sent_to: Option<String>,
    /// A MOVED waiting for a newer topology: the reply, and the discoveries counted
    /// when it came.
    pub(super) moved: Option<(Bytes, u64)>,
    /// The verdict on that MOVED is in: the reply now waiting is final as it is.
    pub(super) settled: bool,
}

/// Which kind of backend connection a request goes on. Two connections give no order
/// between them, so a request on another kind than requests in flight waits for them
/// ([`Session::must_hold`](super::Session::must_hold)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// The shared links of the client's worker.
    Shared,
    /// The client's own connection (blocking commands, WATCH).
    Own,
    /// The links that run as the client's script identity.
    Identity,
}

/// A lane and, for [`Lane::Identity`], which identity (links of two identities give no
/// order between them either: a client that re-authenticated as another user).
pub(super) type LaneKey = (Lane, usize);

impl Lane {
    pub(super) fn of(
        dedicated: bool,
        identity: Option<&Arc<crate::backend::NodeIdentity>>,
    ) -> LaneKey {
        match (dedicated, identity) {
            (true, id) => (Lane::Own, id.map_or(0, |id| Arc::as_ptr(id) as usize)),
            (false, Some(id)) => (Lane::Identity, Arc::as_ptr(id) as usize),
            (false, None) => (Lane::Shared, 0),
        }
    }
}

impl Remote {
    pub(super) fn lane(&self) -> LaneKey {
        Lane::of(self.dedicated.is_some(), self.run_as.as_ref())
    }
}

/// What the head of the queue produced (for a split request: which part).
pub(super) enum HeadEvent {
    Reply(usize, ReplyResult),
    RetryDue(usize),
    /// A replica read has not been answered within `hedge_after_ms`.
    HedgeDue(usize),
    Confirmed,
    TaskDone(Bytes),
    GateDone(Option<Bytes>),
}

/// What became of one backend reply.
pub(super) enum Step {
    /// The reply the client gets (or that is merged).
    Final(Bytes),
    /// Re-sent (redirection) or waiting to retry.
    Again,
}

/// The reply of `r` if it has arrived (and `r` is not waiting out a retry backoff).
pub(super) fn try_reply(r: &mut Remote) -> Option<ReplyResult> {
    if r.retry_at.is_some() {
        return None;
    }
    hedge::try_reply(r)
}

pub(super) async fn wait_head(head: Option<&mut Pending>) -> HeadEvent {
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
            if let Some(rx) = rx {
                let _ = rx.await;
            }
            HeadEvent::Confirmed
        }
        Some(Pending::Task(rx)) => HeadEvent::TaskDone(task_reply(rx.await.ok())),
        Some(Pending::Gate(rx, _)) => HeadEvent::GateDone(gate_reply(rx.await)),
        _ => std::future::pending().await,
    }
}

/// A task's reply, or an error if the task died without one.
pub(super) fn task_reply(reply: Option<Bytes>) -> Bytes {
    reply.unwrap_or_else(|| Refusal::TaskEnded.reply())
}

/// A gate's verdict; a task that died without one refuses.
pub(super) fn gate_reply(
    verdict: Result<Option<Bytes>, oneshot::error::RecvError>,
) -> Option<Bytes> {
    verdict.unwrap_or_else(|_| Some(task_reply(None)))
}

pub(super) async fn wait_remote(r: &mut Remote, part: usize) -> HeadEvent {
    if let Some(at) = r.retry_at {
        tokio::time::sleep_until(at.into()).await;
        return HeadEvent::RetryDue(part);
    }
    hedge::wait(r, part).await
}
