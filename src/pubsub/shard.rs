//! Shard channels (SSUBSCRIBE): one backend subscription per channel, on the master of
//! the channel's slot, shared by every local subscriber.
//!
//! A Redis Cluster node delivers an SPUBLISH only to subscribers connected to its own
//! shard, so unlike plain channels a shard channel must be subscribed on its slot's
//! master. This task keeps one connection per master that serves at least one
//! subscribed shard channel (opened on demand, closed when its last channel goes), each
//! run by a small task that writes what the hub asks and hands every frame back to it
//! over a bounded queue.
//!
//! Where a subscription lives follows the cluster:
//! - a node that loses the slot (migration, failover of a reachable node) sends the
//!   subscriber an unsolicited `sunsubscribe`, as Redis 7 does for its clients: the
//!   channel is subscribed again on the slot's new master (a `-MOVED` answer to that
//!   SSUBSCRIBE, while respgate's slot map is stale, points the way);
//! - a connection that fails (the node died) has all its channels subscribed again on
//!   whoever masters their slots after a topology refresh;
//! - a failover within the shard needs nothing: the demoted master keeps its shard
//!   subscribers, and a shard's messages reach every node of it.
//!
//! Clients never see any of it: their subscriptions stand, and messages published while
//! a channel moves are lost, as for a reconnecting client.

use super::{
    confirm, connect_to, deliver, register, Change, Counts, HubCommand, Kind, Subscribers, Waiting,
};
use crate::cluster::{key_slot, Cluster};
use crate::protocol::reply;
use crate::protocol::scan::scan_reply;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Frames a connection task may have handed over before the hub takes them (then the
/// task stops reading: back-pressure onto the node's output buffer).
const EVENT_QUEUE: usize = 1024;
/// Pause before placing again channels that could not be placed (no master known for
/// the slot, node unreachable, cluster down).
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// What a connection task reports.
enum Event {
    Frame(u64, Bytes),
    Closed(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Subscribe,
    Unsubscribe,
}

/// A connection to one master, as the hub sees it.
struct Conn {
    addr: String,
    writes: mpsc::UnboundedSender<Bytes>,
    /// Commands sent whose replies are still owed, in order (errors carry no channel).
    owed: VecDeque<(Op, Bytes)>,
    /// Channels subscribed, or being subscribed, here.
    channels: HashSet<Bytes>,
}

impl Conn {
    /// Takes the owed reply to `op` on `name` off the list; false when none was owed.
    fn settle(&mut self, op: Op, name: &Bytes) -> bool {
        match self.owed.iter().position(|(o, n)| *o == op && n == name) {
            Some(i) => {
                self.owed.remove(i);
                true
            }
            None => false,
        }
    }
}

struct ShardHub {
    cluster: Arc<Cluster>,
    counts: Counts,
    subs: Subscribers,
    waiting: Waiting,
    /// The connection each channel is subscribed on (or being subscribed on).
    placed: HashMap<Bytes, u64>,
    conns: HashMap<u64, Conn>,
    by_addr: HashMap<String, u64>,
    /// Channels with subscribers but no backend subscription, placed at `retry_at`.
    unplaced: BTreeSet<Bytes>,
    retry_at: Option<Instant>,
    next_conn: u64,
    events: mpsc::Sender<Event>,
}

pub(super) async fn run(
    cluster: Arc<Cluster>,
    mut commands: mpsc::UnboundedReceiver<HubCommand>,
    counts: Counts,
) {
    let (events, mut events_rx) = mpsc::channel(EVENT_QUEUE);
    let mut hub = ShardHub {
        cluster,
        counts,
        subs: HashMap::new(),
        waiting: Vec::new(),
        placed: HashMap::new(),
        conns: HashMap::new(),
        by_addr: HashMap::new(),
        unplaced: BTreeSet::new(),
        retry_at: None,
        next_conn: 0,
        events,
    };
    loop {
        let retry_at = hub.retry_at;
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(cmd) => hub.apply(cmd),
                None => return,
            },
            // The hub holds a sender itself: this never ends.
            Some(event) = events_rx.recv() => hub.on_event(event),
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                hub.retry_at = None;
                for name in std::mem::take(&mut hub.unplaced) {
                    hub.place(name, None);
                }
            }
        }
    }
}

