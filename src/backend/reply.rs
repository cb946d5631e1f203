//! How one reply travels from a link to the session that waits for it: a one-value
//! channel ([`channel`]: a [`ReplyTx`] the link fills, a [`ReplyRx`] the session awaits)
//! whose one allocation, the [`Slot`], a session takes back and reuses ([`Slots`]) once
//! the link has let go of it. After warm-up a forwarded request allocates nothing to get
//! its reply back (a `tokio::sync::oneshot` allocates its shared cell per request).
//!
//! Hand-written, not a crate: `tokio::sync::oneshot`, the `oneshot` crate and `futures`'
//! oneshot each allocate their cell per channel and none can be reset for reuse. Here
//! nothing is locked: a state byte says who owns the value cell, an [`AtomicWaker`] (a
//! dependency already) wakes the session. Reuse needs no generation counter: a slot
//! is reset only through [`Arc::get_mut`], i.e. when no handle of its last use is left,
//! so a late link can never fill a slot that serves another request.
//!
//! Semantics are those of a oneshot: [`ReplyTx::send`] fails (giving the value back) once
//! the receiver is gone or closed; a sender dropped unsent makes the receiver see
//! [`RecvError`]; [`ReplyRx::close`] stops later sends but keeps a value already sent.

use super::ReplyResult;
use atomic_waker::AtomicWaker;
use std::cell::UnsafeCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// No value yet: the cell belongs to the sender.
const EMPTY: u8 = 0;
/// A value was published: the cell belongs to the receiver.
const FULL: u8 = 1;
/// The sender went without a value.
const TX_GONE: u8 = 2;
/// The receiver closed before a value came: the sender keeps its value.
const RX_GONE: u8 = 3;
/// The receiver took the value.
const TAKEN: u8 = 4;

/// The one allocation of a reply channel, shared by its two ends.
struct Slot {
    state: AtomicU8,
    /// Owned by the sender while `state` is `EMPTY` (it writes it, then publishes
    /// `FULL` with Release), by the receiver once it saw `FULL` (with Acquire); nobody
    /// touches it in the other states.
    value: UnsafeCell<Option<ReplyResult>>,
    waker: AtomicWaker,
}

// SAFETY: `value` is accessed by one side at a time, as `state` says (see its doc):
// the sender only while it has not published (`EMPTY`, and its own failed publication),
// the receiver only after an Acquire load saw `FULL`, which the sender stored with
// Release after its write and after which it never touches the cell again.
unsafe impl Sync for Slot {}

impl Slot {
    fn new() -> Slot {
        Slot {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(None),
            waker: AtomicWaker::new(),
        }
    }
}

/// The link's end: fills the slot once.
pub struct ReplyTx {
    slot: Option<Arc<Slot>>,
}

/// The session's end: a future of the reply.
pub struct ReplyRx {
    slot: Option<Arc<Slot>>,
}

/// The sender went without a reply (its link was dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvError;

/// Why [`ReplyRx::try_recv`] has no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    /// Not yet.
    Empty,
    /// Never: the sender went without one, or the receiver was closed or already took it.
    Closed,
}

/// A new channel on a slot of its own (control-plane requests; sessions use [`Slots`]).
pub fn channel() -> (ReplyTx, ReplyRx) {
    on(Arc::new(Slot::new()))
}

fn on(slot: Arc<Slot>) -> (ReplyTx, ReplyRx) {
    (
        ReplyTx {
            slot: Some(slot.clone()),
        },
        ReplyRx { slot: Some(slot) },
    )
}

