//! Replica reads under a replication-lag bound.
//!
//! **How lag is known.** Offsets alone give bytes, not time, so respgate measures time
//! directly: every `poll_interval_ms` the tracker writes a heartbeat, the current time in
//! ms (respgate's own clock), to a key of each shard's master (`<prefix>:{tag}:<id>`,
//! the tag hashing to one of the shard's slots, the id random per process, expiring
//! after 60 s), and reads that key
//! back from each replica together with `INFO replication`. A replica that shows
//! heartbeat `h` has applied everything its master had applied when `h` was written,
//! so at time `now` its data is at most `now - h` ms old: the bound is checked against
//! that on every read, with no trust in any replica's clock. A replica that stops
//! answering (SIGSTOP, partition) keeps its last `h`, so its staleness grows by itself
//! and it leaves every bound without waiting for a poll to fail. Bytes behind come from
//! the offsets (`master_repl_offset` minus the replica's `slave_repl_offset`), and the
//! link state from `master_link_status`.
//!
//! **A shard without a master.** When the master stops answering the tracker, no write
//! can land on the shard any more, so a replica misses at most what was written between
//! its heartbeat and the master's last sign of life (plus one poll interval): its
//! staleness is frozen at that instead of growing with the clock, and its link being
//! down (it has no master to follow) does not disqualify it. Reads under
//! `prefer_replica` thus keep working through a failover until the replica is promoted
//! (it then serves as the master).
//!
//! **No flapping.** For each bound, the tracker records the last poll at which the
//! replica was outside it; the replica serves reads under that bound again only after
//! `recover_ms` inside it.
//!
//! **Hedged reads.** A read already sent to a replica that then stops would wait
//! `request_timeout_ms` for it; after `hedge_after_ms` without an answer the session sends
//! it to the master as well and takes whichever answer comes first
//! (`session::hedge`). A replica that needs [`HEDGE_STRIKES`] hedges between two of its
//! lag polls is treated as outside every bound, so it serves no reads for `recover_ms`
//! (or until its lag says it may): the shard's reads are not hedged one by one.
//!
//! **Read-your-writes.** A client's write to a shard that has been answered at time `w`
//! is on every replica whose heartbeat is `> w`: that heartbeat was written after the
//! write was applied on the master, and replication applies in order. While a write is
//! in flight, the shard's reads go to the master.

use crate::acl::glob::Pattern;
use crate::backend::{Job, Node};
use crate::cluster::{key_slot, Cluster};
use crate::config::{ReadPolicyKind, ReplicaReadsConfig};
use crate::protocol::reply;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Hedged reads (since its last answered poll) that take a replica out of service.
pub const HEDGE_STRIKES: u32 = 3;

/// respgate's clock for heartbeats: ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One lag bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub max_lag_ms: u64,
    pub max_lag_bytes: u64,
}

/// The compiled `[replica_reads]` policy.
pub struct ReadPolicy {
    /// Key pattern and the bound index reads under it may use (`None`: master).
    rules: Vec<(Pattern, Option<u8>)>,
    default: Option<u8>,
    pub bounds: Vec<Bound>,
    recover_ms: u64,
    pub poll_interval: Duration,
    heartbeat_prefix: String,
    read_your_writes: Vec<String>,
    /// Reads under a prefer_replica policy, by where they went.
    pub replica_reads: metrics::Counter,
    pub master_reads: metrics::Counter,
    /// The same counts, for INFO.
    pub replica_count: AtomicU64,
    pub master_count: AtomicU64,
    /// A replica read not answered within this is sent to the master too (`None`: never).
    pub hedge_after: Option<Duration>,
    /// Reads hedged so far.
    pub hedged_reads: metrics::Counter,
    pub hedged_count: AtomicU64,
}

