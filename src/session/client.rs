//! One client as commands see it: who it is ([`ClientMeta`]) and the state its commands
//! change ([`ClientState`]: a transaction being queued, subscriptions, CLIENT REPLY,
//! who it logged in as, WATCH, read-your-writes). Routing and local answers get it by
//! `&mut`; the session's I/O and reply pipeline never look inside except to log.

use super::{auth, subscribe};
use crate::clients;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Who the client is, for CLIENT INFO / ID and logs.
pub struct ClientMeta {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub connected_at: Instant,
    /// Connected through the TLS listener.
    pub tls: bool,
    /// The name a verified client certificate stands for (its CN or SAN, per `[tls]
    /// cert_user`); `None` without TLS or without a client certificate.
    pub cert_identity: Option<String>,
    /// The client presented a certificate the TLS listener verified.
    pub client_cert: bool,
}

/// Per-connection state that commands can change.
pub struct ClientState {
    pub meta: ClientMeta,
    /// Commands queued since MULTI.
    pub tx: Option<Transaction>,
    /// Channels and patterns subscribed to (subscribed mode while `Some`).
    pub subs: Option<Box<subscribe::Subscriptions>>,
    /// MONITOR's stream (monitor mode while `Some`).
    pub monitor: Option<Box<super::monitor::Monitor>>,
    /// This client in the registry CLIENT LIST reads.
    pub entry: Arc<clients::ClientEntry>,
    /// The client said HELLO 3: replies in RESP3.
    pub resp3: bool,
    /// The slot of the keys WATCHed on the client's pinned connection.
    pub watch_slot: Option<u16>,
    /// The identity that pinned connection runs as (the user's script identity at
    /// WATCH, so a script queued in the transaction runs as the caller; kept across a
    /// later AUTH, as the WATCH itself is).
    pub watch_identity: Option<Arc<crate::backend::NodeIdentity>>,
    /// CLIENT REPLY.
    pub reply: ReplyMode,
    /// Who the client authenticated as.
    pub auth: auth::SessionAuth,
    /// The guards as this session last read them.
    pub guards: crate::guards::GuardCache,
    /// Read-your-writes: per shard master, this client's writes in flight and when the
    /// last one was answered (ms, `replicas::now_ms`).
    pub ryw: Vec<RywEntry>,
}

/// One shard master's read-your-writes state for a client.
pub struct RywEntry {
    /// The master, by its `Arc<Node>` address.
    pub master: usize,
    pub in_flight: u32,
    pub answered_ms: u64,
}

/// CLIENT REPLY's state, as the session applies it to each request's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// The CLIENT REPLY SKIP request itself (no reply), then the next one.
    SkipThis,
    SkipNext,
}

/// A transaction being queued: sent as one job (`MULTI`, the commands, `EXEC`) to the
/// master of its slot when EXEC arrives, so no other client's request can come between.
#[derive(Default)]
pub struct Transaction {
    pub queued: Vec<Bytes>,
    /// The slot of the keys queued so far (all must share it, as in Redis Cluster).
    pub slot: Option<u16>,
    /// A queued command was refused: EXEC answers EXECABORT.
    pub aborted: bool,
    /// A queued script runs as this identity: the whole transaction does.
    pub run_as: Option<Arc<crate::backend::NodeIdentity>>,
    /// The TTL policy's EXPIREs for the covered keys written, sent before EXEC.
    pub expires: crate::guards::ttl::PendingExpires,
    /// The bytes of `queued`, taken from the process budget (given back when the
    /// transaction is dropped).
    pub charge: Option<crate::budget::Charge>,
}

impl ClientState {
    /// The CLIENT INFO line.
    pub fn info_line(&self) -> String {
        self.entry
            .info_line(self.tx.as_ref().map(|t| t.queued.len()))
    }

    /// A refused command inside MULTI: EXEC will answer EXECABORT.
    pub fn abort_transaction(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            tx.aborted = true;
        }
    }

    /// CLIENT SETNAME / HELLO SETNAME / RESET. The name lives in the registry entry,
    /// where CLIENT LIST reads it too.
    pub fn set_name(&mut self, name: Option<Bytes>) {
        self.entry.set_name(name);
    }
}
