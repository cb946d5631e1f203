//! What routing decided for one request ([`Route`]), the vocabulary between the
//! deciders (routing, local answers, transactions, subscriptions, CONFIG GET) and the
//! pipeline that carries a decision out. A leaf of its own, so the deciders and the
//! router can name it without importing each other.

use super::dedicated::Pin;
use super::merge::Merge;
use crate::backend::NodeIdentity;
use crate::cluster::key_slot;
use crate::commands::KeyRef;
use crate::protocol::Args;
use bytes::Bytes;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Replies to a (un)subscription: each ready, or once the hub confirmed.
pub type Confirmations = Vec<(Option<oneshot::Receiver<()>>, Bytes)>;

/// How a request is sent: the replies it produces, on the client's own connection or
/// not, and the lag bound under which a replica may serve it (or
/// [`TRACKED_WRITE`]).
pub struct Sending {
    /// Replies the forwarded bytes produce (N+2 for a transaction).
    pub replies: u32,
    /// On the client's own connection, and why (blocking commands, WATCH).
    pub dedicated: Option<Pin>,
    /// A read a replica may serve under this lag bound (`[replica_reads]`).
    pub replica: Option<u8>,
    /// Run on the node as this identity (scripts, transactions holding one).
    pub run_as: Option<Arc<NodeIdentity>>,
    /// A script call: its replies are data ([`crate::cluster::redirect`]).
    pub script: bool,
    /// A transaction: the last `hidden` elements of EXEC's reply answer commands
    /// respgate queued itself (the TTL policy's EXPIREs) and are taken out.
    pub hidden: u32,
    /// The split request this is a part of (its parts' bytes counted together).
    pub part_of: Option<Arc<AtomicUsize>>,
}

impl Sending {
    /// One request, one reply, on the shared links, as respgate's own user.
    pub fn one() -> Sending {
        Sending {
            replies: 1,
            dedicated: None,
            replica: None,
            run_as: None,
            script: false,
            hidden: 0,
            part_of: None,
        }
    }
}

/// The decision for one request.
pub enum Route {
    /// Answer with these bytes.
    Reply(Bytes),
    /// Answer, then close the connection once every earlier reply is written.
    ReplyAndClose(Bytes),
    /// Forward to the master of `slot` (any master when `None`). `rewritten` replaces
    /// the client's bytes when respgate had to change the request.
    Forward {
        slot: Option<u16>,
        rewritten: Option<Bytes>,
        /// Where the reply latency is recorded.
        latency: metrics::Histogram,
        /// How it is sent.
        how: Sending,
    },
    /// Queue the request (or these bytes instead: the TTL policy capped its expiry) in
    /// the client's transaction and answer `+QUEUED`.
    Queue(Option<Bytes>),
    /// (Un)subscription replies, each ready or waiting for the hub's confirmation.
    Subscribed(Confirmations),
    /// Send each part (a request for a slot, producing `n` replies of which the first
    /// is merged: the rest answer the TTL policy's EXPIREs) and merge the replies.
    Split {
        parts: Vec<(Option<u16>, Bytes, u32)>,
        merge: Merge,
        latency: metrics::Histogram,
    },
    /// A reply a task of its own computes (CONFIG SET on every node). The client's next
    /// requests wait for it.
    Task(tokio::sync::oneshot::Receiver<Bytes>),
    /// A cross-slot command respgate computes (`cross_slot`), not started yet: its steps
    /// go on connections of their own, so it starts only once every earlier request of
    /// the client is answered (held until then). The client's next requests wait for it.
    Compute(Box<Computed>),
    /// Count the request against a shared budget first: `None` from the task lets it
    /// route again (past the guard), an error is its reply. The client's next requests
    /// wait for it.
    Gate(tokio::sync::oneshot::Receiver<Option<Bytes>>),
    /// Send the request as it is to every master and merge the replies.
    FanOut {
        merge: Merge,
        latency: metrics::Histogram,
    },
}

/// A computed command waiting to start ([`Route::Compute`]).
pub struct Computed {
    pub run: std::pin::Pin<Box<dyn std::future::Future<Output = Bytes> + Send>>,
    /// The slots it writes, when read-your-writes tracks this client's writes: their
    /// masters count a write in flight until it is answered, as for a forwarded write.
    pub writes: Vec<u16>,
}

/// `Route::Forward::replica` for a write whose master read-your-writes must track.
pub const TRACKED_WRITE: u8 = u8::MAX;

/// The slot every key hashes to (`None` without keys), or `Err` when they differ.
pub(super) fn common_slot(keys: &[KeyRef], args: Args<'_>) -> Result<Option<u16>, ()> {
    let mut slot = None;
    for k in keys {
        let s = key_slot(k.key(args));
        if slot.is_some_and(|prev| prev != s) {
            return Err(());
        }
        slot = Some(s);
    }
    Ok(slot)
}
