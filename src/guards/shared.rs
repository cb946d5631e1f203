//! Budgets shared by every respgate in front of one cluster (`scope = "global"`,
//! `shared = true`): the counter lives in the cluster itself.
//!
//! Fixed windows of the rate's unit (`5/min`: one-minute windows, `burst` or the count
//! per window). Each request runs one small script on the master of the counter's slot
//! (one round trip): `INCR respgate:guard:{rule}:<window>` and, on the window's first
//! request, `PEXPIRE` so old windows disappear. The request passes when the count is
//! within the budget. When the cluster cannot count (node down, timeout, error), the
//! rule's `on_error` decides: `open` lets the request pass, `closed` refuses it.

use crate::cluster::{key_slot, Cluster};
use crate::config::FailMode;
use crate::protocol::refusal::{GuardLimit, Refusal};
use crate::protocol::reply;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const SCRIPT: &str = "local n = redis.call('INCR', KEYS[1]) if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n";

/// One shared budget.
pub struct SharedBudget {
    pub rule: String,
    pub budget: u64,
    pub window: Duration,
    pub on_error: FailMode,
    pub limited: metrics::Counter,
    pub passed: metrics::Counter,
}

/// Counts one request against `budget`; the receiver gets `None` (pass) or the refusal.
/// `refusal` is the error text without the retry time.
pub fn start(
    cluster: Arc<Cluster>,
    client_id: u64,
    budget: Arc<SharedBudget>,
    refusal: GuardLimit,
) -> oneshot::Receiver<Option<Bytes>> {
    crate::workers::spawn_answer(async move { take(&cluster, client_id, &budget, &refusal).await })
}

async fn take(
    cluster: &Cluster,
    client_id: u64,
    b: &SharedBudget,
    refusal: &GuardLimit,
) -> Option<Bytes> {
    let window_ms = b.window.as_millis().max(1) as u64;
    let now_ms = crate::cluster::replicas::now_ms();
    let window = now_ms / window_ms;
    let key = format!("respgate:guard:{{{}}}:{window}", b.rule);
    let ttl = (window_ms + 1000).to_string();
    let request = reply::command([
        &b"EVAL"[..],
        SCRIPT.as_bytes(),
        b"1",
        key.as_bytes(),
        ttl.as_bytes(),
    ]);
    let timeout = cluster.config().request_timeout();
    let counted = tokio::time::timeout(timeout, count(cluster, client_id, &key, request)).await;
    let n = match counted {
        Ok(Ok(n)) => n,
        Ok(Err(why)) => return failed(b, refusal, &why),
        Err(_) => return failed(b, refusal, "timed out"),
    };
    if n as u64 <= b.budget && n > 0 {
        b.passed.increment(1);
        return None;
    }
    b.limited.increment(1);
    let wait = Duration::from_millis((window + 1) * window_ms - now_ms);
    Some(
        Refusal::GuardLimited {
            limit: refusal.clone(),
            retry: super::retry_text(wait),
        }
        .reply(),
    )
}

fn failed(b: &SharedBudget, refusal: &GuardLimit, why: &str) -> Option<Bytes> {
    tracing::warn!(rule = %b.rule, error = %why, on_error = ?b.on_error, "shared guard budget could not be counted");
    match b.on_error {
        FailMode::Open => {
            b.passed.increment(1);
            None
        }
        FailMode::Closed => {
            b.limited.increment(1);
            Some(
                Refusal::GuardUncounted {
                    limit: refusal.clone(),
                    why: why.to_string(),
                }
                .reply(),
            )
        }
    }
}

/// Runs the counting script on the counter's master (following one MOVED).
async fn count(
    cluster: &Cluster,
    client_id: u64,
    key: &str,
    request: Bytes,
) -> Result<i64, String> {
    let node = {
        let topo = cluster.topology();
        topo.as_ref()
            .and_then(|t| t.master_for_slot(key_slot(key.as_bytes())).cloned())
            .ok_or_else(|| "no master for the counter's slot".to_string())?
    };
    let mut answer = node.ask(client_id, false, request.clone()).await?;
    // respgate's own counting script: its MOVED is the node's. Followed to a node of the
    // topology only (the one redirect rule: credentials go to known nodes alone).
    if let Some((_, addr)) = crate::cluster::redirect::moved_target(&answer) {
        cluster.request_refresh();
        let node = cluster
            .known_node(&addr)
            .ok_or_else(|| format!("redirected to {addr}, which the topology does not name"))?;
        answer = node.ask(client_id, false, request).await?;
    }
    let text = std::str::from_utf8(&answer).map_err(|_| "unreadable reply".to_string())?;
    match text.strip_prefix(':') {
        Some(n) => n
            .trim_end()
            .parse()
            .map_err(|_| format!("unexpected reply {text:?}")),
        None => Err(text.trim_end().trim_start_matches('-').to_string()),
    }
}
