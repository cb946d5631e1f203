//! What the cluster says about itself (`CLUSTER SLOTS`, `CLUSTER NODES`, `INFO`), read
//! through the blocking client, and the polling loop the waits are built on.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Child;
use std::thread;
use std::time::{Duration, Instant};

use crate::client::Reply;
use crate::cluster::DevCluster;
use crate::error::{pending, protocol_error, DevClusterError, Pending, Result};
use crate::node::DevNode;
use crate::{lock, POLL, SLOTS};

/// Sorted `(first slot, last slot, master)` ranges.
pub(crate) type SlotMap = Vec<(u16, u16, SocketAddr)>;

impl DevCluster {
    /// All `live` nodes return the same `CLUSTER SLOTS` owners, covering every slot, and every
    /// owner is in `live`.
    pub(crate) fn slots_agree(&self, live: &[SocketAddr]) -> Result<(), Pending> {
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
    pub(crate) fn slot_map(&self, a: SocketAddr) -> Result<SlotMap> {
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

    pub(crate) fn cluster_nodes(&self, a: SocketAddr) -> Result<Vec<NodeLine>> {
        Ok(self
            .text(a, &["CLUSTER", "NODES"])?
            .lines()
            .filter_map(NodeLine::parse)
            .collect())
    }

    /// Runs `query` on the first responsive node that answers it.
    pub(crate) fn ask<T>(&self, what: &str, query: impl Fn(SocketAddr) -> Result<T>) -> T {
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
    pub(crate) fn text(&self, a: SocketAddr, args: &[&str]) -> Result<String> {
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
    pub(crate) fn probe(&self, a: SocketAddr, args: &[&str]) -> Result<String, Pending> {
        self.text(a, args).map_err(pending(a))
    }

    pub(crate) fn expect_ok(&self, a: SocketAddr, args: &[&str]) -> Result<()> {
        match self.text(a, args)? {
            ok if ok == "OK" => Ok(()),
            other => Err(protocol_error(a, &args.join(" "), &Reply::Simple(other))),
        }
    }

    /// Polls `check` every 20 ms until it passes, a node dies, or `timeout` passes.
    pub(crate) fn wait_until<T>(
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

    pub(crate) fn node_error(
        &self,
        addr: SocketAddr,
        problem: impl Into<String>,
    ) -> DevClusterError {
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

    pub(crate) fn index(&self, addr: SocketAddr) -> usize {
        match self.nodes.iter().position(|n| n.addr == addr) {
            Some(i) => i,
            None => panic!("{addr} is not a node of this dev cluster"),
        }
    }

    pub(crate) fn node(&self, addr: SocketAddr) -> &DevNode {
        &self.nodes[self.index(addr)]
    }

    pub(crate) fn forget_conn(&self, addr: SocketAddr) {
        lock(&self.conns).remove(&addr);
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Debug)]
pub(crate) struct NodeLine {
    pub(crate) id: String,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) flags: Vec<String>,
    pub(crate) master: Option<String>,
}

impl NodeLine {
    pub(crate) fn parse(line: &str) -> Option<NodeLine> {
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

    pub(crate) fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    pub(crate) fn failed(&self) -> bool {
        self.has("fail")
    }
}

pub(crate) fn info_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

pub(crate) fn expect_field(
    a: SocketAddr,
    text: &str,
    key: &str,
    want: &str,
) -> Result<(), Pending> {
    match info_field(text, key) {
        Some(got) if got == want => Ok(()),
        got => Err((a, format!("{key} is {got:?}, want {want:?}"))),
    }
}
