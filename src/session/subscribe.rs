//! A client's subscriptions (SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE and their UNSUBSCRIBEs),
//! served by the shared [`PubSubHub`], with Redis's subscribed-mode rules (RESP2).
//!
//! As in Redis 7.0, the counts in (un)subscribe replies are per family: SUBSCRIBE /
//! PSUBSCRIBE count channels and patterns together, SSUBSCRIBE / SUNSUBSCRIBE count shard
//! channels; the client stays in subscribed mode while it has any of the three.

use super::route::{Confirmations, Route};
use super::{ClientState, SessionContext};
use crate::clients::ClientEntry;
use crate::commands::policy::{Channels, Class, Local, Row, Tx};
use crate::commands::CommandInfo;
use crate::protocol::refusal::{CrossSlotWhy, Refusal};
use crate::protocol::reply::{put_array_header, put_bulk};
use crate::protocol::Args;
use crate::pubsub::{Kind, PubSubHub};
use bytes::{Bytes, BytesMut};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a subscribed client has, and where its messages arrive.
pub struct Subscriptions {
    id: u64,
    client: Arc<ClientEntry>,
    hub: PubSubHub,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shards: BTreeSet<Bytes>,
    /// Weak: only the hub holds the queue open, so dropping this client there (it did
    /// not keep up) closes `rx`.
    tx: mpsc::WeakSender<Bytes>,
    /// Kept until the first subscription hands a strong sender to the hub.
    first: Option<mpsc::Sender<Bytes>>,
    pub rx: mpsc::Receiver<Bytes>,
}

impl Subscriptions {
    fn new(client: Arc<ClientEntry>, hub: PubSubHub, queue: usize) -> Subscriptions {
        let (tx, rx) = mpsc::channel(queue.max(1));
        Subscriptions {
            id: client.id,
            client,
            hub,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shards: BTreeSet::new(),
            tx: tx.downgrade(),
            first: Some(tx),
            rx,
        }
    }

    /// Whether a message frame (`message` / `pmessage` / `smessage`) still concerns this
    /// client: one
    /// already in its queue when it unsubscribed is dropped, as Redis sends none after
    /// the UNSUBSCRIBE confirmation.
    pub fn wants(&self, frame: &[u8]) -> bool {
        match crate::protocol::value::pubsub_fields(frame) {
            Some((b"message", channel)) => self.channels.contains(channel),
            Some((b"pmessage", pattern)) => self.patterns.contains(pattern),
            Some((b"smessage", channel)) => self.shards.contains(channel),
            _ => true,
        }
    }

    /// (channels, patterns, shard channels).
    pub fn counts(&self) -> [usize; 3] {
        [self.channels.len(), self.patterns.len(), self.shards.len()]
    }

    /// The count a (un)subscription reply of `kind` carries: shard channels are counted
    /// apart from channels and patterns, as in Redis 7.0.
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Channel | Kind::Pattern => self.channels.len() + self.patterns.len(),
            Kind::Shard => self.shards.len(),
        }
    }

    fn total(&self) -> usize {
        self.channels.len() + self.patterns.len() + self.shards.len()
    }

    fn set(&mut self, kind: Kind) -> &mut BTreeSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shards,
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for c in std::mem::take(&mut self.channels) {
            self.hub.unsubscribe(Kind::Channel, c, self.id);
        }
        for p in std::mem::take(&mut self.patterns) {
            self.hub.unsubscribe(Kind::Pattern, p, self.id);
        }
        for c in std::mem::take(&mut self.shards) {
            self.hub.unsubscribe(Kind::Shard, c, self.id);
        }
        // Messages the hub queued (and counted against the client's bytes) that nobody
        // will take now (UNSUBSCRIBE of the last channel, RESET): given back, or every
        // subscribe/unsubscribe cycle would leave its bytes counted for good. Closed
        // first, so a message published meanwhile fails to queue and is given back by
        // the hub.
        self.rx.close();
        while let Ok(m) = self.rx.try_recv() {
            self.client.output.take_message(m.len());
        }
    }
}

fn confirmation(kind: &str, name: Option<&[u8]>, count: usize, resp3: bool) -> Bytes {
    let mut out = BytesMut::new();
    if resp3 {
        out.extend_from_slice(b">3\r\n");
    } else {
        put_array_header(&mut out, 3);
    }
    put_bulk(&mut out, kind.as_bytes());
    match name {
        Some(n) => put_bulk(&mut out, n),
        // Redis's null: `_` in RESP3.
        None if resp3 => out.extend_from_slice(b"_\r\n"),
        None => out.extend_from_slice(b"$-1\r\n"),
    }
    out.extend_from_slice(format!(":{count}\r\n").as_bytes());
    out.freeze()
}

/// The hub's kind of a policy's channels.
pub fn kind(channels: Channels) -> Kind {
    match channels {
        Channels::Channel => Kind::Channel,
        Channels::Pattern => Kind::Pattern,
        Channels::Shard => Kind::Shard,
    }
}

