//! Reading RESP values respgate only needs to look into (array items, bulk payloads,
//! pub/sub fields), on reply bytes as they came: no frame is built. Used by merging
//! (session), pub/sub and the replica-lag tracker alike.

use super::scan::{parse_int, scan_reply};

/// A null reply (RESP2 `$-1` / `*-1`, RESP3 `_`).
pub fn is_null(reply: &[u8]) -> bool {
    reply == b"$-1\r\n" || reply == b"*-1\r\n" || reply == b"_\r\n"
}

/// An integer reply's value.
pub fn integer(reply: &[u8]) -> Option<i64> {
    let body = reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    parse_int(body)
}

/// The elements of an array reply, each as its raw bytes (a null array has none).
pub fn array_items(reply: &[u8]) -> Option<Vec<&[u8]>> {
    if is_null(reply) {
        return Some(Vec::new());
    }
    let header_end = reply.iter().position(|&b| b == b'\r')?;
    if !matches!(reply.first(), Some(b'*' | b'~')) {
        return None;
    }
    let n = parse_int(&reply[1..header_end])?;
    let mut pos = header_end + 2;
    // Sized by the bytes, never by the count alone (a peer may announce any count).
    let mut items = Vec::with_capacity((n.max(0) as usize).min(reply.len() / 3));
    for _ in 0..n {
        let len = scan_reply(&reply[pos..]).ok()??;
        items.push(&reply[pos..pos + len]);
        pos += len;
    }
    Some(items)
}

/// The kind and the channel (or pattern) of a pub/sub frame (`message`, `pmessage`,
/// `subscribe`, ...): the payloads of its first two bulk strings.
pub fn pubsub_fields(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let items = array_items(frame)?;
    Some((bulk_payload(items.first()?)?, bulk_payload(items.get(1)?)?))
}

/// The payload of a bulk string reply (`None` for a null or anything else).
pub fn bulk_payload(item: &[u8]) -> Option<&[u8]> {
    if item.first() != Some(&b'$') {
        return None;
    }
    let start = item.iter().position(|&b| b == b'\n')? + 1;
    item.get(start..item.len().checked_sub(2)?)
}

/// The text of a bulk string (or RESP3 verbatim string, without its format) reply.
pub fn bulk_text(reply: &[u8]) -> Option<&str> {
    let header_end = reply.iter().position(|&b| b == b'\r')?;
    if !matches!(reply.first(), Some(b'$' | b'=')) {
        return None;
    }
    let len = parse_int(&reply[1..header_end])?;
    let body = reply.get(header_end + 2..header_end + 2 + len.max(0) as usize)?;
    // A RESP3 verbatim string starts with its format: `txt:`.
    let body = match reply[0] {
        b'=' => body.get(4..)?,
        _ => body,
    };
    std::str::from_utf8(body).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_announced_count_allocates_nothing_by_itself() {
        // Was `Vec::with_capacity(count)`: a capacity overflow panic (or an abort on
        // allocating exabytes) for counts no bytes back.
        assert_eq!(super::array_items(b"*9223372036854775807\r\n"), None);
        assert_eq!(super::array_items(b"*1152921504606846975\r\n:1\r\n"), None);
        let scan =
            bytes::Bytes::from_static(b"*2\r\n$1\r\n0\r\n*1152921504606846975\r\n$1\r\nk\r\n");
        assert_eq!(crate::protocol::reply::parse_scan(&scan), None);
    }
}
