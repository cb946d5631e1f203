//! The client side of a session: its socket, the bytes read from it and written to it.
//! This is the mechanism; what a request means and which reply it gets is the pipeline's
//! (`pipeline.rs`, `head.rs`).
//!
//! [`run`] is the session's one task: each pass frames the requests read so far
//! (`framing.rs`), moves the replies that are ready to the output (the pipeline), then
//! waits on whichever comes first: the output written (`output.rs`, coalesced), the head
//! of the queue resolved, more bytes read, a pub/sub message or MONITOR line, the
//! housekeeping timer (`liveness.rs`: stalled readers, idle clients, the login deadline), CLIENT KILL or
//! shutdown. The goodbye flushes and closes within [`GOODBYE`].

mod framing;
mod hold;
mod liveness;
mod output;

pub(super) use liveness::Liveness;
pub(super) use output::push_message;

use super::pending::{wait_head, Pending};
use super::{auth, ClientMeta, Session, SessionContext};
use crate::protocol::scan::RequestLimits;
use crate::shutdown::{ShutdownListener, RUNNING, STOP};
use bytes::BytesMut;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Output beyond this is flushed before more replies are moved into it.
pub(super) const OUT_HIGH_WATER: usize = 256 * 1024;
/// Replies held back for coalescing never exceed this.
const COALESCE_MAX: usize = 16 * 1024;
/// Read buffers start small (an idle connection should cost a few KiB, not 16) and
/// double, up to [`READ_MAX`], while reads keep filling them.
const READ_MIN: usize = 1024;
pub(super) const READ_MAX: usize = 64 * 1024;
/// Buffers emptied above this size are given back instead of kept for reuse.
pub(super) const KEEP_MAX: usize = 64 * 1024;
/// The output buffer beyond this is charged to the process budget (`buffers.rs`).
pub(super) const OUT_FLOOR: usize = 64 * 1024;
/// How long a closing session tries to flush and shut down its socket.
const GOODBYE: Duration = Duration::from_secs(1);

/// A session's client I/O state: what was read and not framed yet, what is owed to the
/// socket, and whether the connection is closing.
pub(super) struct ClientIo {
    /// The framing limits for the client's login state ([`Session::relimit`]).
    pub(super) limits: RequestLimits,
    pub(super) rbuf: BytesMut,
    /// How much to reserve when the read buffer runs low.
    pub(super) read_hint: usize,
    /// Bytes of `rbuf` beyond [`READ_MAX`] taken from the process budget.
    pub(super) read_charged: usize,
    /// The argument ranges of the request framed last.
    pub(super) ranges: Vec<Range<u32>>,
    pub(super) out: BytesMut,
    /// Bytes of `out` beyond [`OUT_FLOOR`] charged to the process budget.
    pub(super) out_charged: usize,
    /// Output was held back one scheduling round already: write it now.
    pub(super) write_deferred: bool,
    /// The client half-closed its side: nothing more is read.
    pub(super) eof: bool,
    /// No more requests are read; the session ends once every reply is written.
    pub(super) closing: bool,
    /// Closing mid-request (a protocol error, a refused large request): the client's
    /// remaining input is drained before the socket closes.
    pub(super) linger: bool,
    /// Progress counters and strikes for the housekeeping checks.
    pub(super) live: Liveness,
    /// A request CLIENT PAUSE holds, framed and not routed (`hold.rs`): nothing more
    /// is read or framed until it goes.
    pub(super) held: Option<bytes::Bytes>,
    /// The fence a held write waits for (`crate::workers::fence`): the other workers
    /// taking in what their clients sent before it.
    pub(super) fence: Option<crate::workers::fence::Fence>,
    /// A fence was passed and nothing was read since: what is buffered goes unfenced.
    pub(super) fence_passed: bool,
}

impl ClientIo {
    pub(super) fn new(limits: RequestLimits, login_deadline: auth::LoginDeadline) -> ClientIo {
        ClientIo {
            limits,
            rbuf: BytesMut::with_capacity(READ_MIN),
            read_hint: READ_MIN,
            read_charged: 0,
            ranges: Vec::with_capacity(8),
            out: BytesMut::new(),
            out_charged: 0,
            write_deferred: false,
            eof: false,
            closing: false,
            linger: false,
            live: Liveness::new(login_deadline),
            held: None,
            fence: None,
            fence_passed: false,
        }
    }
}

