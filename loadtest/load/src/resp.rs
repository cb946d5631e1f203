//! RESP on the wire, the load tool's own: an encoder for requests and a scanner for replies.
//!
//! Hand-written (not `redis-protocol`, which respgate uses) so that a framing bug in the
//! proxy's parser cannot hide behind the same bug here. The scanner only finds where a
//! reply ends and whether it is an error: the tool counts and times replies, it does not
//! look inside them, except for `CLUSTER SLOTS` (parsed by [`parse`] into a [`Value`]).

/// Appends `*N\r\n` (a request of `n` arguments).
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_int(out, n as i64);
    out.extend_from_slice(b"\r\n");
}

/// Appends `$len\r\n` (the header of a bulk string).
pub fn bulk_header(out: &mut Vec<u8>, len: usize) {
    out.push(b'$');
    push_int(out, len as i64);
    out.extend_from_slice(b"\r\n");
}

/// Appends one bulk string.
pub fn bulk(out: &mut Vec<u8>, arg: &[u8]) {
    bulk_header(out, arg.len());
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole request of bulk strings.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    array_header(out, args.len());
    for a in args {
        bulk(out, a);
    }
}

/// Decimal digits without allocating.
pub fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// What the scanner found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Not a whole reply yet.
    Incomplete,
    /// A whole reply of `len` bytes; `error` when it is a `-` (or RESP3 `!`) error.
    Reply { len: usize, error: bool },
}

/// A reply the scanner cannot frame (the stream is unusable after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

/// Finds the end of the first reply in `buf` (RESP2 and RESP3 types).
pub fn scan(buf: &[u8]) -> Result<Scan, ProtocolError> {
    match scan_at(buf, 0, 0)? {
        None => Ok(Scan::Incomplete),
        Some(end) => Ok(Scan::Reply {
            len: end,
            error: matches!(buf[0], b'-' | b'!'),
        }),
    }
}

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let i = rest.windows(2).position(|w| w == b"\r\n")?;
    Some(from + i)
}

fn parse_len(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError(format!("bad length {:?}", String::from_utf8_lossy(line))))
}

/// End offset of the reply starting at `at`, `None` when incomplete.
fn scan_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, ProtocolError> {
    if depth > 64 {
        return Err(ProtocolError("nesting deeper than 64".into()));
    }
    let Some(&kind) = buf.get(at) else {
        return Ok(None);
    };
    let Some(eol) = line_end(buf, at + 1) else {
        return Ok(None);
    };
    let after = eol + 2;
    match kind {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => Ok(Some(after)),
        b'$' | b'!' | b'=' => {
            let n = parse_len(&buf[at + 1..eol])?;
            if n < 0 {
                return Ok(Some(after));
            }
            let end = after + n as usize + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = parse_len(&buf[at + 1..eol])?;
            let items = if matches!(kind, b'%' | b'|') {
                n * 2
            } else {
                n
            };
            let mut pos = after;
            for _ in 0..items.max(0) {
                match scan_at(buf, pos, depth + 1)? {
                    Some(end) => pos = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(pos))
        }
        other => Err(ProtocolError(format!(
            "unknown reply type byte {other:#04x}"
        ))),
    }
}

/// A parsed reply, for the few control replies the tool reads (`CLUSTER SLOTS`, errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

/// Parses the first whole reply of `buf` (RESP2): the value and its length in bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let Some(end) = scan_at(buf, 0, 0)? else {
        return Ok(None);
    };
    let (v, used) = parse_at(buf, 0)?;
    debug_assert_eq!(used, end);
    Ok(Some((v, end)))
}

fn parse_at(buf: &[u8], at: usize) -> Result<(Value, usize), ProtocolError> {
    let eol = line_end(buf, at + 1).ok_or_else(|| ProtocolError("truncated".into()))?;
    let line = &buf[at + 1..eol];
    let text = || String::from_utf8_lossy(line).into_owned();
    let after = eol + 2;
    Ok(match buf[at] {
        b'+' => (Value::Simple(text()), after),
        b'-' => (Value::Error(text()), after),
        b':' => (Value::Int(parse_len(line)?), after),
        b'$' => match parse_len(line)? {
            n if n < 0 => (Value::Bulk(None), after),
            n => {
                let end = after + n as usize;
                (Value::Bulk(Some(buf[after..end].to_vec())), end + 2)
            }
        },
        b'*' => match parse_len(line)? {
            n if n < 0 => (Value::Array(None), after),
            n => {
                let mut items = Vec::with_capacity(n as usize);
                let mut pos = after;
                for _ in 0..n {
                    let (v, next) = parse_at(buf, pos)?;
                    items.push(v);
                    pos = next;
                }
                (Value::Array(Some(items)), pos)
            }
        },
        other => return Err(ProtocolError(format!("unexpected reply type {other:#04x}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_request() {
        let mut out = Vec::new();
        command(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let mut n = Vec::new();
        push_int(&mut n, -1234567890123);
        push_int(&mut n, 0);
        assert_eq!(n, b"-12345678901230");
    }

    #[test]
    fn scans_every_reply_type_and_stops_at_incomplete() {
        let cases: &[(&[u8], usize, bool)] = &[
            (b"+OK\r\n", 5, false),
            (b"-MOVED 1 127.0.0.1:7000\r\n", 25, true),
            (b":12\r\n", 5, false),
            (b"$-1\r\n", 5, false),
            (b"$3\r\nfoo\r\n", 9, false),
            (b"$4\r\na\r\nb\r\n", 10, false),
            (b"*-1\r\n", 5, false),
            (b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", 19, false),
            (b"%1\r\n+a\r\n:1\r\n", 12, false),
            (b"_\r\n", 3, false),
            (b"!3\r\nERR\r\n", 9, true),
        ];
        for (bytes, len, error) in cases {
            let mut with_tail = bytes.to_vec();
            with_tail.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(
                scan(&with_tail).unwrap(),
                Scan::Reply {
                    len: *len,
                    error: *error
                },
                "{bytes:?}"
            );
            for cut in 0..bytes.len() {
                assert_eq!(
                    scan(&bytes[..cut]).unwrap(),
                    Scan::Incomplete,
                    "{bytes:?} cut at {cut}"
                );
            }
        }
        assert!(scan(b"?x\r\n").is_err());
        assert!(scan(b"$x\r\n").is_err());
    }

    #[test]
    fn parses_cluster_slots_shape() {
        let buf = b"*1\r\n*3\r\n:0\r\n:5460\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n";
        let (v, len) = parse(buf).unwrap().unwrap();
        assert_eq!(len, buf.len());
        let Value::Array(Some(ranges)) = v else {
            panic!()
        };
        let Value::Array(Some(r)) = &ranges[0] else {
            panic!()
        };
        assert_eq!(r[1], Value::Int(5460));
        assert_eq!(parse(&buf[..10]).unwrap(), None);
    }
}
