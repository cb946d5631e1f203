//! The cluster as respgate sees it: slot map, node handles, command table, refresh.
//!
//! Readers (every client request) call [`Cluster::topology`] and get the current
//! [`Topology`] from an `ArcSwap`: a few atomic operations, no lock. Writers are the
//! refresher task (periodic, and on demand after MOVED or a connection failure, at most
//! every `refresh_min_interval_ms`) and MOVED patches; the node registry they share is
//! behind a mutex that the request path never touches.

pub(crate) mod control;
pub(crate) mod keyspace;
pub(crate) mod monitor;
pub(crate) mod redirect;
pub(crate) mod replicas;
pub mod slot;
pub mod stats;
pub(crate) mod topology;

pub use slot::key_slot;
pub use topology::{ShardLayout, Topology};

use crate::backend::{LinkOptions, Node};
use crate::commands::CommandTable;
use crate::config::ClusterConfig;
use arc_swap::{ArcSwapOption, Guard};
use control::FrameExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Shared state about the backend cluster.
pub struct Cluster {
    topology: ArcSwapOption<Topology>,
    commands: ArcSwapOption<CommandTable>,
    /// The raw `COMMAND` reply, served to clients as it came.
    command_reply: ArcSwapOption<bytes::Bytes>,
    /// `redis_version` of the backends, reported by HELLO.
    redis_version: ArcSwapOption<String>,
    registry: Mutex<HashMap<String, Weak<Node>>>,
    refresh: Arc<Notify>,
    /// Successful discoveries so far (whether or not the layout changed): a reply that
    /// claims the layout changed is checked against a discovery newer than it.
    refreshes: std::sync::atomic::AtomicU64,
    /// Topologies published by discovery so far (each one's [`Topology::generation`]).
    generations: AtomicU64,
    config: ClusterConfig,
    link_options: LinkOptions,
}

impl Cluster {
    /// # Panics
    /// If `[cluster.tls]` cannot be loaded; [`Cluster::try_new`] reports it instead
    /// (a validated configuration has been checked already).
    pub fn new(config: ClusterConfig) -> Arc<Cluster> {
        Cluster::try_new(config).unwrap_or_else(|(key, e)| panic!("{key}: {e}"))
    }

    /// The cluster state for `config`; fails when `[cluster.tls]` names unusable files.
    pub fn try_new(config: ClusterConfig) -> Result<Arc<Cluster>, crate::tls::TlsError> {
        let tls = crate::tls::UpstreamTls::from_config(config.tls.as_ref())?;
        let link_options = LinkOptions {
            connect_timeout: config.connect_timeout(),
            request_timeout: config.request_timeout(),
            username: config.username.clone(),
            password: config.upstream_password(),
            readonly: false,
            dedicated: false,
            resp3: false,
            tls,
            client_id: None,
            identity: None,
            max_reply_bytes: config.max_reply_bytes,
        };
        Ok(Arc::new(Cluster {
            topology: ArcSwapOption::empty(),
            commands: ArcSwapOption::empty(),
            command_reply: ArcSwapOption::empty(),
            redis_version: ArcSwapOption::empty(),
            registry: Mutex::new(HashMap::new()),
            refresh: Arc::new(Notify::new()),
            refreshes: Default::default(),
            generations: AtomicU64::new(0),
            config,
            link_options,
        }))
    }

    /// The current slot map (`None` until the first discovery succeeded).
    #[inline]
    pub fn topology(&self) -> Guard<Option<Arc<Topology>>> {
        self.topology.load()
    }

    /// The command table (`None` until loaded from the cluster).
    #[inline]
    pub fn commands(&self) -> Guard<Option<Arc<CommandTable>>> {
        self.commands.load()
    }

    /// The backends' raw `COMMAND` reply.
    pub fn command_reply(&self) -> Option<bytes::Bytes> {
        self.command_reply.load_full().map(|b| (*b).clone())
    }

