//! What a backend reply means for the request at the head of the queue: final, or
//! re-sent after a redirection (MOVED, ASK), or retried after a backoff (TRYAGAIN,
//! CLUSTERDOWN, READONLY from a demoted master, a node that could not be reached)
//! within `cluster.retry_deadline`; a transaction's replies unpacked; a script's MOVED confirmed against a newer topology
//! first (its error replies are data). The decision on one reply's text is
//! [`crate::cluster::redirect`]'s; acting on it is this file's.

use super::pending::{Remote, Step};
use super::replica_read::replica_should_yield;
use super::Session;
use crate::backend::{LinkError, ReplyResult};
use crate::cluster::redirect::{self, Decision, Origin};
use crate::protocol::refusal::Refusal;
use bytes::Bytes;
use std::time::{Duration, Instant};

impl Session {
    /// A script's MOVED was waiting for a newer topology (see [`ScriptCall`]): `true`
    /// when the call must be sent again (the slot's master changed), else its reply is
    /// settled as final (or the wait goes on, within the retry deadline).
    pub(super) fn confirm_script_moved(&mut self, remote: &mut Remote) -> bool {
        let Some((reply, seen)) = remote.script.as_mut().and_then(|c| c.moved.take()) else {
            return true;
        };
        // Two discoveries since the reply: the second began after it came.
        if self.ctx.cluster.refreshes() < seen + 2 {
            if self.schedule_retry(remote) {
                if let Some(call) = remote.script.as_mut() {
                    call.moved = Some((reply, seen));
                }
                return false;
            }
            return self.settle(remote, reply);
        }
        let owner = self.master_addr(remote.slot);
        let sent_to = remote.script.as_ref().and_then(|c| c.sent_to.as_ref());
        if owner.is_none() || owner.as_ref() == sent_to {
            // The node that answered still serves the slot: the MOVED was the script's
            // own reply. It reaches the client as it is.
            return self.settle(remote, reply);
        }
        remote.redirects += 1;
        metrics::counter!("respgate_redirects_total", "kind" => "moved").increment(1);
        true
    }

    /// Makes `reply` the final reply of `remote` (delivered through its channel).
    pub(super) fn settle(&mut self, remote: &mut Remote, reply: Bytes) -> bool {
        let (tx, rx) = self.slots.channel();
        // Counted again: it is taken again when it reaches the head.
        if !self.output.hand_reply(reply.len()) {
            // Closing for its bytes: the reply will never be written.
            remote.rx = rx;
            remote.retry_at = None;
            return false;
        }
        let _ = tx.send(Ok(reply));
        remote.rx = rx;
        remote.retry_at = None;
        if let Some(call) = remote.script.as_mut() {
            call.settled = true;
        }
        false
    }

    /// Decides what a backend reply means for request `r`: final, or re-sent after a
    /// redirection, or scheduled for a retry.
    pub(super) fn advance(&mut self, r: &mut Remote, result: ReplyResult) -> Step {
        if r.replica.is_some() && replica_should_yield(&result) {
            // A replica that failed, is loading, or does not serve the slot (any more):
            // the master answers instead, invisibly to the client.
            r.replica = None;
            r.bound = None; // tried a replica once: the master from now on
            self.send(r, None, false);
            return Step::Again;
        }
        let step = self.advance_inner(r, result);
        if let (Step::Final(_), Some(master)) = (&step, r.ryw_master) {
            r.ryw_master = None;
            self.ryw_end(master);
        }
        step
    }

    fn advance_inner(&mut self, r: &mut Remote, result: ReplyResult) -> Step {
        let result = match result {
            Ok(bytes) if r.replies > 1 => {
                return self
                    .transaction_reply(r, bytes)
                    .unwrap_or_else(|| Step::Final(Refusal::MalformedTransactionReply.reply()))
            }
            other => other,
        };
        let bytes = match result {
            Ok(bytes) if r.script.as_ref().is_some_and(|c| c.settled) => bytes,
            Ok(bytes) => {
                let origin = match r.script {
                    Some(_) => Origin::Script,
                    None => Origin::Command,
                };
                match redirect::decide(&self.ctx.cluster, &bytes, origin, r.slot) {
                    Decision::Follow {
                        addr,
                        asking,
                        moved_slot,
                    } if r.redirects < self.ctx.bounds.max_redirects => {
                        r.redirects += 1;
                        match moved_slot {
                            Some(slot) => self.ctx.cluster.apply_moved(slot, &addr),
                            None => metrics::counter!("respgate_redirects_total", "kind" => "ask")
                                .increment(1),
                        }
                        self.send(r, Some(&addr), asking);
                        return Step::Again;
                    }
                    Decision::RetryLater if self.schedule_retry(r) => return Step::Again,
                    Decision::Confirm { .. } if r.redirects < self.ctx.bounds.max_redirects => {
                        let seen = self.ctx.cluster.refreshes();
                        if self.schedule_retry(r) {
                            if let Some(call) = r.script.as_mut() {
                                call.moved = Some((bytes, seen));
                            }
                            return Step::Again;
                        }
                        bytes
                    }
                    _ => bytes,
                }
            }
            Err(LinkError::NotSent(why)) => {
                if self.schedule_retry(r) {
                    return Step::Again;
                }
                Refusal::NotSent(why.to_string()).reply()
            }
            Err(LinkError::Lost(why)) | Err(LinkError::TimedOut(why)) => {
                metrics::counter!("respgate_backend_request_failures_total").increment(1);
                Refusal::Backend(why.to_string()).reply()
            }
            Err(LinkError::Refused(why)) => Refusal::RefusedAsUser(why.to_string()).reply(),
        };
        Step::Final(bytes)
    }

