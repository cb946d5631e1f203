//! Sending a client's requests to the backends: to the master of the request's slot on
//! the shared links of the client's worker, to a replica (`replica_read.rs`), on the
//! client's own connection (blocking commands, WATCH: `dedicated.rs`), or on the links
//! that run as the client's script identity. What a reply means once it comes back is
//! `redirects.rs`.

use super::dedicated::{DedicatedError, Pin};
use super::pending::{Pending, Remote, ScriptCall, Split};
use super::route::{self, Sending};
use super::{merge, Session};
use crate::backend::{Job, LinkError, NodeIdentity};
use crate::protocol::refusal::Refusal;
use bytes::Bytes;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

/// Requests from this size up, kept for their reply, are counted
/// ([`Remote::_charge`](super::pending::Remote)).
const REQUEST_COUNTED_MIN: usize = 64 * 1024;

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
        let (request, charge) = if request.len() >= REQUEST_COUNTED_MIN {
            let own = Bytes::copy_from_slice(&request);
            let charge = crate::budget::HeldRequest::new(&self.output, own.len());
            (own, Some(charge))
        } else {
            (request, None)
        };
        let mut ryw_master = None;
        let target = match (replica, slot) {
            (Some(route::TRACKED_WRITE), Some(slot)) => {
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
            bound: replica.filter(|b| *b != route::TRACKED_WRITE),
            ryw_master,
            run_as,
            script,
            hidden,
            part_of,
            _charge: charge,
        }
    }

    /// The address of the master serving `slot` (any master's when keyless) now.
    pub(super) fn master_addr(&self, slot: Option<u16>) -> Option<String> {
        let topo = self.ctx.cluster.topology();
        let t = topo.as_ref()?;
        let node = match slot {
            Some(slot) => t.master_for_slot(slot),
            None => t.any_master(self.client.meta.id),
        };
        node.map(|n| n.addr().to_string())
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
            self.pipe
                .pending
                .push_back(Pending::Ready(Refusal::NoMasterKnown.reply()));
            return;
        }
        let part_of = Arc::new(AtomicUsize::new(0));
        let parts: Vec<Remote> = parts
            .into_iter()
            .map(|(slot, request, replies)| {
                let how = Sending {
                    replies,
                    part_of: Some(part_of.clone()),
                    ..Sending::one()
                };
                self.forward(request, slot, arrived, metrics::Histogram::noop(), how)
            })
            .collect();
        let done = vec![None; parts.len()];
        self.pipe.pending.push_back(Pending::Split(Box::new(Split {
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
    ) -> crate::backend::reply::ReplyRx {
        let (tx, rx) = self.slots.channel();
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
}