    /// The backends' `redis_version` (`7.0.0` until known).
    pub fn redis_version(&self) -> String {
        self.redis_version
            .load_full()
            .map(|v| (*v).clone())
            .unwrap_or_else(|| "7.0.0".into())
    }

    /// A connection of its own to `addr`, for one client's blocking commands and WATCH,
    /// running as `identity` when given (a WATCH: its transaction may hold a script).
    pub fn dedicated_link(
        &self,
        addr: &str,
        resp3: bool,
        identity: Option<Arc<crate::backend::NodeIdentity>>,
    ) -> crate::backend::DedicatedLink {
        let own = identity.is_none();
        let opts = LinkOptions {
            resp3,
            identity,
            ..self.link_options.clone()
        };
        if own {
            // Connected beforehand: the blocking command is written at once
            // (`backend/ready.rs`: ordering against other clients' writes).
            return crate::backend::ready::take(addr, &opts, &self.refresh);
        }
        crate::backend::DedicatedLink::spawn(addr, opts, self.refresh.clone())
    }

    /// How backend connections connect and authenticate.
    pub fn link_options(&self) -> &LinkOptions {
        &self.link_options
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Asks the refresher for a topology refresh soon (debounced).
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// How many discoveries have succeeded (see [`redirect`]).
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The node at `addr` if the current topology names it (as a master, a replica, or
    /// a master that serves no slot yet, which a migration ASKs requests to).
    /// Redirection targets go through here: respgate connects, and sends its node
    /// credentials, only to nodes the cluster itself reported; the topology holds their
    /// handles, so every request to them reuses the node's pooled links.
    pub fn known_node(&self, addr: &str) -> Option<Arc<Node>> {
        let topo = self.topology.load();
        let found = topo.as_ref()?.nodes().find(|n| n.addr() == addr).cloned();
        found
    }

    /// The handle for `addr`, shared with every topology that names it.
    pub fn node(&self, addr: &str) -> Arc<Node> {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(node) = registry.get(addr).and_then(Weak::upgrade) {
            return node;
        }
        let node = Arc::new(Node::spawn(
            addr,
            self.config.connections_per_node,
            self.link_options.clone(),
            self.refresh.clone(),
        ));
        registry.insert(addr.to_string(), Arc::downgrade(&node));
        registry.retain(|_, n| n.strong_count() > 0);
        node
    }

    /// Records a MOVED redirection: `slot` is now served by `addr`. The full map is
    /// refreshed soon after; this patch makes the next requests for the slot go straight
    /// to the right node meanwhile.
    /// An address the topology does not name is not patched in (a reply is not proof
    /// that a node exists): only the refresh can bring a new node in.
    pub fn apply_moved(&self, slot: u16, addr: &str) {
        if let Some(topo) = self.topology.load_full() {
            self.patch_moved(topo.generation(), slot, addr);
        }
        metrics::counter!("respgate_redirects_total", "kind" => "moved").increment(1);
        self.request_refresh();
    }

    /// Patches `slot -> addr` into the current topology if it still comes from
    /// discovery `generation`; returns whether it did. The patch is computed from the map
    /// it replaces and swapped in only if that map is still current (compare-and-swap):
    /// a map a refresh published meanwhile is newer than anything the redirect knew and
    /// is never overwritten, while a concurrent patch of the same generation is patched
    /// on top of.
    fn patch_moved(&self, generation: u64, slot: u16, addr: &str) -> bool {
        if self.known_node(addr).is_none() {
            return false;
        }
        // Each failed swap means another patch landed: bounded, they are few.
        for _ in 0..8 {
            let current = self.topology.load_full();
            let Some(topo) = current.as_ref() else {
                return false;
            };
            if topo.generation() != generation
                || topo.master_for_slot(slot).map(|n| n.addr()) == Some(addr)
            {
                return false;
            }
            let patched = Some(Arc::new(topo.with_moved_slot(slot, addr, |a| self.node(a))));
            let previous = self.topology.compare_and_swap(&current, patched);
            if same(&previous, &current) {
                return true;
            }
        }
        false
    }

    /// Discovers the layout from the known masters first, then the seeds; the first node
    /// that answers wins. Loads the command table on first success.
    pub async fn refresh_once(&self) -> Result<(), String> {
        let mut candidates: Vec<String> = Vec::new();
        if let Some(topo) = self.topology.load_full() {
            candidates.extend(topo.shards().iter().map(|s| s.master.addr().to_string()));
            candidates.extend(
                topo.shards()
                    .iter()
                    .flat_map(|s| s.replicas.iter().map(|r| r.addr().to_string())),
            );
        }
        for seed in &self.config.seeds {
            if !candidates.contains(seed) {
                candidates.push(seed.clone());
            }
        }
        let mut errors = Vec::new();
        for addr in &candidates {
            match self.discover_from(addr).await {
                Ok(layout) => {
                    if self.commands.load().is_none() {
                        self.load_commands(addr).await?;
                    }
                    self.publish(layout);
                    self.refreshes
                        .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    return Ok(());
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!("no node answered: {}", errors.join("; ")))
    }

    async fn discover_from(&self, addr: &str) -> Result<ShardLayout, String> {
        let layout = match control::query(addr, &["CLUSTER", "SHARDS"], &self.link_options).await {
            Ok((frame, _)) => ShardLayout::from_shards(&frame)?,
            Err(e) if e.is_unknown_subcommand() => {
                let (frame, _) = control::query(addr, &["CLUSTER", "SLOTS"], &self.link_options)
                    .await
                    .map_err(|e| e.to_string())?;
                ShardLayout::from_slots(&frame)?
            }
            Err(e) => return Err(e.to_string()),
        };
        if layout.shards.is_empty() {
            return Err(format!("{addr}: reports no shard serving slots"));
        }
        Ok(layout)
    }

    async fn load_commands(&self, addr: &str) -> Result<(), String> {
        let (_, raw) = control::query(addr, &["COMMAND"], &self.link_options)
            .await
            .map_err(|e| e.to_string())?;
        let table = CommandTable::from_command_reply(&raw)
            .map_err(|e| format!("{addr}: COMMAND reply not understood: {e}"))?;
        tracing::info!(commands = table.len(), node = addr, "command table loaded");
        self.commands.store(Some(Arc::new(table)));
        self.command_reply.store(Some(Arc::new(raw)));
        if let Ok((info, _)) = control::query(addr, &["INFO", "server"], &self.link_options).await {
            let version = info.as_text().and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("redis_version:"))
                    .map(|v| v.trim().to_string())
            });
            if let Some(v) = version {
                self.redis_version.store(Some(Arc::new(v)));
            }
        }
        Ok(())
    }

    fn publish(&self, mut layout: ShardLayout) {
        layout.normalize();
        if let Some(current) = self.topology.load_full() {
            if *current.layout() == layout {
                return;
            }
        }
        let covered = layout.covered_slots();
        tracing::info!(
            shards = layout.shards.len(),
            covered_slots = covered,
            "topology updated"
        );
        metrics::gauge!("respgate_covered_slots").set(covered as f64);
        let generation = self.generations.fetch_add(1, Ordering::AcqRel) + 1;
        let topo = Topology::build(layout, |a| self.node(a)).at_generation(generation);
        self.topology.store(Some(Arc::new(topo)));
    }

    /// Keeps the topology fresh until `shutdown` resolves: on a timer, and when asked
    /// (debounced to `refresh_min_interval_ms`). Retries quickly while nothing is known.
    pub async fn run_refresher(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let periodic = Duration::from_millis(self.config.refresh_interval_ms.max(100));
        let min_gap = Duration::from_millis(self.config.refresh_min_interval_ms);
        let mut last = Instant::now() - min_gap;
        // Failing every 200 ms while no map is known: logged once per interval.
        let mut failures = crate::logging::throttle::Throttle::new();
        loop {
            let since = last.elapsed();
            if since < min_gap {
                tokio::time::sleep(min_gap - since).await;
            }
            last = Instant::now();
            match self.refresh_once().await {
                Err(e) => {
                    metrics::counter!("respgate_topology_refresh_failures_total").increment(1);
                    if let Some(r) = failures.hit() {
                        tracing::warn!(error = %e, repeated = r.count, "topology refresh failed{r}");
                    }
                }
                Ok(()) => match failures.clear() {
                    0 => {}
                    n => tracing::info!(failures = n, "topology refresh works again"),
                },
            }
            let wait = if self.topology.load().is_none() {
                Duration::from_millis(200)
            } else {
                periodic
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.refresh.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Whether two loads of the topology are the same map.
fn same(a: &Option<Arc<Topology>>, b: &Option<Arc<Topology>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topology::ShardSpec;

    fn layout(split: u16) -> ShardLayout {
        ShardLayout {
            shards: vec![
                ShardSpec {
                    slots: vec![(0, split - 1)],
                    master: "127.0.0.1:1".into(),
                    replicas: Vec::new(),
                },
                ShardSpec {
                    slots: vec![(split, 16383)],
                    master: "127.0.0.1:2".into(),
                    replicas: Vec::new(),
                },
            ],
            spare: vec!["127.0.0.1:3".into()],
        }
    }

    fn owner(c: &Cluster, slot: u16) -> String {
        let topo = c.topology();
        let addr = topo.as_ref().unwrap().master_for_slot(slot).unwrap().addr();
        addr.to_string()
    }

    #[tokio::test]
    async fn a_moved_patch_never_overwrites_a_newer_discovery() {
        let c = Cluster::new(ClusterConfig::default());
        c.publish(layout(8192));
        let seen = c.topology().as_ref().unwrap().generation();
        // A refresh publishes a newer map (slot 100 moved to :2) between the MOVED reply
        // and its patch, which was computed from the older map.
        c.publish(layout(50));
        assert!(!c.patch_moved(seen, 100, "127.0.0.1:1"));
        assert_eq!(owner(&c, 100), "127.0.0.1:2", "the newer discovery stands");
        assert_eq!(owner(&c, 49), "127.0.0.1:1");
        // Patches of the current generation compose.
        let now = c.topology().as_ref().unwrap().generation();
        assert!(now > seen);
        assert!(c.patch_moved(now, 100, "127.0.0.1:1"));
        assert!(c.patch_moved(now, 101, "127.0.0.1:1"));
        assert_eq!(owner(&c, 100), "127.0.0.1:1");
        assert_eq!(owner(&c, 101), "127.0.0.1:1");
        assert_eq!(c.topology().as_ref().unwrap().generation(), now);
        // apply_moved patches the current map.
        c.apply_moved(102, "127.0.0.1:1");
        assert_eq!(owner(&c, 102), "127.0.0.1:1");
        // An address the cluster never reported is never patched in.
        c.apply_moved(103, "10.9.9.9:6379");
        assert_eq!(owner(&c, 103), "127.0.0.1:2");
    }

    #[tokio::test]
    async fn spare_masters_are_known_nodes_and_become_shards_when_moved_to() {
        let c = Cluster::new(ClusterConfig::default());
        c.publish(layout(8192));
        let spare = c
            .known_node("127.0.0.1:3")
            .expect("a spare master is known");
        // The same handle every time: its links are reused.
        assert!(Arc::ptr_eq(&spare, &c.known_node("127.0.0.1:3").unwrap()));
        c.apply_moved(7, "127.0.0.1:3");
        assert_eq!(owner(&c, 7), "127.0.0.1:3");
        let topo = c.topology();
        let t = topo.as_ref().unwrap();
        assert!(t.layout().spare.is_empty());
        assert!(Arc::ptr_eq(&spare, t.master_for_slot(7).unwrap()));
    }
}
