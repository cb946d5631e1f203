//! [`DevCluster`]: the running cluster and the levers tests pull (kill, pause, restart a node,
//! ask who owns a slot, send a command).

use std::collections::HashMap;
use std::io::BufReader;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{connect, round_trip, tls_client_config, Conn, Reply};
use crate::error::{io_err, DevClusterError, Result};
use crate::node::DevNode;
use crate::options::DevClusterOptions;
use crate::queries::expect_field;
use crate::{lock, BUS_OFFSET, IO_TIMEOUT, LOCALHOST, SLOTS};

/// A running local Redis Cluster; every process is killed and the temp dir removed on drop.
#[derive(Debug)]
pub struct DevCluster {
    pub(crate) nodes: Vec<DevNode>,
    pub(crate) opts: DevClusterOptions,
    pub(crate) conns: Mutex<HashMap<SocketAddr, BufReader<Conn>>>,
    pub(crate) tmp: Option<tempfile::TempDir>,
    /// How this module's own client speaks TLS to the nodes (TLS clusters only).
    pub(crate) tls_client: Option<Arc<rustls::ClientConfig>>,
}

impl DevCluster {
    /// Starts the processes and builds the cluster. Returns once every node reports
    /// `cluster_state:ok` with all 16384 slots assigned, every node sees the same roles, and
    /// every replica's `master_link_status` is `up`.
    pub fn start(opts: DevClusterOptions) -> Result<DevCluster> {
        let began = Instant::now();
        let total = opts.masters * (1 + opts.replicas_per_master);
        if opts.masters == 0 || opts.masters > SLOTS {
            return Err(DevClusterError::Setup(format!(
                "masters = {}",
                opts.masters
            )));
        }
        if let Some(base) = opts.base_port {
            if base as usize + total + BUS_OFFSET as usize > 65536 {
                return Err(DevClusterError::Setup(format!(
                    "base_port {base} + {total} nodes + bus offset exceeds 65535"
                )));
            }
        }
        let tls_client = opts.tls.as_ref().map(tls_client_config).transpose()?;
        let tmp = tempfile::Builder::new()
            .prefix("respgate-devcluster-")
            .tempdir()
            .map_err(io_err("creating the dev cluster temp dir"))?;
        let mut nodes = Vec::with_capacity(total);
        for i in 0..total {
            let dir = tmp.path().join(format!("node-{i}"));
            std::fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
            nodes.push(DevNode {
                addr: (LOCALHOST, 0).into(),
                id: String::new(),
                dir,
                child: Mutex::new(None),
                paused: AtomicBool::new(false),
            });
        }
        // Built before anything can fail, so `Drop` cleans up after an early error.
        let mut cluster = DevCluster {
            nodes,
            opts,
            conns: Mutex::default(),
            tmp: Some(tmp),
            tls_client,
        };
        cluster.launch()?;
        cluster.build()?;
        tracing::debug!(elapsed = ?began.elapsed(), nodes = total, "dev cluster ready");
        Ok(cluster)
    }

    /// All nodes, masters first as started (roles may have changed since: see [`Self::masters`]).
    pub fn nodes(&self) -> &[DevNode] {
        &self.nodes
    }

