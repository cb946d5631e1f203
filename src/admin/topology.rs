//! `GET /topology`: the slot map respgate routes by, as JSON.
//!
//! ```json
//! {"known": true, "generation": 3, "covered_slots": 16384, "spare": [],
//!  "replica_lag_measured": true,
//!  "shards": [{"master": "10.0.0.1:6379", "slots": [[0, 5460]],
//!              "replicas": [{"addr": "10.0.0.4:6379", "lag_ms": 12, "lag_bytes": 0,
//!                            "link": "up", "eligible": true}]}]}
//! ```
//!
//! Replication lag is measured only while replica reads are enabled (`[replica_reads]`,
//! the lag tracker of `cluster::replicas`); otherwise `replica_lag_measured` is false and
//! a replica's `lag_ms`, `lag_bytes`, `link` and `eligible` are `null`. `lag_ms` is also
//! `null` until the tracker read a first heartbeat from that replica. `eligible`: the
//! replica may serve reads under at least one configured lag bound now.

use super::AdminState;
use crate::backend::Node;
use crate::cluster::replicas::{now_ms, ReadPolicy};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// The current topology as JSON.
pub(super) fn json(state: &AdminState) -> Value {
    let topology = state.cluster.topology();
    let Some(topology) = topology.as_ref() else {
        return json!({ "known": false, "shards": [] });
    };
    let policy = state.read_policy.as_deref();
    let now = now_ms();
    let layout = topology.layout();
    let shards: Vec<Value> = topology
        .shards()
        .iter()
        .zip(&layout.shards)
        .map(|(shard, spec)| {
            let replicas: Vec<Value> = shard
                .replicas
                .iter()
                .map(|r| replica(policy, &shard.master, r, now))
                .collect();
            json!({
                "master": shard.master.addr(),
                "slots": spec.slots,
                "replicas": replicas,
            })
        })
        .collect();
    json!({
        "known": true,
        "generation": topology.generation(),
        "covered_slots": layout.covered_slots(),
        "spare": layout.spare,
        "replica_lag_measured": policy.is_some(),
        "shards": shards,
    })
}

/// One replica: its address, and what the lag tracker knows of it.
fn replica(policy: Option<&ReadPolicy>, master: &Node, replica: &Node, now: u64) -> Value {
    let Some(policy) = policy else {
        return json!({
            "addr": replica.addr(),
            "lag_ms": null, "lag_bytes": null, "link": null, "eligible": null,
        });
    };
    let (stale, qualified) = policy.staleness(master, replica, now);
    let eligible = (0..policy.bounds.len()).any(|b| policy.eligible(master, replica, b as u8, now));
    json!({
        "addr": replica.addr(),
        "lag_ms": (stale != u64::MAX).then_some(stale),
        "lag_bytes": replica.lag().bytes_behind.load(Ordering::Relaxed),
        "link": if qualified { "up" } else { "down" },
        "eligible": eligible,
    })
}
