//! Order across workers for blocking commands: a write that may wake a blocked client
//! waits until every other worker has taken in what its clients sent before it.
//!
//! **Why.** One Redis reads its clients from one event loop, so "A: `XREAD BLOCK 0
//! STREAMS s $`, then B: `XADD s * f v`" reaches the data in the order the two requests
//! arrived. respgate reads clients on several workers in parallel: when A's and B's
//! sessions live on different workers, B's worker may forward the XADD before A's
//! worker has even read the XREAD (both threads were woken microseconds apart, and
//! which one the kernel runs first is chance: about half the tries on the 2-core box),
//! and A then waits for the next entry, forever in a test suite.
//!
//! **How.** Before such a write is routed, its session holds it (`session/io/hold.rs`)
//! and waits for a *fence*. First, blocking commands given a dedicated link that is
//! still connecting ([`unready_taken`], `backend/ready.rs`) must have their connection
//! up, since their write waits for it. Then every worker (the caller's included) gets
//! a tiny task that yields [`HOPS`] times and answers. A tokio current-thread runtime
//! runs a yielded task again only after it has polled its I/O driver once more and run
//! every task that poll woke (`yield_now` defers the wake-up past the next driver poll),
//! so when the fence answers, every request that was readable on that worker's sockets
//! when the fence arrived has been read, routed and written by its link task (a session
//! and its link are one hop each). A's request reached respgate before B's, so before
//! B's worker asked: the fence covers it, and the XADD goes out after the XREAD.
//!
//! **When.** Only while blocking commands are in use: within [`ACTIVE_FOR`] of the last
//! blocking command any session routed (one atomic word), and only for commands that
//! can wake a blocked client (`CommandInfo::wakes_blocked` in `commands`: writes to
//! lists, sorted sets, streams and keys as a whole, transactions and scripts; never a
//! blocking command itself, which would then wait behind the write it must precede). A
//! GET or SET pays one atomic load. One fence covers everything its session had read when
//! it asked (a pipeline of pushes waits once). A fence that is not answered within
//! [`WAIT_MAX`] (a worker drowning in work) lets the write go: order is then as good
//! as the machine allows, never a stall. The first blocking command after a quiet
//! period is not covered (nothing marked the time active yet): that one may still be
//! overtaken.
//!
//! **Cost.** Per fenced write: one task spawned on each worker (an allocation and a
//! wake-up there) and a few to tens of microseconds of latency. Without a worker pool
//! (the library in tests) only the connecting links are waited for.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

/// How many times a fence task yields before it answers: the hops from a client's
/// socket to its node's socket (session, then link task), with a margin (each hop costs
/// the worker one more non-blocking poll of its sockets).
pub const HOPS: usize = 8;
/// A fence not answered by then lets the write go.
/// Long enough for a dedicated link's connect and handshake, and for every worker to
/// get a turn, on a host with several runnable threads per core (50 ms was exceeded at
/// a load average of 8 on the 2-core box); a fenced write normally waits microseconds.
/// Also the most a fenced write waits when a blocking client's node does not answer
/// its connect (`respgate_fence_timeouts_total` counts those).
pub const WAIT_MAX: Duration = Duration::from_millis(200);
/// How long after the last blocking command writes are fenced.
pub const ACTIVE_FOR: Duration = Duration::from_secs(300);

/// When a blocking command was last routed: ms since [`epoch`] + 1, 0 = never.
static LAST_BLOCKING: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn ms(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_millis() as u64 + 1
}

/// A session routed a blocking command at `now`: writes are fenced from now on.
pub fn note_blocking(now: Instant) {
    let at = ms(now);
    if LAST_BLOCKING.load(Ordering::Relaxed) < at {
        LAST_BLOCKING.store(at, Ordering::Relaxed);
    }
}

/// Whether writes that may wake a blocked client are fenced at `now`: one atomic load
/// (and a subtraction once blocking commands were seen).
#[inline]
pub fn active(now: Instant) -> bool {
    let last = LAST_BLOCKING.load(Ordering::Relaxed);
    last != 0 && ms(now).saturating_sub(last) < ACTIVE_FOR.as_millis() as u64
}

/// Blocking commands sent on a dedicated link that is still connecting (taken from
/// the ready pool before its connection was up, or opened for the command): their
/// write waits for the connection, so a fenced write waits for them first.
static UNREADY: AtomicUsize = AtomicUsize::new(0);
static UNREADY_DONE: Notify = Notify::const_new();

/// A blocking command was given a dedicated link that is still connecting.
pub fn unready_taken() {
    UNREADY.fetch_add(1, Ordering::AcqRel);
}

/// That link's connection is up (its queued command goes out now) or failed.
pub fn unready_done() {
    if UNREADY.fetch_sub(1, Ordering::AcqRel) == 1 {
        UNREADY_DONE.notify_waiters();
    }
}

/// A fence a held write waits for: first the blocking commands whose links are still
/// connecting, then every worker's answer; done at the latest after [`WAIT_MAX`].
pub struct Fence {
    /// The workers' answers, once asked (after the connecting links are up).
    answers: Option<Vec<oneshot::Receiver<()>>>,
    deadline: tokio::time::Instant,
}

impl Fence {
    /// A fence for a write read now.
    pub fn new() -> Fence {
        Fence {
            answers: None,
            deadline: tokio::time::Instant::now() + WAIT_MAX,
        }
    }

    /// Waits for the fence. Cancel-safe: what was waited for stays done.
    pub async fn done(&mut self) {
        if tokio::time::timeout_at(self.deadline, self.wait())
            .await
            .is_err()
        {
            metrics::counter!("respgate_fence_timeouts_total").increment(1);
            tracing::debug!("a fence was not answered within {WAIT_MAX:?}: the write goes");
        }
    }

    async fn wait(&mut self) {
        loop {
            if self.answers.is_none() {
                unready_none().await;
                self.answers = Some(ask());
            }
            let answers = self.answers.get_or_insert_with(Vec::new);
            while let Some(answer) = answers.last_mut() {
                let _ = answer.await;
                answers.pop();
            }
            // What the fence let through may have taken a link still connecting (a
            // client's first blocking command): wait for that one too.
            if UNREADY.load(Ordering::Acquire) == 0 {
                return;
            }
            self.answers = None;
        }
    }
}

/// Waits until no blocking command waits for its link's connection.
async fn unready_none() {
    loop {
        let up = UNREADY_DONE.notified();
        tokio::pin!(up);
        up.as_mut().enable();
        if UNREADY.load(Ordering::Acquire) == 0 {
            return;
        }
        up.await;
    }
}

impl Default for Fence {
    fn default() -> Fence {
        Fence::new()
    }
}

/// Spawns a fence task on every worker (the caller's too: a link task woken there may
/// not have written yet); none without a pool.
fn ask() -> Vec<oneshot::Receiver<()>> {
    let workers = super::count();
    let mut answers = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (tx, rx) = oneshot::channel();
        super::spawn_on(worker, async move {
            for _ in 0..HOPS {
                tokio::task::yield_now().await;
            }
            let _ = tx.send(());
        });
        answers.push(rx);
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_starts_with_a_blocking_command_and_ends_after_a_quiet_period() {
        let now = Instant::now();
        // Nothing before (this process's tests never route a blocking command here).
        note_blocking(now);
        assert!(active(now));
        assert!(active(now + Duration::from_secs(10)));
        assert!(!active(now + ACTIVE_FOR + Duration::from_secs(1)));
    }

    #[test]
    fn no_fence_task_without_a_pool() {
        assert!(ask().is_empty());
    }
}
