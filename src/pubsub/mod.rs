//! Pub/sub through one backend subscription per channel, shared by every client.
//!
//! In a Redis Cluster a PUBLISH reaches every node, so one connection to any master sees
//! every message. The hub owns that connection: the first local subscriber of a channel
//! (or pattern) makes it SUBSCRIBE, the last one leaving makes it UNSUBSCRIBE, and each
//! message frame is handed to every subscriber as the same `Bytes` (no copy). A
//! subscriber whose queue is full is dropped (its session then closes: a reader that
//! does not keep up must not grow respgate's memory), as Redis does with its pubsub
//! output-buffer limit. If the connection fails, the hub reconnects (to a master of the
//! current topology) and subscribes again to everything; messages published meanwhile
//! are lost, as they would be for a reconnecting Redis client.
//!
//! Shard channels (SSUBSCRIBE) are different: a node delivers an SPUBLISH only to its own
//! shard's subscribers, so their backend subscriptions live on the master of each
//! channel's slot. A second task ([`shard`]) holds one connection per such master, with
//! the same sharing and fan-out.

mod shard;

use crate::clients::ClientEntry;
use crate::cluster::Cluster;
use crate::protocol::reply;
use crate::protocol::scan::scan_reply;
use crate::tls::BackendStream;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Channel, pattern or shard-channel subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Channel,
    Pattern,
    /// A shard channel (SSUBSCRIBE), served by the master of its slot.
    Shard,
}

impl Kind {
    fn subscribe(self) -> &'static str {
        match self {
            Kind::Channel => "SUBSCRIBE",
            Kind::Pattern => "PSUBSCRIBE",
            Kind::Shard => "SSUBSCRIBE",
        }
    }

    fn unsubscribe(self) -> &'static str {
        match self {
            Kind::Channel => "UNSUBSCRIBE",
            Kind::Pattern => "PUNSUBSCRIBE",
            Kind::Shard => "SUNSUBSCRIBE",
        }
    }
}

enum HubCommand {
    Subscribe {
        kind: Kind,
        name: Bytes,
        id: u64,
        tx: mpsc::Sender<Bytes>,
        /// Killed (disconnected) if it falls too far behind.
        client: Arc<ClientEntry>,
        /// Answered once the backend subscription is active.
        done: oneshot::Sender<()>,
    },
    Unsubscribe {
        kind: Kind,
        name: Bytes,
        id: u64,
        /// Answered once the hub has applied it (its counts no longer include the
        /// client), so the client's confirmation follows that.
        done: oneshot::Sender<()>,
    },
}

/// The handle sessions use.
#[derive(Clone)]
pub struct PubSubHub {
    commands: mpsc::UnboundedSender<HubCommand>,
    /// The shard-channel task's.
    shard_commands: mpsc::UnboundedSender<HubCommand>,
    /// Local subscribers per channel and per shard channel, for PUBSUB NUMSUB /
    /// SHARDNUMSUB (the nodes count respgate's one subscription as one subscriber).
    /// Written by the hub tasks on (un)subscriptions only.
    counts: Counts,
    /// The node the hub's connection is on, while it is connected.
    node: HubNode,
    held: Held,
}

type HubNode = Arc<arc_swap::ArcSwapOption<String>>;

/// The channels and patterns the hub's node has confirmed as subscribed (and not yet as
/// unsubscribed): what that node counts the hub for in a PUBLISH's receiver count.
type Held = Arc<std::sync::Mutex<std::collections::HashSet<(Kind, Bytes)>>>;

impl PubSubHub {
    /// Starts the hub task.
    pub fn start(cluster: Arc<Cluster>) -> PubSubHub {
        let (commands, rx) = mpsc::unbounded_channel();
        let (shard_commands, shard_rx) = mpsc::unbounded_channel();
        let counts: Counts = Arc::default();
        let node: HubNode = Arc::default();
        let held: Held = Arc::default();
        tokio::spawn(run(
            cluster.clone(),
            rx,
            Arc::clone(&counts),
            node.clone(),
            held.clone(),
        ));
        tokio::spawn(shard::run(cluster, shard_rx, Arc::clone(&counts)));
        PubSubHub {
            commands,
            shard_commands,
            counts,
            node,
            held,
        }
    }