impl ShardHub {
    fn apply(&mut self, cmd: HubCommand) {
        match register(cmd, &mut self.subs, &mut self.waiting, &self.counts) {
            Change::Subscribe(_, name) => self.place(name, None),
            Change::Unsubscribe(_, name) => self.release(&name),
            Change::None => {}
        }
    }

    /// Subscribes `name` on `to`, or on the master of its slot.
    fn place(&mut self, name: Bytes, to: Option<String>) {
        if !self.subs.contains_key(&(Kind::Shard, name.clone())) {
            return;
        }
        let addr = to.or_else(|| {
            let topo = self.cluster.topology();
            let node = topo.as_ref()?.master_for_slot(key_slot(&name))?;
            Some(node.addr().to_string())
        });
        let Some(addr) = addr else {
            self.retry_later(name);
            return;
        };
        let id = self.conn_for(&addr);
        let conn = self.conns.get_mut(&id).expect("just opened");
        let _ = conn
            .writes
            .send(reply::command([&b"SSUBSCRIBE"[..], &name[..]]));
        conn.owed.push_back((Op::Subscribe, name.clone()));
        conn.channels.insert(name.clone());
        self.placed.insert(name, id);
    }

    /// Ends the backend subscription of `name` (nobody holds it any more); a waiting
    /// subscription's confirmations are released with it.
    fn release(&mut self, name: &Bytes) {
        self.unplaced.remove(name);
        let key = (Kind::Shard, name.clone());
        self.waiting.retain(|(k, _)| *k != key);
        let Some(id) = self.placed.remove(name) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.channels.remove(name);
        if conn.channels.is_empty() {
            // Closing the connection ends its subscriptions.
            self.close(id);
            return;
        }
        let _ = conn
            .writes
            .send(reply::command([&b"SUNSUBSCRIBE"[..], &name[..]]));
        conn.owed.push_back((Op::Unsubscribe, name.clone()));
    }

    /// Forgets connection `id` (its task ends once it has written what is queued).
    fn close(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        if self.by_addr.get(&conn.addr) == Some(&id) {
            self.by_addr.remove(&conn.addr);
        }
        Some(conn)
    }

    /// The connection to `addr`, opened if there is none.
    fn conn_for(&mut self, addr: &str) -> u64 {
        if let Some(&id) = self.by_addr.get(addr) {
            return id;
        }
        let id = self.next_conn;
        self.next_conn += 1;
        let (writes, rx) = mpsc::unbounded_channel();
        tokio::spawn(conn_task(
            self.cluster.clone(),
            addr.to_string(),
            id,
            rx,
            self.events.clone(),
        ));
        self.conns.insert(
            id,
            Conn {
                addr: addr.to_string(),
                writes,
                owed: VecDeque::new(),
                channels: HashSet::new(),
            },
        );
        self.by_addr.insert(addr.to_string(), id);
        id
    }