/// What one pass of the main loop may wait for.
struct Pass {
    can_read: bool,
    /// Free room in the read buffer before this pass's read.
    spare: usize,
    head_waiting: bool,
    messages_now: bool,
    write_now: bool,
}

/// How a pass begins.
enum Start {
    /// Every reply is written and nothing more will be read: the session ends.
    End,
    /// Something changed the state (a request refused): begin the pass again.
    Again,
    Wait(Pass),
}

/// Runs one client connection to completion. `shutdown` at DRAIN asks the session to
/// stop reading, deliver what is in flight and close.
pub async fn run<R, W>(
    mut rd: R,
    mut wr: W,
    meta: ClientMeta,
    ctx: Arc<SessionContext>,
    shutdown: ShutdownListener,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _registered = Registered(ctx.clone(), meta.id);
    let (mut s, kill) = Session::new(meta, ctx);
    let housekeeping = tokio::time::sleep(s.next_check());
    tokio::pin!(housekeeping);
    let mut stop_seen = RUNNING;
    // A TLS writer may keep bytes a write accepted (records not yet on the socket): it is
    // flushed once the output buffer drains. Never set for plain TCP.
    let buffered = s.client.meta.tls;
    let mut flush_owed = false;

    loop {
        let pass = match s.begin_pass() {
            Start::End => break,
            Start::Again => continue,
            Start::Wait(pass) => pass,
        };
        tokio::select! {
            biased;
            written = crate::backend::write_or_flush(&mut wr, &s.io.out, pass.write_now),
                if pass.write_now || (flush_owed && s.io.out.is_empty()) => {
                s.io.write_deferred = false;
                match written {
                    Ok(Some(n)) if n > 0 => {
                        s.wrote(n);
                        flush_owed = buffered;
                    }
                    Ok(None) => flush_owed = false,
                    _ => break,
                }
            }
            event = wait_head(s.pipe.pending.front_mut()), if pass.head_waiting => {
                s.clock = None; // time has passed while waiting
                s.on_head_event(event);
            }
            read = rd.read_buf(&mut s.io.rbuf), if pass.can_read => {
                if !s.on_read(read, pass.spare) {
                    break;
                }
            }
            message = output::next_message(&mut s.client.subs), if pass.messages_now => {
                if !s.on_message(message) {
                    break;
                }
            }
            // No line after QUIT's +OK, as Redis writes nothing more to a closing client.
            line = super::monitor::next_line(&mut s.client.monitor),
                if pass.messages_now && !s.io.closing => {
                if !s.on_monitor_line(line) {
                    break;
                }
            }
            _ = tokio::task::yield_now(), if !s.io.out.is_empty() && !pass.write_now => {
                s.io.write_deferred = true;
            }
            // CLIENT PAUSE lifted, ended or changed: the held request is looked at again.
            _ = s.ctx.pause.changed(), if s.io.held.is_some() && s.io.fence.is_none() => {}
            // The other workers took in what they had read: the held write may go.
            _ = fence_done(&mut s.io.fence), if s.io.fence.is_some() => {
                s.io.fence = None;
                s.io.fence_passed = true;
            }
            _ = &mut housekeeping => {
                if !s.housekeeping() {
                    break;
                }
                housekeeping.as_mut().reset(tokio::time::Instant::now() + s.next_check());
            }
            // CLIENT KILL.
            _ = kill.above(RUNNING) => break,
            level = shutdown.above(stop_seen) => {
                stop_seen = level;
                if level >= STOP {
                    break;
                }
                s.io.closing = true;
            }
        }
    }
    s.log_overflow();
    // What the client held (counted bytes, its own backend connections, walk places)
    // goes back now, not after the goodbye: a TLS flush waits for a peer that may never
    // read (a client closed for not reading), so the goodbye gets a bounded time.
    let linger = s.io.linger;
    drop(s);
    goodbye(rd, wr, linger).await;
}

