//! A link's reply framing: which bytes answer which request, read after read.
//!
//! Replies come back in the order requests were written, so the reader only has to
//! find where each job's replies end ([`ReplyScan`], which resumes where the previous
//! read stopped: linear in the bytes received, however large the reply) and hand them
//! to the job at the front of the in-flight FIFO as one zero-copy slice.
//!
//! A reply larger than `cluster.max_reply_bytes` is never buffered whole. As soon as it
//! is known to be over (by bytes received, or by what its headers announce) its job is
//! answered with an error naming the limit, and the rest of the reply is framed and
//! dropped as it streams in: the link stays in step and the replies after it go to
//! their own requests, as ever. Only bytes that are not RESP (including lengths whose
//! sum overflows) desynchronise the link; the caller then closes it and answers every
//! request in flight with [`super::LinkError::Lost`], never re-sending one that may have
//! run.

use super::inflight::Inflight;
use crate::protocol::reply_scan::{ReplyError, ReplyScan};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Instant;

/// The reader side's framing state for one connection.
pub(super) struct Framer {
    scan: ReplyScan,
    /// Discarding the rest of a reply that went over the limit (its job was answered).
    discarding: bool,
    limit: usize,
}

impl Framer {
    pub(super) fn new(limit: usize) -> Framer {
        Framer {
            scan: ReplyScan::new(0),
            discarding: false,
            limit,
        }
    }

    /// Hands every complete reply in `rbuf` to the request it answers, in FIFO order.
    pub(super) fn deliver(
        &mut self,
        rbuf: &mut BytesMut,
        inflight: &mut VecDeque<(Inflight, Instant)>,
        addr: &str,
    ) -> std::io::Result<()> {
        loop {
            if self.discarding {
                if !self.discard(rbuf)? {
                    return Ok(());
                }
                continue;
            }
            if self.scan.is_done() {
                let wanted = match inflight.front() {
                    Some((Inflight::Client(_, n, ..), _)) => *n,
                    Some((Inflight::Asking, _)) => 1,
                    None if rbuf.is_empty() => return Ok(()),
                    None => return Err(invalid("reply with no request waiting for it")),
                };
                // A job's replies are contiguous on the connection: framed as one run.
                self.scan.restart(wanted);
            }
            match self.scan.scan(rbuf, self.limit) {
                Ok(Some(len)) => {
                    let reply = rbuf.split_to(len).freeze();
                    if let Some((Inflight::Client(tx, _, budget, part_of), _)) =
                        inflight.pop_front()
                    {
                        super::inflight::hand_over(
                            tx,
                            budget.as_deref(),
                            part_of.as_deref(),
                            reply,
                        );
                    }
                }
                Ok(None) => return Ok(()),
                Err(ReplyError::NotResp) => {
                    return Err(invalid("node sent bytes that are not RESP"))
                }
                Err(ReplyError::OverLimit) => {
                    match inflight.pop_front() {
                        Some((Inflight::Client(tx, ..), _)) => {
                            let _ = tx.send(Ok(over_limit_error(addr, self.limit)));
                        }
                        // ASKING's `+OK` cannot be that large.
                        _ => return Err(invalid("node sent bytes that are not RESP")),
                    }
                    tracing::warn!(node = %addr, limit = self.limit, "reply over cluster.max_reply_bytes discarded");
                    metrics::counter!("respgate_backend_replies_over_limit_total").increment(1);
                    self.discarding = true;
                }
            }
        }
    }

    /// Drops the framed part of the reply being discarded; `true` once it has ended
    /// (its last bytes dropped), `false` while more is to come.
    fn discard(&mut self, rbuf: &mut BytesMut) -> std::io::Result<bool> {
        match self.scan.scan(rbuf, usize::MAX) {
            Ok(Some(len)) => {
                rbuf.advance(len);
                self.discarding = false;
                Ok(true)
            }
            Ok(None) => {
                let n = self.scan.framed().min(rbuf.len());
                rbuf.advance(n);
                self.scan.consume(n);
                // What is left is one unterminated header line: bounded like a reply.
                if rbuf.len() > self.limit {
                    return Err(invalid(
                        "node sent a header line over cluster.max_reply_bytes",
                    ));
                }
                Ok(false)
            }
            Err(_) => Err(invalid("node sent bytes that are not RESP")),
        }
    }
}

/// The length of the first complete handshake reply in `buf` (`None`: not yet). Bytes
/// that are not RESP, or a reply over the limit, would never complete the handshake:
/// they fail it at once instead of when it times out.
pub(super) fn handshake_reply(buf: &[u8], limit: usize) -> std::io::Result<Option<usize>> {
    match ReplyScan::new(1).scan(buf, limit) {
        Ok(found) => Ok(found),
        Err(ReplyError::NotResp) => Err(invalid("handshake reply is not RESP")),
        Err(ReplyError::OverLimit) => Err(invalid(&format!(
            "handshake reply over cluster.max_reply_bytes ({limit} bytes)"
        ))),
    }
}

