//! The cluster as respgate sees it: slot map, node handles, command table, refresh.
//!
//! Readers (every client request) call [`Cluster::topology`] and get the current
//! [`Topology`] from an `ArcSwap`: a few atomic operations, no lock. Writers are the
//! refresher task (periodic, and on demand after MOVED or a connection failure, at most
//! every `refresh_min_interval_ms`) and MOVED patches; the node registry they share is
//! behind a mutex that the request path never touches.

pub mod control;
pub mod keyspace;
pub mod redirect;
pub mod replicas;
pub mod slot;
pub mod topology;

pub use slot::key_slot;
pub use topology::{ShardLayout, Topology};

use crate::backend::{LinkOptions, Node};
use crate::commands::CommandTable;
use crate::config::ClusterConfig;
use arc_swap::{ArcSwapOption, Guard};
use control::FrameExt;
use std::collections::HashMap;
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
        let opts = LinkOptions {
            resp3,
            identity,
            ..self.link_options.clone()
        };
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

    /// The node at `addr` if the current topology names it (as a master or a replica).
    /// Redirection targets go through here: respgate connects, and sends its node
    /// credentials, only to nodes the cluster itself reported.
    pub fn known_node(&self, addr: &str) -> Option<Arc<Node>> {
        let topo = self.topology.load();
        topo.as_ref()?.shards().iter().find_map(|s| {
            std::iter::once(&s.master)
                .chain(s.replicas.iter())
                .find(|n| n.addr() == addr)
                .cloned()
        })
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
        let current = self.topology.load_full();
        if let (Some(topo), Some(_)) = (current, self.known_node(addr)) {
            if topo.master_for_slot(slot).map(|n| n.addr()) != Some(addr) {
                let patched = topo.with_moved_slot(slot, addr, |a| self.node(a));
                self.topology.store(Some(Arc::new(patched)));
            }
        }
        metrics::counter!("respgate_redirects_total", "kind" => "moved").increment(1);
        self.request_refresh();
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
            Err(e) if e.contains("unknown subcommand") => {
                let (frame, _) =
                    control::query(addr, &["CLUSTER", "SLOTS"], &self.link_options).await?;
                ShardLayout::from_slots(&frame)?
            }
            Err(e) => return Err(e),
        };
        if layout.shards.is_empty() {
            return Err(format!("{addr}: reports no shard serving slots"));
        }
        Ok(layout)
    }

    async fn load_commands(&self, addr: &str) -> Result<(), String> {
        let (_, raw) = control::query(addr, &["COMMAND"], &self.link_options).await?;
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
        let topo = Topology::build(layout, |a| self.node(a));
        self.topology.store(Some(Arc::new(topo)));
    }

    /// Keeps the topology fresh until `shutdown` resolves: on a timer, and when asked
    /// (debounced to `refresh_min_interval_ms`). Retries quickly while nothing is known.
    pub async fn run_refresher(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let periodic = Duration::from_millis(self.config.refresh_interval_ms.max(100));
        let min_gap = Duration::from_millis(self.config.refresh_min_interval_ms);
        let mut last = Instant::now() - min_gap;
        loop {
            let since = last.elapsed();
            if since < min_gap {
                tokio::time::sleep(min_gap - since).await;
            }
            last = Instant::now();
            if let Err(e) = self.refresh_once().await {
                metrics::counter!("respgate_topology_refresh_failures_total").increment(1);
                tracing::warn!(error = %e, "topology refresh failed");
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
