//! Framing requests out of the read buffer. A request is framed in place (its argument
//! ranges recorded, nothing copied) and handed to the pipeline as a frozen slice of the
//! buffer; an inline command line is re-encoded as the multibulk a client would have
//! sent. A protocol error answers with Redis's error and closes, lingering so the
//! client reads it.

use super::super::pending::Pending;
use super::super::Session;
use super::READ_MAX;
use crate::protocol::reply;
use crate::protocol::scan::{scan_request, split_inline, ProtocolError, Request};
use bytes::Bytes;

impl Session {
    /// Frames and dispatches every complete request in the read buffer, up to the
    /// pending-replies bound.
    pub(in crate::session) fn parse_requests(&mut self) {
        if !self.within_reply_bytes() || !self.release_held() {
            return;
        }
        while !self.io.closing
            && !self.pipe.task_pending
            && self.pipe.pending.len() < self.ctx.bounds.max_pending
        {
            let framed = scan_request(&self.io.rbuf, &self.io.limits, &mut self.io.ranges);
            let request = match framed {
                Ok(None) => break,
                Ok(Some(Request::Empty { len })) => {
                    let _ = self.io.rbuf.split_to(len);
                    continue;
                }
                Ok(Some(Request::Multibulk { len })) => Ok(self.io.rbuf.split_to(len).freeze()),
                Ok(Some(Request::Inline { len })) => {
                    let line = self.io.rbuf.split_to(len);
                    self.inline_as_multibulk(&line[..len - 1])
                }
                Err(e) => Err(e),
            };
            match request {
                Ok(raw) => {
                    if self.paused(&raw) || self.fenced(&raw) {
                        // CLIENT PAUSE, or a write waiting for the other workers to take
                        // in what came before it: this request and every later one wait
                        // (`hold.rs`).
                        self.io.held = Some(raw);
                        break;
                    }
                    let now = self.now();
                    self.client.entry.touch(now);
                    self.dispatch(raw, now);
                    // AUTH, HELLO, RESET or a reload may have changed the login state.
                    if self.io.limits.pre_auth != self.client.auth.user().is_none() {
                        self.relimit();
                    }
                }
                Err(e) => {
                    tracing::debug!(client = self.client.meta.id, error = ?e, "protocol error");
                    metrics::counter!("respgate_protocol_errors_total").increment(1);
                    self.pipe
                        .pending
                        .push_back(Pending::Ready(Bytes::from(e.reply())));
                    self.io.rbuf.clear();
                    self.io.closing = true;
                    self.io.linger = true;
                }
            }
        }
    }

    /// Re-encodes an inline command line as the multibulk a client would have sent, and
    /// frames it (filling `ranges`) so it routes like any other request.
    fn inline_as_multibulk(&mut self, line: &[u8]) -> Result<Bytes, ProtocolError> {
        let words = split_inline(line)?;
        let encoded = reply::command(words.iter());
        scan_request(&encoded, &self.io.limits, &mut self.io.ranges)?;
        Ok(encoded)
    }

    /// A read finished (`spare`: the room the buffer had); false when the session must
    /// end now.
    #[inline]
    pub(in crate::session) fn on_read(
        &mut self,
        read: std::io::Result<usize>,
        spare: usize,
    ) -> bool {
        match read {
            // Half-closed (`printf ... | nc`): requests already buffered are still
            // served; the session ends once they are answered.
            Ok(0) => {
                self.io.eof = true;
                // A client gone while blocked (BLPOP 0) would otherwise hold its
                // backend connection, and consume a value pushed later, forever:
                // do as Redis does on EOF and end the session now.
                let blocked = self
                    .pipe
                    .pending
                    .iter()
                    .any(|p| matches!(p, Pending::Remote(r) if r.dedicated.is_some()));
                !blocked
            }
            Ok(n) => {
                self.io.live.reads += 1;
                self.io.fence_passed = false;
                if n == spare {
                    self.io.read_hint = (self.io.read_hint * 2).min(READ_MAX);
                }
                true
            }
            Err(_) => false,
        }
    }
}
