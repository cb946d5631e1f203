//! The request pipeline: each framed request becomes one entry in the queue of replies
//! owed ([`Pending`]), in the order the requests came. Routing (`routing.rs`) decides
//! what a request is; this file queues that decision: a reply composed here, a request
//! sent to a backend (`outgoing.rs`), a split one, a task, or a request held until the
//! client's earlier ones are answered because it goes on another connection. What
//! happens once an entry reaches the head is `head.rs`.
//!
//! No socket is touched here: replies go to the output buffer through [`Session::emit`],
//! so the pipeline is driven in unit tests without one (`tests.rs`).

use super::dedicated;
use super::io::push_message;
use super::pending::{Held, Lane, LaneKey, Pending};
use super::route;
use super::{routing, transaction, ReplyMode, Session};
use crate::backend::DedicatedLink;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Instant;

/// A session's queue of replies owed and the state that orders it.
pub(super) struct Pipeline {
    /// CLIENT REPLY OFF / SKIP: the next finished reply is dropped.
    pub(super) mute_next: bool,
    /// A [`Pending::Task`] is queued (always last): no request is read or dispatched
    /// until it is done, so the client's next commands run after it.
    pub(super) task_pending: bool,
    /// Read-your-writes: the masters the running computed command writes to (ended
    /// when its task is done, [`Session::task_done`]).
    pub(super) task_ryw: Vec<usize>,
    /// This client's own backend connections (blocking commands, WATCH), each with its
    /// place in the bounds on them (`dedicated::Quota`).
    pub(super) dedicated: Vec<(DedicatedLink, dedicated::Place)>,
    /// A request went on the script identity's links: later ones check their lane.
    pub(super) identity_used: bool,
    pub(super) pending: VecDeque<Pending>,
    /// Scratch for routing: the keys of the request being routed.
    pub(super) keys: Vec<crate::commands::KeyRef>,
}

impl Pipeline {
    pub(super) fn new() -> Pipeline {
        Pipeline {
            mute_next: false,
            task_pending: false,
            task_ryw: Vec::new(),
            dedicated: Vec::new(),
            identity_used: false,
            pending: VecDeque::new(),
            keys: Vec::with_capacity(4),
        }
    }
}

impl Session {
    /// Writes a finished reply to the output, unless CLIENT REPLY muted it.
    #[inline]
    pub(super) fn emit(&mut self, reply: &[u8]) {
        if std::mem::take(&mut self.pipe.mute_next) {
            return;
        }
        self.io.out.extend_from_slice(reply);
    }

    /// Writes a (un)subscription confirmation. Redis 7.0 writes these as pushes, which
    /// CLIENT REPLY OFF / SKIP do not silence (`CLIENT_PUSHING`); the request still used
    /// up its mute (a SKIP before SUBSCRIBE does not carry over to the next command).
    pub(super) fn emit_push(&mut self, reply: &[u8]) {
        self.pipe.mute_next = false;
        self.io.out.extend_from_slice(reply);
    }

    /// Routes one request (`raw`, its arguments in `ranges`) that arrived at `arrived`.
    pub(super) fn dispatch(&mut self, raw: Bytes, arrived: Instant) {
        // Messages that arrived before this request go out before its reply (an
        // UNSUBSCRIBE confirmation must follow every message of that channel).
        if let Some(subs) = self.client.subs.as_mut() {
            while let Ok(m) = subs.rx.try_recv() {
                self.output.take_message(m.len());
                if subs.wants(&m) {
                    let mut out = BytesMut::new();
                    push_message(&mut out, &m, self.client.resp3);
                    self.pipe.pending.push_back(Pending::Ready(out.freeze()));
                }
            }
        }
        let decision = routing::route(
            &self.ctx,
            &mut self.client,
            crate::protocol::Args::new(&raw, &self.io.ranges),
            &mut self.pipe.keys,
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
            self.pipe.pending.push_back(Pending::MuteNext);
        }
        self.apply_route(decision, raw, arrived);
    }