    /// The replies of a transaction job (`MULTI`, N commands, `EXEC`): a redirection or
    /// a retryable error on any of them means EXEC ran nothing, so the whole job is
    /// re-sent; otherwise the client gets EXEC's reply (or MULTI's error).
    pub(super) fn transaction_reply(&mut self, r: &mut Remote, bytes: Bytes) -> Option<Step> {
        let mut frames = Vec::with_capacity(r.replies as usize);
        let mut pos = 0;
        while pos < bytes.len() {
            let len = crate::protocol::scan::scan_reply(&bytes[pos..]).ok()??;
            frames.push(pos..pos + len);
            pos += len;
        }
        for f in &frames {
            match redirect::decide(
                &self.ctx.cluster,
                &bytes[f.clone()],
                Origin::Command,
                r.slot,
            ) {
                Decision::Follow {
                    addr,
                    asking: false,
                    moved_slot: Some(slot),
                } if r.redirects < self.ctx.bounds.max_redirects => {
                    r.redirects += 1;
                    self.ctx.cluster.apply_moved(slot, &addr);
                    self.send(r, Some(&addr), false);
                    return Some(Step::Again);
                }
                // ASKING covers one command, not a transaction: wait for the migration.
                Decision::Follow { asking: true, .. } | Decision::RetryLater
                    if self.schedule_retry(r) =>
                {
                    return Some(Step::Again);
                }
                _ => {}
            }
        }
        let first = frames.first()?.clone();
        // A write followed by the TTL policy's EXPIREs: the client gets the write's reply.
        // (Jobs respgate builds for transactions and WATCH start with MULTI / UNWATCH.)
        let keeps_last = r.request.starts_with(b"*1\r\n$5\r\nMULTI\r\n")
            || r.request.starts_with(b"*1\r\n$7\r\nUNWATCH\r\n");
        if !keeps_last {
            return Some(Step::Final(bytes.slice(first)));
        }
        if bytes[first.start] == b'-' {
            return Some(Step::Final(bytes.slice(first)));
        }
        let exec = bytes.slice(frames.last()?.clone());
        if r.hidden > 0 {
            return Some(Step::Final(without_last_elements(exec, r.hidden)));
        }
        Some(Step::Final(exec))
    }

    /// Arranges a retry with backoff if the retry deadline allows; the topology is
    /// refreshed meanwhile.
    pub(super) fn schedule_retry(&self, r: &mut Remote) -> bool {
        let backoff = Duration::from_millis((10u64 << r.retries.min(4)).min(200));
        let at = Instant::now() + backoff;
        if at > r.started + self.ctx.bounds.retry_deadline {
            return false;
        }
        r.retries += 1;
        r.retry_at = Some(at);
        metrics::counter!("respgate_retries_total").increment(1);
        self.ctx.cluster.request_refresh();
        true
    }
}

/// EXEC's reply without its last `hidden` elements (the replies to the TTL policy's
/// EXPIREs): the bytes Redis gives for the client's own commands. A reply that is not
/// an array of at least that many elements (EXECABORT, a WATCH abort's null) is
/// returned as it is.
fn without_last_elements(exec: Bytes, hidden: u32) -> Bytes {
    use crate::protocol::scan::{parse_int, scan_reply};
    let Some(header_end) = exec.windows(2).position(|w| w == b"\r\n") else {
        return exec;
    };
    if exec.first() != Some(&b'*') {
        return exec;
    }
    let Some(n) = parse_int(&exec[1..header_end]) else {
        return exec;
    };
    let keep = n - i64::from(hidden);
    if keep < 0 {
        return exec;
    }
    let mut pos = header_end + 2;
    for _ in 0..keep {
        match scan_reply(&exec[pos..]) {
            Ok(Some(len)) => pos += len,
            _ => return exec,
        }
    }
    let mut out = bytes::BytesMut::with_capacity(pos + 8);
    crate::protocol::reply::put_array_header(&mut out, keep as usize);
    out.extend_from_slice(&exec[header_end + 2..pos]);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::without_last_elements;
    use bytes::Bytes;

    #[test]
    fn exec_reply_loses_only_the_hidden_elements() {
        let exec = Bytes::from_static(b"*4\r\n+OK\r\n*1\r\n:1\r\n:1\r\n:0\r\n");
        assert_eq!(
            &without_last_elements(exec, 2)[..],
            b"*2\r\n+OK\r\n*1\r\n:1\r\n"
        );
        // Not an array with that many elements: as it came.
        for reply in [
            &b"*-1\r\n"[..],
            b"_\r\n",
            b"-EXECABORT Transaction discarded because of previous errors.\r\n",
            b"*1\r\n:1\r\n",
        ] {
            assert_eq!(
                &without_last_elements(Bytes::copy_from_slice(reply), 2)[..],
                reply
            );
        }
    }
}
