//! The TTL sweeper: keys matching a `[[ttl]]` pattern that respgate never saw written
//! (a script's `redis.call('SET', ...)`, a write straight to a node) still get an expiry.
//!
//! For each pattern whose `sweep_interval_secs` is above 0, one pass walks every
//! master's keyspace with `SCAN cursor MATCH pattern COUNT n` and sends
//! `EXPIRE key default_seconds NX` for every key found: `NX` sets an expiry only where
//! none exists, so no TTL has to be read first and keys that have one keep it. A pass
//! examines at most `sweep_keys_per_sec` keys per second (SCAN's COUNT is the unit of
//! work; the pass sleeps between batches), so a large keyspace takes longer rather than
//! loading the nodes. The next pass starts `sweep_interval_secs` after one ends.
//!
//! Off the request path: one task, on respgate's own links to the masters
//! (`Node::send` with a control-plane client id), one batch at a time. The policy is
//! read again before every pass, so a reload (SIGHUP) changes patterns and pace.
//! Counted in `respgate_ttl_sweeper_expired_total{pattern}` and logged once per pass.

use super::ttl::SweepRule;
use super::Guards;
use crate::backend::{answer, Node};
use crate::cluster::keyspace::{scan_step, ScanError};
use crate::cluster::Cluster;
use crate::protocol::reply;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The client id the sweeper's requests are sent under (it picks the node link).
const SWEEPER_CLIENT_ID: u64 = u64::MAX - 1;

/// Runs sweep passes while `shutdown` is pending.
pub async fn run(
    cluster: Arc<Cluster>,
    guards: Arc<Guards>,
    pause: Arc<crate::pause::Pause>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    // Pattern -> when its next pass is due.
    let mut due: HashMap<String, Instant> = HashMap::new();
    loop {
        let rules = guards.current().ttl.sweeps();
        due.retain(|p, _| rules.iter().any(|r| &r.pattern == p));
        let now = Instant::now();
        let next = rules
            .iter()
            .find(|r| due.get(&r.pattern).is_none_or(|at| *at <= now));
        let wait = match next {
            Some(rule) if cluster.topology().is_some() => {
                // A pass writes (EXPIRE) on the shared links: never into a CLIENT PAUSE,
                // which would hold it there in front of clients' requests.
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = async { pause.unpaused().await; pass(&cluster, rule).await } => {}
                }
                due.insert(rule.pattern.clone(), Instant::now() + rule.interval);
                Duration::ZERO
            }
            // Nothing due (or no topology yet): look again within a second, so a reload
            // or a shorter interval is picked up soon.
            _ => due
                .values()
                .min()
                .map_or(Duration::from_secs(1), |at| {
                    at.saturating_duration_since(now)
                })
                .min(Duration::from_secs(1))
                .max(Duration::from_millis(10)),
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// One pass of `rule` over every master.
async fn pass(cluster: &Cluster, rule: &SweepRule) {
    let Some(masters) = crate::cluster::keyspace::masters(cluster) else {
        return;
    };
    let started = Instant::now();
    let (mut scanned, mut expired, mut failed) = (0u64, 0u64, 0usize);
    for node in &masters {
        match sweep_node(node, rule, &mut scanned, &mut expired).await {
            Ok(()) => {}
            Err(why) => {
                failed += 1;
                tracing::warn!(pattern = %rule.pattern, node = node.addr(), error = %why, "ttl sweep of a node failed");
            }
        }
    }
    if expired > 0 {
        metrics::counter!("respgate_ttl_sweeper_expired_total", "pattern" => rule.pattern.clone())
            .increment(expired);
    }
    let ms = started.elapsed().as_millis() as u64;
    if expired > 0 || failed > 0 {
        tracing::info!(
            pattern = %rule.pattern,
            keys_found = scanned,
            expiries_added = expired,
            seconds = rule.seconds,
            masters = masters.len(),
            failed_masters = failed,
            ms,
            "ttl sweep: keys without an expiry got the policy's default"
        );
    } else {
        tracing::debug!(pattern = %rule.pattern, keys_found = scanned, ms, "ttl sweep: every key had an expiry");
    }
}

/// Walks one master's keyspace for `rule`, at its pace.
async fn sweep_node(
    node: &Node,
    rule: &SweepRule,
    scanned: &mut u64,
    expired: &mut u64,
) -> Result<(), String> {
    // Ten batches a second at most; COUNT is the work a SCAN call does.
    let count = (rule.keys_per_sec / 10).clamp(10, 1000);
    let batch_time = Duration::from_secs_f64(count as f64 / rule.keys_per_sec.max(1) as f64);
    let count_text = count.to_string();
    let seconds = rule.seconds.to_string();
    let max = rule.max.map(|m| m.to_string());
    let per_key = 1 + max.is_some() as u32;
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let started = Instant::now();
        let step = scan_step(
            node,
            SWEEPER_CLIENT_ID,
            &cursor,
            Some(rule.pattern.as_bytes()),
            count_text.as_bytes(),
        );
        let (next, keys) = step.await.map_err(|e| match e {
            ScanError::Node(e) => String::from_utf8_lossy(&e).trim_end().to_string(),
            ScanError::Link(why) => why,
            ScanError::Unreadable => "unreadable SCAN reply".to_string(),
        })?;
        *scanned += keys.len() as u64;
        if !keys.is_empty() {
            let mut job = BytesMut::new();
            for k in &keys {
                job.extend_from_slice(&reply::command([
                    &b"EXPIRE"[..],
                    k,
                    seconds.as_bytes(),
                    b"NX",
                ]));
                // A longer expiry than max_seconds (a script's, a RENAMEd key's) is
                // lowered to it.
                if let Some(max) = &max {
                    job.extend_from_slice(&reply::command([
                        &b"EXPIRE"[..],
                        k,
                        max.as_bytes(),
                        b"LT",
                    ]));
                }
            }
            let replies = ask(node, job.freeze(), keys.len() as u32 * per_key).await?;
            *expired += count_ones(&replies, per_key as usize);
        }
        if &next[..] == b"0" {
            return Ok(());
        }
        cursor = next;
        let spent = started.elapsed();
        if spent < batch_time {
            tokio::time::sleep(batch_time - spent).await;
        }
    }
}

/// Sends `bytes` (producing `replies` replies) to `node` and waits for them all.
async fn ask(node: &Node, bytes: Bytes, replies: u32) -> Result<Bytes, String> {
    answer(node.request_replies(SWEEPER_CLIENT_ID, false, bytes, replies)).await
}

/// How many of the replies in `bytes` are `:1` (an EXPIRE that set an expiry), counting
/// only the first of each `per_key` replies (the `NX` one).
fn count_ones(bytes: &[u8], per_key: usize) -> u64 {
    let mut pos = 0;
    let mut n = 0;
    let mut i = 0;
    while pos < bytes.len() {
        let Ok(Some(len)) = crate::protocol::scan::scan_reply(&bytes[pos..]) else {
            break;
        };
        if i % per_key == 0 && &bytes[pos..pos + len] == b":1\r\n" {
            n += 1;
        }
        pos += len;
        i += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_expiries_set() {
        assert_eq!(super::count_ones(b":1\r\n:0\r\n:1\r\n-ERR x\r\n", 1), 2);
        assert_eq!(super::count_ones(b":1\r\n:1\r\n:0\r\n:1\r\n", 2), 1);
    }
}
