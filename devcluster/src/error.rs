//! Errors, with enough context (log tail, last observed state) to debug a failed test from its
//! output alone.

use std::io;
use std::net::SocketAddr;

use crate::client::Reply;

/// observed state) to debug a failed test from its output alone.
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    #[error("redis-server not found on PATH: apt-get install -y redis-server")]
    RedisServerMissing,
    /// Bad options, or no free ports.
    #[error("dev cluster: {0}")]
    Setup(String),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// Redis answered with an error or an unexpected reply.
    #[error("{addr}: `{command}` failed: {message}")]
    Command {
        addr: SocketAddr,
        command: String,
        message: String,
    },
    /// A node failed to start, died, or never reached the awaited state.
    #[error("redis-server {addr}: {problem}\n--- {addr} log tail ---\n{log_tail}")]
    Node {
        addr: SocketAddr,
        problem: String,
        log_tail: String,
    },
}

pub(crate) type Result<T, E = DevClusterError> = std::result::Result<T, E>;
/// "Not ready yet", with the node and reason to report if it never becomes ready.
pub(crate) type Pending = (SocketAddr, String);

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> DevClusterError {
    let context = context.into();
    move |source| DevClusterError::Io { context, source }
}

pub(crate) fn pending(a: SocketAddr) -> impl FnOnce(DevClusterError) -> Pending {
    move |e| (a, e.to_string())
}

pub(crate) fn protocol_error(addr: SocketAddr, command: &str, reply: &Reply) -> DevClusterError {
    let (command, message) = (command.to_owned(), format!("unexpected reply {reply:?}"));
    DevClusterError::Command {
        addr,
        command,
        message,
    }
}
