//! MONITOR on one node: a connection of its own (as respgate's own node user, like the
//! control plane's), `MONITOR` sent once, then the node's lines read one by one.
//!
//! The node writes each command it runs as one RESP simple string
//! (`+1700000000.123456 [0 10.0.0.5:53422] "set" "k" "v"\r\n`). Arguments are quoted
//! and escaped by the node (`sdscatrepr`), so a line never holds a raw CR or LF: lines
//! are read up to `\n`, not decoded as RESP. Dropping the [`NodeMonitor`] closes the
//! connection, which is how the node stops monitoring for it.

use super::control::ControlError;
use crate::backend::LinkOptions;
use crate::tls::BackendStream;
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};

/// One node's MONITOR connection, past the node's `+OK`.
pub struct NodeMonitor {
    addr: String,
    stream: BufReader<BackendStream>,
}

/// Connects to `addr`, authenticates as respgate and sends `MONITOR`; done once the
/// node answered `+OK` (within twice the connect timeout), so every command the node
/// runs after that is in the stream.
pub async fn open(addr: &str, opts: &LinkOptions) -> Result<NodeMonitor, ControlError> {
    let deadline = opts.connect_timeout * 2;
    tokio::time::timeout(deadline, open_inner(addr, opts))
        .await
        .map_err(|_| ControlError::Timeout {
            addr: addr.to_string(),
            ms: deadline.as_millis(),
        })?
}

async fn open_inner(addr: &str, opts: &LinkOptions) -> Result<NodeMonitor, ControlError> {
    let (stream, authenticated) =
        super::control::open_sending(addr, opts, b"*1\r\n$7\r\nMONITOR\r\n").await?;
    let mut node = NodeMonitor {
        addr: addr.to_string(),
        stream: BufReader::new(stream),
    };
    if authenticated {
        let reply = node.answer().await?;
        if let Some(e) = reply.strip_prefix('-') {
            return Err(ControlError::AuthRefused {
                addr: addr.to_string(),
                reply: e.to_string(),
            });
        }
    }
    let reply = node.answer().await?;
    if reply != "+OK" {
        return Err(ControlError::NodeError {
            addr: addr.to_string(),
            command: "MONITOR".into(),
            reply: reply.trim_start_matches('-').to_string(),
        });
    }
    Ok(node)
}

/// The longest handshake answer read (`+OK`, or an error line).
const HANDSHAKE_LINE: usize = 64 * 1024;

impl NodeMonitor {
    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The next line as the node wrote it (with its `\r\n`); `None` once the node closed
    /// the connection. A line longer than `max` bytes (a command with huge arguments) is
    /// an error: it is never held whole.
    pub async fn next_line(&mut self, max: usize) -> std::io::Result<Option<Bytes>> {
        use tokio::io::AsyncReadExt as _;
        let mut line = Vec::with_capacity(128);
        let limited = (&mut self.stream).take(max as u64);
        tokio::pin!(limited);
        match limited.read_until(b'\n', &mut line).await? {
            0 => Ok(None),
            _ if !line.ends_with(b"\n") => Err(std::io::Error::other(format!(
                "a MONITOR line over {max} bytes"
            ))),
            _ => Ok(Some(Bytes::from(line))),
        }
    }

    /// One short reply of the handshake, without its line end.
    async fn answer(&mut self) -> Result<String, ControlError> {
        let line = self
            .next_line(HANDSHAKE_LINE)
            .await
            .map_err(|source| ControlError::Io {
                addr: self.addr.clone(),
                source,
            })?
            .ok_or_else(|| ControlError::Closed {
                addr: self.addr.clone(),
            })?;
        Ok(String::from_utf8_lossy(&line).trim_end().to_string())
    }
}
