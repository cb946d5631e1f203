//! Hedged replica reads: a read a replica has not answered within
//! `replica_reads.hedge_after_ms` is sent to the shard's master as well, and the first
//! answer is the reply.
//!
//! **Why.** A replica that stops (SIGSTOP, a hung host, a long fork) keeps its TCP
//! connection: reads already sent to it would wait `request_timeout_ms` before the master
//! answered them. The lag tracker takes such a replica out of service only once its
//! staleness passes the bound; hedging covers the reads in flight until then.
//!
//! **Only reads.** A request is sent to a replica only when it is a read-only command
//! (`routing`), so sending it to the master too can never run a write twice.
//!
//! **Order and the loser.** Hedging replaces the receiver of one queued request and
//! nothing else, so replies stay in request order. The answer that comes second is never
//! looked at: its receiver is dropped, and the backend link, which reads every reply
//! anyway to keep its framing, discards it. A replica that needs hedging again and again
//! is taken out of service for a while ([`crate::cluster::replicas::ReadPolicy::hedged`]).
//!
//! **Byte budget.** A loser's reply may already be in its receiver, counted against the
//! client's reply bytes ([`crate::budget`]): every loser is released through
//! [`Second::release`] (and the master's receiver on drop), which takes such a reply back.
//!
//! **Cost.** The timer exists only while a replica read is at the head of the queue; a
//! read answered in time costs one `Option` check.

use super::pending::{HeadEvent, Pending, Remote};
use super::Session;
use crate::backend::reply::{RecvError, TryRecvError};
use crate::backend::{LinkError, ReplyResult};
use crate::budget::OutputBytes;
use std::sync::Arc;
use std::time::Instant;

/// The master's receiver of a hedged read, with the client's byte count: whichever
/// receiver loses is released through it, so a reply already handed over to it is taken
/// back from the count (a receiver simply dropped would keep it counted for good).
pub(super) struct Second {
    rx: crate::backend::reply::ReplyRx,
    output: Arc<OutputBytes>,
}

impl Second {
    /// Closes `rx` and takes back the reply it may already hold.
    fn release(&self, rx: &mut crate::backend::reply::ReplyRx) {
        super::buffers::release_reply(rx, &self.output);
    }
}

impl Drop for Second {
    fn drop(&mut self) {
        super::buffers::release_reply(&mut self.rx, &self.output);
    }
}

/// Where a replica read is in its hedge.
#[derive(Default)]
pub(super) enum Hedge {
    /// Not a replica read, or hedging is off.
    #[default]
    Off,
    /// Sent to a replica: hedge at this time if it has not answered.
    At(Instant),
    /// Sent to the master too: its reply arrives here.
    Sent(Second),
}

impl Session {
    /// The hedge for a read sent to a replica now (`sent`: when it was sent).
    pub(super) fn hedge_for(&self, sent: Instant) -> Hedge {
        match self.ctx.read_policy.as_ref().and_then(|p| p.hedge_after) {
            Some(after) => Hedge::At(sent + after),
            None => Hedge::Off,
        }
    }

    /// Whether the head request may be hedged now: only while nothing the client sent
    /// after it is on its way to a master. A hedged copy reaches the master after those
    /// later requests, so it could see a write the client sent after the read (`GET k`
    /// then `DEL k` answered nil); a replica read cannot, and requests not sent yet
    /// (held, gated) wait for the head. Called with the head taken out of the queue.
    fn may_hedge(&self) -> bool {
        self.pipe.pending.iter().all(|p| match p {
            Pending::Remote(r) => r.replica.is_some(),
            Pending::Split(_) | Pending::Task(_) => false,
            Pending::Ready(_)
            | Pending::Waiting(..)
            | Pending::MuteNext
            | Pending::Gate(..)
            | Pending::Held(_) => true,
        })
    }

