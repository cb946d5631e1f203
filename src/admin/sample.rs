//! Gauges read at scrape time: what respgate holds right now, sampled from the atomics
//! the data path keeps anyway, just before `/metrics` renders.
//!
//! **Why at scrape time.** The data path already counts these (the process byte budget,
//! connected clients, each node's connected links) in atomics it needs for itself;
//! copying them into gauges per request or per connection would add a registry lookup
//! where none is needed, and a gauge moved by `increment`/`decrement` breaks once the
//! recorder expires it as idle (a new one starts at 0). Setting each gauge from its atomic
//! when Prometheus asks is exact at the moment it matters and also marks it fresh, so the
//! recorder's idle timeout ([`super::recorder`]) never drops a gauge that is still true.
//!
//! | gauge | from |
//! |---|---|
//! | `respgate_connected_clients` | the sessions alive (the same count INFO shows) |
//! | `respgate_client_buffer_bytes` | the process byte budget in use (`budget::ClientBuffers`) |
//! | `respgate_client_buffer_limit_bytes` | `server.max_client_buffer_bytes` |
//! | `respgate_backend_links_connected{addr}` | each node's shared links connected now |
//! | `respgate_covered_slots` | the slots the current topology assigns |
//! | `respgate_auth_lockout_entries` | addresses and users the login lockout tracks |

use super::AdminState;

/// Sets every sampled gauge from its source.
pub(super) fn sample(state: &AdminState) {
    metrics::gauge!("respgate_connected_clients").set((state.clients)() as f64);
    let buffers = &state.client_buffers;
    metrics::gauge!("respgate_client_buffer_bytes").set(buffers.used() as f64);
    metrics::gauge!("respgate_client_buffer_limit_bytes").set(buffers.limit() as f64);
    metrics::gauge!("respgate_auth_lockout_entries").set(state.security.lockout.tracked() as f64);
    let Some(topo) = state.cluster.topology().clone() else {
        return;
    };
    metrics::gauge!("respgate_covered_slots").set(topo.layout().covered_slots() as f64);
    for node in topo.nodes() {
        metrics::gauge!("respgate_backend_links_connected", "addr" => node.addr().to_string())
            .set(node.links_connected() as f64);
    }
}

/// Help texts for the exporter (idempotent).
pub(super) fn describe() {
    let help = [
        ("respgate_connected_clients", "Clients connected now."),
        (
            "respgate_client_buffer_bytes",
            "Bytes of client buffers held now, counted against server.max_client_buffer_bytes.",
        ),
        (
            "respgate_client_buffer_limit_bytes",
            "server.max_client_buffer_bytes: the process-wide budget for client buffers.",
        ),
        (
            "respgate_backend_links_connected",
            "Connections open to the node on respgate's shared links (0: the node is unreachable or not used yet).",
        ),
        (
            "respgate_covered_slots",
            "Slots the cluster assigns in respgate's current topology.",
        ),
    ];
    for (name, text) in help {
        metrics::describe_gauge!(name, text);
    }
}
