//! One computed command's conversation with the nodes: which master serves a slot,
//! a pipeline or a MULTI/EXEC sent to it and its replies split, errors put in the
//! client's terms, and the cost counted (`respgate_cross_slot_*`).
//!
//! Every step runs on respgate's own link to the node (its node user): the caller's
//! ACL was checked on the original command's keys before routing.

use crate::backend::Node;
use crate::cluster::Cluster;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use crate::protocol::scan::scan_reply;
use crate::protocol::value::array_items;
use bytes::Bytes;
use std::sync::Arc;

/// Redis's WRONGTYPE reply.
pub const WRONGTYPE: &[u8] =
    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

/// What every step of one computed command needs.
pub struct Job {
    pub cluster: Arc<Cluster>,
    pub client_id: u64,
    /// The client's protocol: the step whose reply the client gets speaks it.
    pub resp3: bool,
    /// The command's name, uppercase, for errors and the metric.
    pub command: String,
    /// `compat.max_cross_slot_bytes`.
    pub max_bytes: u64,
    /// The TTL policy's `EXPIRE key N NX` for the destination keys it covers, sent
    /// right behind the write on the destination's master (as the forward path
    /// appends them).
    pub expires: Vec<Bytes>,
}

impl Job {
    /// The refusal for a step that failed (link lost, slot moved, unreadable reply).
    pub fn fail(&self, why: impl Into<String>) -> Bytes {
        Refusal::CrossSlotFailed {
            command: self.command.clone(),
            why: why.into(),
        }
        .reply()
    }

    /// The refusal when `bytes` would be copied.
    pub fn too_large(&self, bytes: u64) -> Bytes {
        Refusal::CrossSlotTooLarge {
            command: self.command.clone(),
            bytes,
            max: self.max_bytes,
        }
        .reply()
    }

    /// The master serving `slot`.
    pub fn master(&self, slot: u16) -> Result<Arc<Node>, Bytes> {
        let topo = self.cluster.topology();
        match topo.as_ref().and_then(|t| t.master_for_slot(slot)) {
            Some(node) => Ok(node.clone()),
            None => Err(Refusal::NoMasterKnown.reply()),
        }
    }

    /// Sends `cmds` to `node` as one pipeline; their replies, in order.
    pub async fn pipeline(
        &self,
        node: &Node,
        cmds: &[Bytes],
        resp3: bool,
    ) -> Result<Vec<Bytes>, Bytes> {
        let rx = self.send(node, cmds, resp3);
        self.replies(node, rx, cmds.len()).await
    }

    /// Queues `cmds` to `node` (one pipeline) without waiting: [`Job::replies`] reads them.
    pub fn send(&self, node: &Node, cmds: &[Bytes], resp3: bool) -> crate::backend::reply::ReplyRx {
        round_trips().increment(1);
        let mut bytes = bytes::BytesMut::with_capacity(cmds.iter().map(Bytes::len).sum());
        for c in cmds {
            bytes.extend_from_slice(c);
        }
        node.request_replies(self.client_id, resp3, bytes.freeze(), cmds.len() as u32)
    }

    /// The `n` replies of a request [`Job::send`] queued; a node's redirect or
    /// cluster error becomes this command's failure (a client of one Redis cannot
    /// follow a MOVED).
    pub async fn replies(
        &self,
        node: &Node,
        rx: crate::backend::reply::ReplyRx,
        n: usize,
    ) -> Result<Vec<Bytes>, Bytes> {
        let all = crate::backend::answer(rx)
            .await
            .map_err(|why| self.fail(format!("{}: {why}", node.addr())))?;
        // A reply (or run of replies of one pipeline) over `cluster.max_reply_bytes`
        // comes back as one error naming the limit, in place of the `n` replies.
        if let Some(why) = all
            .strip_prefix(b"-ERR respgate: ")
            .filter(|t| t.starts_with(b"reply from "))
        {
            return Err(self.fail(error_text(why)));
        }
        let replies = split(&all, n).ok_or_else(|| self.fail("unreadable reply"))?;
        if let Some(e) = replies.iter().find(|r| is_redirect(r)) {
            self.cluster.request_refresh();
            return Err(self.fail(error_text(e)));
        }
        Ok(replies)
    }

    /// Runs `cmds` on `node` inside MULTI/EXEC (atomically there); the replies of the
    /// commands. A command refused while queued (EXECABORT) gives its own error.
    pub async fn exec(
        &self,
        node: &Node,
        cmds: &[Bytes],
        resp3: bool,
    ) -> Result<Vec<Bytes>, Bytes> {
        let mut all = Vec::with_capacity(cmds.len() + 2);
        all.push(reply::command([&b"MULTI"[..]]));
        all.extend(cmds.iter().cloned());
        all.push(reply::command([&b"EXEC"[..]]));
        let replies = self.pipeline(node, &all, resp3).await?;
        let exec = replies.last().cloned().unwrap_or_default();
        if exec.first() == Some(&b'-') {
            let queued = replies.iter().skip(1).find(|r| r.first() == Some(&b'-'));
            return Err(queued.cloned().unwrap_or(exec));
        }
        let items = array_items(&exec).ok_or_else(|| self.fail("unreadable EXEC reply"))?;
        if items.len() != cmds.len() {
            return Err(self.fail("EXEC answered for another number of commands"));
        }
        Ok(items.into_iter().map(|i| exec.slice_ref(i)).collect())
    }
}

