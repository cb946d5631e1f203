//! The output side: pub/sub messages appended between replies. (Replies reach the
//! output through the pipeline's `emit`; coalescing them into few writes is decided per
//! pass in `begin_pass`, the write itself in [`super::run`].)

use super::super::{subscribe, Session};
use super::{KEEP_MAX, OUT_HIGH_WATER};
use bytes::{Bytes, BytesMut};

impl Session {
    /// `n` bytes of the output reached the socket.
    #[inline]
    pub(in crate::session) fn wrote(&mut self, n: usize) {
        let _ = self.io.out.split_to(n);
        self.io.live.writes += 1;
        if self.io.out.is_empty() && self.io.out.capacity() > KEEP_MAX {
            self.io.out = BytesMut::new();
        }
    }

    /// A pub/sub message arrived while no reply is owed: it and every message already
    /// queued behind it go to the output (up to [`OUT_HIGH_WATER`]). False when the hub
    /// dropped the client (it did not keep up): the session ends.
    #[inline]
    pub(in crate::session) fn on_message(&mut self, message: Option<Bytes>) -> bool {
        let Some(m) = message else {
            tracing::info!(
                client = self.client.meta.id,
                "closing subscriber that did not keep up with its messages"
            );
            return false;
        };
        let resp3 = self.client.resp3;
        self.output.take_message(m.len());
        if let Some(subs) = self.client.subs.as_mut() {
            if subs.wants(&m) {
                push_message(&mut self.io.out, &m, resp3);
            }
            while self.io.out.len() < OUT_HIGH_WATER {
                match subs.rx.try_recv() {
                    Ok(m) => {
                        self.output.take_message(m.len());
                        if subs.wants(&m) {
                            push_message(&mut self.io.out, &m, resp3);
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        true
    }
}

impl Session {
    /// MONITOR lines while no reply is owed: this one and those queued behind it (up to
    /// [`OUT_HIGH_WATER`]), as the node wrote them. False when the stream ended after
    /// the client's `+OK` (a node closed, the client fell behind): the session ends.
    pub(in crate::session) fn on_monitor_line(&mut self, line: Option<Bytes>) -> bool {
        let Some(monitor) = self.client.monitor.as_mut() else {
            return true;
        };
        let Some(line) = line else {
            // Before `+OK`, the MONITOR failed and its error is the reply: not monitoring.
            let confirmed = monitor.confirmed();
            self.client.monitor = None;
            return !confirmed;
        };
        self.io.out.extend_from_slice(&line);
        while self.io.out.len() < OUT_HIGH_WATER {
            match monitor.try_next() {
                Some(line) => self.io.out.extend_from_slice(&line),
                None => break,
            }
        }
        true
    }
}

/// Appends a pub/sub message frame (RESP2 `*3 message ...`), as a push (`>3 ...`) for a
/// RESP3 client: the frames differ only in their first byte.
pub(in crate::session) fn push_message(out: &mut BytesMut, frame: &[u8], resp3: bool) {
    if resp3 && frame.first() == Some(&b'*') {
        out.extend_from_slice(b">");
        out.extend_from_slice(&frame[1..]);
    } else {
        out.extend_from_slice(frame);
    }
}

/// The next pub/sub message for this client (`None`: the hub dropped it).
pub(super) async fn next_message(
    subs: &mut Option<Box<subscribe::Subscriptions>>,
) -> Option<Bytes> {
    match subs {
        Some(s) => s.rx.recv().await,
        None => std::future::pending().await,
    }
}