    /// The replica of `r` has not answered in time: send `r` to the master of its slot
    /// too, and count it against the replica.
    pub(super) fn hedge(&mut self, r: &mut Remote) {
        if !self.may_hedge() {
            r.hedge = Hedge::Off;
            return;
        }
        let (Some(replica), Some(policy)) = (r.replica.as_ref(), self.ctx.read_policy.as_ref())
        else {
            r.hedge = Hedge::Off;
            return;
        };
        policy.hedged(replica);
        let rx = self.send_job(
            &r.request,
            r.slot,
            None,
            false,
            r.replies,
            None,
            r.run_as.as_ref(),
            r.part_of.as_ref(),
        );
        r.hedge = Hedge::Sent(Second {
            rx,
            output: self.output.clone(),
        });
    }
}

/// Waits for `r`'s reply, hedging when its time comes. The reply of whichever node
/// answers first is returned; when that is the master, `r` no longer counts as a replica
/// read. A replica's answer that it cannot serve (`replica_should_yield`) makes the
/// master's answer the one waited for, and a master that could not be asked (link
/// error) the replica's.
pub(super) async fn wait(r: &mut Remote, part: usize) -> HeadEvent {
    loop {
        let at = match &mut r.hedge {
            Hedge::Off => return HeadEvent::Reply(part, received((&mut r.rx).await)),
            Hedge::At(at) => *at,
            Hedge::Sent(master) => {
                let (from_master, result) = tokio::select! {
                    result = &mut r.rx => (false, received(result)),
                    result = &mut master.rx => (true, received(result)),
                };
                if from_master {
                    if result.is_err() {
                        // The master could not be asked: the replica's answer it is.
                        r.hedge = Hedge::Off;
                        continue;
                    }
                    master.release(&mut r.rx);
                    r.hedge = Hedge::Off;
                    r.replica = None;
                    return HeadEvent::Reply(part, result);
                }
                if super::replica_read::replica_should_yield(&result) {
                    master_answers(r);
                    continue;
                }
                r.hedge = Hedge::Off; // the master's reply, when it comes, is dropped
                return HeadEvent::Reply(part, result);
            }
        };
        return tokio::select! {
            result = &mut r.rx => HeadEvent::Reply(part, received(result)),
            _ = tokio::time::sleep_until(at.into()) => HeadEvent::HedgeDue(part),
        };
    }
}

/// `r`'s reply if one has arrived, without waiting (either node's, as [`wait`]).
pub(super) fn try_reply(r: &mut Remote) -> Option<ReplyResult> {
    if let Some(result) = try_recv(&mut r.rx) {
        let Hedge::Sent(_) = r.hedge else {
            return Some(result);
        };
        if !super::replica_read::replica_should_yield(&result) {
            r.hedge = Hedge::Off;
            return Some(result);
        }
        master_answers(r);
    }
    let Hedge::Sent(master) = &mut r.hedge else {
        return None;
    };
    let result = try_recv(&mut master.rx)?;
    if result.is_err() {
        r.hedge = Hedge::Off;
        return None; // the master could not be asked: wait for the replica
    }
    master.release(&mut r.rx);
    r.hedge = Hedge::Off;
    r.replica = None;
    Some(result)
}

/// The master's reply of a hedged read is now `r`'s only one.
fn master_answers(r: &mut Remote) {
    if let Hedge::Sent(mut master) = std::mem::take(&mut r.hedge) {
        std::mem::swap(&mut r.rx, &mut master.rx);
        r.replica = None;
        // `master` now holds the replica's receiver, released as it drops.
    }
}

fn try_recv(rx: &mut crate::backend::reply::ReplyRx) -> Option<ReplyResult> {
    match rx.try_recv() {
        Ok(result) => Some(result),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Closed) => Some(dropped()),
    }
}

fn received(result: Result<ReplyResult, RecvError>) -> ReplyResult {
    result.unwrap_or_else(|_| dropped())
}

fn dropped() -> ReplyResult {
    Err(LinkError::Lost("backend link dropped".into()))
}
