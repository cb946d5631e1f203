//! The control-plane connection: one command to one node, answer decoded as a value.
//!
//! Used for discovery and the command table, never per client request; it opens a fresh
//! connection each time (a refresh every few seconds does not need pooling) and decodes
//! with redis-protocol, since here values matter more than nanoseconds.

use crate::backend::LinkOptions;
use bytes::BytesMut;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why a control-plane query failed. Each names the node (for logs); discovery branches
/// on [`ControlError::NodeError`] (an old server without `CLUSTER SHARDS`).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The node did not answer in time.
    #[error("{addr}: no answer within {ms} ms")]
    Timeout {
        /// The node.
        addr: String,
        /// The deadline.
        ms: u128,
    },
    /// Connecting, writing or reading failed.
    #[error("{addr}: {source}")]
    Io {
        /// The node.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The node refused respgate's AUTH.
    #[error("{addr}: AUTH refused: {reply}")]
    AuthRefused {
        /// The node.
        addr: String,
        /// Its error reply.
        reply: String,
    },
    /// The node answered the command with an error.
    #[error("{addr}: {command} answered {reply}")]
    NodeError {
        /// The node.
        addr: String,
        /// The command sent.
        command: String,
        /// Its error reply.
        reply: String,
    },
    /// The reply is not RESP2.
    #[error("{addr}: undecodable reply: {why}")]
    Undecodable {
        /// The node.
        addr: String,
        /// The decoder's error.
        why: String,
    },
    /// The node closed the connection before answering.
    #[error("{addr}: connection closed")]
    Closed {
        /// The node.
        addr: String,
    },
}

impl ControlError {
    /// The node does not know the subcommand (`CLUSTER SHARDS` before Redis 7: 7.x says
    /// `unknown subcommand`, 6.x `Unknown subcommand or wrong number of arguments`).
    pub fn is_unknown_subcommand(&self) -> bool {
        matches!(self, ControlError::NodeError { reply, .. }
            if reply.to_ascii_lowercase().contains("unknown subcommand"))
    }
}

/// Sends `args` to `addr` (after `AUTH` when configured) and returns the decoded reply and
/// its raw bytes.
pub async fn query(
    addr: &str,
    args: &[&str],
    opts: &LinkOptions,
) -> Result<(OwnedFrame, bytes::Bytes), ControlError> {
    // Short on purpose: a paused or overloaded node must not hold up discovery, which
    // moves on to the next candidate.
    query_within(addr, args, opts, opts.connect_timeout * 2).await
}

/// [`query`] with a deadline of the caller's: SCRIPT KILL waits for a busy node, which
/// reads other connections only once its script ran `busy-reply-threshold`.
pub async fn query_within(
    addr: &str,
    args: &[&str],
    opts: &LinkOptions,
    deadline: std::time::Duration,
) -> Result<(OwnedFrame, bytes::Bytes), ControlError> {
    tokio::time::timeout(deadline, query_inner(addr, args, opts))
        .await
        .map_err(|_| ControlError::Timeout {
            addr: addr.to_string(),
            ms: deadline.as_millis(),
        })?
}

/// A fresh connection to `addr` as respgate's node user, with `command` written after
/// the login (`true`: a login was sent, its answer comes first).
pub(super) async fn open_sending(
    addr: &str,
    opts: &LinkOptions,
    command: &[u8],
) -> Result<(crate::tls::BackendStream, bool), ControlError> {
    let io = |source| ControlError::Io {
        addr: addr.to_string(),
        source,
    };
    let mut stream = crate::tls::connect_node(addr, opts.tls.as_ref(), opts.connect_timeout)
        .await
        .map_err(io)?;
    let mut out = BytesMut::new();
    let auth = opts.auth_command();
    if let Some(auth) = &auth {
        out.extend_from_slice(auth);
    }
    out.extend_from_slice(command);
    stream.write_all(&out).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    Ok((stream, auth.is_some()))
}

