//! Replies respgate composes itself (local commands, errors), written straight into the
//! client's output as RESP2; and SCAN's reply read back (KEYS served by SCAN, the TTL
//! sweeper).

use bytes::{BufMut, Bytes, BytesMut};

/// `+OK`.
pub const OK: &[u8] = b"+OK\r\n";
/// `+PONG`.
pub const PONG: &[u8] = b"+PONG\r\n";
/// The null bulk string.
pub const NULL: &[u8] = b"$-1\r\n";

/// A simple string reply.
pub fn simple(s: &str) -> Bytes {
    Bytes::from(format!("+{s}\r\n"))
}

/// An error reply: `msg` must start with the error code (`ERR`, `NOPERM`, ...) and hold
/// no CR or LF (they are replaced by spaces so a reply can never desync a client).
pub fn error(msg: &str) -> Bytes {
    let clean: String = msg
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    Bytes::from(format!("-{clean}\r\n"))
}

/// An integer reply.
pub fn integer(n: i64) -> Bytes {
    Bytes::from(format!(":{n}\r\n"))
}

/// A bulk string reply.
pub fn bulk(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    put_bulk(&mut out, data);
    out.freeze()
}

/// Text as Redis sends CLIENT INFO / CLIENT LIST / INFO: a bulk string, or over RESP3
/// a verbatim string of format `txt` (`=<len>\r\ntxt:<text>\r\n`).
pub fn verbatim(text: &[u8], resp3: bool) -> Bytes {
    if !resp3 {
        return bulk(text);
    }
    let mut out = BytesMut::with_capacity(text.len() + 20);
    out.put_u8(b'=');
    out.extend_from_slice((text.len() + 4).to_string().as_bytes());
    out.extend_from_slice(b"\r\ntxt:");
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
    out.freeze()
}

/// Appends a bulk string to `out`.
pub fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    out.put_u8(b'$');
    out.put_slice(data.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends an array header for `n` elements to `out`.
pub fn put_array_header(out: &mut BytesMut, n: usize) {
    out.put_u8(b'*');
    out.put_slice(n.to_string().as_bytes());
    out.put_slice(b"\r\n");
}

/// Encodes `args` as a RESP multibulk request (used for inline commands and for the
/// requests respgate sends on its own behalf).
pub fn command<I, A>(args: I) -> Bytes
where
    I: IntoIterator<Item = A>,
    I::IntoIter: ExactSizeIterator,
    A: AsRef<[u8]>,
{
    let args = args.into_iter();
    let mut out = BytesMut::new();
    put_array_header(&mut out, args.len());
    for a in args {
        put_bulk(&mut out, a.as_ref());
    }
    out.freeze()
}

/// A SCAN reply: the next cursor and the batch of keys.
pub fn parse_scan(b: &Bytes) -> Option<(Bytes, Vec<Bytes>)> {
    let mut pos = 0;
    let line = |pos: &mut usize| -> Option<(u8, i64)> {
        let start = *pos;
        let end = start + b[start..].windows(2).position(|w| w == b"\r\n")?;
        *pos = end + 2;
        Some((
            b[start],
            crate::protocol::scan::parse_int(&b[start + 1..end])?,
        ))
    };
    let bulk = |pos: &mut usize| -> Option<Bytes> {
        let (t, n) = line(pos)?;
        if t != b'$' || n < 0 {
            return None;
        }
        let s = *pos;
        let e = s + n as usize;
        if e + 2 > b.len() {
            return None;
        }
        *pos = e + 2;
        Some(b.slice(s..e))
    };
    if line(&mut pos)? != (b'*', 2) {
        return None;
    }
    let cursor = bulk(&mut pos)?;
    let (t, n) = line(&mut pos)?;
    if t != b'*' {
        return None;
    }
    // Sized by the bytes, never by the count alone (a peer may announce any count).
    let mut keys = Vec::with_capacity((n.max(0) as usize).min(b.len() / 3));
    for _ in 0..n {
        keys.push(bulk(&mut pos)?);
    }
    Some((cursor, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cannot_carry_line_breaks() {
        assert_eq!(&error("ERR a\r\nb")[..], b"-ERR a  b\r\n");
    }

    #[test]
    fn encodes_commands() {
        assert_eq!(
            &command(["GET", "k"])[..],
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }

    #[test]
    fn parses_scan_replies() {
        let b = bytes::Bytes::from_static(b"*2\r\n$3\r\n128\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n");
        let (c, k) = super::parse_scan(&b).unwrap();
        assert_eq!(&c[..], b"128");
        assert_eq!(
            k,
            vec![
                bytes::Bytes::from_static(b"a"),
                bytes::Bytes::from_static(b"bc")
            ]
        );
    }
}
