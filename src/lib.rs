//! respgate: a cluster-aware Redis proxy. See docs/ARCHITECTURE.md for the map.
//!
//! Data path: [`server`] accepts a client, a [`session`] frames its requests
//! ([`protocol`]), finds their keys ([`commands`]) and their slot's node ([`cluster`]),
//! and queues them on that node's shared [`backend`] link; replies come back as slices of
//! the backend's read buffer and are written to the client in request order.
pub mod acl;
pub mod admission;
pub mod audit;
pub mod backend;
pub mod budget;
pub mod clients;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod guards;
pub mod loader;
pub mod protocol;
pub mod pubsub;
pub mod reload;
pub mod scripts;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod tls;
pub mod workers;