    /// Every node's address, dead or alive: what a proxy would be given as seeds.
    pub fn seeds(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.addr).collect()
    }

    /// The pid of the node's process, `None` once killed or stopped through this API.
    pub fn pid(&self, node: SocketAddr) -> Option<u32> {
        self.node(node).pid()
    }

    /// Current masters not flagged as failed, as a live node sees them, sorted by address.
    ///
    /// # Panics
    /// If no running node answers.
    pub fn masters(&self) -> Vec<SocketAddr> {
        let view = self.ask("CLUSTER NODES", |a| self.cluster_nodes(a));
        let mut out: Vec<_> = view
            .iter()
            .filter(|l| l.has("master") && !l.failed())
            .filter_map(|l| l.addr)
            .collect();
        out.sort();
        out
    }

    /// Current replicas of `master` not flagged as failed, as a live node sees them.
    ///
    /// # Panics
    /// If no running node answers.
    pub fn replicas_of(&self, master: SocketAddr) -> Vec<SocketAddr> {
        let view = self.ask("CLUSTER NODES", |a| self.cluster_nodes(a));
        let Some(id) = view
            .iter()
            .find(|l| l.addr == Some(master))
            .map(|l| l.id.clone())
        else {
            return Vec::new();
        };
        let mut out: Vec<_> = view
            .iter()
            .filter(|l| l.has("slave") && !l.failed() && l.master.as_deref() == Some(id.as_str()))
            .filter_map(|l| l.addr)
            .collect();
        out.sort();
        out
    }

    /// The master serving `slot`, per `CLUSTER SLOTS` of a live node.
    ///
    /// A slot can be briefly unassigned in a node's view while a failover settles (the
    /// answering node has not yet seen the promotion): asked again for up to 10 s.
    ///
    /// # Panics
    /// If no running node answers or the slot stays unassigned.
    pub fn master_for_slot(&self, slot: u16) -> SocketAddr {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let map = self.ask("CLUSTER SLOTS", |a| self.slot_map(a));
            if let Some((_, _, owner)) = map.iter().find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            {
                return *owner;
            }
            if std::time::Instant::now() >= deadline {
                panic!("slot {slot} is not assigned in the dev cluster: {map:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one command to `node` over a cached blocking connection (5 s timeouts) and
    /// returns its reply; a Redis error reply is `Ok(Reply::Error(..))`.
    pub fn command(&self, node: SocketAddr, args: &[&str]) -> Result<Reply> {
        let cached = lock(&self.conns).remove(&node);
        let context = || format!("{node}: `{}`", args.join(" "));
        let mut conn = match cached {
            Some(c) => c,
            None => {
                connect(node, IO_TIMEOUT, self.tls_client.as_ref()).map_err(io_err(context()))?
            }
        };
        let reply = round_trip(&mut conn, args).map_err(io_err(context()))?;
        // Only a connection that just worked goes back in the cache.
        lock(&self.conns).insert(node, conn);
        Ok(reply)
    }

    /// SIGKILLs the node and reaps it; it stays in [`Self::nodes`], not running.
    pub fn kill_node(&mut self, node: SocketAddr) {
        self.forget_conn(node);
        let i = self.index(node);
        self.nodes[i].stop(false);
    }

    /// Shuts the node down with SIGTERM (resuming it if paused) and waits for it to exit.
    pub fn stop_node(&mut self, node: SocketAddr) {
        self.forget_conn(node);
        let i = self.index(node);
        self.nodes[i].stop(true);
    }

    /// SIGSTOPs the node: it keeps its sockets but answers nothing, like a hung host.
    /// [`Self::wait_for_state_ok`] and the live queries skip paused nodes.
    pub fn pause_node(&self, node: SocketAddr) {
        self.forget_conn(node);
        let n = self.node(node);
        n.signal(libc::SIGSTOP);
        n.paused.store(true, Ordering::SeqCst);
    }

    /// SIGCONTs a paused node.
    pub fn resume_node(&self, node: SocketAddr) {
        let n = self.node(node);
        n.signal(libc::SIGCONT);
        n.paused.store(false, Ordering::SeqCst);
    }

    /// Kills the node if running, then starts it again on the same port and directory: it
    /// rejoins with its old id (as a replica if it was failed over). Returns once it answers.
    pub fn restart_node(&mut self, node: SocketAddr) -> Result<()> {
        self.kill_node(node);
        let i = self.index(node);
        self.spawn(i, node.port(), false)?;
        match self.wait_spawned(&[i])?.first() {
            None => Ok(()),
            Some(_) => Err(self.node_error(node, "port taken while it was down")),
        }
    }

    /// Waits until every running, unpaused node reports `cluster_state:ok` and they all agree
    /// on which node owns each slot, with every owner running and unpaused (so after killing a
    /// master this waits for its replica's promotion).
    pub fn wait_for_state_ok(&self, timeout: Duration) -> Result<()> {
        let live: Vec<SocketAddr> = self
            .nodes
            .iter()
            .filter(|n| n.responsive())
            .map(|n| n.addr)
            .collect();
        self.wait_until(timeout, "cluster_state:ok on every live node", |c| {
            for &a in &live {
                let info = c.probe(a, &["CLUSTER", "INFO"])?;
                expect_field(a, &info, "cluster_state", "ok")?;
            }
            c.slots_agree(&live)
        })
    }

    /// Kills every process, reaps them and removes the temp dir. Idempotent.
    pub fn shutdown(&mut self) {
        lock(&self.conns).clear();
        for n in &mut self.nodes {
            if let Some(c) = lock(&n.child).as_mut() {
                let _ = c.kill(); // all first, then reap: faster than one by one
            }
        }
        for n in &mut self.nodes {
            n.stop(false);
        }
        if let Some(tmp) = self.tmp.take() {
            let _ = tmp.close();
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