/// Subscriptions and subscribed-mode rules (the policy row's `subscribed`); `None` lets
/// the command route on.
pub fn route(
    ctx: &SessionContext,
    client: &mut ClientState,
    info: &CommandInfo,
    row: Row,
    args: Args<'_>,
) -> Option<Route> {
    let entry = client.entry.clone();
    let resp3 = client.resp3;
    // RESP3 clients may run any command while subscribed (messages are pushes).
    let subscribed = client.subs.is_some() && !resp3;
    let route = match row.class {
        Class::Subscribe(channels) => subscribe(
            &mut client.subs,
            &entry,
            &ctx.pubsub,
            ctx.bounds.pubsub_queue,
            kind(channels),
            args,
            resp3,
        ),
        Class::Unsubscribe(channels) => unsubscribe(&mut client.subs, kind(channels), args, resp3),
        Class::Local(Local::Ping) if subscribed => ping(info, args),
        _ if subscribed && !row.subscribed => refuse(info, row),
        _ => return None,
    };
    let counts = client.subs.as_ref().map_or([0; 3], |s| s.counts());
    for (stored, n) in client.entry.subs.iter().zip(counts) {
        stored.store(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    Some(route)
}

/// Redis's refusal of other commands in subscribed mode.
pub fn refuse(info: &CommandInfo, row: Row) -> Route {
    let refused = Refusal::SubscribedMode(info.name.clone());
    // Redis words a refused EXEC as the transaction's abort (the reason without `ERR `).
    let refused = if row.class == Class::Transaction(Tx::Exec) {
        let why = refused.to_string();
        Refusal::ExecAbortBecause(why.strip_prefix("ERR ").unwrap_or(&why).to_string())
    } else {
        refused
    };
    Route::Reply(refused.reply())
}

/// PING in subscribed mode answers a push-style pair.
pub fn ping(info: &CommandInfo, args: Args<'_>) -> Route {
    if args.len() > 2 {
        return Route::Reply(crate::commands::replies::wrong_arity_reply(info));
    }
    let mut out = BytesMut::new();
    put_array_header(&mut out, 2);
    put_bulk(&mut out, b"pong");
    put_bulk(&mut out, if args.len() > 1 { args.get(1) } else { b"" });
    Route::Reply(out.freeze())
}

fn word(kind: Kind, subscribe: bool) -> &'static str {
    match (kind, subscribe) {
        (Kind::Channel, true) => "subscribe",
        (Kind::Pattern, true) => "psubscribe",
        (Kind::Shard, true) => "ssubscribe",
        (Kind::Channel, false) => "unsubscribe",
        (Kind::Pattern, false) => "punsubscribe",
        (Kind::Shard, false) => "sunsubscribe",
    }
}

/// Shard channels are keys: those of one SSUBSCRIBE / SUNSUBSCRIBE must share a slot, as
/// a cluster node requires.
fn cross_slot(kind: Kind, args: Args<'_>) -> Option<Route> {
    if kind != Kind::Shard || args.len() < 3 {
        return None;
    }
    let slot = crate::cluster::key_slot(args.get(1));
    args.iter()
        .skip(2)
        .any(|ch| crate::cluster::key_slot(ch) != slot)
        .then(|| Route::Reply(Refusal::CrossSlot(CrossSlotWhy::Plain).reply()))
}

/// SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE.
pub fn subscribe(
    subs: &mut Option<Box<Subscriptions>>,
    client: &Arc<ClientEntry>,
    hub: &PubSubHub,
    queue: usize,
    kind: Kind,
    args: Args<'_>,
    resp3: bool,
) -> Route {
    if let Some(refused) = cross_slot(kind, args) {
        return refused;
    }
    let subs = subs
        .get_or_insert_with(|| Box::new(Subscriptions::new(client.clone(), hub.clone(), queue)));
    let word = word(kind, true);
    let mut replies = Confirmations::new();
    for name in args.iter().skip(1) {
        let name = Bytes::copy_from_slice(name);
        let tx = subs.first.take().or_else(|| subs.tx.upgrade());
        let wait = match tx {
            Some(tx) if subs.set(kind).insert(name.clone()) => {
                Some(
                    subs.hub
                        .subscribe(kind, name.clone(), subs.client.clone(), tx),
                )
            }
            _ => None,
        };
        replies.push((
            wait,
            confirmation(word, Some(&name), subs.count(kind), resp3),
        ));
    }
    Route::Subscribed(replies)
}

/// UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE (all of that kind without arguments). Leaves
/// subscribed mode when nothing remains.
pub fn unsubscribe(
    subs: &mut Option<Box<Subscriptions>>,
    kind: Kind,
    args: Args<'_>,
    resp3: bool,
) -> Route {
    if let Some(refused) = cross_slot(kind, args) {
        return refused;
    }
    let word = word(kind, false);
    let Some(s) = subs.as_mut() else {
        let names: Vec<&[u8]> = args.iter().skip(1).collect();
        if names.is_empty() {
            return Route::Subscribed(vec![(None, confirmation(word, None, 0, resp3))]);
        }
        return Route::Subscribed(
            names
                .into_iter()
                .map(|n| (None, confirmation(word, Some(n), 0, resp3)))
                .collect(),
        );
    };
    let names: Vec<Bytes> = if args.len() > 1 {
        args.iter().skip(1).map(Bytes::copy_from_slice).collect()
    } else {
        s.set(kind).iter().cloned().collect()
    };
    let mut replies = Confirmations::new();
    if names.is_empty() {
        replies.push((None, confirmation(word, None, s.count(kind), resp3)));
    }
    for name in names {
        // The confirmation waits for the hub, so a PUBLISH the client sends after it
        // no longer counts the client.
        let wait = s
            .set(kind)
            .remove(&name)
            .then(|| s.hub.unsubscribe(kind, name.clone(), s.id));
        replies.push((wait, confirmation(word, Some(&name), s.count(kind), resp3)));
    }
    if s.total() == 0 {
        *subs = None;
    }
    Route::Subscribed(replies)
}