/// `n` replies read off `all`, each as its own bytes.
pub fn split(all: &Bytes, n: usize) -> Option<Vec<Bytes>> {
    let mut out = Vec::with_capacity(n);
    let mut pos = 0;
    for _ in 0..n {
        let len = scan_reply(&all[pos..]).ok()??;
        out.push(all.slice(pos..pos + len));
        pos += len;
    }
    (pos == all.len()).then_some(out)
}

/// A reply a client of one Redis must never see: the cluster's redirects and errors.
fn is_redirect(r: &[u8]) -> bool {
    ["-MOVED", "-ASK ", "-TRYAGAIN", "-CLUSTERDOWN", "-CROSSSLOT"]
        .iter()
        .any(|p| r.starts_with(p.as_bytes()))
}

/// An error reply's text (without `-` and CRLF).
pub fn error_text(r: &[u8]) -> String {
    let t = r.strip_prefix(b"-").unwrap_or(r);
    String::from_utf8_lossy(t.strip_suffix(b"\r\n").unwrap_or(t)).into_owned()
}

/// A simple-string reply's text (`+set\r\n` -> `set`).
pub fn simple_text(r: &[u8]) -> Option<&[u8]> {
    r.strip_prefix(b"+")?.strip_suffix(b"\r\n")
}

// The metrics are looked up per use, not cached in statics: a computed command costs
// several round trips already, and a handle cached before the recorder is installed
// (a library user, a test binary) would stay bound to none.

/// `respgate_cross_slot_round_trips_total`: requests (pipelines) sent to nodes.
fn round_trips() -> metrics::Counter {
    metrics::counter!("respgate_cross_slot_round_trips_total")
}

/// `respgate_cross_slot_bytes_copied_total`: DUMP payload bytes copied between nodes.
pub fn bytes_copied() -> metrics::Counter {
    metrics::counter!("respgate_cross_slot_bytes_copied_total")
}

/// Adds `delta` to the internal keys sent to a node and not yet answered for (they
/// exist only inside one MULTI/EXEC there, see `internal.rs`), and sets
/// `respgate_cross_slot_internal_keys` to the count (set from one process-wide count,
/// so it is right whenever the recorder was installed).
pub fn copies_in_flight(delta: i64) {
    static ALIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = ALIVE.fetch_add(delta, std::sync::atomic::Ordering::Relaxed) + delta;
    metrics::gauge!("respgate_cross_slot_internal_keys").set(now as f64);
}

/// Counts one computed command in `respgate_cross_slot_commands_total{command}`.
pub fn count_command(command: &str) {
    metrics::counter!("respgate_cross_slot_commands_total", "command" => command.to_string())
        .increment(1);
}

/// The metrics' help texts (at start, once the recorder is installed).
pub fn describe() {
    metrics::describe_counter!(
        "respgate_cross_slot_commands_total",
        "Cross-slot commands respgate computed (compat.cross_slot = \"compute\"), by command."
    );
    metrics::describe_counter!(
        "respgate_cross_slot_round_trips_total",
        "Requests (pipelines) computed cross-slot commands sent to nodes."
    );
    metrics::describe_counter!(
        "respgate_cross_slot_bytes_copied_total",
        "DUMP payload bytes computed cross-slot commands copied between nodes."
    );
    metrics::describe_gauge!(
        "respgate_cross_slot_internal_keys",
        "Internal cross-slot copies sent to a node and not yet answered for."
    );
    copies_in_flight(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_replies_are_split() {
        let all = Bytes::from_static(b"+OK\r\n$3\r\nabc\r\n*2\r\n:1\r\n$-1\r\n");
        let parts = split(&all, 3).unwrap();
        assert_eq!(&parts[1][..], b"$3\r\nabc\r\n");
        assert_eq!(&parts[2][..], b"*2\r\n:1\r\n$-1\r\n");
        assert!(split(&all, 2).is_none(), "bytes left over");
        assert!(split(&all, 4).is_none(), "a reply missing");
    }

    #[test]
    fn redirects_are_told_from_redis_errors() {
        assert!(is_redirect(b"-MOVED 12 127.0.0.1:7000\r\n"));
        assert!(is_redirect(b"-ASK 12 127.0.0.1:7000\r\n"));
        assert!(!is_redirect(WRONGTYPE));
        assert_eq!(error_text(b"-ERR no such key\r\n"), "ERR no such key");
    }
}
