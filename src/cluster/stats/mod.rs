//! Cluster metrics collected by respgate: one `INFO ALL` and one `SLOWLOG LEN` per node
//! per interval, recorded through the `metrics` facade under redis_exporter's names, so
//! dashboards and the runbook's queries (`redis_memory_used_bytes`,
//! `redis_evicted_keys_total`, `redis_connected_clients`, ...) work with no exporter per
//! node.
//!
//! **Labels.** redis_exporter runs one exporter per node, so its series are told apart by
//! Prometheus's `instance`. respgate collects every node itself, so each node series
//! carries `addr="host:port"` (as the cluster reports the node) and
//! `role="master"|"replica"` (the node's place in respgate's current topology; a spare
//! master serving no slot yet is `master`). Queries that aggregate with `sum`/`max`
//! (as the runbook's do) work unchanged; `by (addr)` replaces `by (instance)`.
//! `redis_connected_slave_offset_bytes` and `redis_connected_slave_lag_seconds` add
//! redis_exporter's `slave_ip`, `slave_port` and `slave_state` on the master's series.
//!
//! **Counters are gauges.** INFO gives absolute totals since the node started
//! (`evicted_keys`, `used_cpu_sys`, ...). They are recorded as gauges set to the node's
//! value, not `counter!().absolute()`: the facade's counters are `u64` and keep the
//! maximum ever set, so a node restart (its totals back to 0) would be hidden until the
//! new total passed the old one, and CPU seconds are decimals. A gauge shows the node's
//! own value; PromQL's `rate()`/`increase()` work on it as on a counter (a decrease is a
//! reset), and the `_total` names stay redis_exporter's.
//!
//! **Cluster-level**, which no node can give alone:
//! - `respgate_cluster_masters_online`: shards whose master answered this round and says
//!   `role:master`;
//! - `respgate_cluster_slots_covered`: the slots of those shards, i.e. slots served by a
//!   master that answers. `respgate_covered_slots` (set at each discovery) stays what it
//!   was: the slots the cluster itself assigns; the two differ while a master is down and
//!   not yet marked failed;
//! - `respgate_cluster_failovers_total`: replicas promoted, seen by comparing topologies
//!   (see [`failover`]; checked every second, collection or not);
//! - `respgate_cluster_collect_seconds`: how long the last round took.
//!
//! **Down nodes.** A node that does not answer within the request timeout (or answers
//! INFO with an error) is `redis_up 0` and its other series are no longer set. A
//! node the cluster dropped from its layout (a failed master) is no longer asked; once it
//! has stayed out for [`DEPARTED_AFTER`] it is reported `redis_up 0` (under its last
//! role) while it stays out, for at most [`DEPARTED_FOR`]. The wait keeps a node that
//! only blinks out of a topology read mid-failover (a replica being promoted) from
//! reading down while it serves. The
//! facade cannot delete a series: the admin recorder drops gauges not written for three
//! intervals (`admin::recorder`), so a down node's other series, series of nodes removed
//! for good, and of a role a node no longer has, go away; this collector must therefore
//! re-set every series it wants kept, every round (it does).
//!
//! **Off the request path.** The requests go on the node's pooled link (as the replica
//! lag tracker's do): no connection, TLS handshake or AUTH per round, and the
//! collector's own connection never shows in `connected_clients`. A client request that
//! shares that link waits at most behind one INFO (a few tens of microseconds on the
//! node), once per interval.

pub mod failover;
pub mod info;

use crate::backend::Node;
use crate::cluster::{Cluster, Topology};
use crate::protocol::{reply, scan, value};
use bytes::Bytes;
use failover::{Role, Roles};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a node the cluster dropped is still reported down.
pub const DEPARTED_FOR: Duration = Duration::from_secs(3600);

/// How long a node must stay out of the topology before it is reported down.
pub const DEPARTED_AFTER: Duration = Duration::from_secs(30);

/// What to report for a node out of the topology for `out`.
#[derive(Debug, PartialEq, Eq)]
enum Departed {
    /// Nothing yet: it may be back at the next refresh.
    Wait,
    /// `redis_up 0`.
    Down,
    /// Forget it: gone for good.
    Forget,
}

fn departed(out: Duration) -> Departed {
    match out {
        out if out >= DEPARTED_FOR => Departed::Forget,
        out if out >= DEPARTED_AFTER => Departed::Down,
        _ => Departed::Wait,
    }
}

/// What one round saw (for tests and logs; everything is also recorded as metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Nodes asked.
    pub nodes: usize,
    /// Nodes that answered INFO.
    pub up: usize,
    pub masters_online: usize,
    pub slots_covered: usize,
    /// Failovers counted since the collector started.
    pub failovers: u64,
    /// Size of the largest INFO reply, in bytes.
    pub largest_info: usize,
}