    fn retry_later(&mut self, name: Bytes) {
        self.placed.remove(&name);
        self.unplaced.insert(name);
        self.cluster.request_refresh();
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + RETRY_AFTER);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Closed(id) => {
                let Some(conn) = self.close(id) else {
                    return;
                };
                tracing::debug!(node = %conn.addr, "shard pub/sub connection closed");
                for name in conn.channels {
                    if self.placed.get(&name) == Some(&id) {
                        self.retry_later(name);
                    }
                }
            }
            Event::Frame(id, frame) => self.on_frame(id, frame),
        }
    }

    fn on_frame(&mut self, id: u64, frame: Bytes) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return; // a connection already let go of
        };
        if frame.first() == Some(&b'-') {
            // The reply to the oldest command still owed.
            let Some((op, name)) = conn.owed.pop_front() else {
                return;
            };
            if op == Op::Subscribe && self.placed.get(&name) == Some(&id) {
                self.subscribe_refused(id, name, &frame);
            }
            return;
        }
        let Some((kind, name)) = crate::protocol::value::pubsub_fields(&frame) else {
            return;
        };
        let name = frame.slice_ref(name);
        match kind {
            b"smessage" => {
                let emptied = deliver(&(Kind::Shard, name), frame, &mut self.subs, &self.counts);
                for (_, name) in emptied {
                    self.release(&name);
                }
            }
            b"ssubscribe" => {
                conn.settle(Op::Subscribe, &name);
                confirm(&mut self.waiting, &(Kind::Shard, name));
            }
            // Unasked: the node no longer serves the channel's slot.
            b"sunsubscribe"
                if !conn.settle(Op::Unsubscribe, &name) && self.placed.get(&name) == Some(&id) =>
            {
                tracing::debug!(node = %conn.addr, channel = ?name, "shard channel moved");
                conn.channels.remove(&name);
                self.placed.remove(&name);
                self.cluster.request_refresh();
                self.place(name, None);
                self.close_if_idle(id);
            }
            _ => {}
        }
    }

    /// A node refused to SSUBSCRIBE `name`: follow a MOVED at once, else try again
    /// shortly (cluster down, slot being migrated, node not ready).
    fn subscribe_refused(&mut self, id: u64, name: Bytes, error: &[u8]) {
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.channels.remove(&name);
        }
        self.placed.remove(&name);
        let known =
            |(slot, addr): (u16, String)| self.cluster.known_node(&addr).map(|_| (slot, addr));
        match crate::cluster::redirect::moved_target(error).and_then(known) {
            Some((slot, addr)) => {
                self.cluster.apply_moved(slot, &addr);
                self.place(name, Some(addr));
            }
            // Not a MOVED, or to a node the topology does not name (yet): the refresh
            // decides.
            None => {
                self.cluster.request_refresh();
                tracing::debug!(
                    channel = ?name,
                    error = %String::from_utf8_lossy(error).trim_end(),
                    "SSUBSCRIBE refused; trying again"
                );
                self.retry_later(name);
            }
        }
        self.close_if_idle(id);
    }

    fn close_if_idle(&mut self, id: u64) {
        if self.conns.get(&id).is_some_and(|c| c.channels.is_empty()) {
            self.close(id);
        }
    }
}

/// Runs one connection: writes what the hub queues, hands every frame back to it.
async fn conn_task(
    cluster: Arc<Cluster>,
    addr: String,
    id: u64,
    mut writes: mpsc::UnboundedReceiver<Bytes>,
    events: mpsc::Sender<Event>,
) {
    let Some(stream) = connect_to(&cluster, &addr).await else {
        let _ = events.send(Event::Closed(id)).await;
        return;
    };
    // Not the hot path: `tokio::io::split` serves plain and TLS streams alike.
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::new();
    loop {
        tokio::select! {
            bytes = writes.recv() => {
                // The hub let go of this connection: closing it ends its subscriptions.
                let Some(bytes) = bytes else { return };
                out.extend_from_slice(&bytes);
                while let Ok(more) = writes.try_recv() {
                    out.extend_from_slice(&more);
                }
                // Flushed: a TLS stream may hold written bytes until then.
                if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                out.clear();
            }
            read = rd.read_buf(&mut rbuf) => {
                match read {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
                loop {
                    match scan_reply(&rbuf) {
                        Ok(Some(len)) => {
                            let frame = rbuf.split_to(len).freeze();
                            if events.send(Event::Frame(id, frame)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            tracing::warn!(node = %addr, "malformed frame on a shard pub/sub connection");
                            let _ = events.send(Event::Closed(id)).await;
                            return;
                        }
                    }
                }
                if rbuf.capacity() - rbuf.len() < 1024 {
                    rbuf.reserve(16 * 1024);
                }
            }
        }
    }
    let _ = events.send(Event::Closed(id)).await;
}
