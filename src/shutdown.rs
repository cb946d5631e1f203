//! Telling every session to drain, and then to stop.
//!
//! Sessions poll the signal in their main `select!`, i.e. once per loop iteration, so it
//! must cost no lock there: each listener owns an `AtomicWaker` that it re-registers
//! lock-free, and the level is an atomic. The mutex is touched only when a connection
//! opens or closes and when the level changes (twice in a process's life).

use atomic_waker::AtomicWaker;
use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;

/// Serving normally.
pub const RUNNING: u8 = 0;
/// Stop accepting and reading; deliver what is in flight, then close.
pub const DRAIN: u8 = 1;
/// Close now (the grace period is over, or the proxy was dropped).
pub const STOP: u8 = 2;

/// The shared signal.
#[derive(Default)]
pub struct Shutdown {
    level: AtomicU8,
    next_id: AtomicU64,
    wakers: Mutex<HashMap<u64, Arc<AtomicWaker>>>,
}

impl Shutdown {
    pub fn new() -> Arc<Shutdown> {
        Arc::new(Shutdown::default())
    }

    /// Raises the level (never lowers it) and wakes every listener.
    pub fn raise(&self, level: u8) {
        self.level.fetch_max(level, Ordering::SeqCst);
        let wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        for w in wakers.values() {
            w.wake();
        }
    }

    /// The current level.
    pub fn level(&self) -> u8 {
        self.level.load(Ordering::SeqCst)
    }

    /// A listener for one task.
    pub fn listen(self: &Arc<Self>) -> ShutdownListener {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let waker = Arc::new(AtomicWaker::new());
        self.wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, waker.clone());
        ShutdownListener {
            shared: self.clone(),
            waker,
            id,
        }
    }
}

/// One task's view of the signal.
pub struct ShutdownListener {
    shared: Arc<Shutdown>,
    waker: Arc<AtomicWaker>,
    id: u64,
}

impl ShutdownListener {
    /// Resolves with the level once it is above `seen`.
    pub async fn above(&self, seen: u8) -> u8 {
        poll_fn(|cx| {
            self.waker.register(cx.waker());
            let level = self.shared.level();
            if level > seen {
                Poll::Ready(level)
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for ShutdownListener {
    fn drop(&mut self) {
        self.shared
            .wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_see_each_level_once() {
        let s = Shutdown::new();
        let l = s.listen();
        let waiter = tokio::spawn(async move {
            let first = l.above(RUNNING).await;
            let second = l.above(first).await;
            (first, second)
        });
        tokio::task::yield_now().await;
        s.raise(DRAIN);
        tokio::task::yield_now().await;
        s.raise(STOP);
        let (a, b) = waiter.await.unwrap();
        assert!(a == DRAIN || a == STOP);
        assert_eq!(b, STOP);
        assert!(s.wakers.lock().unwrap().is_empty());
    }
}
