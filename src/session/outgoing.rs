//! Sending a client's requests to the backends, and deciding what each reply means:
//! follow a redirection, retry after a backoff, unpack a transaction's replies, or hand
//! the reply to the client. Blocking commands and WATCH use the client's own links.

use super::dedicated::Pin;
use super::{merge, routing, Pending, Remote, ScriptCall, Session, Split, Step};
use crate::backend::{DedicatedLink, Job, LinkError, NodeIdentity, ReplyResult};
use crate::cluster::redirect::{self, Decision, Origin};
use crate::protocol::reply;
use bytes::Bytes;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How a request is sent: the replies it produces, on the client's own connection or
/// not, and the lag bound under which a replica may serve it (or
/// [`routing::TRACKED_WRITE`]).
pub(super) struct Sending {
    pub replies: u32,
    pub dedicated: Option<Pin>,
    pub replica: Option<u8>,
    /// Run on the node as this identity (scripts, transactions holding one).
    pub run_as: Option<Arc<NodeIdentity>>,
    /// A script call: its replies are data.
    pub script: bool,
    /// See `Remote::hidden`.
    pub hidden: u32,
    /// See `Remote::part_of`.
    pub part_of: Option<Arc<AtomicUsize>>,
}

impl Session {
    /// Sends `request` to the master of `slot` and returns it as an outstanding request.
    pub(super) fn forward(
        &mut self,
        request: Bytes,
        slot: Option<u16>,
        arrived: Instant,
        latency: metrics::Histogram,
        how: Sending,
    ) -> Remote {
        let Sending {
            replies,
            dedicated,
            replica,
            run_as,
            script,
            hidden,
            part_of,
        } = how;
        // A large request is kept (for redirections) in an allocation of its own, not
        // as a slice pinning the client's read buffer, and counted until its entry goes.
        let (request, charge) = if request.len() >= super::REQUEST_COUNTED_MIN {
            let own = Bytes::copy_from_slice(&request);
            let charge = crate::budget::HeldRequest::new(&self.output, own.len());
            (own, Some(charge))
        } else {
            (request, None)
        };
        let mut ryw_master = None;
        let target = match (replica, slot) {
            (Some(routing::TRACKED_WRITE), Some(slot)) => {
                ryw_master = self.ryw_begin(slot);
                None
            }
            (Some(bound), Some(slot)) => self.pick_replica(slot, bound),
            _ => None,
        };
        let rx = match &target {
            Some(node) => self.send_to_replica(node, &request, replies),
            None => self.send_job(
                &request,
                slot,
                None,
                false,
                replies,
                dedicated,
                run_as.as_ref(),
                part_of.as_ref(),
            ),
        };
        let script = script.then(|| {
            Box::new(ScriptCall {
                sent_to: self.master_addr(slot),
                ..ScriptCall::default()
            })
        });
        Remote {
            rx,
            request,
            slot,
            redirects: 0,
            retries: 0,
            started: arrived,
            retry_at: None,
            latency,
            replies,
            dedicated,
            hedge: match target {
                Some(_) => self.hedge_for(arrived),
                None => super::hedge::Hedge::Off,
            },
            replica: target,
            bound: replica.filter(|b| *b != routing::TRACKED_WRITE),
            ryw_master,
            run_as,
            script,
            hidden,
            part_of,
            _charge: charge,
        }
    }

    /// The address of the master serving `slot` (any master's when keyless) now.
    fn master_addr(&self, slot: Option<u16>) -> Option<String> {
        let topo = self.ctx.cluster.topology();
        let t = topo.as_ref()?;
        let node = match slot {
            Some(slot) => t.master_for_slot(slot),
            None => t.any_master(self.client.meta.id),
        };
        node.map(|n| n.addr().to_string())
    }

