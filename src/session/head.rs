//! The head of the queue: a request's reply is handled only once every earlier
//! request's reply has gone to the output, so replies leave in request order whichever
//! backend answers first. Redirections and retries (`redirects.rs`) happen here too,
//! which keeps the client's own order across a slot migration. A split request's parts
//! are merged here once all are in (`buffers.rs` keeps their bytes counted meanwhile).

use super::io::OUT_HIGH_WATER;
use super::pending::{task_reply, try_reply, HeadEvent, Held, Pending, Step};
use super::Session;
use crate::backend::ReplyResult;
use crate::protocol::refusal::Refusal;
use crate::protocol::scan::scan_request;
use bytes::Bytes;
use tokio::sync::oneshot;

impl Session {
    /// The head request's shared budget was counted: refused (its reply is the error)
    /// or passed, and then routed again, past that guard, as if it arrived now.
    pub(super) fn gate_done(&mut self, verdict: Option<Bytes>) {
        let Some(Pending::Gate(_, raw)) = self.pipe.pending.pop_front() else {
            return;
        };
        self.pipe.task_pending = false;
        if let Some(refusal) = verdict {
            self.emit(&refusal);
            return;
        }
        if scan_request(&raw, &self.io.limits, &mut self.io.ranges).is_err() {
            self.emit(&Refusal::Reframe.reply());
            return;
        }
        self.client.guards.bypass_once = true;
        let now = self.now();
        self.route_request(raw, now);
        self.client.guards.bypass_once = false;
    }

    /// Moves every reply that is already available at the head of the queue to the
    /// output, stopping at the first one still outstanding.
    pub(super) fn drain_ready_heads(&mut self) {
        while self.io.out.len() < OUT_HIGH_WATER {
            let ready = match self.pipe.pending.front_mut() {
                Some(Pending::Ready(_)) => {
                    if let Some(Pending::Ready(b)) = self.pipe.pending.pop_front() {
                        self.emit(&b);
                    }
                    continue;
                }
                Some(Pending::MuteNext) => {
                    self.pipe.pending.pop_front();
                    self.pipe.mute_next = true;
                    continue;
                }
                Some(Pending::Waiting(rx, _)) => {
                    if let Some(rx) = rx {
                        if matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                            return;
                        }
                    }
                    if let Some(Pending::Waiting(_, bytes)) = self.pipe.pending.pop_front() {
                        self.emit_push(&bytes);
                    }
                    continue;
                }
                Some(Pending::Task(rx)) => {
                    let reply = match rx.try_recv() {
                        Err(oneshot::error::TryRecvError::Empty) => return,
                        Ok(reply) => task_reply(Some(reply)),
                        Err(oneshot::error::TryRecvError::Closed) => task_reply(None),
                    };
                    self.pipe.pending.pop_front();
                    self.task_done();
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
                    if let Some(Pending::Held(held)) = self.pipe.pending.pop_front() {
                        self.pipe.task_pending = false;
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

    pub(super) fn on_head_event(&mut self, event: HeadEvent) {
        match event {
            HeadEvent::Reply(part, result) => self.on_reply(part, result),
            HeadEvent::Confirmed => {
                if let Some(Pending::Waiting(_, bytes)) = self.pipe.pending.pop_front() {
                    self.emit_push(&bytes);
                }
            }
            HeadEvent::GateDone(verdict) => self.gate_done(verdict),
            HeadEvent::TaskDone(reply) => {
                if let Some(Pending::Task(_)) = self.pipe.pending.pop_front() {
                    self.task_done();
                    self.emit(&reply);
                }
            }
            HeadEvent::RetryDue(part) => match self.pipe.pending.pop_front() {
                Some(Pending::Remote(mut r)) => {
                    self.send(&mut r, None, false);
                    self.pipe.pending.push_front(Pending::Remote(r));
                }
                Some(Pending::Split(mut split)) => {
                    self.send(&mut split.parts[part], None, false);
                    self.pipe.pending.push_front(Pending::Split(split));
                }
                Some(other) => self.pipe.pending.push_front(other),
                None => {}
            },
            HeadEvent::HedgeDue(part) => match self.pipe.pending.pop_front() {
                Some(Pending::Remote(mut r)) => {
                    self.hedge(&mut r);
                    self.pipe.pending.push_front(Pending::Remote(r));
                }
                Some(Pending::Split(mut split)) => {
                    self.hedge(&mut split.parts[part]);
                    self.pipe.pending.push_front(Pending::Split(split));
                }
                Some(other) => self.pipe.pending.push_front(other),
                None => {}
            },
        }
    }

    /// Handles a reply for the head request (for a split request, for its part `part`):
    /// follows redirections and retries, and once the head's reply is final, moves it
    /// (merged, for a split request) to the output.
    pub(super) fn on_reply(&mut self, part: usize, result: ReplyResult) {
        let len = result.as_ref().map_or(0, Bytes::len);
        let Some(mut head) = self.pipe.pending.pop_front() else {
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
                self.recycle(head);
            }
            None => self.pipe.pending.push_front(head),
        }
    }

    /// Takes back the reply slots of an answered head for the next requests.
    fn recycle(&mut self, head: Pending) {
        match head {
            Pending::Remote(r) => self.slots.recycle(r.rx),
            Pending::Split(split) => {
                for part in split.parts {
                    self.slots.recycle(part.rx);
                }
            }
            _ => {}
        }
    }
}
