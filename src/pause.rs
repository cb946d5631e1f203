//! CLIENT PAUSE, process-wide: whether respgate's clients' commands are held now, and
//! until when. One Redis holds a paused client's command itself (the client is
//! blocked) and answers CLIENT UNPAUSE at once; respgate does the same for its own
//! clients, so no shared backend link ever carries a command a paused node would hold
//! (a held command on a shared link stalls every other client's request behind it, and
//! the UNPAUSE sent to lift the pause queued behind it too).
//!
//! The state is one atomic word (the pause's end, in ms since the process's epoch, and
//! its mode), so a session pays one load per request while nothing is paused; held
//! sessions wait on a [`Notify`] woken when the pause is lifted or changed. Redis 7.0's
//! rules, checked against a standalone 7.0.15: a later PAUSE replaces the mode and keeps
//! the later end of the two; UNPAUSE ends it at once. Which commands a mode holds is the
//! session's business (`session::io::hold`). A leaf: it imports nothing of the crate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// What a pause holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Commands that may write or replicate (`write`, `may_replicate`).
    Write,
    /// Every command.
    All,
}

/// The process's pause (CLIENT PAUSE / UNPAUSE).
#[derive(Default)]
pub struct Pause {
    /// `end_ms << 1 | all`, `end_ms` counted from [`epoch`]; 0 when never paused or
    /// unpaused (an end in the past is no pause either).
    word: AtomicU64,
    changed: Notify,
}

/// The instant pause ends are counted from (ms), the same for every `Pause`.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn ms_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_millis() as u64 + 1
}

impl Pause {
    /// The mode in force at `now`, or `None`: one atomic load while nothing is paused.
    #[inline]
    pub fn mode(&self, now: Instant) -> Option<Mode> {
        let word = self.word.load(Ordering::Acquire);
        if word == 0 {
            return None;
        }
        Self::decode(word, now)
    }

    fn decode(word: u64, now: Instant) -> Option<Mode> {
        if word >> 1 <= ms_since_epoch(now) {
            return None;
        }
        Some(if word & 1 == 1 {
            Mode::All
        } else {
            Mode::Write
        })
    }

    /// CLIENT PAUSE `timeout` `mode` at `now`: the mode is replaced, the end is the
    /// later of the current one and `now + timeout` (Redis 7.0's `pauseClients`).
    pub fn pause(&self, now: Instant, timeout: Duration, mode: Mode) {
        let end = ms_since_epoch(now) + timeout.as_millis() as u64;
        let all = u64::from(mode == Mode::All);
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let current = if Self::decode(word, now).is_some() {
                    word >> 1
                } else {
                    0
                };
                Some(end.max(current) << 1 | all)
            });
        self.changed.notify_waiters();
    }

    /// CLIENT UNPAUSE: every held command goes on now.
    pub fn unpause(&self) {
        self.word.store(0, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Resolves once no pause is in force (at once when none is): for respgate's own
    /// background writes, which a paused node would hold on a shared link.
    pub async fn unpaused(&self) {
        while self.mode(Instant::now()).is_some() {
            self.changed().await;
        }
    }

    /// Resolves when the pause in force changes: lifted, ended by its timeout, or
    /// replaced by another PAUSE (the caller checks again what it holds).
    pub async fn changed(&self) {
        let notified = self.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let word = self.word.load(Ordering::Acquire);
        if Self::decode(word, Instant::now()).is_none() {
            return;
        }
        let end = epoch() + Duration::from_millis((word >> 1).saturating_sub(1));
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(end.into()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Mode, Pause};
    use std::time::{Duration, Instant};

    #[test]
    fn later_pause_replaces_the_mode_and_keeps_the_later_end() {
        let p = Pause::default();
        let now = Instant::now();
        assert_eq!(p.mode(now), None);
        p.pause(now, Duration::from_millis(1500), Mode::All);
        p.pause(now, Duration::from_millis(500), Mode::Write);
        assert_eq!(p.mode(now + Duration::from_millis(1000)), Some(Mode::Write));
        assert_eq!(p.mode(now + Duration::from_millis(1600)), None);
        p.unpause();
        assert_eq!(p.mode(now), None);
    }

    #[tokio::test]
    async fn unpaused_waits_for_the_end_of_any_pause() {
        let p = Pause::default();
        p.unpaused().await; // none: at once
        p.pause(Instant::now(), Duration::from_millis(60), Mode::Write);
        let started = Instant::now();
        p.unpaused().await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(p.mode(Instant::now()), None);
    }

    #[tokio::test]
    async fn changed_resolves_at_the_end_and_on_unpause() {
        let p = std::sync::Arc::new(Pause::default());
        p.pause(Instant::now(), Duration::from_millis(50), Mode::Write);
        let started = Instant::now();
        p.changed().await;
        assert!(started.elapsed() >= Duration::from_millis(40));
        p.pause(Instant::now(), Duration::from_secs(30), Mode::All);
        let q = p.clone();
        let waiter = tokio::spawn(async move { q.changed().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.unpause();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
