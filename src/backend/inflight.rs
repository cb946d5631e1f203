//! What a link remembers of each request written and not yet answered ([`Inflight`]),
//! and how a reply reaches its session ([`hand_over`]). Shared by the link task, which
//! queues entries as it writes, and the framing, which pops them as replies arrive: a
//! file of its own so neither imports the other.

use bytes::Bytes;
use std::sync::Arc;

/// One request written to the node, in the order written.
pub(super) enum Inflight {
    /// A job's reply sender, how many replies it waits for, whose bytes they are, and
    /// the split request it is a part of.
    Client(
        crate::backend::reply::ReplyTx,
        u32,
        Option<Arc<crate::budget::OutputBytes>>,
        Option<Arc<std::sync::atomic::AtomicUsize>>,
    ),
    /// The `+OK` of an `ASKING` we sent: swallowed.
    Asking,
}

/// Replies from this size up are copied out of the link's read buffer ([`hand_over`]).
const OWN_ALLOCATION_MIN: usize = 64 * 1024;

/// Gives `reply` to the session waiting for it, counted against its client's reply
/// bytes until the session takes it. A dropped receiver (client gone) is fine: the
/// reply is discarded (and uncounted) and FIFO matching stays intact.
#[inline]
pub(super) fn hand_over(
    tx: crate::backend::reply::ReplyTx,
    budget: Option<&crate::budget::OutputBytes>,
    part_of: Option<&std::sync::atomic::AtomicUsize>,
    reply: Bytes,
) {
    let len = reply.len();
    if budget.is_some_and(|b| !b.hand_part(len, part_of)) {
        // The client is being closed for the bytes it holds: dropped (the receiver
        // sees the link gone, and no reply is written to that client any more).
        return;
    }
    // A large reply is a slice of the link's read buffer, which grew by doubling while it
    // arrived: held as it is, it would pin up to twice its size (and whatever followed
    // it). Given an allocation of its own, the link reuses its buffer in place, and what
    // the budget counts is what is held.
    let reply = if len >= OWN_ALLOCATION_MIN && budget.is_some() {
        Bytes::copy_from_slice(&reply)
    } else {
        reply
    };
    if tx.send(Ok(reply)).is_err() {
        if let Some(b) = budget {
            b.take_reply(len);
        }
        if let Some(p) = part_of.filter(|_| len >= crate::budget::COUNTED_MIN) {
            p.fetch_sub(len, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
