//! Frame boundaries without building frames.
//!
//! The hot path only needs to know where a request or a reply ends (and, for requests,
//! where each argument lies), never the decoded value. A general decoder
//! (`redis_protocol::resp2::decode::decode_range`) spends ~140 ns framing a `GET`; these
//! scanners walk the `*n` / `$len` headers and jump over payloads, at a few ns per frame
//! (`cargo bench --bench framing`). `tests/scan_differential.rs` checks them against
//! redis-protocol as the oracle. Anything that needs values (replies respgate merges or
//! composes, the control plane) uses redis-protocol.

use std::ops::Range;

/// Longest header line (`*<n>` / `$<len>`) or inline request Redis accepts before
/// declaring the client broken (PROTO_INLINE_MAX_SIZE).
pub const MAX_LINE: usize = 64 * 1024;

/// Why a request could not be framed. Each maps to the exact error Redis sends before it
/// closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    InvalidMultibulkLength,
    InvalidBulkLength,
    ExpectedDollar(u8),
    TooBigMbulkCountString,
    TooBigBulkCountString,
    TooBigInlineRequest,
    UnbalancedQuotes,
    /// Before login: more than [`PRE_AUTH_MAX_ARGS`] arguments.
    UnauthenticatedMultibulkLength,
    /// Before login: an argument longer than [`PRE_AUTH_MAX_BULK`].
    UnauthenticatedBulkLength,
    /// The request is larger than `max_request_bytes` (respgate's own limit).
    RequestTooLarge {
        limit: usize,
    },
}

impl ProtocolError {
    /// The error reply, byte for byte what Redis 7 sends (respgate's own limit aside).
    pub fn reply(&self) -> Vec<u8> {
        let msg = match self {
            ProtocolError::InvalidMultibulkLength => "invalid multibulk length".to_string(),
            ProtocolError::InvalidBulkLength => "invalid bulk length".to_string(),
            // Redis prints the byte as it is, but a CR or LF as a space (an error reply
            // must stay on one line).
            ProtocolError::ExpectedDollar(b'\r' | b'\n') => "expected '$', got ' '".to_string(),
            ProtocolError::ExpectedDollar(b) => {
                let mut reply = b"-ERR Protocol error: expected '$', got '".to_vec();
                reply.push(*b);
                reply.extend_from_slice(b"'\r\n");
                return reply;
            }
            ProtocolError::TooBigMbulkCountString => "too big mbulk count string".to_string(),
            ProtocolError::TooBigBulkCountString => "too big bulk count string".to_string(),
            ProtocolError::TooBigInlineRequest => "too big inline request".to_string(),
            ProtocolError::UnbalancedQuotes => "unbalanced quotes in request".to_string(),
            ProtocolError::UnauthenticatedMultibulkLength => {
                "unauthenticated multibulk length".to_string()
            }
            ProtocolError::UnauthenticatedBulkLength => "unauthenticated bulk length".to_string(),
            ProtocolError::RequestTooLarge { limit } => {
                format!("request larger than respgate's max_request_bytes ({limit} bytes)")
            }
        };
        format!("-ERR Protocol error: {msg}\r\n").into_bytes()
    }
}

/// Arguments a client may send in one request before it has logged in (Redis 7.0's
/// `processMultibulkBuffer`: `ll > 10 && authRequired(c)`).
pub const PRE_AUTH_MAX_ARGS: i64 = 10;
/// Longest argument before login (Redis 7.0: `ll > 16384 && authRequired(c)`).
pub const PRE_AUTH_MAX_BULK: i64 = 16384;

/// Limits applied while framing requests.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest single argument (Redis's proto-max-bulk-len, default 512 MiB).
    pub max_bulk: usize,
    /// Largest whole request, headers included.
    pub max_request: usize,
    /// The client has not logged in while login is required: Redis's small limits
    /// ([`PRE_AUTH_MAX_ARGS`], [`PRE_AUTH_MAX_BULK`]) apply, so a stranger cannot make
    /// the proxy buffer more than ~160 KiB per connection. The session picks the limits
    /// when its login state changes, not per request.
    pub pre_auth: bool,
}

