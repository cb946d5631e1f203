//! respgate: a cluster-aware Redis proxy. See docs/ARCHITECTURE.md for the map.
//!
//! Data path: [`server`] accepts a client, a [`session`] frames its requests
//! ([`protocol`]), finds their keys ([`commands`]) and their slot's node ([`cluster`]),
//! and queues them on that node's shared [`backend`] link; replies come back as slices of
//! the backend's read buffer and are written to the client in request order.
//!
//! Only what the binary (src/main.rs), tests, benches and examples use is `pub`; the rest
//! is `pub(crate)`. The local test cluster is not here: it is the `devcluster` crate
//! (devcluster/), used by `respgate dev` behind the default `dev` feature.

// The docs are for respgate's developers (`cargo doc --document-private-items`): they link
// to crate-private items on purpose.
#![allow(rustdoc::private_intra_doc_links)]

pub mod acl;
pub mod admin;
pub(crate) mod admission;
pub(crate) mod audit;
pub mod backend;
pub(crate) mod budget;
pub(crate) mod clients;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod guards;
pub mod loader;
pub mod logging;
pub(crate) mod pause;
pub mod protocol;
pub(crate) mod pubsub;
pub(crate) mod reload;
pub(crate) mod scripts;
pub mod server;
pub(crate) mod session;
pub(crate) mod shutdown;
pub(crate) mod tls;
pub mod workers;
