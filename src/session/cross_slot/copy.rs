//! The generic computation: DUMP each source on its master, then on the run slot's
//! master, in one MULTI/EXEC, RESTORE the copies (TTL [`internal::TTL_MS`]), run the
//! original command on them and DEL them. The command's reply (or error: WRONGTYPE,
//! syntax) is Redis's own, taken from the EXEC reply as it came.
//!
//! **Why MULTI/EXEC.** The copies then exist only inside one atomic step of the node:
//! no other client can see them (KEYS, SCAN, DBSIZE, RANDOMKEY never count them), a
//! RESTORE refused while queued (OOM, a slot that moved) aborts the whole step rather
//! than letting the command run without one of its sources, and nothing is left
//! behind whatever happens to respgate after sending it.
//!
//! **Memory.** The DUMPs of all sources are asked at once (one pipeline per node) and
//! their payloads added up before anything is restored: over
//! `compat.max_cross_slot_bytes` the command is refused and nothing is written. Each
//! DUMP reply is also bounded by `cluster.max_reply_bytes`, as any reply.

use super::internal;
use super::plan::Plan;
use super::steps::{bytes_copied, copies_in_flight, Job};
use crate::backend::Node;
use crate::protocol::reply;
use crate::protocol::value::{bulk_payload, is_null};
use bytes::Bytes;
use std::sync::Arc;

/// Runs `plan`; the client's reply.
pub async fn run(job: &Job, plan: Plan) -> Bytes {
    match try_run(job, plan).await {
        Ok(reply) | Err(reply) => reply,
    }
}

async fn try_run(job: &Job, plan: Plan) -> Result<Bytes, Bytes> {
    let payloads = dump_all(job, &plan).await?;
    let total: u64 = payloads.iter().flatten().map(|p| p.len() as u64).sum();
    if total > job.max_bytes {
        return Err(job.too_large(total));
    }
    bytes_copied().increment(total);
    let ttl = internal::TTL_MS.to_string();
    let mut cmds = Vec::with_capacity(plan.sources.len() + 2);
    let mut copies: Vec<&[u8]> = vec![b"DEL"];
    for (source, payload) in plan.sources.iter().zip(&payloads) {
        // A missing source gets no copy: the command sees it missing, as Redis would.
        if let Some(p) = payload {
            cmds.push(reply::command([
                &b"RESTORE"[..],
                &source.internal,
                ttl.as_bytes(),
                p,
            ]));
            copies.push(&source.internal);
        }
    }
    let at = cmds.len();
    cmds.push(reply::command(plan.args.iter()));
    cmds.extend(job.expires.iter().cloned());
    let restored = copies.len() - 1;
    if restored > 0 {
        cmds.push(reply::command(copies));
    }
    let node = job.master(plan.run_slot)?;
    copies_in_flight(restored as i64);
    let answer = job.exec(&node, &cmds, job.resp3).await;
    copies_in_flight(-(restored as i64));
    let items = answer?;
    if let Some(bad) = items[..at].iter().find(|r| r.first() == Some(&b'-')) {
        return Err(job.fail(format!(
            "copy not restored: {}",
            super::steps::error_text(bad)
        )));
    }
    Ok(items[at].clone())
}

/// Every source's DUMP payload (`None`: the key does not exist), in `plan.sources`
/// order. The DUMPs of one node go in one pipeline; the nodes are asked at once.
async fn dump_all(job: &Job, plan: &Plan) -> Result<Vec<Option<Bytes>>, Bytes> {
    let mut groups: Vec<(Arc<Node>, Vec<usize>)> = Vec::new();
    for (i, s) in plan.sources.iter().enumerate() {
        let node = job.master(s.slot)?;
        match groups.iter_mut().find(|g| g.0.addr() == node.addr()) {
            Some(g) => g.1.push(i),
            None => groups.push((node, vec![i])),
        }
    }
    let pending: Vec<_> = groups
        .iter()
        .map(|(node, idx)| {
            let cmds: Vec<Bytes> = idx
                .iter()
                .map(|&i| reply::command([&b"DUMP"[..], &plan.sources[i].key]))
                .collect();
            job.send(node, &cmds, false)
        })
        .collect();
    let mut payloads = vec![None; plan.sources.len()];
    for ((node, idx), rx) in groups.iter().zip(pending) {
        let replies = job.replies(node, rx, idx.len()).await?;
        for (&i, r) in idx.iter().zip(replies) {
            payloads[i] = dumped(job, r)?;
        }
    }
    Ok(payloads)
}

/// A DUMP reply's payload; `None` for a missing key.
pub fn dumped(job: &Job, r: Bytes) -> Result<Option<Bytes>, Bytes> {
    if is_null(&r) {
        return Ok(None);
    }
    if r.first() == Some(&b'-') {
        return Err(r);
    }
    match bulk_payload(&r) {
        Some(p) => Ok(Some(r.slice_ref(p))),
        None => Err(job.fail("unreadable DUMP reply")),
    }
}
