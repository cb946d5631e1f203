//! Ready dedicated links: a few connections per node, made (connected, authenticated,
//! `CLIENT ID` known) before a client needs one, so a blocking command is written to
//! its node as soon as its session routes it.
//!
//! **Why.** A blocking command (BLPOP, XREAD BLOCK, ...) runs on a connection of its
//! client's own ([`super::DedicatedLink`]). Opened on demand, that connection pays a TCP
//! connect and the AUTH/HELLO/CLIENT ID/PING handshake first, while a write another
//! client sends just after goes out at once on a shared link: "A: `XREAD BLOCK 0
//! STREAMS s $`, then B: `XADD s * f v`" reached the node in the other order in 8 of 40
//! tries, and A then waited for the next entry. Taken from here, A's command is queued
//! on a link task whose connection is up, so its write follows its read by one task
//! hop, as B's does on its shared link.
//!
//! **What is guaranteed.** Within one worker, tasks run in the order they are woken:
//! A's session, woken first, queues on its ready link before B's session runs, and the
//! link task writes before B's shared link does. Across workers (A and B on different
//! threads) B's write waits for a fence (`crate::workers::fence`), which also waits for
//! a link taken while still connecting: [`take`] counts those until their connect ends.
//! `tests/blocking_order.rs` measures both.
//!
//! **Bounds.** Per worker (the pool is thread-local: a link's task lives on the worker
//! of the session that uses it), per node and protocol, at most [`READY_PER_NODE`]
//! links wait; each is refilled when taken, so only nodes that served a blocking
//! command on that worker have any. A waiting connection is closed after
//! [`IDLE_MAX`] or as soon as the node closes it or sends anything, and then thrown away
//! at the next take. Only links that run as respgate's own node user are made ahead;
//! a client whose commands run as a script identity (`[[auth.users]]` `node_user`)
//! opens its connection on demand as before. A taken link is the client's own: it
//! takes its place in `server.max_dedicated_connections` and the user's quota when
//! taken (`session/dedicated.rs`), as a link opened on demand does; the waiting ones
//! are respgate's, bounded here.

use super::connect::connect;
use super::link::run_link_from;
use super::{DedicatedLink, Job, LinkOptions, LinkState};
use crate::tls::BackendStream;
use std::cell::RefCell;
use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, Notify};

/// Links kept waiting per worker, node and protocol.
pub const READY_PER_NODE: usize = 2;
/// A waiting connection nobody took is closed after this long.
pub const IDLE_MAX: Duration = Duration::from_secs(60);

const CONNECTING: u8 = 0;
const READY: u8 = 1;
/// Its waiting connection is gone (failed, closed, expired): useless as a ready link.
const STALE: u8 = 2;
/// Taken by a client before its connection was up ([`crate::workers::fence::unready_taken`]
/// counted it; the connect's outcome counts it done).
const TAKEN_CONNECTING: u8 = 3;

struct Waiting {
    /// The cluster it was made for (its refresh signal): proxies of one process (tests)
    /// may reach one node with different credentials, and never share links.
    owner: Arc<Notify>,
    addr: Arc<str>,
    resp3: bool,
    link: DedicatedLink,
    state: Arc<AtomicU8>,
}

thread_local! {
    static POOL: RefCell<Vec<Waiting>> = const { RefCell::new(Vec::new()) };
}