    /// Where to send a PUBLISH of `channel` and what to add to the node's receiver count
    /// so that it counts respgate's clients, as a standalone Redis counts its own. The
    /// hub's node counts the hub once per channel or pattern it holds: the PUBLISH goes
    /// there (the slot of that master), and those ones are replaced by the clients
    /// behind them. Subscribers connected straight to other nodes are not counted, as in
    /// Redis Cluster. `(None, 0)`: no local subscriber matches, send it anywhere.
    pub fn publish_plan(&self, cluster: &Cluster, channel: &[u8]) -> (Option<u16>, i64) {
        let matches = |kind: Kind, name: &[u8]| match kind {
            Kind::Channel => name == channel,
            Kind::Pattern => crate::acl::glob::string_match(name, channel),
            Kind::Shard => false,
        };
        let local: i64 = {
            let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            counts
                .iter()
                .filter(|((kind, name), _)| matches(*kind, name))
                .map(|(_, n)| *n as i64)
                .sum()
        };
        let held: i64 = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            held.iter()
                .filter(|(kind, name)| matches(*kind, name))
                .count() as i64
        };
        if local == 0 && held == 0 {
            return (None, 0);
        }
        let hub_slot = self.node.load_full().and_then(|addr| {
            let topo = cluster.topology();
            let topo = topo.as_ref()?;
            let i = topo
                .shards()
                .iter()
                .position(|s| s.master.addr() == addr.as_str())?;
            topo.shard_slot(i)
        });
        match hub_slot {
            Some(slot) => (Some(slot), local - held),
            // The hub is not on a master now: no node counts it.
            None => (None, local),
        }
    }

    /// How many of respgate's clients are subscribed to `channel` (`kind`: a channel or
    /// a shard channel).
    pub fn local_subscribers(&self, kind: Kind, channel: &[u8]) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .get(&(kind, Bytes::copy_from_slice(channel)))
            .copied()
            .unwrap_or(0)
    }

    fn commands_for(&self, kind: Kind) -> &mpsc::UnboundedSender<HubCommand> {
        match kind {
            Kind::Shard => &self.shard_commands,
            Kind::Channel | Kind::Pattern => &self.commands,
        }
    }

    /// Registers subscriber `id` for `name`; resolves once messages for it flow.
    pub fn subscribe(
        &self,
        kind: Kind,
        name: Bytes,
        client: Arc<ClientEntry>,
        tx: mpsc::Sender<Bytes>,
    ) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        let _ = self.commands_for(kind).send(HubCommand::Subscribe {
            kind,
            name,
            id: client.id,
            tx,
            client,
            done,
        });
        rx
    }

    /// Unregisters subscriber `id` from `name`; resolves once the hub has applied it
    /// (PUBLISH's receiver count no longer includes it).
    pub fn unsubscribe(&self, kind: Kind, name: Bytes, id: u64) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        let _ = self.commands_for(kind).send(HubCommand::Unsubscribe {
            kind,
            name,
            id,
            done,
        });
        rx
    }
}

type Subscribers = HashMap<(Kind, Bytes), HashMap<u64, (mpsc::Sender<Bytes>, Arc<ClientEntry>)>>;
type Waiting = Vec<((Kind, Bytes), oneshot::Sender<()>)>;

type Counts = Arc<std::sync::Mutex<HashMap<(Kind, Bytes), usize>>>;

/// Mirrors one channel's (or pattern's) subscriber count for
/// [`PubSubHub::local_subscribers`] and [`PubSubHub::publish_plan`].
fn sync_count(subs: &Subscribers, counts: &Counts, kind: Kind, name: &Bytes) {
    let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
    let key = (kind, name.clone());
    match subs.get(&key) {
        Some(entry) => counts.insert(key, entry.len()),
        None => counts.remove(&key),
    };
}

/// Mirrors every count of the kinds `subs` holds (`shard`: the shard task's) after
/// subscribers were dropped, which is rare.
fn sync_counts(subs: &Subscribers, counts: &Counts, shard: bool) {
    let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
    counts.retain(|(kind, _), _| (*kind == Kind::Shard) != shard);
    for ((kind, name), entry) in subs {
        counts.insert((*kind, name.clone()), entry.len());
    }
}

