//! A client held by CLIENT PAUSE (or by a fence, `crate::workers::fence`, which holds
//! the same way for microseconds): the request a pause holds is kept here, unrouted, and
//! nothing behind it is framed (the client is blocked, as in Redis, so its replies keep
//! their order) until the pause ends or changes (`crate::pause`). Nothing is sent while
//! held: no shared backend link carries a command a paused node would sit on, and the
//! request's timeout starts when it is finally dispatched.
//!
//! Which commands a mode holds is Redis 7.0's rule (`processCommand`): ALL holds every
//! command; WRITE holds those flagged `write` or `may_replicate` (EXEC when its queued
//! commands are), and a write queued in MULTI is held before its `+QUEUED` as Redis
//! 7.0.15 holds it. A client that closes while held is gone: its held request never
//! runs (Redis frees it), so the socket is still read while held, a little (up to
//! [`HELD_READ_MAX`] bytes buffered), to see the close. Redis 7.0 hides
//! `may_replicate` from `COMMAND`; the command table sets it on those commands. Checked
//! against a standalone 7.0.15: EVAL, EVALSHA, FCALL, PUBLISH, SPUBLISH, PFCOUNT are
//! held in WRITE mode; EVAL_RO, FCALL_RO, SCRIPT LOAD, WAIT, reads are not. A client
//! not logged in is not held (Redis answers NOAUTH before it looks at the pause).

use super::super::{ClientState, Session};
use crate::commands::{cmd_flags, CommandInfo, CommandTable, Lookup};
use crate::pause::Mode;
use crate::protocol::scan::scan_request;
use crate::protocol::Args;
use bytes::Bytes;

/// How much a held client's socket is read ahead (to see it close) while held.
pub(super) const HELD_READ_MAX: usize = 16 * 1024;

impl Session {
    /// Whether the request `raw` (its arguments framed in `io.ranges`) waits for the
    /// pause: one atomic load while nothing is paused.
    #[inline]
    pub(super) fn paused(&mut self, raw: &Bytes) -> bool {
        let now = self.now();
        let Some(mode) = self.ctx.pause.mode(now) else {
            return false;
        };
        if self.client.auth.user().is_none() {
            return false;
        }
        if mode == Mode::All {
            return true;
        }
        let table = self.ctx.cluster.commands();
        let Some(table) = table.as_ref() else {
            return false;
        };
        holds_write(table, &self.client, Args::new(raw, &self.io.ranges))
    }

    /// Whether the request `raw` waits for a fence (`crate::workers::fence`): while
    /// blocking commands are in use, a command that can wake a blocked client waits
    /// until the other workers have taken in what their clients sent before it. One
    /// atomic load otherwise.
    #[inline]
    pub(super) fn fenced(&mut self, raw: &Bytes) -> bool {
        if self.io.fence_passed || !crate::workers::fence::active(self.now()) {
            return false;
        }
        // Not logged in: refused anyway, and never worth a task on every worker.
        if self.client.auth.user().is_none() {
            return false;
        }
        let table = self.ctx.cluster.commands();
        let Some(table) = table.as_ref() else {
            return false;
        };
        let Lookup::Found(info) = table.lookup(Args::new(raw, &self.io.ranges)) else {
            return false;
        };
        if !info.wakes_blocked() {
            return false;
        }
        self.io.fence = Some(crate::workers::fence::Fence::new());
        true
    }

    /// Dispatches the held request once no pause holds it and its fence is passed;
    /// false while one still holds it.
    pub(super) fn release_held(&mut self) -> bool {
        if self.io.fence.is_some() {
            return false;
        }
        let Some(raw) = self.io.held.take() else {
            return true;
        };
        // The argument ranges are framed again: nothing else was framed meanwhile, but
        // the request is cheap to scan and this keeps `ranges` the held request's.
        if scan_request(&raw, &self.io.limits, &mut self.io.ranges).is_err() {
            return true; // cannot happen: it was framed once already
        }
        if self.paused(&raw) {
            self.io.held = Some(raw);
            return false;
        }
        let now = self.now();
        self.dispatch(raw, now);
        true
    }
}

/// In WRITE mode: whether `args` is held.
fn holds_write(table: &CommandTable, client: &ClientState, args: Args<'_>) -> bool {
    let Lookup::Found(info) = table.lookup(args) else {
        return false; // refused at once, as Redis refuses it before the pause check
    };
    match &client.tx {
        None => may_replicate(info),
        Some(tx) if info.name == "exec" => tx.queued.iter().any(|queued| {
            let mut ranges = Vec::new();
            let limits = crate::protocol::scan::RequestLimits {
                max_bulk: usize::MAX,
                max_request: usize::MAX,
                pre_auth: false,
            };
            matches!(scan_request(queued, &limits, &mut ranges), Ok(Some(_)))
                && matches!(table.lookup(Args::new(queued, &ranges)),
                    Lookup::Found(q) if may_replicate(q))
        }),
        // Queued in MULTI: held too, as Redis 7.0.15 holds a write before `+QUEUED`.
        Some(_) => may_replicate(info),
    }
}

fn may_replicate(info: &CommandInfo) -> bool {
    info.has_flag(cmd_flags::WRITE) || info.has_flag(cmd_flags::MAY_REPLICATE)
}
