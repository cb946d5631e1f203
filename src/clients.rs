//! respgate's own clients, as CLIENT LIST / CLIENT INFO / CLIENT KILL show and act on
//! them: what an operator hunting a bad client needs (address, name, age, idle time,
//! last command), about the clients of the proxy rather than the proxy's backend links.
//!
//! Per request a session only stores its command name into four atomics; the registry's
//! mutex is taken when a client connects, disconnects or changes its name, and by the
//! CLIENT commands themselves.

use crate::budget::{ClientBuffers, OutputBytes, OutputLimits, Overflow};
use crate::shutdown::{Shutdown, ShutdownListener, STOP};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One connected client.
pub struct ClientEntry {
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub connected_at: Instant,
    name: Mutex<Option<Bytes>>,
    /// The authenticated user's name (set on AUTH / HELLO AUTH only).
    user: Mutex<Arc<str>>,
    /// The last command's name, up to 32 bytes, zero-padded (a diagnostic: a torn read
    /// during an update shows a mix of two names, never garbage beyond them).
    cmd: [AtomicU64; 4],
    /// Milliseconds after `connected_at` of the last request.
    last_active_ms: AtomicU64,
    /// Subscriptions (channels, patterns, shard channels), for `sub=` / `psub=` / `ssub=`.
    pub subs: [AtomicU64; 3],
    /// The protocol the client speaks (2, or 3 after HELLO 3), for `resp=`.
    pub resp: std::sync::atomic::AtomicU8,
    /// The client's own backend connections (node, the node's CLIENT ID for it), for
    /// CLIENT UNBLOCK. Written when one is opened (rare).
    pub dedicated: Mutex<Vec<(Arc<str>, Arc<std::sync::atomic::AtomicI64>)>>,
    /// Reply and message bytes waiting for this client (the byte budgets).
    pub output: Arc<OutputBytes>,
    kill: Arc<Shutdown>,
}

impl ClientEntry {
    /// Records the command being run.
    #[inline]
    pub fn set_cmd(&self, name: &str) {
        let mut buf = [0u8; 32];
        let n = name.len().min(32);
        buf[..n].copy_from_slice(&name.as_bytes()[..n]);
        for (i, slot) in self.cmd.iter().enumerate() {
            let word = u64::from_le_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap());
            slot.store(word, Ordering::Relaxed);
        }
    }

    fn cmd(&self) -> String {
        let mut buf = Vec::with_capacity(32);
        for slot in &self.cmd {
            buf.extend_from_slice(&slot.load(Ordering::Relaxed).to_le_bytes());
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        match end {
            0 => "NULL".into(),
            n => String::from_utf8_lossy(&buf[..n]).into_owned(),
        }
    }

    /// Marks the client active at `now`.
    #[inline]
    pub fn touch(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.connected_at).as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    pub fn set_name(&self, name: Option<Bytes>) {
        *self.name.lock().unwrap_or_else(|p| p.into_inner()) = name;
    }

    pub fn set_user(&self, user: Arc<str>) {
        *self.user.lock().unwrap_or_else(|p| p.into_inner()) = user;
    }

    pub fn user(&self) -> Arc<str> {
        self.user.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn name(&self) -> Option<Bytes> {
        self.name.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The CLIENT LIST / CLIENT INFO line: Redis 7.0's fields in its order (tools parse
    /// them by name, some by position). Buffers are respgate's own for this client:
    /// `omem` and `tot-mem` the reply bytes waiting for it; respgate keeps no per-client
    /// query buffer, argv or reply-block figures, so those are 0, and `obl`/`oll` (the
    /// reply buffer's and list's lengths) 0.
    pub fn info_line(&self, in_multi: Option<usize>) -> String {
        let name = self
            .name()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .unwrap_or_default();
        let age = self.connected_at.elapsed();
        let idle_ms =
            (age.as_millis() as u64).saturating_sub(self.last_active_ms.load(Ordering::Relaxed));
        let [sub, psub, ssub] = [0, 1, 2].map(|i| self.subs[i].load(Ordering::Relaxed));
        let flags = if sub + psub + ssub > 0 {
            "P"
        } else if in_multi.is_some() {
            "x"
        } else {
            "N"
        };
        let multi = in_multi.map_or(-1, |n| n as i64);
        let omem = self.output.held();
        format!(
            "id={} addr={} laddr={} fd=-1 name={name} age={} idle={} flags={flags} db=0 sub={sub} psub={psub} ssub={ssub} multi={multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem={omem} tot-mem={omem} events=r cmd={} user={} redir=-1 resp={}\n",
            self.id,
            self.peer,
            self.local,
            age.as_secs(),
            idle_ms / 1000,
            self.cmd(),
            self.user(),
            self.resp.load(Ordering::Relaxed),
        )
    }

    /// Disconnects this client (its session ends at its next loop pass).
    pub fn kill(&self) {
        self.kill.raise(STOP);
    }
}

/// Every connected client.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
}

impl ClientRegistry {
    /// Registers a client; the listener tells its session when it is killed.
    pub fn register(
        &self,
        id: u64,
        peer: SocketAddr,
        local: SocketAddr,
        connected_at: Instant,
        limits: OutputLimits,
        process: &Arc<ClientBuffers>,
    ) -> (Arc<ClientEntry>, ShutdownListener) {
        let kill = Shutdown::new();
        let listener = kill.listen();
        let output = Arc::new(OutputBytes::new(limits, process.clone(), kill.clone()));
        let entry = Arc::new(ClientEntry {
            id,
            peer,
            local,
            connected_at,
            name: Mutex::new(None),
            user: Mutex::new(Arc::from("default")),
            cmd: Default::default(),
            last_active_ms: AtomicU64::new(0),
            subs: Default::default(),
            resp: std::sync::atomic::AtomicU8::new(2),
            dedicated: Mutex::new(Vec::new()),
            output,
            kill,
        });
        self.lock().insert(id, entry.clone());
        (entry, listener)
    }

    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// All clients, by id.
    pub fn all(&self) -> Vec<Arc<ClientEntry>> {
        self.lock().values().cloned().collect()
    }

    /// The process is over `server.max_client_buffer_bytes`: disconnects the clients
    /// holding the most until what they hold covers the excess (Redis 7's client
    /// eviction under `maxmemory-clients`). Runs off the request path, when the budget
    /// is crossed.
    pub fn evict_largest(&self, process: &ClientBuffers) {
        let excess = process.excess();
        if excess == 0 {
            return;
        }
        let mut holders: Vec<(usize, Arc<ClientEntry>)> = self
            .all()
            .into_iter()
            .map(|c| (c.output.holding(), c))
            .filter(|(held, c)| *held > 0 && c.output.overflow().is_none())
            .collect();
        holders.sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
        let mut freed = 0;
        for (held, client) in holders {
            if freed >= excess {
                break;
            }
            tracing::warn!(
                client = client.id,
                peer = %client.peer,
                held_bytes = held,
                limit = process.limit(),
                "closing the client holding the most buffer: server.max_client_buffer_bytes is spent"
            );
            metrics::counter!("respgate_clients_disconnected_total", "reason" => "max_client_buffer_bytes")
                .increment(1);
            client.output.close(Overflow::Process);
            freed += held;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ClientEntry>>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}