async fn run(
    cluster: Arc<Cluster>,
    mut commands: mpsc::UnboundedReceiver<HubCommand>,
    counts: Counts,
    node: HubNode,
    held: Held,
) {
    let mut subs: Subscribers = HashMap::new();
    // Subscribers waiting for the backend to confirm their channel.
    let mut waiting: Waiting = Vec::new();
    loop {
        // Connect only while someone is subscribed (or about to be).
        if subs.is_empty() {
            match commands.recv().await {
                Some(cmd) => apply(cmd, &mut subs, &mut waiting, None, &counts),
                None => return,
            }
            continue;
        }
        let Some((mut conn, addr)) = connect(&cluster).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Drain what came meanwhile so unsubscribes are not lost.
            while let Ok(cmd) = commands.try_recv() {
                apply(cmd, &mut subs, &mut waiting, None, &counts);
            }
            continue;
        };
        node.store(Some(Arc::new(addr)));
        // (Re)subscribe to everything known.
        let mut out = BytesMut::new();
        for (kind, name) in subs.keys() {
            out.extend_from_slice(&reply::command([kind.subscribe().as_bytes(), &name[..]]));
        }
        if send(&mut conn, &out).await.is_err() {
            continue;
        }
        let mut rbuf = BytesMut::with_capacity(16 * 1024);
        loop {
            tokio::select! {
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { return };
                    let mut out = BytesMut::new();
                    apply(cmd, &mut subs, &mut waiting, Some(&mut out), &counts);
                    if !out.is_empty() && send(&mut conn, &out).await.is_err() {
                        break;
                    }
                }
                read = conn.read_buf(&mut rbuf) => {
                    match read {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                    let mut out = BytesMut::new();
                    while let Ok(Some(len)) = scan_reply(&rbuf) {
                        let frame = rbuf.split_to(len).freeze();
                        for (kind, name) in dispatch(frame, &mut subs, &mut waiting, &counts, &held) {
                            out.extend_from_slice(&reply::command([kind.unsubscribe().as_bytes(), &name[..]]));
                        }
                    }
                    if !out.is_empty() && send(&mut conn, &out).await.is_err() {
                        break;
                    }
                    if rbuf.capacity() - rbuf.len() < 1024 {
                        rbuf.reserve(16 * 1024);
                    }
                }
            }
            if subs.is_empty() && waiting.is_empty() {
                break;
            }
        }
        node.store(None);
        held.lock().unwrap_or_else(|p| p.into_inner()).clear();
        tracing::debug!("pub/sub backend connection closed");
    }
}

/// Writes `out` and flushes it (a TLS stream may hold written bytes until flushed).
async fn send(conn: &mut BackendStream, out: &[u8]) -> std::io::Result<()> {
    conn.write_all(out).await?;
    conn.flush().await
}

async fn connect(cluster: &Cluster) -> Option<(BackendStream, String)> {
    let addr = {
        let topo = cluster.topology();
        topo.as_ref()?.any_master(0)?.addr().to_string()
    };
    let stream = connect_to(cluster, &addr).await?;
    Some((stream, addr))
}

/// A connection to `addr` made as the backend links make theirs (TLS and AUTH as the
/// cluster needs, answered within the request timeout).
async fn connect_to(cluster: &Cluster, addr: &str) -> Option<BackendStream> {
    crate::backend::connect(addr, cluster.link_options())
        .await
        .map_err(|e| tracing::warn!(node = %addr, error = %e, "pub/sub backend connect failed"))
        .ok()
}

/// What a subscriber's command asks of the backend connection.
enum Change {
    None,
    /// The name's first subscriber: subscribe on the backend.
    Subscribe(Kind, Bytes),
    /// Its last subscriber left: unsubscribe on the backend.
    Unsubscribe(Kind, Bytes),
}

/// Applies a subscriber's command to `subs` and mirrors the name's count (for both hub
/// tasks). A subscription is confirmed once the backend's is active: the first
/// subscriber of a name waits for it, later ones only while it is still pending. An
/// unsubscription is confirmed at once.
fn register(
    cmd: HubCommand,
    subs: &mut Subscribers,
    waiting: &mut Waiting,
    counts: &Counts,
) -> Change {
    match cmd {
        HubCommand::Subscribe {
            kind,
            name,
            id,
            tx,
            client,
            done,
        } => {
            let key = (kind, name);
            let entry = subs.entry(key.clone()).or_default();
            let first = entry.is_empty();
            entry.insert(id, (tx, client));
            sync_count(subs, counts, kind, &key.1);
            if first || waiting.iter().any(|(k, _)| *k == key) {
                let name = key.1.clone();
                waiting.push((key, done));
                if first {
                    return Change::Subscribe(kind, name);
                }
            } else {
                let _ = done.send(());
            }
            Change::None
        }
        HubCommand::Unsubscribe {
            kind,
            name,
            id,
            done,
        } => {
            let key = (kind, name);
            let mut emptied = false;
            if let Some(entry) = subs.get_mut(&key) {
                entry.remove(&id);
                if entry.is_empty() {
                    subs.remove(&key);
                    emptied = true;
                }
            }
            sync_count(subs, counts, kind, &key.1);
            let _ = done.send(());
            if emptied {
                Change::Unsubscribe(kind, key.1)
            } else {
                Change::None
            }
        }
    }
}

