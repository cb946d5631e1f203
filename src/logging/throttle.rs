//! One repeated warning, logged once per interval with the count of its repeats.
//!
//! A failure that lasts repeats its warning at the pace of whatever retries it: a
//! topology refresh with no map known retries every 200 ms, a link to a dead node fails
//! at every request that wants it. Twenty identical lines in four seconds bury what
//! else is logged and say nothing the first one did not. A [`Throttle`] lets the first
//! occurrence through at once (nothing is delayed), then one per interval, each carrying
//! how many were left out since the last ("(repeated 19 times in the last 30 s)"); the
//! exact rate is in the metrics (`respgate_topology_refresh_failures_total`, ...).
//! [`Throttle::clear`] when the failure ends: the next one is logged at once again.
//!
//! Mechanism only, owned by whoever logs (the refresher loop; a node's links share
//! theirs behind a mutex taken only on a failed connect): `&mut self`, no lock of its
//! own, no shared state but the interval set once at start
//! ([`set_interval`], from `[log] repeat_interval_secs`). It imports nothing of the crate,
//! so any layer can use it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The interval of [`Throttle::new`], in seconds: `[log] repeat_interval_secs`. 30 s by
/// default: a failure that lasts shows twice a minute (enough to see it is still going
/// on when tailing the log), and a minute of it is two lines, not three hundred.
static INTERVAL_SECS: AtomicU64 = AtomicU64::new(30);

/// Sets the interval of every [`Throttle::new`] made from now on (at start, before any).
pub fn set_interval(every: Duration) {
    INTERVAL_SECS.store(every.as_secs().max(1), Ordering::Relaxed);
}

/// The state of one kind of repeated warning.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    /// When a line was last let through.
    logged_at: Option<Instant>,
    /// Occurrences left out since then.
    left_out: u64,
    /// Occurrences since the last [`Throttle::clear`].
    since_clear: u64,
}

/// What a let-through line says about the occurrences left out before it; displays as
/// `""` when none were, else as ` (repeated N times in the last S s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeats {
    /// Occurrences left out since the previous line.
    pub count: u64,
    /// Time since the previous line.
    pub over: Duration,
}

impl fmt::Display for Repeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            0 => Ok(()),
            1 => write!(f, " (repeated once in the last {} s)", self.over.as_secs()),
            n => write!(
                f,
                " (repeated {n} times in the last {} s)",
                self.over.as_secs()
            ),
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

impl Throttle {
    /// A throttle with the process's interval ([`set_interval`]).
    pub fn new() -> Throttle {
        Throttle::every(Duration::from_secs(INTERVAL_SECS.load(Ordering::Relaxed)))
    }

    /// A throttle letting one line through per `every`.
    pub fn every(every: Duration) -> Throttle {
        Throttle {
            every,
            logged_at: None,
            left_out: 0,
            since_clear: 0,
        }
    }

    /// One occurrence now: `Some` when it is to be logged (with the repeats left out
    /// before it), `None` when it is left out.
    pub fn hit(&mut self) -> Option<Repeats> {
        self.hit_at(Instant::now())
    }

    /// [`Throttle::hit`] at `now` (the tests give the time).
    pub fn hit_at(&mut self, now: Instant) -> Option<Repeats> {
        self.since_clear += 1;
        match self.logged_at {
            Some(at) if now.saturating_duration_since(at) < self.every => {
                self.left_out += 1;
                None
            }
            at => {
                let repeats = Repeats {
                    count: std::mem::take(&mut self.left_out),
                    over: at.map_or(Duration::ZERO, |at| now.saturating_duration_since(at)),
                };
                self.logged_at = Some(now);
                Some(repeats)
            }
        }
    }

    /// The failure is over: returns how many occurrences there were since the last
    /// clear (0: nothing to report), and lets the next one through at once.
    pub fn clear(&mut self) -> u64 {
        self.logged_at = None;
        self.left_out = 0;
        std::mem::take(&mut self.since_clear)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn first_then_one_per_interval_with_the_count_left_out() {
        let t0 = Instant::now();
        let mut t = Throttle::every(30 * S);
        assert_eq!(t.hit_at(t0).unwrap().to_string(), "");
        // Every 200 ms for 4 s: all left out.
        let logged = (1..=20)
            .filter(|&i: &u32| t.hit_at(t0 + i * S / 5).is_some())
            .count();
        assert_eq!(logged, 0);
        let r = t.hit_at(t0 + 30 * S).unwrap();
        assert_eq!(
            r,
            Repeats {
                count: 20,
                over: 30 * S
            }
        );
        assert_eq!(r.to_string(), " (repeated 20 times in the last 30 s)");
        assert!(t.hit_at(t0 + 31 * S).is_none());
        let r = t.hit_at(t0 + 61 * S).unwrap();
        assert_eq!(r.to_string(), " (repeated once in the last 31 s)");
    }

    #[test]
    fn a_clear_ends_the_episode_and_the_next_failure_is_logged_at_once() {
        let t0 = Instant::now();
        let mut t = Throttle::every(30 * S);
        assert!(t.hit_at(t0).is_some());
        assert!(t.hit_at(t0 + S).is_none());
        assert_eq!(t.clear(), 2);
        assert_eq!(t.clear(), 0, "nothing since");
        let r = t.hit_at(t0 + 2 * S).unwrap();
        assert_eq!(
            r.count, 0,
            "what was left out before the clear is not carried over"
        );
    }

    #[test]
    fn a_clock_going_backwards_does_not_panic() {
        let t0 = Instant::now() + 60 * S;
        let mut t = Throttle::every(S);
        assert!(t.hit_at(t0).is_some());
        assert!(t.hit_at(t0 - 10 * S).is_none());
    }
}
