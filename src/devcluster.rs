//! A throw-away local Redis Cluster of real `redis-server` processes, for `respgate dev` and the
//! integration tests.
//!
//! Its job: start masters and replicas on loopback, build the cluster by hand (no `redis-cli`, so
//! we control every step and its timeout), return only once the cluster is really ready, and give
//! tests levers (kill, pause, restart a node) plus a tiny blocking RESP2 client to look inside.
//!
//! It may touch: one temp dir (a subdirectory per node), loopback ports it checked were free, and
//! the processes it spawned. It must not: touch any other Redis or port, leave a process behind
//! (children get `PR_SET_PDEATHSIG` and are killed in `Drop`), or use the proxy's own code
//! (except `key_slot`): the tests check that code against this, so this must not share its bugs.
//! It is plain synchronous std code so sync and async tests can both use it. With
//! [`DevClusterOptions::tls`] the cluster is TLS only (clients, bus, replication) and this
//! module's own client speaks TLS through rustls' blocking stream.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::cluster::slot::SLOTS;

/// Redis Cluster puts its bus on `port + 10000`; both must be free.
const BUS_OFFSET: u16 = 10000;
const POLL: Duration = Duration::from_millis(20);
const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous: the fast path takes ~2 s, but CI machines are sometimes very busy.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How to shape a [`DevCluster`].
#[derive(Debug, Clone)]
pub struct DevClusterOptions {
    /// Number of masters; slots are split evenly over them as `redis-cli --cluster create` does.
    pub masters: usize,
    /// Replicas attached to each master.
    pub replicas_per_master: usize,
    /// Node `i` listens on `base_port + i`; `None` picks free loopback ports (what tests want).
    pub base_port: Option<u16>,
    /// Extra `redis.conf` directives, written after ours so they win.
    pub extra_config: Vec<(String, String)>,
    /// `appendonly yes` instead of no persistence at all.
    pub appendonly: bool,
    /// `cluster-node-timeout`; small so failover tests are quick.
    pub node_timeout_ms: u64,
    /// A TLS-only cluster: clients, the cluster bus and replication all speak TLS (the
    /// plain port is disabled). `None`: plain TCP.
    pub tls: Option<DevTls>,
}

/// PEM files for a TLS-only dev cluster. Each node uses `cert`/`key` both as its server
/// certificate and as its client certificate (cluster bus, replication), so `cert` must
/// be valid for `127.0.0.1` and for server and client authentication; nodes require
/// clients to present a certificate signed by `ca` (Redis's `tls-auth-clients yes`).
#[derive(Debug, Clone)]
pub struct DevTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Default for DevClusterOptions {
    fn default() -> Self {
        DevClusterOptions {
            masters: 3,
            replicas_per_master: 1,
            base_port: None,
            extra_config: Vec::new(),
            appendonly: false,
            node_timeout_ms: 2000,
            tls: None,
        }
    }
}

/// A RESP2 reply. A null array (`*-1`) is reported as `Bulk(None)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The payload of a simple or non-null bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Simple(s) => Some(s.as_bytes()),
            Reply::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// [`Reply::as_bytes`] if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The value of an integer reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// Why the dev cluster could not be started or queried. Messages carry enough (log tail, last
/// observed state) to debug a failed test from its output alone.
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    #[error("redis-server not found on PATH: apt-get install -y redis-server")]
    RedisServerMissing,
    /// Bad options, or no free ports.
    #[error("dev cluster: {0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// Redis answered with an error or an unexpected reply.
    #[error("{addr}: `{command}` failed: {message}")]
    Command {
        addr: SocketAddr,
        command: String,
        message: String,
    },
    /// A node failed to start, died, or never reached the awaited state.
    #[error("redis-server {addr}: {problem}\n--- {addr} log tail ---\n{log_tail}")]
    Node {
        addr: SocketAddr,
        problem: String,
        log_tail: String,
    },
}