impl ReplyTx {
    /// Hands `value` over; gives it back if the receiver is gone or closed.
    pub fn send(mut self, value: ReplyResult) -> Result<(), ReplyResult> {
        let slot = self.slot.take().expect("a sender sends once");
        // SAFETY: the state is not `FULL` (only this sender publishes, once), so the
        // cell is the sender's (`Slot::value`).
        unsafe { *slot.value.get() = Some(value) };
        match slot
            .state
            .compare_exchange(EMPTY, FULL, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                slot.waker.wake();
                Ok(())
            }
            // RX_GONE: the receiver will never read the cell; the value is ours again.
            // SAFETY: not published, so still the sender's.
            Err(_) => Err(unsafe { (*slot.value.get()).take() }.expect("just written")),
        }
    }

    /// The receiver is gone or closed: a send would fail.
    pub fn is_closed(&self) -> bool {
        self.slot
            .as_ref()
            .is_none_or(|s| s.state.load(Ordering::Acquire) == RX_GONE)
    }
}

impl Drop for ReplyTx {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            if slot
                .state
                .compare_exchange(EMPTY, TX_GONE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.waker.wake();
            }
        }
    }
}

impl ReplyRx {
    /// The reply if it is there, without waiting.
    pub fn try_recv(&mut self) -> Result<ReplyResult, TryRecvError> {
        let Some(slot) = self.slot.as_ref() else {
            return Err(TryRecvError::Closed);
        };
        match slot.state.load(Ordering::Acquire) {
            EMPTY => Err(TryRecvError::Empty),
            FULL => {
                // SAFETY: `FULL` seen with Acquire: the cell is the receiver's, and only
                // this (unique, `&mut self`) receiver reads it.
                let value = unsafe { (*slot.value.get()).take() };
                slot.state.store(TAKEN, Ordering::Relaxed);
                value.ok_or(TryRecvError::Closed)
            }
            _ => Err(TryRecvError::Closed),
        }
    }

    /// Refuses later sends; a reply already sent stays and [`ReplyRx::try_recv`] gets it.
    pub fn close(&mut self) {
        if let Some(slot) = self.slot.as_ref() {
            let _ =
                slot.state
                    .compare_exchange(EMPTY, RX_GONE, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

impl Future for ReplyRx {
    type Output = Result<ReplyResult, RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match this.try_recv() {
            Err(TryRecvError::Empty) => {}
            done => return Poll::Ready(done.map_err(|_| RecvError)),
        }
        // Register, then look again: a send between the two wakes the waker registered.
        if let Some(slot) = this.slot.as_ref() {
            slot.waker.register(cx.waker());
        }
        match this.try_recv() {
            Err(TryRecvError::Empty) => Poll::Pending,
            done => Poll::Ready(done.map_err(|_| RecvError)),
        }
    }
}

impl Drop for ReplyRx {
    fn drop(&mut self) {
        // A value already in the cell goes with the slot's last handle.
        self.close();
    }
}

/// Most slots a session keeps for reuse: its usual requests in flight at once.
const KEEP: usize = 32;

/// A session's slots ready for reuse. Not shared: one per session, used on its task.
#[derive(Default)]
pub struct Slots {
    free: Vec<Arc<Slot>>,
}

impl Slots {
    /// A channel on a reused slot when there is one (else a new one).
    pub fn channel(&mut self) -> (ReplyTx, ReplyRx) {
        match self.free.pop() {
            Some(slot) => on(slot),
            None => channel(),
        }
    }

    /// Takes `rx`'s slot back for reuse if nothing else holds it any more (its link
    /// sent or dropped its end); else `rx` is just dropped (closed).
    pub fn recycle(&mut self, mut rx: ReplyRx) {
        let Some(mut slot) = rx.slot.take() else {
            return;
        };
        if self.free.len() >= KEEP {
            rx.slot = Some(slot);
            return;
        }
        match Arc::get_mut(&mut slot) {
            Some(s) => {
                // The only handle: reset without atomics (a value never taken goes now).
                *s.value.get_mut() = None;
                *s.state.get_mut() = EMPTY;
                drop(s.waker.take());
                self.free.push(slot);
            }
            None => rx.slot = Some(slot),
        }
    }

    /// Slots ready for reuse (tests).
    pub fn len(&self) -> usize {
        self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
