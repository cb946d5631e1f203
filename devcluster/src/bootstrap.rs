//! Start-up: spawn every node (moving those that lost their port race), then build the
//! cluster by hand (slots, epochs, a full mesh of MEETs, replicas) and wait until it is
//! really ready.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{connect, round_trip, Reply};
use crate::cluster::DevCluster;
use crate::error::{pending, Pending, Result};
use crate::process::pick_port;
use crate::queries::{expect_field, info_field};
use crate::{POLL, READY_TIMEOUT, SLOTS, SPAWN_TIMEOUT};

impl DevCluster {
    /// Spawns every node and waits until each answers, moving nodes whose port turned out to
    /// be taken (another test process won the race) to fresh ports.
    pub(crate) fn launch(&mut self) -> Result<()> {
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

    /// Waits until the given nodes answer `INFO server` with their own pid. Returns the nodes
    /// that lost their port to someone else (already killed and reaped).
    pub(crate) fn wait_spawned(&mut self, indices: &[usize]) -> Result<Vec<usize>> {
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
    pub(crate) fn build(&mut self) -> Result<()> {
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
    pub(crate) fn ready(
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
}

/// Slot split identical to `redis-cli --cluster create` (0-5460, 5461-10922, 10923-16383 for 3).
pub(crate) fn slot_ranges(masters: usize) -> Vec<(u16, u16)> {
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