type Result<T, E = DevClusterError> = std::result::Result<T, E>;
/// "Not ready yet", with the node and reason to report if it never becomes ready.
type Pending = (SocketAddr, String);
/// Sorted `(first slot, last slot, master)` ranges.
type SlotMap = Vec<(u16, u16, SocketAddr)>;

/// One `redis-server` process of the cluster. Killed nodes stay in the list, not running.
#[derive(Debug)]
pub struct DevNode {
    /// `127.0.0.1:port`; stays the same across [`DevCluster::restart_node`].
    pub addr: SocketAddr,
    /// The cluster node id (`CLUSTER MYID`).
    pub id: String,
    /// The node's working directory: `redis.conf`, `redis.log`, `stderr.log`, `nodes.conf`.
    pub dir: PathBuf,
    child: Mutex<Option<Child>>,
    paused: AtomicBool,
}

impl DevNode {
    /// Path of the node's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Whether the process is alive (a paused node is alive).
    pub fn is_running(&self) -> bool {
        matches!(
            lock(&self.child).as_mut().map(|c| c.try_wait()),
            Some(Ok(None))
        )
    }

    /// Running and not paused, so it will answer.
    fn responsive(&self) -> bool {
        !self.paused.load(Ordering::SeqCst) && self.is_running()
    }

    fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    fn signal(&self, sig: libc::c_int) {
        // Under the lock nobody can reap the child, so its pid cannot have been reused.
        let mut child = lock(&self.child);
        if let Some(c) = child.as_mut() {
            if let Ok(None) = c.try_wait() {
                // SAFETY: plain kill(2) on our own, running child.
                unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            }
        }
    }