    /// A script's MOVED was waiting for a newer topology (see [`ScriptCall`]): `true`
    /// when the call must be sent again (the slot's master changed), else its reply is
    /// settled as final (or the wait goes on, within the retry deadline).
    fn confirm_script_moved(&mut self, remote: &mut Remote) -> bool {
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
    fn settle(&mut self, remote: &mut Remote, reply: Bytes) -> bool {
        let (tx, rx) = oneshot::channel();
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

    /// An eligible replica of `slot`'s shard for a read under bound `bound`, spreading
    /// clients over the replicas; `None`: read from the master.
    fn pick_replica(
        &mut self,
        slot: u16,
        bound: u8,
    ) -> Option<std::sync::Arc<crate::backend::Node>> {
        let policy = self.ctx.read_policy.as_ref()?;
        let topo = self.ctx.cluster.topology();
        let shard = topo.as_ref()?.shard_for_slot(slot)?;
        let now = crate::cluster::replicas::now_ms();
        // Read-your-writes: only a replica whose heartbeat came after the client's last
        // answered write to this master has that write; none while one is in flight.
        let master = std::sync::Arc::as_ptr(&shard.master) as usize;
        let floor = self
            .client
            .ryw
            .iter()
            .find(|e| e.master == master)
            .map(|e| {
                if e.in_flight > 0 {
                    u64::MAX
                } else {
                    e.answered_ms
                }
            });
        let n = shard.replicas.len();
        let start = self.client.meta.id as usize;
        let chosen = (0..n)
            .map(|k| &shard.replicas[(start + k) % n])
            .find(|r| {
                policy.eligible(&shard.master, r, bound, now)
                    // A write still in flight (floor u64::MAX): no heartbeat is newer.
                    && floor.is_none_or(|f| {
                        r.lag()
                            .heartbeat_ms
                            .load(std::sync::atomic::Ordering::Acquire)
                            > f
                    })
            })
            .cloned();
        let (counter, count) = match &chosen {
            Some(_) => (&policy.replica_reads, &policy.replica_count),
            None => (&policy.master_reads, &policy.master_count),
        };
        counter.increment(1);
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        chosen
    }

    /// Queues `request` on `node`'s READONLY link (a read a replica serves).
    fn send_to_replica(
        &self,
        node: &crate::backend::Node,
        request: &Bytes,
        replies: u32,
    ) -> oneshot::Receiver<ReplyResult> {
        let (tx, rx) = oneshot::channel();
        node.send_readonly(
            self.client.meta.id,
            Job {
                bytes: request.clone(),
                asking: false,
                resp3: self.client.resp3,
                replies,
                reply: tx,
                budget: Some(self.output.clone()),
                part_of: None,
            },
        );
        rx
    }

    /// Read-your-writes: a write to `slot`'s master is in flight.
    fn ryw_begin(&mut self, slot: u16) -> Option<usize> {
        let topo = self.ctx.cluster.topology();
        let master = std::sync::Arc::as_ptr(topo.as_ref()?.master_for_slot(slot)?) as usize;
        match self.client.ryw.iter_mut().find(|e| e.master == master) {
            Some(e) => e.in_flight += 1,
            None => self.client.ryw.push(super::RywEntry {
                master,
                in_flight: 1,
                answered_ms: 0,
            }),
        }
        Some(master)
    }

    /// Read-your-writes: the write tracked for `master` was answered.
    fn ryw_end(&mut self, master: usize) {
        if let Some(e) = self.client.ryw.iter_mut().find(|e| e.master == master) {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.answered_ms = crate::cluster::replicas::now_ms();
        }
    }

    /// Sends every part of a split request and queues it for merging.
    pub(super) fn push_split(
        &mut self,
        parts: Vec<(Option<u16>, Bytes, u32)>,
        merge: merge::Merge,
        latency: metrics::Histogram,
        arrived: Instant,
    ) {
        if parts.is_empty() {
            self.pending.push_back(Pending::Ready(reply::error(
                "CLUSTERDOWN The cluster is down (respgate knows no master yet)",
            )));
            return;
        }
        let part_of = Arc::new(AtomicUsize::new(0));
        let parts: Vec<Remote> = parts
            .into_iter()
            .map(|(slot, request, replies)| {
                let how = Sending {
                    replies,
                    dedicated: None,
                    replica: None,
                    run_as: None,
                    script: false,
                    hidden: 0,
                    part_of: Some(part_of.clone()),
                };
                self.forward(request, slot, arrived, metrics::Histogram::noop(), how)
            })
            .collect();
        let done = vec![None; parts.len()];
        self.pending.push_back(Pending::Split(Box::new(Split {
            parts,
            done,
            merge,
            started: arrived,
            latency,
            part_of,
            kept: Some(0),
            counted: 0,
        })));
    }

    /// Re-sends `remote` to `to` (a redirection target) or to whoever serves its slot now.
    pub(super) fn send(&mut self, remote: &mut Remote, to: Option<&str>, asking: bool) {
        if remote.script.is_some() {
            if !self.confirm_script_moved(remote) {
                return;
            }
            // A script goes where the topology says (it never follows a reply's
            // address): remember which master that is.
            let owner = self.master_addr(remote.slot);
            if let Some(call) = remote.script.as_mut() {
                call.sent_to = owner;
            }
        }
        // A retried read that a replica may serve: an eligible replica first (its master
        // may be the node that just failed).
        if let (None, Some(bound), Some(slot), None) =
            (to, remote.bound, remote.slot, &remote.replica)
        {
            if let Some(node) = self.pick_replica(slot, bound) {
                remote.rx = self.send_to_replica(&node, &remote.request, remote.replies);
                remote.replica = Some(node);
                let now = self.now();
                remote.hedge = self.hedge_for(now);
                remote.retry_at = None;
                return;
            }
        }
        remote.hedge = super::hedge::Hedge::Off;
        remote.rx = self.send_job(
            &remote.request,
            remote.slot,
            to,
            asking,
            remote.replies,
            remote.dedicated,
            remote.run_as.as_ref(),
            remote.part_of.as_ref(),
        );
        remote.retry_at = None;
    }

    /// Queues `request` on the backend link for `to`, or for the master of `slot` (any
    /// master when keyless), and returns where its reply will arrive. `dedicated` uses
    /// this client's own connection (blocking commands); `run_as`, links that run as
    /// that identity. `to` must be a node of the topology (the redirect policy checked).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_job(
        &mut self,
        request: &Bytes,
        slot: Option<u16>,
        to: Option<&str>,
        asking: bool,
        replies: u32,
        dedicated: Option<Pin>,
        run_as: Option<&Arc<NodeIdentity>>,
        part_of: Option<&Arc<AtomicUsize>>,
    ) -> oneshot::Receiver<ReplyResult> {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            part_of: part_of.cloned(),
            bytes: request.clone(),
            asking,
            resp3: self.client.resp3,
            replies,
            reply: tx,
            budget: Some(self.output.clone()),
        };
        let client_id = self.client.meta.id;
        // The common case first, without an owned address: the shared link of the
        // slot's master.
        if to.is_none() && dedicated.is_none() {
            let topo = self.ctx.cluster.topology();
            let node = topo.as_ref().and_then(|t| match slot {
                Some(slot) => t.master_for_slot(slot),
                None => t.any_master(client_id),
            });
            if let Some(node) = node {
                match run_as {
                    None => node.send(client_id, job),
                    Some(id) => node.send_as(id, client_id, job),
                }
                return rx;
            }
        }
        let addr: Option<String> = match to {
            Some(addr) => Some(addr.to_string()),
            None => {
                let topo = self.ctx.cluster.topology();
                topo.as_ref()
                    .and_then(|t| match slot {
                        Some(slot) => t.master_for_slot(slot),
                        None => t.any_master(client_id),
                    })
                    .map(|n| n.addr().to_string())
            }
        };
        let Some(addr) = addr else {
            let why = match slot {
                Some(slot) if self.ctx.cluster.topology().is_some() => {
                    format!("hash slot {slot} not served")
                }
                _ => "no node has answered discovery yet".to_string(),
            };
            let _ = job.reply.send(Err(LinkError::NotSent(why)));
            return rx;
        };
        let Some(pin) = dedicated else {
            // Credentials go to nodes of the topology only.
            match (self.ctx.cluster.known_node(&addr), run_as) {
                (Some(node), None) => node.send(client_id, job),
                (Some(node), Some(id)) => node.send_as(id, client_id, job),
                (None, _) => {
                    let why = format!("{addr} is not a node of the cluster's topology");
                    let _ = job.reply.send(Err(LinkError::NotSent(why)));
                }
            }
            return rx;
        };
        match self.dedicated_link(&addr, run_as, pin) {
            Ok(link) => link.send(job),
            Err(DedicatedError::Refused(refusal)) => {
                // The client's reply, not a backend failure. A refused WATCH leaves
                // nothing watched, as a WATCH that failed in Redis.
                if pin == Pin::Watch && self.client.watch_slot == slot {
                    self.client.watch_slot = None;
                    self.client.watch_identity = None;
                }
                let _ = job.reply.send(Ok(refusal));
            }
            Err(DedicatedError::Other(why)) => {
                let _ = job.reply.send(Err(LinkError::Lost(why)));
            }
        }
        rx
    }

