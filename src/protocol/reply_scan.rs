//! Resumable reply framing: where a reply (or a run of replies) ends, found in time
//! linear in the bytes received, however the bytes are cut into reads.
//!
//! A backend link reads 64 KB at a time. Framing each read from the start of the
//! buffer again (what a stateless scanner must do) is quadratic in the reply's number
//! of elements: an `LRANGE` of a few million elements rescanned its whole buffer on
//! every read and stalled the worker, and every client on it, for seconds. A
//! [`ReplyScan`] keeps where it stopped instead: the position of the next header, how
//! many values are still owed (one counter covers any nesting: an aggregate of `n`
//! adds `n`), and, inside a header line not yet terminated, where the search for its
//! CRLF resumes. A bulk payload is jumped over by arithmetic, even before it arrived, so
//! only header bytes are ever examined, each about once.
//!
//! Lengths come from a peer that may be broken or hostile: every sum is checked (an
//! `*9223372036854775807` nested twice must not wrap the owed count into a small one
//! and frame the rest of the stream as the next reply), negative lengths other than
//! `-1` are refused, and nothing is allocated by a length. A `limit` bounds how large
//! the replies may be: exceeding it, by bytes received or by bytes their headers
//! announce, is reported as soon as it is known ([`ReplyError::OverLimit`]), before the
//! payload is buffered, and the scan can go on to find the end of what must then be
//! discarded.
//!
//! Framing rules are those of `protocol::scan::scan_reply` (which is this scanner, run
//! once on a whole buffer), checked against redis-protocol by `tests/fuzz_scanners.rs`.

use super::int::parse_int;

/// Why reply bytes could not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// Not RESP: an unknown type byte, a length that is not an integer, a negative
    /// length other than `-1`, or lengths whose sum overflows. The stream is out of
    /// step: the connection must be dropped.
    NotResp,
    /// The replies are larger than the limit: received so far, or announced by their
    /// headers. The scan may go on (with a larger limit) to find where they end.
    OverLimit,
}

/// The smallest encoding of any value (`+\r\n`, `_\r\n`): how many bytes an owed value
/// will take at least, to judge an announced aggregate against the limit early.
const MIN_VALUE: u64 = 3;

/// Where framing stopped, to resume there when more bytes arrive.
///
/// Positions are offsets into the caller's buffer, whose front must stay in place
/// between calls (or be reported with [`ReplyScan::consume`]); bytes may only be
/// appended.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplyScan {
    /// Offset of the next header; beyond the buffer's end while a bulk payload (and its
    /// CRLF) is still arriving.
    pos: usize,
    /// Values still owed before the run of replies is complete.
    owed: u64,
    /// Inside an unterminated header line: the first offset where its `\n` may still be
    /// found (every earlier one was examined). 0 when no line is pending.
    line_from: usize,
    /// Header bytes examined so far: the work done, for tests that check it is linear.
    examined: u64,
}

impl ReplyScan {
    /// A scan of the next `replies` replies.
    #[inline]
    pub const fn new(replies: u32) -> ReplyScan {
        ReplyScan {
            pos: 0,
            owed: replies as u64,
            line_from: 0,
            examined: 0,
        }
    }

    /// Starts over on a new run of `replies` replies at the buffer's front (the work
    /// counter keeps counting).
    #[inline]
    pub fn restart(&mut self, replies: u32) {
        self.pos = 0;
        self.owed = replies as u64;
        self.line_from = 0;
    }

    /// Whether the last run was framed completely (nothing owed).
    #[inline]
    pub fn is_done(&self) -> bool {
        self.owed == 0
    }

    /// Bytes of the buffer framed so far: the run's replies end beyond this offset. May
    /// be past the buffer's end (inside a bulk payload still arriving).
    #[inline]
    pub fn framed(&self) -> usize {
        self.pos
    }

    /// Header bytes examined since this scanner was created.
    pub fn examined(&self) -> u64 {
        self.examined
    }