    /// Ends the process (SIGTERM if `graceful`, else SIGKILL) and reaps it.
    fn stop(&mut self, graceful: bool) {
        if let Some(mut c) = lock(&self.child).take() {
            if graceful {
                // SAFETY: kill(2) on our own unreaped child.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
                    libc::kill(c.id() as libc::pid_t, libc::SIGCONT);
                }
            } else {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        self.paused.store(false, Ordering::SeqCst);
    }

    /// The last lines of `redis.log` and of `stderr.log`.
    fn log_tail(&self) -> String {
        let tail = |file: &str| {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        match (tail("redis.log"), tail("stderr.log")) {
            (log, stderr) if stderr.is_empty() => log,
            (log, stderr) if log.is_empty() => stderr,
            (log, stderr) => format!("{log}\n--- stderr ---\n{stderr}"),
        }
    }
}

/// A running local Redis Cluster; every process is killed and the temp dir removed on drop.
#[derive(Debug)]
pub struct DevCluster {
    nodes: Vec<DevNode>,
    opts: DevClusterOptions,
    conns: Mutex<HashMap<SocketAddr, BufReader<Conn>>>,
    tmp: Option<tempfile::TempDir>,
    /// How this module's own client speaks TLS to the nodes (TLS clusters only).
    tls_client: Option<Arc<rustls::ClientConfig>>,
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

    // ---- startup ----

    /// Spawns every node and waits until each answers, moving nodes whose port turned out to
    /// be taken (another test process won the race) to fresh ports.
    fn launch(&mut self) -> Result<()> {
        let mut pending: Vec<usize> = (0..self.nodes.len()).collect();
        for attempt in 0.. {
            for &i in &pending {
                let port = match self.opts.base_port {
                    Some(base) => base + i as u16,
                    None => pick_port()?,
                };
                self.spawn(i, port, true)?;
            }
            pending = self.wait_spawned(&pending)?;
            match pending.first() {
                None => return Ok(()),
                Some(&i) if self.opts.base_port.is_some() || attempt == 5 => {
                    return Err(self.node_error(self.nodes[i].addr, "port already in use"));
                }
                Some(_) => {}
            }
        }
        unreachable!()
    }

    fn spawn(&mut self, i: usize, port: u16, fresh_log: bool) -> Result<()> {
        let node = &mut self.nodes[i];
        node.addr = (LOCALHOST, port).into();
        let dir = node.dir.clone();
        if fresh_log {
            let _ = std::fs::remove_file(node.log_path());
            let _ = std::fs::remove_file(dir.join("stderr.log"));
        }
        let ports = match &self.opts.tls {
            None => format!("port {port}\n"),
            Some(t) => format!(
                "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                 tls-ca-cert-file {}\ntls-cluster yes\ntls-replication yes\n",
                quote(&t.cert),
                quote(&t.key),
                quote(&t.ca)
            ),
        };
        let mut conf = format!(
            "{ports}bind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
             cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout {}\n\
             cluster-announce-ip 127.0.0.1\ncluster-replica-validity-factor 0\n\
             repl-diskless-sync-delay 0\nsave \"\"\nappendonly {}\nenable-debug-command yes\n\
             dir {}\nlogfile {}\n",
            self.opts.node_timeout_ms,
            if self.opts.appendonly { "yes" } else { "no" },
            quote(&dir),
            quote(&node.log_path()),
        );
        for (k, v) in &self.opts.extra_config {
            conf.push_str(&format!("{k} {v}\n"));
        }
        let conf_path = dir.join("redis.conf");
        std::fs::write(&conf_path, conf)
            .map_err(io_err(format!("writing {}", conf_path.display())))?;

        // Config errors go to stderr, before the log file is opened.
        let stderr_path = dir.join("stderr.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path);
        let stderr = stderr.map_err(io_err(format!("opening {}", stderr_path.display())))?;
        let child = on_spawner_thread(move || {
            let parent = std::process::id() as libc::pid_t;
            let mut cmd = Command::new("redis-server");
            cmd.arg(&conf_path)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        return Err(io::Error::other("parent exited before exec"));
                    }
                    Ok(())
                });
            }
            cmd.spawn()
        });
        let child = child.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DevClusterError::RedisServerMissing,
            _ => DevClusterError::Io {
                context: "spawning redis-server".into(),
                source: e,
            },
        })?;
        *lock(&self.nodes[i].child) = Some(child);
        Ok(())
    }

    /// Waits until the given nodes answer `INFO server` with their own pid. Returns the nodes
    /// that lost their port to someone else (already killed and reaped).
    fn wait_spawned(&mut self, indices: &[usize]) -> Result<Vec<usize>> {
        let deadline = Instant::now() + SPAWN_TIMEOUT;
        let (mut waiting, mut collided) = (indices.to_vec(), Vec::new());
        while let Some(&first) = waiting.first() {
            if Instant::now() > deadline {
                let addr = self.nodes[first].addr;
                return Err(self.node_error(addr, "no answer within 10 s of start"));
            }
            thread::sleep(POLL);
            for i in std::mem::take(&mut waiting) {
                let n = &self.nodes[i];
                let (addr, running, ours) =
                    (n.addr, n.is_running(), n.pid().map(|p| p.to_string()));
                if !running && !n.log_tail().contains("Address already in use") {
                    return Err(self.node_error(addr, "exited during start-up"));
                }
                // Own short-lived connection: whatever holds the port may never answer.
                let info = connect(addr, Duration::from_millis(500), self.tls_client.as_ref())
                    .and_then(|mut c| round_trip(&mut c, &["INFO", "server"]));
                match info
                    .ok()
                    .as_ref()
                    .and_then(Reply::as_str)
                    .and_then(|t| info_field(t, "process_id"))
                {
                    Some(pid) if Some(pid) == ours.as_deref() => {}
                    None if running => waiting.push(i),
                    // Our process died of EADDRINUSE, or someone else's redis answers there.
                    _ => {
                        self.forget_conn(addr);
                        self.nodes[i].stop(false);
                        collided.push(i);
                    }
                }
            }
        }
        Ok(collided)
    }

    /// Assigns slots and epochs, meets every pair, attaches replicas, waits for readiness.
    fn build(&mut self) -> Result<()> {
        let masters = self.opts.masters;
        let total = self.nodes.len();
        for i in 0..total {
            self.nodes[i].id = self.text(self.nodes[i].addr, &["CLUSTER", "MYID"])?;
        }
        for (i, (lo, hi)) in slot_ranges(masters).into_iter().enumerate() {
            let (lo, hi) = (lo.to_string(), hi.to_string());
            self.expect_ok(self.nodes[i].addr, &["CLUSTER", "ADDSLOTSRANGE", &lo, &hi])?;
        }
        // Distinct epochs up front, like redis-cli: no slow epoch-collision resolution later.
        for (i, n) in self.nodes.iter().enumerate() {
            self.expect_ok(
                n.addr,
                &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()],
            )?;
        }
        // A full mesh of MEETs: nobody has to wait for gossip to learn about the others.
        for (i, a) in self.nodes.iter().enumerate() {
            for b in &self.nodes[i + 1..] {
                let port = b.addr.port().to_string();
                self.expect_ok(a.addr, &["CLUSTER", "MEET", "127.0.0.1", &port])?;
            }
        }
        let ids: HashSet<&str> = self.nodes.iter().map(|n| n.id.as_str()).collect();
        self.wait_until(READY_TIMEOUT, "all nodes to know each other", |c| {
            for n in &c.nodes {
                let view = c.cluster_nodes(n.addr).map_err(pending(n.addr))?;
                let known = view
                    .iter()
                    .filter(|l| {
                        ids.contains(l.id.as_str()) && !l.has("handshake") && !l.has("noaddr")
                    })
                    .count();
                if known != total || view.len() != total {
                    return Err((
                        n.addr,
                        format!("knows {known} of {total} nodes ({} entries)", view.len()),
                    ));
                }
            }
            Ok(())
        })?;
        let mut roles: HashMap<String, Option<String>> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let master = (i >= masters).then(|| self.nodes[(i - masters) % masters].id.clone());
            if let Some(m) = &master {
                self.expect_ok(n.addr, &["CLUSTER", "REPLICATE", m])?;
            }
            roles.insert(n.id.clone(), master);
        }
        let all = self.seeds();
        self.wait_until(READY_TIMEOUT, "the cluster to be ready", |c| {
            c.ready(&roles, &all)
        })
    }

    /// Start-up readiness: state ok and full coverage everywhere, every node sees exactly the
    /// intended roles, replication links up, slot owners agreed.
    fn ready(
        &self,
        roles: &HashMap<String, Option<String>>,
        all: &[SocketAddr],
    ) -> Result<(), Pending> {
        let total = self.nodes.len().to_string();
        for n in &self.nodes {
            let a = n.addr;
            let info = self.probe(a, &["CLUSTER", "INFO"])?;
            expect_field(a, &info, "cluster_state", "ok")?;
            expect_field(a, &info, "cluster_slots_assigned", &SLOTS.to_string())?;
            expect_field(a, &info, "cluster_known_nodes", &total)?;
            for l in self.cluster_nodes(a).map_err(pending(a))? {
                let want = roles.get(&l.id);
                let ok = match want {
                    Some(Some(m)) => l.has("slave") && l.master.as_ref() == Some(m),
                    Some(None) => l.has("master"),
                    None => false,
                };
                if !ok || l.failed() || l.has("fail?") {
                    return Err((
                        a,
                        format!(
                            "sees {} as {:?} of {:?}, want {want:?}",
                            l.id, l.flags, l.master
                        ),
                    ));
                }
            }
            if roles.get(&n.id).is_some_and(Option::is_some) {
                let repl = self.probe(a, &["INFO", "replication"])?;
                expect_field(a, &repl, "master_link_status", "up")?;
            }
        }
        self.slots_agree(all)
    }

    // ---- queries ----

    /// All `live` nodes return the same `CLUSTER SLOTS` owners, covering every slot, and every
    /// owner is in `live`.
    fn slots_agree(&self, live: &[SocketAddr]) -> Result<(), Pending> {
        let mut first: Option<(SocketAddr, SlotMap)> = None;
        for &a in live {
            let map = self.slot_map(a).map_err(pending(a))?;
            let covered: usize = map.iter().map(|(lo, hi, _)| (*hi - *lo) as usize + 1).sum();
            if covered != SLOTS {
                return Err((a, format!("CLUSTER SLOTS covers {covered} slots")));
            }
            if let Some((lo, hi, owner)) = map.iter().find(|(_, _, o)| !live.contains(o)) {
                return Err((
                    a,
                    format!("slots {lo}-{hi} owned by {owner}, which is down or paused"),
                ));
            }
            match &first {
                Some((b, other)) if *other != map => {
                    return Err((
                        a,
                        format!("slot owners {map:?} differ from {b}'s {other:?}"),
                    ));
                }
                Some(_) => {}
                None => first = Some((a, map)),
            }
        }
        Ok(())
    }

    /// `CLUSTER SLOTS` as a [`SlotMap`].
    fn slot_map(&self, a: SocketAddr) -> Result<SlotMap> {
        let parse = |r: &Reply| {
            let Reply::Array(range) = r else { return None };
            let [Reply::Int(lo), Reply::Int(hi), Reply::Array(m), ..] = range.as_slice() else {
                return None;
            };
            let ip: Ipv4Addr = m.first()?.as_str()?.parse().ok()?;
            let port = u16::try_from(m.get(1)?.as_int()?).ok()?;
            Some((*lo as u16, *hi as u16, SocketAddr::from((ip, port))))
        };
        let reply = self.command(a, &["CLUSTER", "SLOTS"])?;
        let map = match &reply {
            Reply::Array(ranges) => ranges.iter().map(parse).collect::<Option<Vec<_>>>(),
            _ => None,
        };
        let mut map = map.ok_or_else(|| protocol_error(a, "CLUSTER SLOTS", &reply))?;
        map.sort();
        Ok(map)
    }

    fn cluster_nodes(&self, a: SocketAddr) -> Result<Vec<NodeLine>> {
        Ok(self
            .text(a, &["CLUSTER", "NODES"])?
            .lines()
            .filter_map(NodeLine::parse)
            .collect())
    }

    /// Runs `query` on the first responsive node that answers it.
    fn ask<T>(&self, what: &str, query: impl Fn(SocketAddr) -> Result<T>) -> T {
        let mut errors = Vec::new();
        for n in self.nodes.iter().filter(|n| n.responsive()) {
            match query(n.addr) {
                Ok(v) => return v,
                Err(e) => errors.push(e.to_string()),
            }
        }
        panic!("no running dev cluster node answered {what}: {errors:?}")
    }

    /// A command whose reply must be a (simple or bulk) string.
    fn text(&self, a: SocketAddr, args: &[&str]) -> Result<String> {
        match self.command(a, args)? {
            Reply::Error(message) => Err(DevClusterError::Command {
                addr: a,
                command: args.join(" "),
                message,
            }),
            r => r
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| protocol_error(a, &args.join(" "), &r)),
        }
    }

    /// [`Self::text`] for a wait loop: any failure just means "not ready yet".
    fn probe(&self, a: SocketAddr, args: &[&str]) -> Result<String, Pending> {
        self.text(a, args).map_err(pending(a))
    }

    fn expect_ok(&self, a: SocketAddr, args: &[&str]) -> Result<()> {
        match self.text(a, args)? {
            ok if ok == "OK" => Ok(()),
            other => Err(protocol_error(a, &args.join(" "), &Reply::Simple(other))),
        }
    }

    /// Polls `check` every 20 ms until it passes, a node dies, or `timeout` passes.
    fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Result<T, Pending>,
    ) -> Result<T> {
        let began = Instant::now();
        loop {
            for n in &self.nodes {
                let status = lock(&n.child).as_mut().map(Child::try_wait);
                if let Some(Ok(Some(status))) = status {
                    return Err(self.node_error(n.addr, format!("died unexpectedly ({status})")));
                }
            }
            match check(self) {
                Ok(v) => return Ok(v),
                Err((a, last)) if began.elapsed() >= timeout => {
                    let problem = format!("timed out after {timeout:?} waiting for {what}: {last}");
                    return Err(self.node_error(a, problem));
                }
                Err(_) => thread::sleep(POLL),
            }
        }
    }

    fn node_error(&self, addr: SocketAddr, problem: impl Into<String>) -> DevClusterError {
        let log_tail = self
            .nodes
            .iter()
            .find(|n| n.addr == addr)
            .map(DevNode::log_tail);
        DevClusterError::Node {
            addr,
            problem: problem.into(),
            log_tail: log_tail.unwrap_or_default(),
        }
    }

    fn index(&self, addr: SocketAddr) -> usize {
        match self.nodes.iter().position(|n| n.addr == addr) {
            Some(i) => i,
            None => panic!("{addr} is not a node of this dev cluster"),
        }
    }

    fn node(&self, addr: SocketAddr) -> &DevNode {
        &self.nodes[self.index(addr)]
    }

    fn forget_conn(&self, addr: SocketAddr) {
        lock(&self.conns).remove(&addr);
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
struct NodeLine {
    id: String,
    addr: Option<SocketAddr>,
    flags: Vec<String>,
    master: Option<String>,
}

impl NodeLine {
    fn parse(line: &str) -> Option<NodeLine> {
        let mut f = line.split_whitespace();
        let id = f.next()?.to_owned();
        let addr = f.next()?.split(['@', ',']).next()?.parse().ok();
        let flags = f.next()?.split(',').map(str::to_owned).collect();
        let master = f.next().filter(|m| *m != "-").map(str::to_owned);
        Some(NodeLine {
            id,
            addr,
            flags,
            master,
        })
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    fn failed(&self) -> bool {
        self.has("fail")
    }
}

/// Slot split identical to `redis-cli --cluster create` (0-5460, 5461-10922, 10923-16383 for 3).
fn slot_ranges(masters: usize) -> Vec<(u16, u16)> {
    let per = SLOTS as f64 / masters as f64;
    let (mut first, mut cursor) = (0i64, 0f64);
    let mut out = Vec::with_capacity(masters);
    for i in 0..masters {
        let mut last = (cursor + per - 1.0).round() as i64;
        if last > SLOTS as i64 - 1 || i == masters - 1 {
            last = SLOTS as i64 - 1;
        }
        last = last.max(first);
        out.push((first as u16, last as u16));
        first = last + 1;
        cursor += per;
    }
    out
}

/// A port `p` with `p` and `p + 10000` both bindable on loopback. Client ports come from
/// 12000..22000 (bus 22000..32000): below Linux's ephemeral range, so outgoing connections
/// don't steal them. A random start keeps concurrent test processes apart; a counter keeps
/// threads of one process apart. Losing a race anyway is handled by `launch`.
fn pick_port() -> Result<u16> {
    const LO: u32 = 12000;
    const SPAN: u32 = 10000;
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| rand::random_range(0..SPAN));
    let free = |p: u16| TcpListener::bind((LOCALHOST, p)).is_ok();
    for _ in 0..SPAN {
        let port = (LO + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if free(port) && free(port + BUS_OFFSET) {
            return Ok(port);
        }
    }
    Err(DevClusterError::Setup(
        "no free port pair (port and port+10000)".into(),
    ))
}

/// Runs `f` on one long-lived thread. `PR_SET_PDEATHSIG` fires when the *thread* that forked
/// the child exits, so children must not be forked from short-lived test or blocking-pool
/// threads, or they would be killed as soon as that thread ends.
fn on_spawner_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static JOBS: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("devcluster-spawner".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .expect("starting the devcluster spawner thread");
        tx
    });
    let (tx, rx) = mpsc::sync_channel(1);
    jobs.send(Box::new(move || {
        let _ = tx.send(f());
    }))
    .expect("devcluster spawner thread is gone");
    rx.recv().expect("devcluster spawner thread is gone")
}

