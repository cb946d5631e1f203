//! Walking the keyspace with SCAN, one node and one call at a time: what KEYS served by
//! SCAN, RANDOMKEY for a restricted user and the TTL sweeper share. Control plane, off
//! the request path: each step is one request on respgate's own link to the node.

use super::Cluster;
use crate::backend::Node;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use bytes::Bytes;
use std::sync::Arc;

/// Every master of the current topology (`None` before discovery).
pub fn masters(cluster: &Cluster) -> Option<Vec<Arc<Node>>> {
    let topo = cluster.topology();
    Some(
        topo.as_ref()?
            .shards()
            .iter()
            .map(|s| s.master.clone())
            .collect(),
    )
}

/// Every node serving slots, masters and replicas, once each.
pub fn every_node(cluster: &Cluster) -> Vec<Arc<Node>> {
    let topo = cluster.topology();
    let mut nodes: Vec<Arc<Node>> = Vec::new();
    for shard in topo.as_ref().map(|t| t.shards()).unwrap_or_default() {
        for node in std::iter::once(&shard.master).chain(&shard.replicas) {
            if !nodes.iter().any(|n| n.addr() == node.addr()) {
                nodes.push(node.clone());
            }
        }
    }
    nodes
}

/// Sends `request` to every node at once; the answers in node order.
pub async fn ask_all(
    nodes: &[Arc<Node>],
    client_id: u64,
    resp3: bool,
    request: &Bytes,
) -> Vec<Result<Bytes, String>> {
    let pending: Vec<_> = nodes
        .iter()
        .map(|node| node.request(client_id, resp3, request.clone()))
        .collect();
    let mut out = Vec::with_capacity(pending.len());
    for rx in pending {
        out.push(crate::backend::answer(rx).await);
    }
    out
}

/// Why a SCAN step gave no keys.
#[derive(Debug)]
pub enum ScanError {
    /// The node could not be asked (unreachable, link lost, timed out).
    Link(String),
    /// The node answered with this error reply.
    Node(Bytes),
    /// The answer was not a SCAN reply.
    Unreadable,
}

impl ScanError {
    /// The error as a reply to a client: the node's own, or `-ERR respgate: <what> ...`.
    pub fn reply(self, what: &str, node: &Node) -> Bytes {
        match self {
            ScanError::Node(e) => e,
            ScanError::Link(why) => Refusal::ScanFailed {
                what: what.to_string(),
                addr: node.addr().to_string(),
                why: why.to_string(),
            }
            .reply(),
            ScanError::Unreadable => Refusal::UnreadableScan.reply(),
        }
    }
}

/// One `SCAN cursor [MATCH pattern] COUNT count` on `node` (on the link that serves
/// `client_id`): the next cursor and the keys.
pub async fn scan_step(
    node: &Node,
    client_id: u64,
    cursor: &[u8],
    pattern: Option<&[u8]>,
    count: &[u8],
) -> Result<(Bytes, Vec<Bytes>), ScanError> {
    let mut words: Vec<&[u8]> = vec![b"SCAN", cursor];
    if let Some(p) = pattern {
        words.extend([&b"MATCH"[..], p]);
    }
    words.extend([&b"COUNT"[..], count]);
    let answer = node
        .ask(client_id, false, reply::command(words))
        .await
        .map_err(ScanError::Link)?;
    if answer.first() == Some(&b'-') {
        return Err(ScanError::Node(answer));
    }
    reply::parse_scan(&answer).ok_or(ScanError::Unreadable)
}