impl RequestLimits {
    /// These limits for a client that has not logged in yet.
    pub fn before_login(self) -> RequestLimits {
        RequestLimits {
            pre_auth: true,
            ..self
        }
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_bulk: 512 * 1024 * 1024,
            max_request: 512 * 1024 * 1024,
            pre_auth: false,
        }
    }
}

/// A framed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A RESP multibulk of `len` bytes; `ranges` holds its arguments.
    Multibulk { len: usize },
    /// An inline command line of `len` bytes (newline included). Split it with
    /// [`split_inline`] and re-encode it as a multibulk before routing.
    Inline { len: usize },
    /// `len` bytes that carry no command (`*0`, `*-1`, an empty inline line): skip them.
    Empty { len: usize },
}

/// Finds the `\r` that ends the header line starting at `pos`, as Redis does
/// (`strchr(..., '\r')`): the byte after it is skipped unread, as Redis skips it.
/// `None` until that byte has arrived too.
#[inline]
fn header_end(buf: &[u8], pos: usize) -> Option<usize> {
    let cr = buf[pos..].iter().position(|&b| b == b'\r')? + pos;
    (cr + 1 < buf.len()).then_some(cr)
}

#[inline]
fn memchr_nl(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

pub use super::int::parse_int;

/// Frames one request at the start of `buf`, recording argument ranges in `ranges`.
///
/// Returns `Ok(None)` when more bytes are needed. Sizes are checked against `limits` as
/// soon as a header is seen, so a client announcing `$999999999999` is refused before a
/// byte of the payload is buffered.
pub fn scan_request(
    buf: &[u8],
    limits: &RequestLimits,
    ranges: &mut Vec<Range<u32>>,
) -> Result<Option<Request>, ProtocolError> {
    ranges.clear();
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return scan_inline(buf, ranges);
    }
    // Exactly Redis 7's processMultibulkBuffer: each header ends at the first `\r`, the
    // byte after it is skipped unchecked, and so are the 2 bytes after a bulk's payload
    // (`*1\r\n$4\r\nPINGxx` is a PING to Redis). A header is judged only once its
    // line has arrived.
    let Some(end) = header_end(buf, 1) else {
        return if buf.len() > MAX_LINE {
            Err(ProtocolError::TooBigMbulkCountString)
        } else {
            Ok(None)
        };
    };
    let count = parse_int(&buf[1..end]).ok_or(ProtocolError::InvalidMultibulkLength)?;
    if count > i32::MAX as i64 {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    if limits.pre_auth && count > PRE_AUTH_MAX_ARGS {
        return Err(ProtocolError::UnauthenticatedMultibulkLength);
    }
    let mut pos = end + 2;
    if count <= 0 {
        return Ok(Some(Request::Empty { len: pos }));
    }
    // Every argument needs at least `$0\r\n\r\n`.
    if (count as u64).saturating_mul(6) > limits.max_request as u64 {
        return Err(ProtocolError::RequestTooLarge {
            limit: limits.max_request,
        });
    }
    let count = count as usize;
    for _ in 0..count {
        let Some(end) = header_end(buf, pos) else {
            return if buf.len() - pos > MAX_LINE {
                Err(ProtocolError::TooBigBulkCountString)
            } else {
                Ok(None)
            };
        };
        if buf[pos] != b'$' {
            return Err(ProtocolError::ExpectedDollar(buf[pos]));
        }
        let len = parse_int(&buf[pos + 1..end]).ok_or(ProtocolError::InvalidBulkLength)?;
        if len < 0 || len as u64 > limits.max_bulk as u64 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        if limits.pre_auth && len > PRE_AUTH_MAX_BULK {
            return Err(ProtocolError::UnauthenticatedBulkLength);
        }
        let start = end + 2;
        let stop = start + len as usize;
        if stop + 2 > limits.max_request {
            return Err(ProtocolError::RequestTooLarge {
                limit: limits.max_request,
            });
        }
        if stop + 2 > buf.len() {
            return Ok(None);
        }
        ranges.push(start as u32..stop as u32);
        pos = stop + 2;
    }
    Ok(Some(Request::Multibulk { len: pos }))
}

/// Inline commands (`PING\r\n` typed into telnet): only the line is framed here; its
/// words are split by [`split_inline`] into an owned multibulk (rare path).
fn scan_inline(buf: &[u8], ranges: &mut Vec<Range<u32>>) -> Result<Option<Request>, ProtocolError> {
    // Redis looks for the newline with `strchr`, which stops at a NUL: a line with a NUL
    // before its newline has no newline yet, and waits (until it is too big).
    let Some(nl) = memchr_nl(buf).filter(|&nl| !buf[..nl].contains(&0)) else {
        return if buf.len() > MAX_LINE {
            Err(ProtocolError::TooBigInlineRequest)
        } else {
            Ok(None)
        };
    };
    if nl > MAX_LINE {
        return Err(ProtocolError::TooBigInlineRequest);
    }
    ranges.clear();
    if buf[..nl].iter().all(|b| b.is_ascii_whitespace()) {
        Ok(Some(Request::Empty { len: nl + 1 }))
    } else {
        Ok(Some(Request::Inline { len: nl + 1 }))
    }
}

/// Splits an inline command line (without its newline) into words exactly as Redis's
/// `sdssplitargs` does: blanks separate words; `"..."` takes the escapes `\n \r \t \b
/// \a \\ \"` and `\xHH`; `'...'` takes `\'`; a closing quote must be followed by a
/// blank or the end of the line, else the request has unbalanced quotes.
pub fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // A C string to Redis: a NUL ends it (a NUL ended a word, but was then never
    // consumed: an endless loop of empty words).
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let is_space = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c);
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    // A closing quote must end the word.
    let after_closing_quote = |p: usize| match line.get(p + 1) {
        Some(&n) if !is_space(n) => Err(ProtocolError::UnbalancedQuotes),
        _ => Ok(p + 1),
    };
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(args);
        }
        let mut word = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = line.get(p).copied();
            if in_double {
                let Some(c) = c else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\' && line.get(p + 1) == Some(&b'x') {
                    if let (Some(h), Some(l)) = (
                        line.get(p + 2).and_then(|&b| hex(b)),
                        line.get(p + 3).and_then(|&b| hex(b)),
                    ) {
                        word.push(h * 16 + l);
                        p += 4;
                        continue;
                    }
                }
                if c == b'\\' && p + 1 < line.len() {
                    word.push(match line[p + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    p += 2;
                } else if c == b'"' {
                    p = after_closing_quote(p)?;
                    break;
                } else {
                    word.push(c);
                    p += 1;
                }
            } else if in_single {
                let Some(c) = c else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\' && line.get(p + 1) == Some(&b'\'') {
                    word.push(b'\'');
                    p += 2;
                } else if c == b'\'' {
                    p = after_closing_quote(p)?;
                    break;
                } else {
                    word.push(c);
                    p += 1;
                }
            } else {
                match c {
                    None | Some(b' ' | b'\n' | b'\r' | b'\t' | 0) => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(c) => word.push(c),
                }
                p += 1;
            }
        }
        args.push(word);
    }
}

