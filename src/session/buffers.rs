//! What a session holds, in bytes: the limits that apply before login, reply bytes
//! past `server.max_pending_reply_bytes`, read buffers grown for large requests and the
//! output buffer beyond [`OUT_FLOOR`] against `server.max_client_buffer_bytes`, parts
//! of a split request kept counted until merged (and a merged reply bounded by
//! `cluster.max_reply_bytes`, as one node's reply is), and giving all of it back when
//! the client goes.
//!
//! The counting itself lives in [`crate::budget`]; this file is the session's policy.
//! Nothing here runs per request: limits are picked when the login state changes, the
//! reply bound is read once per pass, and the read and output buffers are charged only
//! beyond 64 KiB ([`READ_MAX`], [`OUT_FLOOR`]).

use super::io::{OUT_FLOOR, READ_MAX};
use super::pending::{Pending, Split};
use super::{merge, Session};
use crate::budget::Overflow;
use crate::protocol::refusal::Refusal;
use bytes::Bytes;
use std::sync::atomic::Ordering;

impl Session {
    /// Whether the client's replies still fit `server.max_pending_reply_bytes` (replies
    /// handed over by backends and not yet taken, plus the output buffer): past it no
    /// request is read until the client reads its replies.
    /// Large requests waiting for their replies count too (`Remote::_charge`).
    #[inline]
    pub(super) fn within_reply_bytes(&self) -> bool {
        let own = self
            .output
            .session_held()
            .saturating_sub(self.io.out_charged);
        self.output.held() + own + self.io.out.len() < self.output.limits().replies
    }

    /// Charges the output buffer beyond [`OUT_FLOOR`] to the process budget (what the
    /// client has not read yet is held here once moved out of the pending queue), or
    /// gives back what it no longer holds. Once per pass, only while it is that large.
    pub(super) fn recharge_output(&mut self) {
        let now = self.io.out.len().saturating_sub(OUT_FLOOR);
        if now > self.io.out_charged {
            self.output.charge(now - self.io.out_charged);
        } else {
            self.output.release(self.io.out_charged - now);
        }
        self.io.out_charged = now;
    }

    /// Part `part` of the head split request is final (`len` bytes were handed over,
    /// and stay counted): kept for the merge, or, once the parts together pass
    /// `cluster.max_reply_bytes`, dropped. The merged reply once every part is in.
    pub(super) fn merge_part(
        &mut self,
        split: &mut Split,
        part: usize,
        bytes: Bytes,
        len: usize,
    ) -> Option<Bytes> {
        let limit = self.ctx.cluster.link_options().max_reply_bytes;
        let counted = if len >= crate::budget::COUNTED_MIN {
            len
        } else {
            0
        };
        split.counted += counted;
        match split.kept.map(|k| k + bytes.len()).filter(|k| *k <= limit) {
            Some(kept) => {
                split.kept = Some(kept);
                split.done[part] = Some(bytes);
            }
            None => {
                // Over the bound: nothing more is kept for a reply that cannot be sent.
                split.kept = None;
                split
                    .done
                    .iter_mut()
                    .flatten()
                    .for_each(|b| *b = Bytes::new());
                split.done[part] = Some(Bytes::new());
                self.give_back_parts(split, split.counted);
                split.counted = 0;
            }
        }
        if !split.done.iter().all(Option::is_some) {
            return None;
        }
        let merged = match split.kept {
            Some(_) => {
                let parts: Vec<Bytes> = split.done.iter_mut().flat_map(Option::take).collect();
                merge::merge(&split.merge, &parts)
            }
            None => {
                tracing::warn!(
                    client = self.client.meta.id,
                    limit,
                    "merged reply over cluster.max_reply_bytes discarded"
                );
                metrics::counter!("respgate_backend_replies_over_limit_total").increment(1);
                Refusal::MergedReplyTooLarge {
                    parts: split.parts.len(),
                    limit,
                }
                .reply()
            }
        };
        self.give_back_parts(split, split.counted);
        split.counted = 0;
        Some(merged)
    }

    /// `n` bytes of `split`'s parts are no longer held (redirected, dropped or merged).
    pub(super) fn give_back_parts(&self, split: &Split, n: usize) {
        if n >= crate::budget::COUNTED_MIN {
            self.output.take_reply(n);
            split.part_of.fetch_sub(n, Ordering::Relaxed);
        }
    }

