//! Replies respgate composes itself (local commands, errors), written straight into the
//! client's output as RESP2.

use bytes::{BufMut, Bytes, BytesMut};

/// `+OK`.
pub const OK: &[u8] = b"+OK\r\n";
/// `+PONG`.
pub const PONG: &[u8] = b"+PONG\r\n";
/// The null bulk string.
pub const NULL: &[u8] = b"$-1\r\n";
/// Redis's error for keys (or shard channels) of more than one slot.
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

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
}