/// Finds the length of the first complete reply (RESP2 or RESP3) in `buf`.
///
/// Returns `Ok(None)` when incomplete, `Err(())` when the bytes are not RESP (a backend
/// desync: the connection must be dropped). Aggregates are walked iteratively, by counting
/// how many values are still owed, so nesting depth costs no stack. This is a
/// [`ReplyScan`](super::reply_scan::ReplyScan) run once from the start: a reader that
/// frames a stream arriving in pieces keeps a `ReplyScan` instead, so it does not
/// rescan what it framed already.
#[allow(clippy::result_unit_err)]
#[inline]
pub fn scan_reply(buf: &[u8]) -> Result<Option<usize>, ()> {
    super::reply_scan::ReplyScan::new(1)
        .scan(buf, usize::MAX)
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(buf: &[u8]) -> (Result<Option<Request>, ProtocolError>, Vec<Vec<u8>>) {
        let mut r = Vec::new();
        let out = scan_request(buf, &RequestLimits::default(), &mut r);
        let args = r
            .iter()
            .map(|r| buf[r.start as usize..r.end as usize].to_vec())
            .collect();
        (out, args)
    }

    #[test]
    fn frames_a_multibulk_and_its_arguments() {
        let (out, args) = req(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1");
        assert_eq!(out, Ok(Some(Request::Multibulk { len: 20 })));
        assert_eq!(args, vec![b"GET".to_vec(), b"k".to_vec()]);
    }

    #[test]
    fn waits_for_more_bytes_at_every_cut() {
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n";
        for cut in 0..full.len() {
            assert_eq!(req(&full[..cut]).0, Ok(None), "cut at {cut}");
        }
        assert!(matches!(req(full).0, Ok(Some(Request::Multibulk { .. }))));
    }

    #[test]
    fn refuses_huge_bulk_before_buffering_it() {
        let (out, _) = req(b"*2\r\n$3\r\nGET\r\n$999999999999\r\n");
        assert_eq!(out, Err(ProtocolError::InvalidBulkLength));
        let limits = RequestLimits {
            max_bulk: 1 << 30,
            max_request: 1000,
            ..RequestLimits::default()
        };
        let out = scan_request(b"*1\r\n$2000\r\n", &limits, &mut Vec::new());
        assert_eq!(out, Err(ProtocolError::RequestTooLarge { limit: 1000 }));
    }

    #[test]
    fn reports_redis_protocol_errors() {
        assert_eq!(req(b"*x\r\n").0, Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(
            req(b"*1\r\n:1\r\n").0,
            Err(ProtocolError::ExpectedDollar(b':'))
        );
        assert_eq!(
            req(b"*1\r\n$-3\r\n").0,
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            ProtocolError::ExpectedDollar(b':').reply(),
            b"-ERR Protocol error: expected '$', got ':'\r\n".to_vec()
        );
        let long = vec![b'a'; MAX_LINE + 10];
        assert_eq!(req(&long).0, Err(ProtocolError::TooBigInlineRequest));
    }

    #[test]
    fn frames_inline_commands() {
        assert_eq!(
            req(b"SET  k \"a b\"\r\nPING").0,
            Ok(Some(Request::Inline { len: 14 }))
        );
        assert_eq!(req(b"\r\n").0, Ok(Some(Request::Empty { len: 2 })));
        assert_eq!(req(b" \t\r\n").0, Ok(Some(Request::Empty { len: 4 })));
        assert_eq!(req(b"PING\n").0, Ok(Some(Request::Inline { len: 5 })));
    }

    fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
        split_inline(line)
    }

    #[test]
    fn splits_inline_words_like_sdssplitargs() {
        assert_eq!(
            split(b"SET  k \"a b\"\r").unwrap(),
            vec![b"SET".to_vec(), b"k".to_vec(), b"a b".to_vec()]
        );
        assert_eq!(
            split(b"SET k \"tab\\there\\x41\\n\"").unwrap()[2],
            b"tab\there\x41\n".to_vec()
        );
        assert_eq!(split(b"ECHO 'it\\'s'").unwrap()[1], b"it's".to_vec());
        assert_eq!(split(b"ECHO foo\"bar\"").unwrap()[1], b"foobar".to_vec());
        assert_eq!(split(b"ECHO \"\"").unwrap()[1], b"".to_vec());
        assert_eq!(split(b"ECHO \"x"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split(b"DEL \"a\"b"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(split(b"ECHO 'a'b"), Err(ProtocolError::UnbalancedQuotes));
        assert!(split(b"   ").unwrap().is_empty());
    }

    #[test]
    fn a_nul_in_an_inline_line_is_handled_as_redis_does() {
        // Found by tests/fuzz (scanners): a NUL outside quotes made split_inline push
        // empty words forever (one request took a worker and all its memory).
        assert_eq!(
            split(b"ECHO hi\0 there").unwrap(),
            vec![b"ECHO".to_vec(), b"hi".to_vec()]
        );
        assert_eq!(split(b"\0ECHO x").unwrap(), Vec::<Vec<u8>>::new());
        assert_eq!(
            split(b"ECHO \"a\0b\""),
            Err(ProtocolError::UnbalancedQuotes)
        );
        // Redis finds the newline with strchr: the NUL hides it, the line waits, and
        // past 64 KB it is too big (redis-server 7.0 answers these lines nothing).
        assert_eq!(req(b"ECHO hi\0 there\r\n").0, Ok(None));
        assert_eq!(req(b"\0\r\n").0, Ok(None));
        let mut long = b"ECHO a\0\r\n".to_vec();
        long.resize(MAX_LINE + 10, b'x');
        assert_eq!(req(&long).0, Err(ProtocolError::TooBigInlineRequest));
        // After the newline a NUL is the next request's business.
        assert_eq!(req(b"PING\r\n\0").0, Ok(Some(Request::Inline { len: 6 })));
    }

    #[test]
    fn many_tiny_arguments_over_the_request_limit_get_the_limit_error() {
        let limits = RequestLimits {
            max_bulk: 1 << 20,
            max_request: 1024,
            ..RequestLimits::default()
        };
        let out = scan_request(b"*401\r\n", &limits, &mut Vec::new());
        assert_eq!(out, Err(ProtocolError::RequestTooLarge { limit: 1024 }));
    }

    #[test]
    fn before_login_only_small_requests_are_framed() {
        let limits = RequestLimits::default().before_login();
        let mut r = Vec::new();
        let ten = b"*10\r\n";
        assert_eq!(scan_request(ten, &limits, &mut r), Ok(None));
        assert_eq!(
            scan_request(b"*11\r\n", &limits, &mut r),
            Err(ProtocolError::UnauthenticatedMultibulkLength)
        );
        assert_eq!(
            scan_request(b"*2\r\n$4\r\nAUTH\r\n$16384\r\n", &limits, &mut r),
            Ok(None)
        );
        assert_eq!(
            scan_request(b"*2\r\n$4\r\nAUTH\r\n$16385\r\n", &limits, &mut r),
            Err(ProtocolError::UnauthenticatedBulkLength)
        );
        // Redis's other checks come first.
        assert_eq!(
            scan_request(b"*2\r\n$4\r\nAUTH\r\n$-5\r\n", &limits, &mut r),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            ProtocolError::UnauthenticatedBulkLength.reply(),
            b"-ERR Protocol error: unauthenticated bulk length\r\n".to_vec()
        );
        assert_eq!(
            ProtocolError::UnauthenticatedMultibulkLength.reply(),
            b"-ERR Protocol error: unauthenticated multibulk length\r\n".to_vec()
        );
        // Logged in: the full limits.
        let r2 = &mut r;
        assert_eq!(
            scan_request(b"*11\r\n", &RequestLimits::default(), r2),
            Ok(None)
        );
    }

    #[test]
    fn empty_multibulks_are_skipped() {
        assert_eq!(req(b"*0\r\n").0, Ok(Some(Request::Empty { len: 4 })));
        assert_eq!(req(b"*-1\r\n").0, Ok(Some(Request::Empty { len: 5 })));
    }

    #[test]
    fn scans_nested_and_resp3_replies() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":12\r\n",
            b"$-1\r\n",
            b"$3\r\nabc\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n*1\r\n$1\r\na\r\n:3\r\n",
            b"%1\r\n+k\r\n*2\r\n:1\r\n_\r\n",
            b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n",
            b"|1\r\n+a\r\n+b\r\n:1\r\n",
            b"=8\r\ntxt:abcd\r\n",
            b",1.5\r\n",
        ];
        for c in cases {
            let mut with_tail = c.to_vec();
            with_tail.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(scan_reply(&with_tail), Ok(Some(c.len())), "{:?}", c);
            for cut in 0..c.len() {
                assert_eq!(scan_reply(&c[..cut]), Ok(None));
            }
        }
        assert_eq!(scan_reply(b"?x\r\n"), Err(()));
    }

    #[test]
    fn bulk_payload_may_contain_crlf() {
        assert_eq!(scan_reply(b"$4\r\n\r\n\r\n\r\n"), Ok(Some(10)));
        let (out, args) = req(b"*1\r\n$4\r\n\r\n\r\n\r\n");
        assert_eq!(out, Ok(Some(Request::Multibulk { len: 14 })));
        assert_eq!(args[0], b"\r\n\r\n");
    }
}
