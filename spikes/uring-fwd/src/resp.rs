//! RESP framing for the spike: requests are arrays of bulk strings (what redis-benchmark
//! and every client library send), replies are any RESP2 value. Both scanners are
//! restartable from the start of a frame: they return `None` on a partial frame and the
//! caller retries once more bytes came (frames here are small, rescanning is cheap).

/// Position just past the next "\r\n" at or after `from`, and the line's content end.
#[inline]
fn line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 1 < buf.len() {
        if buf[i] == b'\r' && buf[i + 1] == b'\n' {
            return Some((i, i + 2));
        }
        i += 1;
    }
    None
}

#[inline]
fn int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as i64)?;
    }
    Some(if neg { -v } else { v })
}

/// A framed request: its length in bytes and where its first argument after the
/// command name (the key of GET/SET) lies, if any.
pub struct Request {
    pub len: usize,
    pub key: Option<(usize, usize)>,
}

#[derive(Debug)]
pub struct Malformed;

/// Frames one request at the start of `buf`.
pub fn scan_request(buf: &[u8]) -> Result<Option<Request>, Malformed> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return Err(Malformed); // inline commands: out of the spike's scope
    }
    let Some((end, mut pos)) = line(buf, 1) else {
        return Ok(None);
    };
    let argc = int(&buf[1..end]).ok_or(Malformed)?;
    if !(1..=1024 * 1024).contains(&argc) {
        return Err(Malformed);
    }
    let mut key = None;
    for i in 0..argc {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(Malformed);
        }
        let Some((end, next)) = line(buf, pos + 1) else {
            return Ok(None);
        };
        let n = int(&buf[pos + 1..end]).ok_or(Malformed)?;
        if n < 0 {
            return Err(Malformed);
        }
        let start = next;
        let stop = start + n as usize;
        if stop + 2 > buf.len() {
            return Ok(None);
        }
        if i == 1 {
            key = Some((start, stop));
        }
        pos = stop + 2;
    }
    Ok(Some(Request { len: pos, key }))
}

/// Length of the one complete reply at the start of `buf`, if it is all there.
pub fn scan_reply(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    scan_value(buf, 0)
}

fn scan_value(buf: &[u8], pos: usize) -> Result<Option<usize>, Malformed> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let Some((end, next)) = line(buf, pos + 1) else {
        return Ok(None);
    };
    match buf[pos] {
        b'+' | b'-' | b':' => Ok(Some(next)),
        b'$' => {
            let n = int(&buf[pos + 1..end]).ok_or(Malformed)?;
            if n < 0 {
                return Ok(Some(next));
            }
            let stop = next + n as usize + 2;
            Ok((stop <= buf.len()).then_some(stop))
        }
        b'*' => {
            let n = int(&buf[pos + 1..end]).ok_or(Malformed)?;
            let mut p = next;
            for _ in 0..n.max(0) {
                match scan_value(buf, p)? {
                    Some(q) => p = q,
                    None => return Ok(None),
                }
            }
            Ok(Some(p))
        }
        _ => Err(Malformed),
    }
}

/// A parsed reply, for the start-up CLUSTER SLOTS only (allocates).
#[derive(Debug)]
pub enum Value {
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Value>),
    Other,
}

pub fn parse_value(buf: &[u8], pos: usize) -> Option<(Value, usize)> {
    let (end, next) = line(buf, pos + 1)?;
    let head = &buf[pos + 1..end];
    match buf[pos] {
        b':' => Some((Value::Int(int(head)?), next)),
        b'$' => {
            let n = int(head)?;
            if n < 0 {
                return Some((Value::Other, next));
            }
            let stop = next + n as usize;
            Some((Value::Bulk(buf[next..stop].to_vec()), stop + 2))
        }
        b'*' => {
            let n = int(head)?;
            let mut p = next;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                let (v, q) = parse_value(buf, p)?;
                items.push(v);
                p = q;
            }
            Some((Value::Array(items), p))
        }
        _ => Some((Value::Other, next)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_partial() {
        let r = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        let got = scan_request(r).unwrap().unwrap();
        assert_eq!(got.len, r.len());
        assert_eq!(&r[got.key.unwrap().0..got.key.unwrap().1], b"key");
        for cut in 0..r.len() {
            assert!(scan_request(&r[..cut]).unwrap().is_none(), "cut {cut}");
        }
    }

    #[test]
    fn replies() {
        assert_eq!(scan_reply(b"+OK\r\n").unwrap(), Some(5));
        assert_eq!(scan_reply(b"$-1\r\n").unwrap(), Some(5));
        assert_eq!(scan_reply(b"$3\r\nabc\r\n+OK").unwrap(), Some(9));
        assert_eq!(scan_reply(b"$3\r\nab").unwrap(), None);
        assert_eq!(scan_reply(b"*2\r\n$1\r\na\r\n:1\r\n").unwrap(), Some(15));
        assert_eq!(scan_reply(b"*2\r\n$1\r\na\r\n").unwrap(), None);
    }
}