/// The backend confirmed `key`: every subscriber waiting for it is confirmed.
fn confirm(waiting: &mut Waiting, key: &(Kind, Bytes)) {
    let (confirmed, rest): (Waiting, Waiting) = std::mem::take(waiting)
        .into_iter()
        .partition(|(k, _)| k == key);
    *waiting = rest;
    for (_, done) in confirmed {
        let _ = done.send(());
    }
}

/// Applies a subscriber's command (see [`register`]); with a live connection, writes
/// what the backend must do into `out`.
fn apply(
    cmd: HubCommand,
    subs: &mut Subscribers,
    waiting: &mut Waiting,
    live: Option<&mut BytesMut>,
    counts: &Counts,
) {
    let (word, name) = match register(cmd, subs, waiting, counts) {
        Change::None => return,
        Change::Subscribe(kind, name) => (kind.subscribe(), name),
        Change::Unsubscribe(kind, name) => (kind.unsubscribe(), name),
    };
    // Without a connection, the (re)connect subscribes to whatever is in `subs`.
    if let Some(out) = live {
        out.extend_from_slice(&reply::command([word.as_bytes(), &name[..]]));
    }
}

/// Routes one frame from the backend: a message to its subscribers, or a confirmation.
/// Returns the subscriptions nobody holds any more (their subscribers were dropped),
/// for the caller to end on the backend.
/// Confirmations are also tracked in `held` (what the node counts the hub for).
fn dispatch(
    frame: Bytes,
    subs: &mut Subscribers,
    waiting: &mut Waiting,
    counts: &Counts,
    held: &Held,
) -> Vec<(Kind, Bytes)> {
    let Some((kind, name)) = crate::protocol::value::pubsub_fields(&frame) else {
        return Vec::new();
    };
    let name = frame.slice_ref(name);
    let held_key = |kind| (kind, name.clone());
    let key = match kind {
        b"message" => Some((Kind::Channel, name)),
        b"pmessage" => Some((Kind::Pattern, name)),
        b"subscribe" | b"psubscribe" => {
            let key = held_key(if kind == b"subscribe" {
                Kind::Channel
            } else {
                Kind::Pattern
            });
            confirm(waiting, &key);
            held.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
            None
        }
        b"unsubscribe" | b"punsubscribe" => {
            let key = held_key(if kind == b"unsubscribe" {
                Kind::Channel
            } else {
                Kind::Pattern
            });
            held.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            None
        }
        _ => None,
    };
    let Some(key) = key else {
        return Vec::new();
    };
    deliver(&key, frame, subs, counts)
}

/// Hands `frame` to every subscriber of `key`. A subscriber whose queue is full is
/// dropped from every subscription (see [`dispatch`]); returns the subscriptions nobody
/// holds any more.
fn deliver(
    key: &(Kind, Bytes),
    frame: Bytes,
    subs: &mut Subscribers,
    counts: &Counts,
) -> Vec<(Kind, Bytes)> {
    let mut evicted = Vec::new();
    if let Some(entry) = subs.get_mut(key) {
        let len = frame.len();
        // A counted frame is copied once for all its subscribers and counted once in the
        // process budget (`crate::budget::shared_frame`): queued as it is, a slice of the
        // hub's read buffer (grown by doubling) would pin more than the queues count.
        let frame = match entry.values().next() {
            Some((_, client)) if len >= crate::budget::COUNTED_MIN => {
                crate::budget::shared_frame(client.output.process(), &frame)
            }
            _ => frame,
        };
        for (id, (tx, client)) in entry.iter() {
            // Over `server.pubsub_queue_bytes`: closed (its session logs why).
            if !client.output.queue_message(len) {
                evicted.push(*id);
                continue;
            }
            match tx.try_send(frame.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    client.output.take_message(len);
                    tracing::info!(
                        client = id,
                        "dropping a subscriber that does not read its messages (server.pubsub_queue_messages)"
                    );
                    metrics::counter!("respgate_clients_disconnected_total", "reason" => "pubsub_queue_full")
                        .increment(1);
                    evicted.push(*id);
                    client.kill();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => client.output.take_message(len),
            }
        }
    }
    let mut emptied = Vec::new();
    let any_evicted = !evicted.is_empty();
    // A full queue means the subscriber does not keep up: it is dropped from every
    // subscription, so its queue closes and its session disconnects the client.
    for id in evicted {
        subs.retain(|key, entry| {
            entry.remove(&id);
            if entry.is_empty() {
                emptied.push(key.clone());
            }
            !entry.is_empty()
        });
    }
    if any_evicted {
        sync_counts(subs, counts, key.0 == Kind::Shard);
    }
    emptied
}
