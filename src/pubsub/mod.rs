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

use crate::cluster::Cluster;
use crate::protocol::reply;
use crate::protocol::scan::scan_reply;
use crate::session::clients::ClientEntry;
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
}

impl PubSubHub {
    /// Starts the hub task.
    pub fn start(cluster: Arc<Cluster>) -> PubSubHub {
        let (commands, rx) = mpsc::unbounded_channel();
        let (shard_commands, shard_rx) = mpsc::unbounded_channel();
        let counts: Counts = Arc::default();
        tokio::spawn(run(cluster.clone(), rx, Arc::clone(&counts)));
        tokio::spawn(shard::run(cluster, shard_rx, Arc::clone(&counts)));
        PubSubHub {
            commands,
            shard_commands,
            counts,
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

    pub fn unsubscribe(&self, kind: Kind, name: Bytes, id: u64) {
        let _ = self
            .commands_for(kind)
            .send(HubCommand::Unsubscribe { kind, name, id });
    }
}

type Subscribers = HashMap<(Kind, Bytes), HashMap<u64, (mpsc::Sender<Bytes>, Arc<ClientEntry>)>>;
type Waiting = Vec<((Kind, Bytes), oneshot::Sender<()>)>;

type Counts = Arc<std::sync::Mutex<HashMap<(Kind, Bytes), usize>>>;

/// Mirrors one channel's subscriber count for [`PubSubHub::local_subscribers`]
/// (patterns are not counted: PUBSUB has no per-pattern count).
fn sync_count(subs: &Subscribers, counts: &Counts, kind: Kind, name: &Bytes) {
    if kind == Kind::Pattern {
        return;
    }
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
        if *kind != Kind::Pattern {
            counts.insert((*kind, name.clone()), entry.len());
        }
    }
}

async fn run(
    cluster: Arc<Cluster>,
    mut commands: mpsc::UnboundedReceiver<HubCommand>,
    counts: Counts,
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
        let Some(mut conn) = connect(&cluster).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Drain what came meanwhile so unsubscribes are not lost.
            while let Ok(cmd) = commands.try_recv() {
                apply(cmd, &mut subs, &mut waiting, None, &counts);
            }
            continue;
        };
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
                        for (kind, name) in dispatch(frame, &mut subs, &mut waiting, &counts) {
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
        tracing::debug!("pub/sub backend connection closed");
    }
}

/// Writes `out` and flushes it (a TLS stream may hold written bytes until flushed).
async fn send(conn: &mut BackendStream, out: &[u8]) -> std::io::Result<()> {
    conn.write_all(out).await?;
    conn.flush().await
}

async fn connect(cluster: &Cluster) -> Option<BackendStream> {
    let addr = {
        let topo = cluster.topology();
        topo.as_ref()?.any_master(0)?.addr().to_string()
    };
    connect_to(cluster, &addr).await
}

/// A connection to `addr` (TLS when the cluster needs it), authenticated when the
/// cluster needs it.
async fn connect_to(cluster: &Cluster, addr: &str) -> Option<BackendStream> {
    let opts = cluster.link_options();
    let mut stream = crate::tls::connect_node(addr, opts.tls.as_ref(), opts.connect_timeout)
        .await
        .map_err(|e| tracing::warn!(node = %addr, error = %e, "pub/sub backend connect failed"))
        .ok()?;
    if let Some(auth) = opts.auth_command() {
        stream.write_all(&auth).await.ok()?;
        stream.flush().await.ok()?;
        let mut buf = BytesMut::with_capacity(256);
        loop {
            stream.read_buf(&mut buf).await.ok()?;
            if let Ok(Some(len)) = scan_reply(&buf) {
                if buf[0] == b'-' || len == 0 {
                    return None;
                }
                break;
            }
        }
    }
    Some(stream)
}

/// Applies a subscriber's command (and mirrors the channel's count); with a live
/// connection, writes what the backend must do into `out`.
fn apply(
    cmd: HubCommand,
    subs: &mut Subscribers,
    waiting: &mut Waiting,
    live: Option<&mut BytesMut>,
    counts: &Counts,
) {
    match cmd {
        HubCommand::Subscribe {
            kind,
            name,
            id,
            tx,
            client,
            done,
        } => {
            let entry = subs.entry((kind, name.clone())).or_default();
            let first = entry.is_empty();
            entry.insert(id, (tx, client));
            sync_count(subs, counts, kind, &name);
            if first {
                // Confirmed when the backend confirms (now, or when it (re)connects).
                if let Some(out) = live {
                    out.extend_from_slice(&reply::command([
                        kind.subscribe().as_bytes(),
                        &name[..],
                    ]));
                }
                waiting.push(((kind, name), done));
            } else if waiting.iter().any(|(k, _)| *k == (kind, name.clone())) {
                waiting.push(((kind, name), done));
            } else {
                let _ = done.send(());
            }
        }
        HubCommand::Unsubscribe { kind, name, id } => {
            let key = (kind, name.clone());
            if let Some(entry) = subs.get_mut(&key) {
                entry.remove(&id);
                if entry.is_empty() {
                    subs.remove(&key);
                    if let Some(out) = live {
                        out.extend_from_slice(&reply::command([
                            kind.unsubscribe().as_bytes(),
                            &name[..],
                        ]));
                    }
                }
            }
            sync_count(subs, counts, kind, &name);
        }
    }
}

/// Routes one frame from the backend: a message to its subscribers, or a confirmation.
/// Returns the subscriptions nobody holds any more (their subscribers were dropped),
/// for the caller to end on the backend.
fn dispatch(
    frame: Bytes,
    subs: &mut Subscribers,
    waiting: &mut Waiting,
    counts: &Counts,
) -> Vec<(Kind, Bytes)> {
    let Some((kind, name)) = crate::session::merge::pubsub_fields(&frame) else {
        return Vec::new();
    };
    let name = frame.slice_ref(name);
    let key = match kind {
        b"message" => Some((Kind::Channel, name)),
        b"pmessage" => Some((Kind::Pattern, name)),
        b"subscribe" | b"psubscribe" => {
            let kind = if kind == b"subscribe" {
                Kind::Channel
            } else {
                Kind::Pattern
            };
            let key = (kind, name);
            let (confirmed, rest): (Waiting, Waiting) = std::mem::take(waiting)
                .into_iter()
                .partition(|(k, _)| *k == key);
            *waiting = rest;
            for (_, done) in confirmed {
                let _ = done.send(());
            }
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
        for (id, (tx, client)) in entry.iter() {
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(frame.clone()) {
                evicted.push(*id);
                client.kill();
            }
        }
    }
    let mut emptied = Vec::new();
    let any_evicted = !evicted.is_empty();
    // A full queue means the subscriber does not keep up: it is dropped from every
    // subscription, so its queue closes and its session disconnects the client.
    for id in evicted {
        tracing::info!(
            client = id,
            "dropping a subscriber that does not read its messages"
        );
        metrics::counter!("respgate_clients_disconnected_total", "reason" => "pubsub_queue_full")
            .increment(1);
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
