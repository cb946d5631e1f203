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

/// Sends `args` to `addr` (after `AUTH` when configured) and returns the decoded reply and
/// its raw bytes. Errors are phrased for logs: they name the node.
pub async fn query(
    addr: &str,
    args: &[&str],
    opts: &LinkOptions,
) -> Result<(OwnedFrame, bytes::Bytes), String> {
    // Short on purpose: a paused or overloaded node must not hold up discovery, which
    // moves on to the next candidate.
    let deadline = opts.connect_timeout * 2;
    tokio::time::timeout(deadline, query_inner(addr, args, opts))
        .await
        .map_err(|_| format!("{addr}: no answer within {} ms", deadline.as_millis()))?
}

async fn query_inner(
    addr: &str,
    args: &[&str],
    opts: &LinkOptions,
) -> Result<(OwnedFrame, bytes::Bytes), String> {
    let mut stream = crate::tls::connect_node(addr, opts.tls.as_ref(), opts.connect_timeout)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let mut out = BytesMut::new();
    let mut skip = 0;
    if let Some(auth) = opts.auth_command() {
        out.extend_from_slice(&auth);
        skip = 1;
    }
    out.extend_from_slice(&crate::protocol::reply::command(args.iter()));
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    stream.flush().await.map_err(|e| format!("{addr}: {e}"))?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match decode(&buf) {
            Ok(Some((frame, len))) => {
                let raw = buf.split_to(len).freeze();
                if skip > 0 {
                    skip -= 1;
                    if let OwnedFrame::Error(e) = frame {
                        return Err(format!("{addr}: AUTH refused: {e}"));
                    }
                    continue;
                }
                if let OwnedFrame::Error(e) = &frame {
                    return Err(format!("{addr}: {} answered {e}", args.join(" ")));
                }
                return Ok((frame, raw));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("{addr}: undecodable reply: {e:?}")),
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        if n == 0 {
            return Err(format!("{addr}: connection closed"));
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