impl ReadPolicy {
    pub fn new(cfg: &ReplicaReadsConfig) -> Option<Arc<ReadPolicy>> {
        if !cfg.enabled() {
            return None;
        }
        let mut bounds = Vec::new();
        let mut bound_of = |policy: ReadPolicyKind, ms: u64, bytes: u64| {
            (policy == ReadPolicyKind::PreferReplica).then(|| {
                bounds.push(Bound {
                    max_lag_ms: ms,
                    max_lag_bytes: bytes,
                });
                (bounds.len() - 1) as u8
            })
        };
        let default = bound_of(cfg.default_policy, cfg.max_lag_ms, cfg.max_lag_bytes);
        let rules = cfg
            .rules
            .iter()
            .map(|r| {
                (
                    Pattern::new(r.pattern.as_bytes()),
                    bound_of(r.policy, r.max_lag_ms, r.max_lag_bytes),
                )
            })
            .collect();
        Some(Arc::new(ReadPolicy {
            rules,
            default,
            bounds,
            recover_ms: cfg.recover_ms,
            poll_interval: Duration::from_millis(cfg.poll_interval_ms),
            heartbeat_prefix: cfg.heartbeat_prefix.clone(),
            read_your_writes: cfg.read_your_writes.clone(),
            replica_reads: metrics::counter!("respgate_replica_policy_reads_total", "target" => "replica"),
            master_reads: metrics::counter!("respgate_replica_policy_reads_total", "target" => "master"),
            replica_count: AtomicU64::new(0),
            master_count: AtomicU64::new(0),
            hedge_after: (cfg.hedge_after_ms > 0)
                .then(|| Duration::from_millis(cfg.hedge_after_ms)),
            hedged_reads: metrics::counter!("respgate_replica_hedged_reads_total"),
            hedged_count: AtomicU64::new(0),
        }))
    }

    /// The bound a read of `key` may use on a replica (`None`: the master).
    #[inline]
    pub fn bound_for(&self, key: &[u8]) -> Option<u8> {
        for (pattern, bound) in &self.rules {
            if pattern.matches(key) {
                return *bound;
            }
        }
        self.default
    }

    /// Whether `user` gets read-your-writes.
    pub fn read_your_writes(&self, user: &str) -> bool {
        self.read_your_writes.iter().any(|u| u == "*" || u == user)
    }

    /// How old `replica`'s data may be at `now` (ms; `u64::MAX`: unknown), and whether
    /// its replication state qualifies it at all (link up, or its master gone).
    #[inline]
    pub fn staleness(&self, master: &Node, replica: &Node, now: u64) -> (u64, bool) {
        let lag = replica.lag();
        let hb = lag.heartbeat_ms.load(Ordering::Acquire);
        if hb == 0 {
            return (u64::MAX, false);
        }
        let poll = self.poll_interval.as_millis() as u64;
        let master_ok = master.lag().master_ok_ms.load(Ordering::Acquire);
        let master_gone =
            master_ok != 0 && master.lag().master_fail_ms.load(Ordering::Acquire) > master_ok;
        let until = if master_gone {
            (master_ok + poll).min(now)
        } else {
            now
        };
        (
            until.saturating_sub(hb),
            master_gone || lag.link_up.load(Ordering::Relaxed),
        )
    }

    /// Whether `replica` (of `master`) may serve a read under bound `b` at `now`.
    #[inline]
    pub fn eligible(&self, master: &Node, replica: &Node, b: u8, now: u64) -> bool {
        let lag = replica.lag();
        let bound = self.bounds[b as usize];
        let (stale, qualified) = self.staleness(master, replica, now);
        qualified
            && stale <= bound.max_lag_ms
            && lag.bytes_behind.load(Ordering::Relaxed) <= bound.max_lag_bytes
            && now.saturating_sub(lag.last_outside_ms[b as usize].load(Ordering::Relaxed))
                >= self.recover_ms
    }

    /// A read on `replica` was not answered within `hedge_after` and went to the master
    /// as well: counted, and at [`HEDGE_STRIKES`] since the replica's last answered poll,
    /// the replica is outside every bound from now (it must answer polls for
    /// `recover_ms` before it serves reads again).
    pub fn hedged(&self, replica: &Node) {
        self.hedged_reads.increment(1);
        self.hedged_count.fetch_add(1, Ordering::Relaxed);
        let lag = replica.lag();
        let strikes = lag.hedge_strikes.fetch_add(1, Ordering::AcqRel) + 1;
        if strikes >= HEDGE_STRIKES {
            let now = now_ms();
            for outside in &lag.last_outside_ms[..self.bounds.len()] {
                outside.fetch_max(now, Ordering::Relaxed);
            }
            if strikes == HEDGE_STRIKES {
                tracing::warn!(
                    replica = replica.addr(),
                    strikes,
                    "replica too slow to answer reads: its reads go to the master for now"
                );
            }
        }
    }

