//! A throw-away local Redis Cluster of real `redis-server` processes, for `respgate dev` and
//! respgate's integration tests.
//!
//! Its job: start masters and replicas on loopback, build the cluster by hand (no `redis-cli`, so
//! we control every step and its timeout), return only once the cluster is really ready, and give
//! tests levers (kill, pause, restart a node) plus a tiny blocking RESP2 client to look inside.
//!
//! It may touch: one temp dir (a subdirectory per node), loopback ports it checked were free, and
//! the processes it spawned. It must not: touch any other Redis or port, leave a process behind
//! (children get `PR_SET_PDEATHSIG` and are killed in `Drop`), or use the proxy's own code: the
//! tests check that code against this, so this must not share its bugs. That is also why it is a
//! crate of its own, not a module of respgate: it has its own [`key_slot`], and the production
//! proxy (`cargo build --no-default-features`) carries none of this process-spawning code.
//! It is plain synchronous std code so sync and async tests can both use it. With
//! [`DevClusterOptions::tls`] the cluster is TLS only (clients, bus, replication) and this
//! crate's own client speaks TLS through rustls' blocking stream.
//!
//! Files: [`DevCluster`]'s public levers (`cluster`), start-up (`bootstrap`: spawn, meet,
//! assign slots, wait for readiness), one node process (`node`, `process`: redis.conf and the
//! fork), what the cluster says about itself (`queries`), the blocking client (`client`).

mod bootstrap;
mod client;
mod cluster;
mod error;
mod node;
mod options;
mod process;
mod queries;
mod slot;

pub use client::Reply;
pub use cluster::DevCluster;
pub use error::DevClusterError;
pub use node::DevNode;
pub use options::{DevClusterOptions, DevTls};
pub use slot::{key_slot, SLOTS};

use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Redis Cluster puts its bus on `port + 10000`; both must be free.
pub(crate) const BUS_OFFSET: u16 = 10000;
pub(crate) const POLL: Duration = Duration::from_millis(20);
pub(crate) const SPAWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Generous: the fast path takes ~2 s, but CI machines are sometimes very busy.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