/// A dedicated link to `addr` for a client, connected beforehand when one was waiting;
/// the pool is refilled in the background. `opts` run as respgate's own node user.
pub fn take(addr: &str, opts: &LinkOptions, on_failure: &Arc<Notify>) -> DedicatedLink {
    debug_assert!(opts.identity.is_none());
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        pool.retain(|w| w.state.load(Ordering::Acquire) != STALE);
        let mine = |w: &Waiting| {
            Arc::ptr_eq(&w.owner, on_failure) && &*w.addr == addr && w.resp3 == opts.resp3
        };
        // A ready one first, else one still connecting (ahead of a new connect).
        let pick = pool
            .iter()
            .position(|w| mine(w) && w.state.load(Ordering::Acquire) == READY)
            .or_else(|| pool.iter().position(mine));
        let taken = pick.map(|i| {
            let waiting = pool.swap_remove(i);
            // Still connecting: the command waits for the connection; fenced writes
            // wait for it in turn (`crate::workers::fence`).
            if waiting
                .state
                .compare_exchange(
                    CONNECTING,
                    TAKEN_CONNECTING,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                crate::workers::fence::unready_taken();
            }
            waiting.link
        });
        let waiting = pool.iter().filter(|w| mine(w)).count();
        for _ in waiting..READY_PER_NODE {
            let state = Arc::new(AtomicU8::new(CONNECTING));
            let link = spawn(addr, opts.clone(), on_failure.clone(), state.clone());
            pool.push(Waiting {
                owner: on_failure.clone(),
                addr: Arc::from(addr),
                resp3: opts.resp3,
                link,
                state,
            });
        }
        // None waiting: one connected for this client, counted as taken while connecting.
        let taken = taken.unwrap_or_else(|| {
            crate::workers::fence::unready_taken();
            let state = Arc::new(AtomicU8::new(TAKEN_CONNECTING));
            spawn(addr, opts.clone(), on_failure.clone(), state)
        });
        if pick.is_some() {
            metrics::counter!("respgate_dedicated_ready_taken_total").increment(1);
        }
        taken
    })
}

/// A dedicated link whose task connects now and then waits for its first job.
fn spawn(
    addr: &str,
    mut opts: LinkOptions,
    on_failure: Arc<Notify>,
    state: Arc<AtomicU8>,
) -> DedicatedLink {
    opts.dedicated = true;
    let backend_id = Arc::new(AtomicI64::new(-1));
    opts.client_id = Some(backend_id.clone());
    let resp3 = opts.resp3;
    let addr: Arc<str> = Arc::from(addr);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run_ready(
        addr.clone(),
        Arc::new(opts),
        rx,
        on_failure,
        state,
    ));
    DedicatedLink {
        addr,
        tx,
        resp3,
        backend_id,
        identity: None,
    }
}

async fn run_ready(
    addr: Arc<str>,
    opts: Arc<LinkOptions>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    on_failure: Arc<Notify>,
    state: Arc<AtomicU8>,
) {
    let connected = connect(&addr, &opts).await;
    let outcome = if connected.is_ok() { READY } else { STALE };
    if state.swap(outcome, Ordering::AcqRel) == TAKEN_CONNECTING {
        crate::workers::fence::unready_done();
    }
    let ready = match connected {
        Ok(mut stream) => match wait_first(&mut stream, &mut rx).await {
            First::Job(job) => Some((stream, job)),
            First::Stale => None,
            First::Unused => return,
        },
        Err(e) => {
            tracing::debug!(node = %addr, error = %e, "ready dedicated link: connect failed");
            None
        }
    };
    if ready.is_none() {
        // Taken later (or already, while connecting): it connects on demand then.
        state.store(STALE, Ordering::Release);
    }
    // Not counted in a node's connected links: one client's own.
    let uncounted = Arc::new(LinkState::default());
    run_link_from(addr, opts, rx, on_failure, uncounted, ready).await;
}

enum First {
    Job(Job),
    /// The connection closed, sent something, or waited too long.
    Stale,
    /// Every handle dropped before any job.
    Unused,
}

/// Waits for the first job while watching the idle connection: a node never writes to
/// a connection that asked nothing, so a readable socket means it closed (or broke).
async fn wait_first(stream: &mut BackendStream, rx: &mut mpsc::UnboundedReceiver<Job>) -> First {
    let mut probe = [0u8; 1];
    tokio::select! {
        biased;
        job = rx.recv() => match job {
            Some(job) => First::Job(job),
            None => First::Unused,
        },
        _ = stream.read(&mut probe) => First::Stale,
        _ = tokio::time::sleep(IDLE_MAX) => First::Stale,
    }
}
