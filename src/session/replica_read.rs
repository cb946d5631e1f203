//! Reads a replica serves (`[replica_reads]`): which replica may serve a read under its
//! lag bound, read-your-writes (a client's own write in flight or newer than a
//! replica's heartbeat keeps its reads on the master), and which replica answers make
//! the master answer instead.

use super::{RywEntry, Session};
use crate::backend::{Job, ReplyResult};
use bytes::Bytes;

impl Session {
    /// An eligible replica of `slot`'s shard for a read under bound `bound`, spreading
    /// clients over the replicas; `None`: read from the master.
    pub(super) fn pick_replica(
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
    pub(super) fn send_to_replica(
        &mut self,
        node: &crate::backend::Node,
        request: &Bytes,
        replies: u32,
    ) -> crate::backend::reply::ReplyRx {
        let (tx, rx) = self.slots.channel();
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
    pub(super) fn ryw_begin(&mut self, slot: u16) -> Option<usize> {
        let topo = self.ctx.cluster.topology();
        let master = std::sync::Arc::as_ptr(topo.as_ref()?.master_for_slot(slot)?) as usize;
        match self.client.ryw.iter_mut().find(|e| e.master == master) {
            Some(e) => e.in_flight += 1,
            None => self.client.ryw.push(RywEntry {
                master,
                in_flight: 1,
                answered_ms: 0,
            }),
        }
        Some(master)
    }

    /// Read-your-writes: the write tracked for `master` was answered.
    pub(super) fn ryw_end(&mut self, master: usize) {
        if let Some(e) = self.client.ryw.iter_mut().find(|e| e.master == master) {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.answered_ms = crate::cluster::replicas::now_ms();
        }
    }
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