impl Session {
    /// Frames what was read, moves the replies that are ready to the output, and tells
    /// what this pass waits for.
    #[inline]
    fn begin_pass(&mut self) -> Start {
        // Everything handled in one pass happened "now": one clock read per pass.
        self.clock = None;
        // (A write held by a fence still runs: only a pause drops it.)
        if self.io.eof && self.io.fence.is_none() && self.io.held.is_some() && {
            let now = self.now();
            self.ctx.pause.mode(now).is_some()
        } {
            self.io.held = None;
            // Closed while held by CLIENT PAUSE: gone, as Redis frees it; never run.
            tracing::debug!(client = self.client.meta.id, "client closed while paused");
        }
        if !self.io.closing || self.io.held.is_some() {
            self.parse_requests();
        }
        self.drain_ready_heads();
        if self.io.out.len() > OUT_FLOOR || self.io.out_charged > 0 {
            self.recharge_output();
        }
        let io = &self.io;
        if (io.closing || io.eof)
            && self.pipe.pending.is_empty()
            && io.out.is_empty()
            && io.held.is_none()
        {
            return Start::End;
        }
        let can_read = !io.closing
            && !io.eof
            && (io.held.is_none() || io.rbuf.len() < hold::HELD_READ_MAX)
            && !self.pipe.task_pending
            && self.pipe.pending.len() < self.ctx.bounds.max_pending
            && self.within_reply_bytes();
        if self.io.rbuf.is_empty() && self.io.rbuf.capacity() > KEEP_MAX {
            self.io.rbuf = BytesMut::with_capacity(READ_MIN);
            self.io.read_hint = READ_MIN;
        }
        if self.io.read_charged > 0 {
            self.recharge_read_buffer();
        }
        if can_read
            && self.io.rbuf.capacity() - self.io.rbuf.len() < 256
            && !self.grow_read_buffer()
        {
            return Start::Again;
        }
        let out = self.io.out.len();
        let head_waiting = matches!(
            self.pipe.pending.front(),
            Some(
                Pending::Remote(_)
                    | Pending::Split(_)
                    | Pending::Waiting(..)
                    | Pending::Task(_)
                    | Pending::Gate(..)
            )
        ) && out < OUT_HIGH_WATER;
        // Messages go out between replies, never ahead of a reply still owed (so a
        // channel's first message never precedes its subscription's confirmation).
        let messages_now = (self.client.subs.is_some() || self.client.monitor.is_some())
            && self.pipe.pending.is_empty()
            && out < OUT_HIGH_WATER;
        // Coalesce replies: while later replies of a pipeline are still owed, give the
        // backends one scheduling round to deliver them before writing, so one write
        // carries many replies. A single request (nothing else owed) is written at once.
        let write_now = out != 0
            && (self.pipe.pending.is_empty() || out >= COALESCE_MAX || self.io.write_deferred);
        Start::Wait(Pass {
            can_read,
            spare: self.io.rbuf.capacity() - self.io.rbuf.len(),
            head_waiting,
            messages_now,
            write_now,
        })
    }
}

/// Waits for the fence a held write waits for (only polled while there is one).
async fn fence_done(fence: &mut Option<crate::workers::fence::Fence>) {
    if let Some(fence) = fence {
        fence.done().await;
    }
}

/// Flushes and shuts down the socket within [`GOODBYE`]; `linger`: the client was
/// refused mid-request and its remaining input is read and dropped first.
async fn goodbye<R, W>(mut rd: R, mut wr: W, linger: bool)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(GOODBYE, async {
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
        if linger {
            // Refused mid-request: the client may still be sending. Closing with its
            // bytes unread would reset the connection, and a reset can discard the
            // error reply before the client reads it; read and drop them until it
            // closes (within GOODBYE).
            let mut scratch = [0u8; 4096];
            while matches!(rd.read(&mut scratch).await, Ok(n) if n > 0) {}
        }
    })
    .await;
}

/// Keeps a client in the registry for as long as its session runs, however it ends.
struct Registered(Arc<SessionContext>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.registry.remove(self.1);
    }
}
