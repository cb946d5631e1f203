//! `GET /readyz`: whether respgate can serve every request it may be sent now.
//!
//! Ready means: the client listeners are up (not draining), the command table and the
//! topology are known, every one of the 16384 slots has a master, and every master
//! answers `PING` on respgate's own links within [`PROBE_TIMEOUT`]. The last check is
//! what makes a killed master visible at once: the cluster keeps listing it as online
//! until its peers agree it failed (`cluster-node-timeout`), and its slots are unserved
//! all that time, until its replica is promoted. The probe goes through the shared links
//! the data path uses, so it sees what a client's request would see (a refused or lost
//! connection, a timeout).
//!
//! The answer is kept for [`FRESH_FOR`]: probes arriving meanwhile (several load
//! balancers, Kubernetes, a curl loop, or someone flooding the endpoint) share it, and
//! probes arriving while a check runs wait for that check instead of starting their own.
//! The masters see at most one PING each per [`FRESH_FOR`], whatever the probe rate.

use super::AdminState;
use crate::cluster::slot::SLOTS;
use crate::shutdown::RUNNING;
use bytes::Bytes;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a master may take to answer the probe's PING (a load balancer's or
/// Kubernetes' probe timeout should be above it).
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(900);

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// How long one check's answer is served to later probes.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// The last check's answer and when it was made (one per admin listener).
#[derive(Default)]
pub struct Cache {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
}

/// `Ok` when ready, else a short reason: the cached answer while it is fresh, else a new
/// check (one at a time: the lock is held across it, so concurrent probes coalesce).
pub(super) async fn check(state: &AdminState) -> Result<(), String> {
    // Draining is answered at once: a load balancer must stop sending without delay.
    if state.shutdown.level() != RUNNING {
        return Err("shutting down: the client listeners are closed".into());
    }
    let mut last = state.ready.last.lock().await;
    if let Some((at, answer)) = last.as_ref() {
        if at.elapsed() < FRESH_FOR {
            return answer.clone();
        }
    }
    let answer = probe(state).await;
    *last = Some((Instant::now(), answer.clone()));
    answer
}

/// One full check: topology, coverage, and a PING to every master.
async fn probe(state: &AdminState) -> Result<(), String> {
    let cluster = &state.cluster;
    if cluster.commands().is_none() {
        return Err("the command table is not loaded yet".into());
    }
    let masters = {
        let topology = cluster.topology();
        let Some(topology) = topology.as_ref() else {
            return Err("the cluster topology is not known yet".into());
        };
        let covered = topology.layout().covered_slots();
        if covered < SLOTS {
            return Err(format!(
                "{} of {SLOTS} slots have no master",
                SLOTS - covered
            ));
        }
        topology
            .shards()
            .iter()
            .map(|s| s.master.clone())
            .collect::<Vec<_>>()
    };
    let mut probes = tokio::task::JoinSet::new();
    for master in masters {
        probes.spawn(async move {
            let answer = tokio::time::timeout(
                PROBE_TIMEOUT,
                master.ask(0, false, Bytes::from_static(PING)),
            )
            .await;
            let problem = match answer {
                Err(_) => Some(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
                Ok(Err(e)) => Some(e),
                Ok(Ok(reply)) if reply.starts_with(b"-") => Some(
                    String::from_utf8_lossy(reply.strip_suffix(b"\r\n").unwrap_or(&reply))
                        .into_owned(),
                ),
                Ok(Ok(_)) => None,
            };
            // Link errors usually begin with the address already.
            let addr = master.addr();
            problem.map(|p| match p.starts_with(addr) {
                true => format!("master {p}"),
                false => format!("master {addr}: {p}"),
            })
        });
    }
    let mut problems: Vec<String> = probes.join_all().await.into_iter().flatten().collect();
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    Err(problems.join("; "))
}
