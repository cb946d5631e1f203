//! Byte budgets: how much a client can make respgate hold, counted in bytes.
//!
//! Counts (`max_pending_replies`, `pubsub_queue_messages`) bound how many replies or
//! messages wait for a client, but one `GET` of a 1 MB value weighs as much as a million
//! `+OK`s. Two things are counted here:
//!
//! - [`OutputBytes`], one per client: bytes of replies a backend has handed over and the
//!   client's session has not taken yet (they wait behind a slower head, or behind an
//!   output buffer the client does not read), plus pub/sub messages in its queue. The
//!   session adds its own output buffer when it judges the client. Past
//!   `server.max_pending_reply_bytes` the session stops reading requests (back-pressure);
//!   past twice that, or past `server.pubsub_queue_bytes` for messages, the client is
//!   closed, as Redis closes a client over its `client-output-buffer-limit`.
//! - [`ClientBuffers`], one per process: the sum of every client's [`OutputBytes`], of
//!   read buffers grown beyond their usual size for large requests, and of commands
//!   queued in transactions ([`Charge`]) (`server.max_client_buffer_bytes`). When it is
//!   spent, a request that needs more buffer is refused and the clients holding the most
//!   are disconnected (what Redis 7's `maxmemory-clients` does).
//!
//! A pub/sub message goes to every subscriber of its channel as one frame (clones of one
//! `Bytes`), so the process budget must count the frame once, not once per subscriber:
//! 200 subscribers of a 1 MiB message hold 1 MiB, and counting 200 MiB would make the
//! evictor disconnect healthy subscribers. Each subscriber's own line
//! (`server.pubsub_queue_bytes`) still counts the frame in its queue. The rule depends on
//! the length alone, so whoever takes a message out of a queue needs nothing more than
//! its length: a frame of at least [`COUNTED_MIN`] bytes is copied once by the hub into
//! a [`shared_frame`], which charges the process budget when made and gives the bytes
//! back when its last clone is dropped (taken and written by every subscriber, or
//! dropped with a queue); a smaller frame (a slice of the hub's read buffer) is counted
//! per subscriber, an over-count of at most 4 KiB per subscriber and message.
//!
//! The session also charges to the process budget (and to the client's
//! [`OutputBytes::holding`], which the evictor ranks by) what it holds itself: its
//! output buffer beyond a floor, and large requests still waiting for their reply
//! ([`Charge`]). Parts of one split request (MGET over several slots) share a counter, so
//! the bytes of one request are never judged as replies piling up behind each other.
//!
//! Mechanism only: the session, the backend link and the pub/sub hub decide when to add
//! and take; this file keeps the sums and says when a limit is crossed. Replies shorter
//! than [`COUNTED_MIN`] are not counted (a `GET`/`SET` pays no atomic for them): at most
//! `max_pending_replies` of them wait per client, a few MiB at the defaults.

use crate::shutdown::{Shutdown, STOP};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// Replies shorter than this are not counted (see the module docs).
pub const COUNTED_MIN: usize = 4096;

/// The process-wide budget for client buffers.
pub struct ClientBuffers {
    used: AtomicUsize,
    /// The highest `used` since [`ClientBuffers::take_high_water`] last looked.
    high: AtomicUsize,
    limit: usize,
    /// Woken when `used` goes over `limit`: the evictor disconnects the largest holders.
    pub over: Notify,
}