    /// Replica-read state for INFO's `# Proxy` section: one line per replica (lag as
    /// time and bytes, link, whether it serves reads under the first bound) and the
    /// reads counted by target.
    pub fn info(&self, cluster: &Cluster) -> String {
        let mut out = format!(
            "replica_reads_served_by_replicas:{}\r\nreplica_reads_served_by_masters:{}\r\nreplica_reads_hedged:{}\r\n",
            self.replica_count.load(Ordering::Relaxed),
            self.master_count.load(Ordering::Relaxed),
            self.hedged_count.load(Ordering::Relaxed)
        );
        let topo = cluster.topology();
        let Some(topo) = topo.as_ref() else {
            return out;
        };
        let now = now_ms();
        let mut i = 0;
        for shard in topo.shards() {
            for r in &shard.replicas {
                let (stale, qualified) = self.staleness(&shard.master, r, now);
                let eligible =
                    (0..self.bounds.len()).any(|b| self.eligible(&shard.master, r, b as u8, now));
                let lag = if stale == u64::MAX {
                    "unknown".to_string()
                } else {
                    stale.to_string()
                };
                out.push_str(&format!(
                    "replica{i}:addr={},master={},lag_ms={lag},lag_bytes={},link={},eligible={}\r\n",
                    r.addr(),
                    shard.master.addr(),
                    r.lag().bytes_behind.load(Ordering::Relaxed),
                    if qualified { "up" } else { "down" },
                    u8::from(eligible),
                ));
                i += 1;
            }
        }
        out
    }

    fn heartbeat_key(&self, slot: u16) -> String {
        format!(
            "{}:{{{}}}:{}",
            self.heartbeat_prefix,
            slot_tag(slot),
            instance_id()
        )
    }
}

/// This process's heartbeat identity: random, so respgate processes on different hosts
/// (whose clocks differ) never read each other's heartbeats.
fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| format!("{:016x}", rand::random::<u64>()))
}

/// A short string hashing to `slot` (for a key in that slot).
pub fn slot_tag(slot: u16) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        let mut tags = vec![String::new(); crate::cluster::slot::SLOTS];
        let mut missing = crate::cluster::slot::SLOTS;
        let mut n = 0u64;
        while missing > 0 {
            let s = n.to_string();
            let slot = key_slot(s.as_bytes()) as usize;
            if tags[slot].is_empty() {
                tags[slot] = s;
                missing -= 1;
            }
            n += 1;
        }
        tags
    });
    &tags[slot as usize]
}

/// Sends `bytes` (producing `replies` replies) to `node` now, and returns the wait for
/// the answer (at most `timeout`): the polls of one shard's nodes are all in flight at
/// once.
fn ask(
    node: &Node,
    bytes: Bytes,
    replies: u32,
    timeout: Duration,
) -> impl std::future::Future<Output = Option<Bytes>> {
    let (tx, rx) = crate::backend::reply::channel();
    node.send_readonly(
        0,
        Job {
            bytes,
            asking: false,
            resp3: false,
            replies,
            reply: tx,
            budget: None,
            part_of: None,
        },
    );
    async move { tokio::time::timeout(timeout, rx).await.ok()?.ok()?.ok() }
}

/// The value of `field:` in an INFO reply.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// Measures every replica's lag, every `poll_interval`, until `shutdown` resolves.
pub async fn run_tracker(
    cluster: Arc<Cluster>,
    policy: Arc<ReadPolicy>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(policy.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let Some(topo) = cluster.topology().clone() else {
            continue;
        };
        // Shards are polled concurrently: a dead master's timeout delays no other shard.
        let mut polls = tokio::task::JoinSet::new();
        for (i, shard) in topo.shards().iter().enumerate() {
            let Some(slot) = topo.shard_slot(i) else {
                continue;
            };
            let key = policy.heartbeat_key(slot);
            let master = shard.master.clone();
            let replicas = shard.replicas.clone();
            let policy = policy.clone();
            polls.spawn(async move { poll_shard(&policy, &master, &replicas, &key).await });
        }
        while polls.join_next().await.is_some() {}
    }
}