async fn query_inner(
    addr: &str,
    args: &[&str],
    opts: &LinkOptions,
) -> Result<(OwnedFrame, bytes::Bytes), ControlError> {
    let io = |source| ControlError::Io {
        addr: addr.to_string(),
        source,
    };
    let (mut stream, authenticated) =
        open_sending(addr, opts, &crate::protocol::reply::command(args.iter())).await?;
    let mut skip = usize::from(authenticated);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match decode(&buf) {
            Ok(Some((frame, len))) => {
                let raw = buf.split_to(len).freeze();
                if skip > 0 {
                    skip -= 1;
                    if let OwnedFrame::Error(e) = frame {
                        return Err(ControlError::AuthRefused {
                            addr: addr.to_string(),
                            reply: e,
                        });
                    }
                    continue;
                }
                if let OwnedFrame::Error(e) = &frame {
                    return Err(ControlError::NodeError {
                        addr: addr.to_string(),
                        command: args.join(" "),
                        reply: e.clone(),
                    });
                }
                return Ok((frame, raw));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(ControlError::Undecodable {
                    addr: addr.to_string(),
                    why: format!("{e:?}"),
                })
            }
        }
        let n = stream.read_buf(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(ControlError::Closed {
                addr: addr.to_string(),
            });
        }
    }
}

/// Helpers to walk decoded frames without a page of `match`.
pub trait FrameExt {
    fn as_array(&self) -> Option<&[OwnedFrame]>;
    fn as_text(&self) -> Option<&str>;
    fn as_int(&self) -> Option<i64>;
    /// Looks `key` up in a RESP2 flattened map (`[k1, v1, k2, v2, ...]`).
    fn field(&self, key: &str) -> Option<&OwnedFrame>;
}

impl FrameExt for OwnedFrame {
    fn as_array(&self) -> Option<&[OwnedFrame]> {
        match self {
            OwnedFrame::Array(a) => Some(a),
            _ => None,
        }
    }

    fn as_text(&self) -> Option<&str> {
        match self {
            OwnedFrame::SimpleString(b) | OwnedFrame::BulkString(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            OwnedFrame::Integer(i) => Some(*i),
            other => other.as_text()?.parse().ok(),
        }
    }

    fn field(&self, key: &str) -> Option<&OwnedFrame> {
        let a = self.as_array()?;
        a.chunks(2)
            .find(|kv| kv.len() == 2 && kv[0].as_text() == Some(key))
            .map(|kv| &kv[1])
    }
}

#[cfg(test)]
mod tests {
    use super::ControlError;

    #[test]
    fn an_old_server_without_cluster_shards_is_told_apart_by_type() {
        let old = ControlError::NodeError {
            addr: "n:1".into(),
            command: "CLUSTER SHARDS".into(),
            reply: "ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP.".into(),
        };
        assert!(old.is_unknown_subcommand());
        assert_eq!(
            old.to_string(),
            "n:1: CLUSTER SHARDS answered ERR unknown subcommand 'SHARDS'. Try CLUSTER HELP."
        );
        let redis6 = ControlError::NodeError {
            addr: "n:1".into(),
            command: "CLUSTER SHARDS".into(),
            reply: "ERR Unknown subcommand or wrong number of arguments for 'SHARDS'. Try CLUSTER HELP."
                .into(),
        };
        assert!(
            redis6.is_unknown_subcommand(),
            "Redis 6.x words it with a capital U"
        );
        let closed = ControlError::Closed { addr: "n:1".into() };
        assert!(!closed.is_unknown_subcommand());
        assert_eq!(closed.to_string(), "n:1: connection closed");
        let auth = ControlError::AuthRefused {
            addr: "n:1".into(),
            reply: "ERR unknown subcommand".into(),
        };
        assert!(
            !auth.is_unknown_subcommand(),
            "only a reply to the command itself"
        );
    }
}
