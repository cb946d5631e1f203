//! Whether a client is still alive as a client: one that stopped reading its replies
//! (`output_stall_timeout_secs`), an idle one (`idle_timeout_secs`), one that did not
//! log in in time (`auth.login_timeout_secs`). Checked by a timer every half period;
//! progress is judged by counters the read and write paths bump anyway, so no clock is
//! read per request.

use super::super::{auth, Session};
use std::time::Duration;

/// Progress counters and strikes the housekeeping checks compare.
pub(in crate::session) struct Liveness {
    /// Successful reads and writes, compared at each housekeeping check.
    pub(in crate::session) reads: u64,
    pub(in crate::session) writes: u64,
    checked_reads: u64,
    checked_writes: u64,
    stall_strikes: u32,
    idle_strikes: u32,
    /// `auth.login_timeout_secs` for a connection not authenticated yet.
    login_deadline: auth::LoginDeadline,
}

impl Liveness {
    pub(in crate::session) fn new(login_deadline: auth::LoginDeadline) -> Liveness {
        Liveness {
            reads: 0,
            writes: 0,
            checked_reads: 0,
            checked_writes: 0,
            stall_strikes: 0,
            idle_strikes: 0,
            login_deadline,
        }
    }
}

impl Session {
    /// Periodic checks, run every half stall/idle period; returns false when the client
    /// must be disconnected. Progress is judged by counters the hot path bumps anyway, so
    /// no clock is read per request.
    pub(in crate::session) fn housekeeping(&mut self) -> bool {
        if self.io.live.login_deadline.expired(&self.client) {
            return false;
        }
        let wrote = self.io.live.writes != self.io.live.checked_writes;
        let read = self.io.live.reads != self.io.live.checked_reads;
        self.io.live.checked_writes = self.io.live.writes;
        self.io.live.checked_reads = self.io.live.reads;
        let stalled_before = self.io.live.stall_strikes > 0;
        self.io.live.stall_strikes = if !self.io.out.is_empty() && !wrote {
            1
        } else {
            0
        };
        if stalled_before && self.io.live.stall_strikes > 0 {
            tracing::info!(
                client = self.client.meta.id,
                peer = %self.client.meta.peer,
                unwritten_bytes = self.io.out.len(),
                "closing client that stopped reading its replies"
            );
            metrics::counter!("respgate_clients_disconnected_total", "reason" => "output_stall")
                .increment(1);
            return false;
        }
        if self.ctx.bounds.idle_timeout.is_some()
            && !read
            && self.pipe.pending.is_empty()
            && self.io.out.is_empty()
            // Held by CLIENT PAUSE: waiting, as a blocked client, not idle.
            && self.io.held.is_none()
        {
            self.io.live.idle_strikes += 1;
            if self.io.live.idle_strikes >= 2 {
                metrics::counter!("respgate_clients_disconnected_total", "reason" => "idle")
                    .increment(1);
                return false;
            }
        } else {
            self.io.live.idle_strikes = 0;
        }
        true
    }

    /// How long until the next check.
    pub(in crate::session) fn next_check(&self) -> Duration {
        let mut period = self.ctx.bounds.stall_timeout;
        if let Some(idle) = self.ctx.bounds.idle_timeout {
            period = period.min(idle);
        }
        let period = (period / 2).max(Duration::from_millis(50));
        // Woken at the login deadline itself, not a half period early or late.
        match self.io.live.login_deadline.remaining() {
            Some(left) => period.min(left.max(Duration::from_millis(50))),
            None => period,
        }
    }
}