async fn poll_shard(policy: &ReadPolicy, master: &Arc<Node>, replicas: &[Arc<Node>], key: &str) {
    let timeout = policy.poll_interval;
    let now = now_ms();
    let stamp = now.to_string();
    let mut to_master = reply::command([
        &b"SET"[..],
        key.as_bytes(),
        stamp.as_bytes(),
        b"PX",
        b"60000",
    ])
    .to_vec();
    to_master.extend_from_slice(&reply::command([&b"INFO"[..], b"replication"]));
    let master_poll = ask(master, Bytes::from(to_master), 2, timeout);
    let replica_polls: Vec<_> = replicas
        .iter()
        .map(|r| {
            let mut bytes = reply::command([&b"GET"[..], key.as_bytes()]).to_vec();
            bytes.extend_from_slice(&reply::command([&b"INFO"[..], b"replication"]));
            ask(r, Bytes::from(bytes), 2, timeout)
        })
        .collect();
    let master_reply = master_poll.await;
    // Only silence (no connection, no answer in time) means the master is gone; an
    // error reply (MOVED after a migration, ...) proves nothing either way.
    match master_reply.as_deref() {
        Some(b) if b.starts_with(b"+OK") => {
            master.lag().master_ok_ms.fetch_max(now, Ordering::AcqRel);
        }
        Some(_) => {}
        None => {
            master.lag().master_fail_ms.fetch_max(now, Ordering::AcqRel);
        }
    }
    let master_offset = master_reply.as_deref().and_then(|b| {
        let text = String::from_utf8_lossy(b);
        info_field(&text, "master_repl_offset")?.parse::<u64>().ok()
    });
    for (replica, poll) in replicas.iter().zip(replica_polls) {
        let lag = replica.lag();
        if let Some(bytes) = poll.await {
            // It answers: earlier hedges were a passing slowness.
            lag.hedge_strikes.store(0, Ordering::Relaxed);
            if let Ok(Some(first)) = crate::protocol::scan::scan_reply(&bytes) {
                if let Some(hb) = crate::protocol::value::bulk_payload(&bytes[..first])
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                {
                    lag.heartbeat_ms.fetch_max(hb, Ordering::AcqRel);
                }
                let text = String::from_utf8_lossy(&bytes[first..]);
                lag.link_up.store(
                    info_field(&text, "master_link_status") == Some("up"),
                    Ordering::Relaxed,
                );
                if let (Some(m), Some(r)) = (
                    master_offset,
                    info_field(&text, "slave_repl_offset").and_then(|v| v.parse::<u64>().ok()),
                ) {
                    lag.bytes_behind
                        .store(m.saturating_sub(r), Ordering::Relaxed);
                }
            }
        }
        // Outside a bound now? Then it must stay inside for `recover_ms` from here.
        let now = now_ms();
        let (stale_ms, qualified) = policy.staleness(master, replica, now);
        let behind = lag.bytes_behind.load(Ordering::Relaxed);
        for (b, bound) in policy.bounds.iter().enumerate() {
            if !qualified || stale_ms > bound.max_lag_ms || behind > bound.max_lag_bytes {
                lag.last_outside_ms[b].store(now, Ordering::Relaxed);
            }
        }
        let label = replica.addr().to_string();
        metrics::gauge!("respgate_replica_lag_ms", "replica" => label.clone())
            .set(stale_ms.min(3_600_000) as f64);
        metrics::gauge!("respgate_replica_lag_bytes", "replica" => label.clone())
            .set(behind as f64);
        let eligible = policy
            .bounds
            .iter()
            .enumerate()
            .any(|(b, _)| policy.eligible(master, replica, b as u8, now));
        metrics::gauge!("respgate_replica_eligible", "replica" => label).set(if eligible {
            1.0
        } else {
            0.0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_tag() {
        for slot in [0u16, 1, 5000, 16383] {
            assert_eq!(
                key_slot(format!("{{{}}}x", slot_tag(slot)).as_bytes()),
                slot
            );
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let cfg: ReplicaReadsConfig = toml::from_str(
            r#"
            rules = [
              { pattern = "session:*", policy = "master" },
              { pattern = "cache:search:*", policy = "prefer_replica", max_lag_ms = 2000 },
              { pattern = "cache:*", policy = "prefer_replica", max_lag_ms = 500 },
            ]
            "#,
        )
        .unwrap();
        let p = ReadPolicy::new(&cfg).unwrap();
        assert_eq!(p.bound_for(b"session:1"), None);
        assert_eq!(p.bound_for(b"cache:search:q"), Some(0));
        assert_eq!(p.bound_for(b"cache:x"), Some(1));
        assert_eq!(p.bound_for(b"other"), None);
        assert_eq!(p.bounds[1].max_lag_ms, 500);
    }
}