    /// Routes a request again (after its shared guard budget passed).
    pub(super) fn route_request(&mut self, raw: Bytes, arrived: Instant) {
        let decision = routing::route(
            &self.ctx,
            &mut self.client,
            crate::protocol::Args::new(&raw, &self.io.ranges),
            &mut self.pipe.keys,
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
    pub(super) fn must_hold(&self, lane: LaneKey) -> bool {
        if lane.0 == Lane::Shared && self.pipe.dedicated.is_empty() && !self.pipe.identity_used {
            return false;
        }
        // Every request in flight uses the same kind of connection (one of the other kind
        // is held until they are answered), so the newest one tells which.
        self.pipe
            .pending
            .iter()
            .rev()
            .find_map(|p| match p {
                Pending::Remote(r) => Some(r.lane()),
                Pending::Split(_) => Some((Lane::Shared, 0)),
                _ => None,
            })
            .is_some_and(|l| l != lane)
    }

    /// Starts a computed command (every earlier request is answered): its task, and
    /// the read-your-writes tracking of what it writes.
    fn start_computed(&mut self, computed: route::Computed) {
        let route::Computed { run, writes } = computed;
        for slot in writes {
            if let Some(master) = self.ryw_begin(slot) {
                self.pipe.task_ryw.push(master);
            }
        }
        let rx = crate::workers::spawn_answer(run);
        self.pipe.pending.push_back(Pending::Task(rx));
        self.pipe.task_pending = true;
    }

    /// The task at the head is done: the client's next requests may go, and the writes
    /// it made count as answered for read-your-writes.
    pub(super) fn task_done(&mut self) {
        self.pipe.task_pending = false;
        for master in std::mem::take(&mut self.pipe.task_ryw) {
            self.ryw_end(master);
        }
    }

    /// Queues what routing decided for `raw`.
    pub(super) fn apply_route(&mut self, decision: route::Route, raw: Bytes, arrived: Instant) {
        let lane = match &decision {
            route::Route::Forward { how, .. } => {
                Some(Lane::of(how.dedicated.is_some(), how.run_as.as_ref()))
            }
            route::Route::Split { .. } | route::Route::FanOut { .. } => Some((Lane::Shared, 0)),
            _ => None,
        };
        let hold =
            match &decision {
                // Its steps go on connections of their own: every earlier request first.
                route::Route::Compute(_) => self.pipe.pending.iter().any(|p| {
                    matches!(p, Pending::Remote(_) | Pending::Split(_) | Pending::Held(_))
                }),
                _ => lane.is_some_and(|lane| self.must_hold(lane)),
            };
        if hold {
            self.pipe.pending.push_back(Pending::Held(Box::new(Held {
                decision,
                raw,
                arrived,
            })));
            self.pipe.task_pending = true;
            return;
        }
        match decision {
            route::Route::Reply(bytes) => self.pipe.pending.push_back(Pending::Ready(bytes)),
            route::Route::Task(rx) => {
                self.pipe.pending.push_back(Pending::Task(rx));
                self.pipe.task_pending = true;
            }
            route::Route::Compute(computed) => self.start_computed(*computed),
            route::Route::Gate(rx) => {
                self.pipe.pending.push_back(Pending::Gate(rx, raw));
                self.pipe.task_pending = true;
            }
            route::Route::Subscribed(replies) => {
                for (wait, bytes) in replies {
                    self.pipe.pending.push_back(Pending::Waiting(wait, bytes));
                }
            }
            route::Route::Queue(rewritten) => {
                let reply = match self.client.tx.as_mut() {
                    Some(tx) => transaction::hold(
                        tx,
                        rewritten.unwrap_or(raw),
                        self.ctx.bounds.max_transaction,
                        self.output.process(),
                    ),
                    None => Bytes::from_static(b"+QUEUED\r\n"),
                };
                self.pipe.pending.push_back(Pending::Ready(reply));
            }
            route::Route::ReplyAndClose(bytes) => {
                self.pipe.pending.push_back(Pending::Ready(bytes));
                self.io.closing = true;
            }
            route::Route::FanOut { merge, latency } => {
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
            route::Route::Split {
                parts,
                merge,
                latency,
            } => self.push_split(parts, merge, latency, arrived),
            route::Route::Forward {
                slot,
                rewritten,
                latency,
                how,
            } => {
                let request = rewritten.unwrap_or(raw);
                self.pipe.identity_used |= how.run_as.is_some();
                let remote = self.forward(request, slot, arrived, latency, how);
                self.pipe.pending.push_back(Pending::Remote(remote));
            }
        }
    }
}