impl ClientBuffers {
    pub fn new(limit: usize) -> Arc<ClientBuffers> {
        Arc::new(ClientBuffers {
            used: AtomicUsize::new(0),
            high: AtomicUsize::new(0),
            limit,
            over: Notify::new(),
        })
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Bytes over the budget (0 while within it).
    pub fn excess(&self) -> usize {
        self.used().saturating_sub(self.limit)
    }

    /// The highest use since the last call (then forgotten).
    pub fn take_high_water(&self) -> usize {
        self.high.swap(self.used(), Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        let now = self.used.fetch_add(n, Ordering::Relaxed) + n;
        self.high.fetch_max(now, Ordering::Relaxed);
        if now > self.limit && now - n <= self.limit {
            self.over.notify_one();
        }
    }

    fn sub(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Takes `n` bytes for a buffer that must grow, unless the budget would be spent:
    /// `false` then, and nothing is taken.
    pub fn try_take(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur.saturating_add(n) > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(
                cur,
                cur + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.high.fetch_max(cur + n, Ordering::Relaxed);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back what [`ClientBuffers::try_take`] took.
    pub fn give_back(&self, n: usize) {
        self.sub(n);
    }

    /// The refusal for a request that needs buffer space the budget no longer has.
    pub fn refusal(&self) -> crate::protocol::refusal::Refusal {
        crate::protocol::refusal::Refusal::ClientBuffersFull(self.limit)
    }
}

/// Gives memory freed by clients back to the OS when the allocator keeps it: with
/// glibc's malloc, what hostile clients made respgate allocate stayed resident after they
/// closed (`loadtest/rss.sh`). Called every few seconds; trims only after client buffers
/// held at least `min` bytes and have since shrunk to a quarter of that.
pub fn trim_after_spike(process: &ClientBuffers, min: usize) {
    let high = process.take_high_water();
    if high >= min && process.used() <= high / 4 {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only walks the allocator's own arenas.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// A copy of `frame` for every subscriber of a message to share, counted in the process
/// budget once, for as long as any clone of it lives (see the module docs). For frames
/// of [`COUNTED_MIN`] bytes or more: one copy per message, however many subscribers.
pub fn shared_frame(process: &Arc<ClientBuffers>, frame: &[u8]) -> bytes::Bytes {
    process.add(frame.len());
    bytes::Bytes::from_owner(SharedFrame {
        data: frame.to_vec(),
        process: process.clone(),
    })
}

/// The owner behind a [`shared_frame`]'s clones: dropped with the last of them.
struct SharedFrame {
    data: Vec<u8>,
    process: Arc<ClientBuffers>,
}

impl AsRef<[u8]> for SharedFrame {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for SharedFrame {
    fn drop(&mut self) {
        self.process.sub(self.data.len());
    }
}

/// Bytes a client holds outside its replies and messages (the commands queued in its
/// transaction), taken from the process budget as they come and given back when this
/// is dropped: at EXEC (once the job is built), DISCARD, RESET, an aborted transaction,
/// or the client's end.
pub struct Charge {
    process: Arc<ClientBuffers>,
    bytes: usize,
}

impl Charge {
    pub fn new(process: Arc<ClientBuffers>) -> Charge {
        Charge { process, bytes: 0 }
    }

    /// Bytes taken so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `n` more bytes, unless the process budget would be spent (`false`: nothing
    /// taken).
    pub fn try_add(&mut self, n: usize) -> bool {
        let ok = self.process.try_take(n);
        if ok {
            self.bytes += n;
        }
        ok
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.process.give_back(self.bytes);
    }
}

/// Per-client limits, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    /// `server.max_pending_reply_bytes`: reading stops above it; the client is closed
    /// above twice it.
    pub replies: usize,
    /// `server.pubsub_queue_bytes`: a subscriber whose queue would pass it is closed.
    pub messages: usize,
}

/// Why a client was closed for what it held (for the session's log line and metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Held replies passed twice `server.max_pending_reply_bytes`.
    Replies,
    /// Queued messages would pass `server.pubsub_queue_bytes`.
    Messages,
    /// Disconnected to bring the process back under `server.max_client_buffer_bytes`.
    Process,
}

/// What one client holds in replies and messages not yet taken by its session.
pub struct OutputBytes {
    held: AtomicUsize,
    /// Bytes the session holds itself, charged to the process budget: its output buffer
    /// beyond a floor and large requests waiting for their replies.
    session: AtomicUsize,
    limits: OutputLimits,
    process: Arc<ClientBuffers>,
    /// The client's kill switch (as CLIENT KILL raises it): a link that hands over the
    /// reply that crosses the hard limit closes the client at once, even while its
    /// session sleeps waiting for a socket that never drains.
    kill: Arc<Shutdown>,
    /// Why the client was closed for its bytes: [`OPEN`] until then, else an
    /// [`Overflow`] as `u8` (set once; links test it per counted reply, lock-free).
    closed: AtomicU8,
}

/// [`OutputBytes::closed`] of a client not closed for its bytes.
const OPEN: u8 = 0;

impl OutputBytes {
    pub fn new(limits: OutputLimits, process: Arc<ClientBuffers>, kill: Arc<Shutdown>) -> Self {
        OutputBytes {
            held: AtomicUsize::new(0),
            session: AtomicUsize::new(0),
            limits,
            process,
            kill,
            closed: AtomicU8::new(OPEN),
        }
    }

    pub fn limits(&self) -> OutputLimits {
        self.limits
    }

    pub fn process(&self) -> &Arc<ClientBuffers> {
        &self.process
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Bytes the session holds itself ([`OutputBytes::charge`]).
    pub fn session_held(&self) -> usize {
        self.session.load(Ordering::Relaxed)
    }

    /// Everything the client makes respgate hold that the process budget counts: what
    /// the evictor ranks clients by.
    pub fn holding(&self) -> usize {
        self.held() + self.session_held()
    }

    /// The session holds `n` more bytes itself (never refused: the bytes exist already;
    /// past the process budget the evictor closes the largest holders).
    pub fn charge(&self, n: usize) {
        self.session.fetch_add(n, Ordering::Relaxed);
        self.process.add(n);
    }

    /// The session no longer holds `n` of the bytes it charged.
    pub fn release(&self, n: usize) {
        self.session.fetch_sub(n, Ordering::Relaxed);
        self.process.sub(n);
    }

    /// Why the client was closed for its bytes, if it was.
    pub fn overflow(&self) -> Option<Overflow> {
        match self.closed.load(Ordering::Relaxed) {
            OPEN => None,
            1 => Some(Overflow::Replies),
            2 => Some(Overflow::Messages),
            _ => Some(Overflow::Process),
        }
    }

    fn killed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) != OPEN
    }

    /// Closes the client (once) for `why`.
    pub fn close(&self, why: Overflow) {
        let code = match why {
            Overflow::Replies => 1,
            Overflow::Messages => 2,
            Overflow::Process => 3,
        };
        if self
            .closed
            .compare_exchange(OPEN, code, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.kill.raise(STOP);
        }
    }

    /// A backend is handing over a reply of `len` bytes (counted if not tiny); call
    /// [`OutputBytes::take_reply`] if the receiver turned out to be gone. `false`: the
    /// client is being closed for what it holds and will never see this reply: drop it
    /// rather than hold it until the session notices (its replies are not written any
    /// more, so nothing is reordered).
    #[inline]
    pub fn hand_reply(&self, len: usize) -> bool {
        self.hand_part(len, None)
    }

    /// [`OutputBytes::hand_reply`] for a reply that is one part of a request split over
    /// several nodes: `request` counts the bytes of that request's parts held, which are
    /// not a pile (one request's reply alone may be larger than the line, whether it
    /// comes whole or in parts).
    #[inline]
    pub fn hand_part(&self, len: usize, request: Option<&AtomicUsize>) -> bool {
        if len < COUNTED_MIN {
            return true;
        }
        if self.killed() {
            return false;
        }
        let before = self.held.fetch_add(len, Ordering::Relaxed);
        self.process.add(len);
        let own = request.map_or(0, |r| r.fetch_add(len, Ordering::Relaxed));
        // One reply alone may be larger than the line (a big value read by a client that
        // reads): only replies piling up behind others close the client.
        let others = before.saturating_sub(own);
        if others > 0 && before + len > self.limits.replies.saturating_mul(2) {
            self.close(Overflow::Replies);
        }
        true
    }

    /// The reply handed over was not delivered (the client is gone), or was taken by the
    /// session.
    #[inline]
    pub fn take_reply(&self, len: usize) {
        if len >= COUNTED_MIN {
            self.take(len);
        }
    }

    /// Queues a pub/sub message of `len` bytes: `false` (nothing counted, the client
    /// closed) when the queue would pass `server.pubsub_queue_bytes`. A message of
    /// [`COUNTED_MIN`] bytes or more must be a [`shared_frame`], which is what the process
    /// budget counts (once for every subscriber); a smaller one is counted here.
    pub fn queue_message(&self, len: usize) -> bool {
        if self.killed() {
            return false;
        }
        let now = self.held.fetch_add(len, Ordering::Relaxed) + len;
        if now > self.limits.messages {
            self.held.fetch_sub(len, Ordering::Relaxed);
            self.close(Overflow::Messages);
            return false;
        }
        if len < COUNTED_MIN {
            self.process.add(len);
        }
        true
    }

    /// A queued message left the queue (taken by the session, or dropped with it).
    #[inline]
    pub fn take_message(&self, len: usize) {
        self.held.fetch_sub(len, Ordering::Relaxed);
        if len < COUNTED_MIN {
            self.process.sub(len);
        }
    }

    fn take(&self, len: usize) {
        self.held.fetch_sub(len, Ordering::Relaxed);
        self.process.sub(len);
    }
}

/// Bytes a session holds itself, charged while this lives (a large request waiting in
/// the pending queue for its reply).
pub struct HeldRequest {
    output: Arc<OutputBytes>,
    len: usize,
}

impl HeldRequest {
    pub fn new(output: &Arc<OutputBytes>, len: usize) -> HeldRequest {
        output.charge(len);
        HeldRequest {
            output: output.clone(),
            len,
        }
    }
}

impl Drop for HeldRequest {
    fn drop(&mut self) {
        self.output.release(self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(replies: usize, messages: usize, process: &Arc<ClientBuffers>) -> OutputBytes {
        OutputBytes::new(
            OutputLimits { replies, messages },
            process.clone(),
            Shutdown::new(),
        )
    }

    #[test]
    fn tiny_replies_cost_nothing_and_large_ones_add_up() {
        let process = ClientBuffers::new(1 << 30);
        let c = client(1 << 20, 1 << 20, &process);
        assert!(c.hand_reply(10));
        assert_eq!(c.held(), 0);
        assert!(c.hand_reply(5000));
        assert!(c.hand_reply(5000));
        assert_eq!((c.held(), process.used()), (10_000, 10_000));
        c.take_reply(5000);
        c.take_reply(10);
        assert_eq!((c.held(), process.used()), (5000, 5000));
        assert_eq!(c.overflow(), None);
    }

    #[test]
    fn twice_the_reply_bound_closes_the_client() {
        let process = ClientBuffers::new(1 << 30);
        let c = client(10_000, 1 << 20, &process);
        assert!(c.hand_reply(15_000));
        assert_eq!(c.overflow(), None);
        assert!(c.hand_reply(6_000));
        assert_eq!(c.overflow(), Some(Overflow::Replies));
        assert_eq!(c.kill.level(), STOP);
        // Closed: later replies are dropped, not held.
        assert!(!c.hand_reply(6_000));
        assert_eq!(c.held(), 21_000);
    }

    #[test]
    fn one_reply_larger_than_the_bound_alone_is_not_a_pile() {
        let process = ClientBuffers::new(1 << 30);
        let c = client(10_000, 1 << 20, &process);
        assert!(c.hand_reply(50_000));
        assert_eq!(c.overflow(), None);
        c.take_reply(50_000);
        assert!(c.hand_reply(50_000));
        assert!(c.hand_reply(5_000));
        assert_eq!(c.overflow(), Some(Overflow::Replies));
    }

    #[test]
    fn parts_of_one_request_are_not_a_pile_but_parts_of_two_are() {
        let process = ClientBuffers::new(1 << 30);
        let c = client(10_000, 1 << 20, &process);
        let first = AtomicUsize::new(0);
        for _ in 0..5 {
            assert!(c.hand_part(8_000, Some(&first)));
        }
        assert_eq!(c.overflow(), None);
        let second = AtomicUsize::new(0);
        assert!(c.hand_part(8_000, Some(&second)));
        assert_eq!(c.overflow(), Some(Overflow::Replies));
    }

    #[test]
    fn what_the_session_holds_counts_for_the_process_and_the_evictor() {
        let process = ClientBuffers::new(1 << 30);
        let c = Arc::new(client(10_000, 1 << 20, &process));
        c.charge(70_000);
        let request = HeldRequest::new(&c, 30_000);
        assert_eq!((c.holding(), process.used()), (100_000, 100_000));
        drop(request);
        c.release(70_000);
        assert_eq!((c.holding(), process.used()), (0, 0));
    }

    #[test]
    fn a_message_over_the_queue_bound_is_refused() {
        let process = ClientBuffers::new(1 << 30);
        let c = client(1 << 20, 100, &process);
        assert!(c.queue_message(60));
        assert!(!c.queue_message(60));
        assert_eq!((c.held(), process.used()), (60, 60));
        assert_eq!(c.overflow(), Some(Overflow::Messages));
    }

    #[test]
    fn a_shared_frame_counts_once_in_the_process_budget() {
        let process = ClientBuffers::new(1 << 30);
        let clients: Vec<_> = (0..200)
            .map(|_| client(1 << 20, 2 << 20, &process))
            .collect();
        let frame = shared_frame(&process, &vec![b'm'; 1 << 20]);
        let mut queues = Vec::new();
        for c in &clients {
            assert!(c.queue_message(frame.len()));
            queues.push(frame.clone());
        }
        drop(frame);
        assert_eq!(process.used(), 1 << 20);
        assert!(clients.iter().all(|c| c.held() == 1 << 20));
        // Taken by all but one: the bytes stay until the last clone goes.
        for (c, m) in clients.iter().zip(queues.drain(..199)) {
            c.take_message(m.len());
        }
        assert_eq!(process.used(), 1 << 20);
        clients[199].take_message(queues[0].len());
        queues.clear();
        assert_eq!(process.used(), 0);
        assert!(clients.iter().all(|c| c.held() == 0));
    }

    #[test]
    fn a_charge_is_given_back_when_dropped() {
        let process = ClientBuffers::new(1000);
        let mut charge = Charge::new(process.clone());
        assert!(charge.try_add(600));
        assert!(!charge.try_add(600));
        assert_eq!((charge.bytes(), process.used()), (600, 600));
        drop(charge);
        assert_eq!(process.used(), 0);
    }

    #[test]
    fn the_process_budget_refuses_growth_past_it() {
        let process = ClientBuffers::new(1000);
        assert!(process.try_take(600));
        assert!(!process.try_take(600));
        process.give_back(600);
        assert!(process.try_take(1000));
        assert_eq!(process.excess(), 0);
        assert_eq!(process.take_high_water(), 1000);
        process.give_back(1000);
        assert_eq!(process.take_high_water(), 1000);
        assert_eq!(process.take_high_water(), 0);
    }
}