    /// This client's own connection to `addr`, opened on first use within the bounds
    /// on such connections (`server.max_dedicated_connections`, and per user).
    pub(super) fn dedicated_link(
        &mut self,
        addr: &str,
        identity: Option<&Arc<NodeIdentity>>,
        pin: Pin,
    ) -> Result<&DedicatedLink, DedicatedError> {
        // One link per node, kept while the client lives: a link with a command in
        // flight must not be dropped when the client's next blocking command goes to
        // another node.
        let resp3 = self.client.resp3;
        if let Some(i) = self
            .dedicated
            .iter()
            .position(|(l, _)| l.addr() == addr && l.resp3() == resp3 && l.runs_as(identity))
        {
            return Ok(&self.dedicated[i].0);
        }
        let permit = self
            .ctx
            .dedicated
            .take(
                self.client.auth.name(),
                self.client.auth.user().map(|u| &**u),
                pin,
            )
            .map_err(DedicatedError::Refused)?;
        if self.ctx.cluster.known_node(addr).is_none() {
            return Err(DedicatedError::Other(format!(
                "{addr} is not a node of the cluster's topology"
            )));
        }
        let link = self
            .ctx
            .cluster
            .dedicated_link(addr, resp3, identity.cloned());
        self.client
            .entry
            .dedicated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Arc::from(addr), link.backend_id()));
        self.dedicated.push((link, permit));
        Ok(&self.dedicated.last().expect("just pushed").0)
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
                return self.transaction_reply(r, bytes).unwrap_or_else(|| {
                    Step::Final(reply::error("ERR respgate: malformed transaction reply"))
                })
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
                    } if r.redirects < self.ctx.max_redirects => {
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
                    Decision::Confirm { .. } if r.redirects < self.ctx.max_redirects => {
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
                reply::error(&format!("CLUSTERDOWN respgate: {why}"))
            }
            Err(LinkError::Lost(why)) | Err(LinkError::TimedOut(why)) => {
                metrics::counter!("respgate_backend_request_failures_total").increment(1);
                reply::error(&format!("ERR respgate: {why}"))
            }
            Err(LinkError::Refused(why)) => reply::error(&format!(
                "ERR respgate: this runs on the node as your own user, and {why}"
            )),
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
                } if r.redirects < self.ctx.max_redirects => {
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
        if at > r.started + self.ctx.retry_deadline {
            return false;
        }
        r.retries += 1;
        r.retry_at = Some(at);
        metrics::counter!("respgate_retries_total").increment(1);
        self.ctx.cluster.request_refresh();
        true
    }
}

/// Why a connection of the client's own could not be had.
pub(super) enum DedicatedError {
    /// A bound on such connections refused it: this error reply is the client's.
    Refused(Bytes),
    /// Not a node of the topology.
    Other(String),
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

/// Whether a replica's answer should be replaced by the master's: it could not be
/// reached, timed out, or answered with a redirection or an error that says it cannot
/// serve (LOADING, MASTERDOWN, READONLY-related, CLUSTERDOWN, TRYAGAIN).
pub(super) fn replica_should_yield(result: &ReplyResult) -> bool {
    match result {
        Err(_) => true,
        Ok(bytes) => {
            bytes.first() == Some(&b'-')
                && [
                    &b"-MOVED"[..],
                    b"-ASK",
                    b"-LOADING",
                    b"-MASTERDOWN",
                    b"-CLUSTERDOWN",
                    b"-TRYAGAIN",
                ]
                .iter()
                .any(|p| bytes.starts_with(p))
        }
    }
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
