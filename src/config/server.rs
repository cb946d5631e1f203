//! `[server]`: the client-facing side, with its defaults (Redis's where Redis has one)
//! and the checks it can make alone.

use super::{invalid, Invalid};
use serde::Deserialize;

/// The client-facing side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the plain-TCP listener; `""` disables it (TLS only).
    pub listen: String,
    /// Connections beyond this get `-ERR max number of clients reached` and are closed.
    pub max_clients: usize,
    /// Largest single argument (Redis's `proto-max-bulk-len`).
    pub max_bulk_bytes: usize,
    /// Largest whole request; checked from the headers, before the payload is buffered.
    pub max_request_bytes: usize,
    /// Replies a client may have outstanding; past it respgate stops reading that
    /// client's requests until replies drain (back-pressure, not an error).
    pub max_pending_replies: usize,
    /// Close clients idle this long (0 = never, like Redis's `timeout 0`).
    pub idle_timeout_secs: u64,
    /// A client that does not read its replies for this long is disconnected.
    pub output_stall_timeout_secs: u64,
    /// On SIGTERM / Ctrl-C, how long in-flight replies may take before connections close.
    pub shutdown_grace_secs: u64,
    /// Worker threads, each a single-threaded runtime serving its share of the clients
    /// with its own links to every node (0: one per core; 1: one thread for everything,
    /// the cheapest per request when the proxy shares a small machine). See
    /// the workers module.
    pub worker_threads: usize,
    /// Backend connections owned by one client, for blocking commands (BLPOP, ...) and
    /// WATCH, for all clients together; past it, such a command gets an error instead
    /// of a connection.
    pub max_dedicated_connections: usize,
    /// The same, per user (all its clients together), unless the user sets its own
    /// `max_dedicated_connections` in `[[auth.users]]`: no tenant can take every place.
    pub max_dedicated_per_user: usize,
    /// Messages a subscriber may have waiting; one that falls further behind is
    /// disconnected (Redis's pubsub output-buffer limit, counted in messages).
    pub pubsub_queue_messages: usize,
    /// Bytes of messages a subscriber may have waiting; one that falls further behind is
    /// disconnected (Redis's `client-output-buffer-limit pubsub 32mb` hard limit).
    pub pubsub_queue_bytes: usize,
    /// Bytes of replies a client may have waiting (handed over by the nodes, not yet
    /// written to its socket): past it respgate stops reading its requests
    /// (back-pressure); past twice it the client is disconnected, as Redis does past
    /// its `client-output-buffer-limit` hard limit. Replies under 4 KiB are not counted
    /// (`max_pending_replies` bounds those).
    pub max_pending_reply_bytes: usize,
    /// One budget for every client's waiting replies and messages and for read buffers
    /// grown beyond 64 KiB for large requests. When it is spent, a request needing more
    /// buffer gets `-ERR respgate: client buffers are full (server.max_client_buffer_bytes
    /// = N); retry later` and the connection closes, and the clients holding the most
    /// are disconnected until the rest fits (Redis 7's `maxmemory-clients`).
    pub max_client_buffer_bytes: usize,
    /// Bytes of commands one transaction may queue between MULTI and EXEC (respgate's
    /// own bound: Redis counts them only in `maxmemory-clients`). The command crossing it
    /// gets `-ERR respgate: transaction longer than server.max_transaction_bytes (N
    /// bytes)` and EXEC answers EXECABORT. Queued commands are also taken from
    /// `max_client_buffer_bytes` until EXEC, DISCARD or RESET.
    pub max_transaction_bytes: usize,
    /// Longest client name (CLIENT SETNAME, HELLO ... SETNAME), kept for CLIENT LIST:
    /// respgate's own bound (Redis has none).
    pub max_client_name_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:6380".into(),
            max_clients: 10_000,
            max_bulk_bytes: 512 * 1024 * 1024,
            max_request_bytes: 512 * 1024 * 1024,
            max_pending_replies: 1024,
            idle_timeout_secs: 0,
            output_stall_timeout_secs: 60,
            shutdown_grace_secs: 10,
            worker_threads: 0,
            max_dedicated_connections: 1000,
            max_dedicated_per_user: 250,
            pubsub_queue_messages: 10_000,
            pubsub_queue_bytes: 32 * 1024 * 1024,
            max_pending_reply_bytes: 32 * 1024 * 1024,
            max_client_buffer_bytes: 128 * 1024 * 1024,
            max_transaction_bytes: 64 * 1024 * 1024,
            max_client_name_bytes: 4096,
        }
    }
}

impl ServerConfig {
    /// `listen` is an address, or `""` when `[tls]` gives the only listener.
    pub(super) fn check_listen(&self, has_tls: bool) -> Result<(), Invalid> {
        if self.listen.is_empty() {
            if !has_tls {
                return Err(invalid(
                    "server.listen",
                    "\"\" disables the plain listener, but there is no [tls] listener either: \
                     configure at least one",
                ));
            }
        } else if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server.listen",
                format!(
                    "{:?} is not an address like \"127.0.0.1:6380\"",
                    self.listen
                ),
            ));
        }
        Ok(())
    }

    /// No size or count may be 0 (`cluster.connections_per_node` is checked in the same
    /// list, with the same message), and a request must stay below 4 GiB.
    pub(super) fn check_counts(&self, connections_per_node: usize) -> Result<(), Invalid> {
        for (key, v) in [
            ("server.max_clients", self.max_clients),
            ("server.max_bulk_bytes", self.max_bulk_bytes),
            ("server.max_request_bytes", self.max_request_bytes),
            ("server.max_pending_replies", self.max_pending_replies),
            ("server.pubsub_queue_bytes", self.pubsub_queue_bytes),
            (
                "server.max_pending_reply_bytes",
                self.max_pending_reply_bytes,
            ),
            (
                "server.max_client_buffer_bytes",
                self.max_client_buffer_bytes,
            ),
            ("server.max_transaction_bytes", self.max_transaction_bytes),
            ("server.max_client_name_bytes", self.max_client_name_bytes),
            ("cluster.connections_per_node", connections_per_node),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.max_request_bytes > u32::MAX as usize - 1 {
            return Err(invalid(
                "server.max_request_bytes",
                format!("must be below 4 GiB, got {}", self.max_request_bytes),
            ));
        }
        Ok(())
    }
}