    /// The framing limits for the client's login state: Redis's small ones until it has
    /// logged in (when login is required).
    pub(super) fn relimit(&mut self) {
        self.io.limits = match self.client.auth.user() {
            Some(_) => self.ctx.bounds.limits,
            None => self.ctx.bounds.limits.before_login(),
        };
    }

    /// Makes room in the read buffer for more of the request being read. Growth beyond
    /// [`READ_MAX`] is taken from the process budget; when it is spent the request is
    /// refused with an error naming `server.max_client_buffer_bytes` and the connection
    /// closes (its remaining bytes cannot be skipped without reading them). `false`
    /// when refused.
    pub(super) fn grow_read_buffer(&mut self) -> bool {
        // At least double while a large request is still arriving: linear copying.
        let additional = self.io.read_hint.max(self.io.rbuf.len());
        let wanted = (self.io.rbuf.len() + additional).max(self.io.rbuf.capacity() * 2);
        let charge = wanted.saturating_sub(READ_MAX);
        if charge > self.io.read_charged {
            let process = self.output.process().clone();
            if !process.try_take(charge - self.io.read_charged) {
                tracing::warn!(
                    client = self.client.meta.id,
                    peer = %self.client.meta.peer,
                    buffered = self.io.rbuf.len(),
                    limit = process.limit(),
                    "refusing a large request: server.max_client_buffer_bytes is spent"
                );
                metrics::counter!("respgate_requests_refused_total", "limit" => "max_client_buffer_bytes")
                    .increment(1);
                self.pipe
                    .pending
                    .push_back(Pending::Ready(process.refusal().reply()));
                self.io.rbuf.clear();
                self.io.closing = true;
                self.io.linger = true;
                return false;
            }
            self.io.read_charged = charge;
        }
        self.io.rbuf.reserve(additional);
        true
    }

    /// Gives back what the read buffer no longer holds beyond [`READ_MAX`] (once a
    /// large request has been framed and its buffer let go).
    pub(super) fn recharge_read_buffer(&mut self) {
        let now = self.io.rbuf.capacity().saturating_sub(READ_MAX);
        if now < self.io.read_charged {
            self.output.process().give_back(self.io.read_charged - now);
            self.io.read_charged = now;
        }
    }

    /// The log line and metric for a client closed for the bytes it held.
    pub(super) fn log_overflow(&self) {
        let (option, reason, limit) = match self.output.overflow() {
            Some(Overflow::Replies) => (
                "server.max_pending_reply_bytes",
                "max_pending_reply_bytes",
                self.output.limits().replies,
            ),
            Some(Overflow::Messages) => (
                "server.pubsub_queue_bytes",
                "pubsub_queue_bytes",
                self.output.limits().messages,
            ),
            // The evictor logged it, with what the client held.
            Some(Overflow::Process) | None => return,
        };
        tracing::info!(
            client = self.client.meta.id,
            peer = %self.client.meta.peer,
            held_bytes = self.output.held() + self.io.out.len(),
            limit,
            "closing client over {option}: it does not read what it asked for"
        );
        metrics::counter!("respgate_clients_disconnected_total", "reason" => reason).increment(1);
    }
}

impl Drop for Session {
    /// Gives back every byte the client held: replies already handed over to requests
    /// still queued, its read buffer's and output buffer's charges. (Messages still in
    /// its subscriber queue are given back by `Subscriptions`' own drop.)
    fn drop(&mut self) {
        let output = &self.output;
        for p in self.pipe.pending.iter_mut() {
            match p {
                Pending::Remote(r) => release_reply(&mut r.rx, output),
                Pending::Split(split) => {
                    split
                        .parts
                        .iter_mut()
                        .for_each(|r| release_reply(&mut r.rx, output));
                    output.take_reply(split.counted);
                }
                _ => {}
            }
        }
        if self.io.read_charged > 0 {
            output.process().give_back(self.io.read_charged);
        }
        if self.io.out_charged > 0 {
            output.release(self.io.out_charged);
        }
    }
}

/// Closes a reply receiver nobody will read and takes back the reply it may already
/// hold from the client's count. Once closed, a link's later hand-over fails and the
/// link takes its count back itself; a receiver simply dropped would keep a reply that
/// had arrived counted for good.
pub(super) fn release_reply(
    rx: &mut crate::backend::reply::ReplyRx,
    output: &crate::budget::OutputBytes,
) {
    rx.close();
    if let Ok(Ok(bytes)) = rx.try_recv() {
        output.take_reply(bytes.len());
    }
}