    /// The caller dropped the first `n` bytes of the buffer (discarding a reply over the
    /// limit as it streams in). `n` must not exceed [`ReplyScan::framed`].
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.pos);
        self.pos -= n;
        self.line_from = self.line_from.saturating_sub(n);
    }

    /// Frames on in `buf` (the same buffer as before, perhaps longer): `Ok(Some(len))`
    /// once the run's replies are complete (they are `buf[..len]`), `Ok(None)` while
    /// more bytes are needed.
    ///
    /// `limit` bounds the run's total size; [`ReplyError::OverLimit`] leaves the state
    /// consistent, so the caller may go on with `usize::MAX` to find the run's end.
    #[inline]
    pub fn scan(&mut self, buf: &[u8], limit: usize) -> Result<Option<usize>, ReplyError> {
        // On a local copy, so the whole state lives in registers while it runs.
        let mut state = *self;
        let mut pos = state.pos;
        let mut owed = state.owed;
        let result = state.scan_from(buf, limit, &mut pos, &mut owed);
        state.pos = pos;
        state.owed = owed;
        *self = state;
        result
    }

    #[inline(always)]
    fn scan_from(
        &mut self,
        buf: &[u8],
        limit: usize,
        pos: &mut usize,
        owed: &mut u64,
    ) -> Result<Option<usize>, ReplyError> {
        while *owed > 0 {
            if *pos >= buf.len() {
                return Ok(None);
            }
            let kind = buf[*pos];
            let Some(end) = self.find_line_end(buf, *pos) else {
                // Everything buffered belongs to the run, which is longer still.
                if buf.len() > limit {
                    return Err(ReplyError::OverLimit);
                }
                // A length is at most 20 characters: a longer line is no header.
                if buf.len() - *pos > 24 && takes_length(kind) {
                    return Err(ReplyError::NotResp);
                }
                return Ok(None);
            };
            let header = &buf[*pos + 1..end];
            *owed -= 1;
            *pos = end + 2;
            match kind {
                b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {}
                b'$' | b'!' | b'=' => {
                    let len = parse_int(header).ok_or(ReplyError::NotResp)?;
                    if len >= 0 {
                        // The payload and its CRLF, jumped over even before they came.
                        *pos = usize::try_from(len as u64 + 2)
                            .ok()
                            .and_then(|n| pos.checked_add(n))
                            .ok_or(ReplyError::NotResp)?;
                        if *pos > limit {
                            return Err(ReplyError::OverLimit);
                        }
                    } else if len != -1 {
                        return Err(ReplyError::NotResp);
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_int(header).ok_or(ReplyError::NotResp)?;
                    let more = match (kind, n) {
                        (_, 0) => 0,
                        (b'*' | b'~' | b'>', -1) => 0,
                        (_, n) if n < 0 => return Err(ReplyError::NotResp),
                        (b'%', n) => (n as u64) * 2,
                        // Attributes precede the value they describe.
                        (b'|', n) => (n as u64) * 2 + 1,
                        (_, n) => n as u64,
                    };
                    *owed = owed.checked_add(more).ok_or(ReplyError::NotResp)?;
                    let least = owed.saturating_mul(MIN_VALUE).saturating_add(*pos as u64);
                    if least > limit as u64 {
                        return Err(ReplyError::OverLimit);
                    }
                }
                _ => return Err(ReplyError::NotResp),
            }
        }
        if *pos > limit {
            // Simple lines are not checked one by one: the run as a whole is.
            return Err(ReplyError::OverLimit);
        }
        Ok((*pos <= buf.len()).then_some(*pos))
    }

    /// The offset of the `\r` that ends the header line starting at `pos`: the first
    /// CRLF after the type byte. Resumes where the last search of the same line
    /// stopped, so a line arriving in pieces is examined once.
    #[inline(always)]
    fn find_line_end(&mut self, buf: &[u8], pos: usize) -> Option<usize> {
        // The `\n` of a CRLF whose `\r` follows the type byte is at `pos + 2` or later.
        let from = (pos + 2).max(self.line_from);
        let mut i = from;
        while i < buf.len() {
            if buf[i] == b'\n' && buf[i - 1] == b'\r' {
                self.examined += (i + 1 - from) as u64;
                self.line_from = 0;
                return Some(i - 1);
            }
            i += 1;
        }
        self.examined += buf.len().saturating_sub(from) as u64;
        self.line_from = from.max(buf.len());
        None
    }
}

/// Types whose header line is a length or count.
#[inline]
fn takes_length(kind: u8) -> bool {
    matches!(kind, b'$' | b'!' | b'=' | b'*' | b'~' | b'>' | b'%' | b'|')
}

#[cfg(test)]
#[path = "reply_scan_tests.rs"]
mod tests;