/// A path as a double-quoted redis.conf string.
fn quote(p: &Path) -> String {
    format!(
        "\"{}\"",
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}

fn info_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

fn expect_field(a: SocketAddr, text: &str, key: &str, want: &str) -> Result<(), Pending> {
    match info_field(text, key) {
        Some(got) if got == want => Ok(()),
        got => Err((a, format!("{key} is {got:?}, want {want:?}"))),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> DevClusterError {
    let context = context.into();
    move |source| DevClusterError::Io { context, source }
}

fn pending(a: SocketAddr) -> impl FnOnce(DevClusterError) -> Pending {
    move |e| (a, e.to_string())
}

fn protocol_error(addr: SocketAddr, command: &str, reply: &Reply) -> DevClusterError {
    let (command, message) = (command.to_owned(), format!("unexpected reply {reply:?}"));
    DevClusterError::Command {
        addr,
        command,
        message,
    }
}

/// The blocking client's connection: plain TCP, or TLS for a TLS cluster.
#[derive(Debug)]
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// The dev cluster's own TLS client: trusts `ca`, presents the nodes' certificate (the
/// nodes require one). Built here with rustls directly, not with the proxy's TLS code.
fn tls_client_config(t: &DevTls) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &Path, e: &dyn std::fmt::Display| {
        DevClusterError::Setup(format!("TLS file {}: {e}", what.display()))
    };
    let certs = |p: &Path| {
        CertificateDer::pem_file_iter(p)
            .and_then(|i| i.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| bad(p, &e))
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(&t.ca)? {
        roots.add(c).map_err(|e| bad(&t.ca, &e))?;
    }
    let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| bad(&t.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&t.ca, &e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs(&t.cert)?, key)
        .map_err(|e| bad(&t.key, &e))?;
    Ok(Arc::new(config))
}

fn connect(
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> io::Result<BufReader<Conn>> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let conn = match tls {
        None => Conn::Plain(s),
        Some(config) => {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let session = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| io::Error::other(format!("TLS: {e}")))?;
            let mut stream = rustls::StreamOwned::new(session, s);
            // Handshake now, so a certificate problem is reported at connect.
            while stream.conn.is_handshaking() {
                stream.conn.complete_io(&mut stream.sock)?;
            }
            Conn::Tls(Box::new(stream))
        }
    };
    Ok(BufReader::new(conn))
}

fn round_trip(conn: &mut BufReader<Conn>, args: &[&str]) -> io::Result<Reply> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    conn.get_mut().write_all(&out)?;
    conn.get_mut().flush()?;
    read_reply(conn)
}

fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad RESP: {what}"));
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-reply",
        ));
    }
    let text =
        std::str::from_utf8(&line[1..line.len() - 2]).map_err(|_| bad("non-UTF-8 header"))?;
    let num = || text.parse::<i64>().map_err(|_| bad(text));
    Ok(match line[0] {
        b'+' => Reply::Simple(text.to_owned()),
        b'-' => Reply::Error(text.to_owned()),
        b':' => Reply::Int(num()?),
        b'$' | b'*' if num()? < 0 => Reply::Bulk(None),
        b'$' => {
            let mut buf = vec![0; num()? as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(buf.len() - 2);
            Reply::Bulk(Some(buf))
        }
        b'*' => Reply::Array(
            (0..num()?)
                .map(|_| read_reply(r))
                .collect::<io::Result<_>>()?,
        ),
        _ => return Err(bad("unknown type byte")),
    })
}