/// The collector's memory between rounds.
pub struct Collector {
    cluster: Arc<Cluster>,
    roles: Roles,
    /// The topology last given to [`Roles::observe`].
    seen: Option<Arc<Topology>>,
    /// Nodes that left the layout: their last role and since when.
    departed: HashMap<String, (Role, Instant)>,
    /// Whether each node answered last time (logged on change only).
    was_up: HashMap<String, bool>,
    failovers: u64,
}

/// Collects every `interval` until the handle is aborted (or the runtime ends), and
/// checks the topology for failovers every second in between.
pub fn spawn_collector(cluster: Arc<Cluster>, interval: Duration) -> tokio::task::JoinHandle<()> {
    describe();
    tokio::spawn(async move {
        let mut collector = Collector::new(cluster);
        let mut tick = tokio::time::interval(interval.min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last: Option<Instant> = None;
        loop {
            tick.tick().await;
            if last.is_none_or(|t| t.elapsed() >= interval) {
                last = Some(Instant::now());
                collector.collect_once().await;
            } else {
                collector.watch_topology();
            }
        }
    })
}

impl Collector {
    pub fn new(cluster: Arc<Cluster>) -> Collector {
        metrics::counter!("respgate_cluster_failovers_total").absolute(0);
        Collector {
            cluster,
            roles: Roles::default(),
            seen: None,
            departed: HashMap::new(),
            was_up: HashMap::new(),
            failovers: 0,
        }
    }

    /// Counts the failovers of a topology not seen yet; returns the current one.
    pub fn watch_topology(&mut self) -> Option<Arc<Topology>> {
        let topo = self.cluster.topology().clone()?;
        let new = match &self.seen {
            Some(seen) => !Arc::ptr_eq(seen, &topo) && seen.layout() != topo.layout(),
            None => true,
        };
        if new {
            let before: Vec<(String, Role)> = self.known_nodes();
            let promoted = self.roles.observe(topo.layout());
            if promoted > 0 {
                self.failovers += promoted;
                metrics::counter!("respgate_cluster_failovers_total").increment(promoted);
                tracing::warn!(promoted, "cluster failover seen: a replica is master now");
            }
            let now: Vec<String> = nodes_of(&topo).map(|(n, _)| n.addr().to_string()).collect();
            for (addr, role) in before {
                if !now.contains(&addr) {
                    self.departed.entry(addr).or_insert((role, Instant::now()));
                }
            }
            self.departed.retain(|a, _| !now.contains(a));
        }
        self.seen = Some(topo.clone());
        Some(topo)
    }

    fn known_nodes(&self) -> Vec<(String, Role)> {
        match &self.seen {
            Some(t) => nodes_of(t)
                .map(|(n, r)| (n.addr().to_string(), r))
                .collect(),
            None => Vec::new(),
        }
    }

    /// One round: asks every node of the current topology, records what they answer.
    pub async fn collect_once(&mut self) -> Round {
        let started = Instant::now();
        let mut round = Round {
            failovers: self.failovers,
            ..Round::default()
        };
        let Some(topo) = self.watch_topology() else {
            record_cluster(&round);
            return round;
        };
        round.failovers = self.failovers;
        let timeout = self.cluster.config().request_timeout();
        // Every request is queued before any answer is awaited: the nodes work at once.
        let asks: Vec<_> = nodes_of(&topo)
            .map(|(node, role)| (node.clone(), role, ask(node)))
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut answered: HashMap<String, info::NodeInfo> = HashMap::new();
        for (node, role, rx) in asks {
            round.nodes += 1;
            let reply = tokio::time::timeout_at(deadline, rx).await;
            let reply = reply.ok().and_then(|r| r.ok()).and_then(|r| r.ok());
            let parsed = reply.as_deref().and_then(read_reply);
            let labels = node_labels(node.addr(), role);
            self.log_change(node.addr(), parsed.is_some());
            let Some((text_len, node_info, slowlog)) = parsed else {
                metrics::gauge!("redis_up", &labels).set(0.0);
                continue;
            };
            round.up += 1;
            round.largest_info = round.largest_info.max(text_len);
            record_node(&labels, &node_info, slowlog);
            answered.insert(node.addr().to_string(), node_info);
        }
        for (i, shard) in topo.shards().iter().enumerate() {
            let online = answered
                .get(shard.master.addr())
                .is_some_and(|i| i.role.as_deref() == Some("master"));
            if online {
                round.masters_online += 1;
                round.slots_covered += topo.layout().shards.get(i).map_or(0, |s| {
                    s.slots.iter().map(|(a, b)| (*b - *a) as usize + 1).sum()
                });
            }
        }
        self.report_departed();
        record_cluster(&round);
        metrics::gauge!("respgate_cluster_collect_seconds").set(started.elapsed().as_secs_f64());
        round
    }

    fn report_departed(&mut self) {
        let roles = &mut self.roles;
        self.departed.retain(|addr, (_, since)| {
            let keep = departed(since.elapsed()) != Departed::Forget;
            if !keep {
                roles.forget(addr);
            }
            keep
        });
        for (addr, (role, since)) in &self.departed {
            if departed(since.elapsed()) == Departed::Down {
                metrics::gauge!("redis_up", &node_labels(addr, *role)).set(0.0);
            }
        }
    }

    fn log_change(&mut self, addr: &str, up: bool) {
        let before = self.was_up.insert(addr.to_string(), up);
        match (before, up) {
            (Some(true) | None, false) => {
                tracing::warn!(node = addr, "cluster metrics: node did not answer INFO")
            }
            (Some(false), true) => {
                tracing::info!(node = addr, "cluster metrics: node answers again")
            }
            _ => {}
        }
    }
}

/// Every node of `topo` with its role: shard masters, their replicas, spare masters.
fn nodes_of(topo: &Topology) -> impl Iterator<Item = (&Arc<Node>, Role)> {
    let spare = topo.spare().iter().map(|n| (n, Role::Master));
    topo.shards()
        .iter()
        .flat_map(|s| {
            std::iter::once((&s.master, Role::Master))
                .chain(s.replicas.iter().map(|r| (r, Role::Replica)))
        })
        .chain(spare)
}

type Answer = crate::backend::reply::ReplyRx;

/// Queues `INFO ALL` and `SLOWLOG LEN` on one of `node`'s links.
fn ask(node: &Node) -> Answer {
    let mut bytes = reply::command(["INFO", "ALL"]).to_vec();
    bytes.extend_from_slice(&reply::command(["SLOWLOG", "LEN"]));
    node.request_replies(0, false, Bytes::from(bytes), 2)
}

/// The INFO text's length, what it says, and the slow log's length (when answered).
fn read_reply(bytes: &[u8]) -> Option<(usize, info::NodeInfo, Option<i64>)> {
    let first = scan::scan_reply(bytes).ok()??;
    let text = std::str::from_utf8(value::bulk_payload(&bytes[..first])?).ok()?;
    let slowlog = value::integer(&bytes[first..]);
    Some((text.len(), info::parse(text), slowlog))
}

fn node_labels(addr: &str, role: Role) -> [(&'static str, String); 2] {
    [
        ("addr", addr.to_string()),
        ("role", role.label().to_string()),
    ]
}

fn record_node(labels: &[(&'static str, String); 2], node: &info::NodeInfo, slowlog: Option<i64>) {
    metrics::gauge!("redis_up", labels).set(1.0);
    for (metric, v) in &node.values {
        metrics::gauge!(*metric, labels).set(*v);
    }
    if let Some(n) = slowlog {
        metrics::gauge!("redis_slowlog_length", labels).set(n as f64);
    }
    for r in &node.replicas {
        let with_replica = [
            labels[0].clone(),
            labels[1].clone(),
            ("slave_ip", r.ip.clone()),
            ("slave_port", r.port.clone()),
            ("slave_state", r.state.clone()),
        ];
        metrics::gauge!("redis_connected_slave_offset_bytes", &with_replica).set(r.offset);
        metrics::gauge!("redis_connected_slave_lag_seconds", &with_replica).set(r.lag);
    }
}

fn record_cluster(round: &Round) {
    metrics::gauge!("respgate_cluster_masters_online").set(round.masters_online as f64);
    metrics::gauge!("respgate_cluster_slots_covered").set(round.slots_covered as f64);
}

/// Help texts for the exporter (idempotent).
fn describe() {
    for (_, metric, _, help) in info::FIELDS {
        metrics::describe_gauge!(*metric, *help);
    }
    let more = [
        ("redis_up", "1 when the node answered respgate's last INFO."),
        ("redis_slowlog_length", "Entries in the node's slow log."),
        (
            "redis_connected_slave_offset_bytes",
            "A replica's acknowledged offset, as its master reports.",
        ),
        (
            "redis_connected_slave_lag_seconds",
            "Seconds since a replica's last acknowledgement, as its master reports.",
        ),
        (
            "respgate_cluster_masters_online",
            "Shards whose master answers and says it is master.",
        ),
        (
            "respgate_cluster_slots_covered",
            "Slots served by a master that answers.",
        ),
        (
            "respgate_cluster_collect_seconds",
            "How long respgate's last cluster metrics round took.",
        ),
    ];
    for (metric, help) in more {
        metrics::describe_gauge!(metric, help);
    }
    metrics::describe_counter!(
        "respgate_cluster_failovers_total",
        "Replicas promoted to master, as respgate saw the topology change."
    );
}

#[cfg(test)]
mod tests {
    use super::{departed, Departed, DEPARTED_AFTER, DEPARTED_FOR};
    use std::time::Duration;

    #[test]
    fn a_node_out_of_the_topology_reads_down_only_after_a_wait() {
        assert_eq!(departed(Duration::ZERO), Departed::Wait);
        assert_eq!(departed(Duration::from_secs(5)), Departed::Wait);
        assert_eq!(departed(DEPARTED_AFTER), Departed::Down);
        assert_eq!(
            departed(DEPARTED_FOR - Duration::from_secs(1)),
            Departed::Down
        );
        assert_eq!(departed(DEPARTED_FOR), Departed::Forget);
    }
}