/// What the client gets instead of a reply over the limit. The command did run.
fn over_limit_error(addr: &str, limit: usize) -> Bytes {
    crate::protocol::refusal::Refusal::ReplyTooLarge {
        addr: addr.to_string(),
        limit,
    }
    .reply()
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        inflight: &mut VecDeque<(Inflight, Instant)>,
        replies: u32,
    ) -> super::super::reply::ReplyRx {
        let (tx, rx) = super::super::reply::channel();
        inflight.push_back((Inflight::Client(tx, replies, None, None), Instant::now()));
        rx
    }

    /// Feeds `stream` to a framer `chunk` bytes at a time, as a link reads it.
    fn feed(
        framer: &mut Framer,
        inflight: &mut VecDeque<(Inflight, Instant)>,
        stream: &[u8],
        chunk: usize,
    ) -> (std::io::Result<()>, usize) {
        let mut rbuf = BytesMut::new();
        let mut peak = 0;
        for piece in stream.chunks(chunk) {
            rbuf.extend_from_slice(piece);
            peak = peak.max(rbuf.len());
            if let Err(e) = framer.deliver(&mut rbuf, inflight, "node:1") {
                return (Err(e), peak);
            }
        }
        assert!(rbuf.is_empty());
        (Ok(()), peak)
    }

    fn over_limit_reply() -> Vec<u8> {
        let mut big = b"*3\r\n".to_vec();
        for _ in 0..3 {
            big.extend_from_slice(b"$1000000\r\n");
            big.extend(std::iter::repeat_n(b'x', 1_000_000));
            big.extend_from_slice(b"\r\n");
        }
        big
    }

    #[test]
    fn a_reply_over_the_limit_is_refused_and_the_next_one_delivered() {
        let limit = 1 << 20;
        for chunk in [7, 4096, 65536] {
            let mut framer = Framer::new(limit);
            let mut inflight = VecDeque::new();
            let mut first = job(&mut inflight, 1);
            let mut second = job(&mut inflight, 1);
            let mut third = job(&mut inflight, 2);
            let mut stream = b"$5\r\nfirst\r\n".to_vec();
            stream.extend_from_slice(&over_limit_reply());
            stream.extend_from_slice(b"+third\r\n:3\r\n");
            let (result, peak) = feed(&mut framer, &mut inflight, &stream, chunk);
            result.unwrap();
            assert!(peak <= limit + chunk, "buffered {peak} bytes");
            assert_eq!(&first.try_recv().unwrap().unwrap()[..], b"$5\r\nfirst\r\n");
            let err = second.try_recv().unwrap().unwrap();
            let text = String::from_utf8_lossy(&err);
            assert!(
                text.starts_with(
                    "-ERR respgate: reply from node:1 over cluster.max_reply_bytes (1048576 bytes)"
                ),
                "{text}"
            );
            assert_eq!(&third.try_recv().unwrap().unwrap()[..], b"+third\r\n:3\r\n");
            assert!(inflight.is_empty());
        }
    }

    #[test]
    fn a_bulk_announced_over_the_limit_is_refused_before_its_payload() {
        let mut framer = Framer::new(1 << 20);
        let mut inflight = VecDeque::new();
        let mut rx = job(&mut inflight, 1);
        let mut rbuf = BytesMut::from(&b"$600000000\r\nxx"[..]);
        framer.deliver(&mut rbuf, &mut inflight, "node:1").unwrap();
        assert!(rx
            .try_recv()
            .unwrap()
            .unwrap()
            .starts_with(b"-ERR respgate"));
        assert!(rbuf.is_empty(), "the payload's first bytes are dropped too");
    }

    #[test]
    fn overflowing_counts_desynchronise_the_link() {
        let mut framer = Framer::new(usize::MAX);
        let mut inflight = VecDeque::new();
        let _rx = job(&mut inflight, 1);
        let hostile = b"*9223372036854775807\r\n".repeat(3);
        let (result, _) = feed(&mut framer, &mut inflight, &hostile, 5);
        assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        // And with the limit: the client is told, the rest is discarded until the
        // counts overflow, which closes the link.
        let mut framer = Framer::new(1 << 20);
        let mut inflight = VecDeque::new();
        let mut rx = job(&mut inflight, 1);
        let (result, _) = feed(&mut framer, &mut inflight, &hostile, 5);
        assert!(result.is_err());
        assert!(rx
            .try_recv()
            .unwrap()
            .unwrap()
            .starts_with(b"-ERR respgate"));
    }
}
