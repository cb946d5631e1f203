//! One client connection: frame its requests, route each, and write the replies back in
//! the order the requests came.
//!
//! A session is a single task that owns its socket halves, its read buffer, its output
//! buffer and its queue of pending replies (`Pending`), so nothing here is
//! shared or locked. Each request becomes one entry in the queue: a reply respgate
//! composed itself, or a reply receiver (`backend::reply`) for the backend's reply. Replies are written
//! strictly in queue order, whichever backend answers first, so a reply can never reach
//! the wrong request. Redirections (MOVED, ASK) and retryable failures (TRYAGAIN,
//! CLUSTERDOWN, a node that could not be reached) are handled when the entry reaches the
//! head of the queue, which keeps the client's own ordering even across a slot migration.
//!
//! Bounds: the read buffer never holds more than one request beyond `max_request_bytes`
//! (before login, Redis's small limits: 10 arguments of 16 KiB); at `max_pending_replies`
//! or `max_pending_reply_bytes` the session stops reading (back-pressure); a client
//! holding twice that many reply bytes, or that does not read its replies for
//! `output_stall_timeout_secs`, is disconnected ([`crate::budget`], `buffers.rs`).
//!
//! **Mechanism apart from policy** (as pingora keeps its proxy phases apart from its
//! connection handling). A `Session` is three parts, each in files of its own:
//!
//! - client I/O (`io/`, `ClientIo`): the read buffer and framing requests out of
//!   it, coalescing and writing the output, the stall / idle / login checks, the
//!   goodbye. It knows bytes and sockets, not commands.
//! - the request pipeline (`pipeline.rs`, `head.rs`, `pending.rs`,
//!   `Pipeline`): the queue of replies owed, what routing decided for each
//!   request, the head's replies resolved in request order, and redirects / retries at
//!   the head (`redirects.rs`), sending (`outgoing.rs`, `replica_read.rs`). It never
//!   touches a socket, so it is driven in unit tests without one (`tests.rs`).
//! - the client as commands see it ([`ClientState`], `client.rs`) and what every
//!   session shares ([`SessionContext`], `context.rs`).

mod auth;
mod buffers;
mod client;
mod client_scope;
mod config_get;
mod config_managed;
mod config_set;
mod context;
mod cross_slot;
mod dedicated;
mod head;
mod hedge;
mod io;
mod latency_histogram;
mod local;
pub mod merge;
mod monitor;
mod outgoing;
mod pending;
mod pipeline;
mod random_key;
mod redirects;
mod replica_read;
mod route;
mod routing;
mod safe_keys;
mod script_kill;
mod subscribe;
#[cfg(test)]
mod tests;
mod transaction;

pub use client::{ClientMeta, ClientState, ReplyMode, RywEntry, Transaction};
pub use context::{Bounds, SessionContext};
pub use cross_slot::Settings as CrossSlotSettings;
pub use dedicated::Quota as DedicatedQuota;
pub use io::run;

use crate::shutdown::ShutdownListener;
use std::sync::Arc;
use std::time::Instant;

/// One client's session: its I/O, its request pipeline and its state, owned by the one
/// task that runs it ([`run`]).
struct Session {
    client: ClientState,
    ctx: Arc<SessionContext>,
    /// The client's reply and message bytes (also in its registry entry).
    output: Arc<crate::budget::OutputBytes>,
    /// The time of this pass of the main loop, read at most once ([`Session::now`]).
    clock: Option<Instant>,
    /// Read buffer, framing, output buffer, liveness: the mechanism.
    io: io::ClientIo,
    /// The replies owed and the connections they wait on: the policy.
    pipe: pipeline::Pipeline,
    /// Reply slots of answered requests, reused by the next ones: a forwarded request
    /// allocates nothing to get its reply back ([`crate::backend::reply`]).
    slots: crate::backend::reply::Slots,
}

impl Session {
    /// A session for a client that just connected, registered in the client registry
    /// (CLIENT LIST); with the listener CLIENT KILL (and the evictor) raise.
    fn new(meta: ClientMeta, ctx: Arc<SessionContext>) -> (Session, ShutdownListener) {
        let (entry, kill) = ctx.registry.register(
            meta.id,
            meta.peer,
            meta.local,
            meta.connected_at,
            ctx.bounds.output_limits,
            &ctx.client_buffers,
        );
        let auth = auth::SessionAuth::new(&ctx.security, meta.cert_identity.as_deref());
        if meta.client_cert {
            auth::audit_certificate(&ctx.security, &auth, &meta);
        }
        entry.set_user(Arc::from(auth.name()));
        let login_deadline = auth::LoginDeadline::new(&ctx.security, &auth, meta.connected_at);
        let limits = match auth.user() {
            Some(_) => ctx.bounds.limits,
            None => ctx.bounds.limits.before_login(),
        };
        let output = entry.output.clone();
        let s = Session {
            output,
            client: ClientState {
                meta,
                tx: None,
                subs: None,
                monitor: None,
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
            clock: None,
            io: io::ClientIo::new(limits, login_deadline),
            pipe: pipeline::Pipeline::new(),
            slots: Default::default(),
        };
        (s, kill)
    }

    /// The current pass's time (requests framed and replies completed in one pass share
    /// it).
    #[inline]
    fn now(&mut self) -> Instant {
        *self.clock.get_or_insert_with(Instant::now)
    }
}
