//! KEYS served by SCAN (a guard rule's `rewrite = "scan"`): no node runs KEYS, so none
//! blocks its event loop walking its whole keyspace at once.
//!
//! A task walks each master's keyspace with `SCAN cursor MATCH pattern COUNT 1000` on
//! the client's own links until the cursor comes back to 0, and answers with the union
//! (an array, as KEYS). Past `max_keys_reply` keys it stops and answers an error
//! instead, so respgate's memory stays bounded whatever the keyspace. Keys the client's
//! user may not read are left out, as for KEYS.

use crate::acl::{User, READ};
use crate::cluster::Cluster;
use crate::protocol::reply::{self, put_array_header, put_bulk};
use crate::protocol::scan::parse_int;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Starts KEYS `pattern` as SCANs; the reply arrives on the receiver.
pub fn start(
    cluster: Arc<Cluster>,
    client_id: u64,
    pattern: Bytes,
    max: usize,
    filter: Option<Arc<User>>,
) -> oneshot::Receiver<Bytes> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let reply = run(&cluster, client_id, &pattern, max, filter.as_deref()).await;
        let _ = tx.send(reply);
    });
    rx
}

async fn run(
    cluster: &Cluster,
    client_id: u64,
    pattern: &[u8],
    max: usize,
    filter: Option<&User>,
) -> Bytes {
    let masters: Vec<_> = {
        let topo = cluster.topology();
        match topo.as_ref() {
            Some(t) => t.shards().iter().map(|s| s.master.clone()).collect(),
            None => {
                return reply::error("CLUSTERDOWN The cluster is down (respgate knows no node yet)")
            }
        }
    };
    let mut keys: Vec<Bytes> = Vec::new();
    let mut bytes = 0usize;
    for node in masters {
        let mut cursor = Bytes::from_static(b"0");
        loop {
            let request =
                reply::command([&b"SCAN"[..], &cursor, b"MATCH", pattern, b"COUNT", b"1000"]);
            let answer = match node.ask(client_id, false, request).await {
                Ok(a) => a,
                Err(why) => {
                    return reply::error(&format!(
                        "ERR respgate: KEYS (served by SCAN) failed on {}: {why}",
                        node.addr()
                    ))
                }
            };
            if answer.first() == Some(&b'-') {
                return answer;
            }
            let Some((next, batch)) = parse_scan(&answer) else {
                return reply::error("ERR respgate: unreadable SCAN reply");
            };
            for k in batch {
                if filter.is_some_and(|u| !u.acl.key_allowed(&k, READ)) {
                    continue;
                }
                if keys.len() >= max {
                    metrics::counter!("respgate_safe_keys_overflow_total").increment(1);
                    return reply::error(&format!(
                        "ERR respgate: KEYS matches more than {max} keys (guards.max_keys_reply); use SCAN with MATCH and a narrower pattern"
                    ));
                }
                bytes += k.len();
                keys.push(k);
            }
            if &next[..] == b"0" {
                break;
            }
            cursor = next;
        }
    }
    let mut out = BytesMut::with_capacity(bytes + keys.len() * 16 + 16);
    put_array_header(&mut out, keys.len());
    for k in &keys {
        put_bulk(&mut out, k);
    }
    out.freeze()
}

/// A SCAN reply: the next cursor and the batch of keys.
pub(super) fn parse_scan(b: &Bytes) -> Option<(Bytes, Vec<Bytes>)> {
    let mut pos = 0;
    let line = |pos: &mut usize| -> Option<(u8, i64)> {
        let start = *pos;
        let end = start + b[start..].windows(2).position(|w| w == b"\r\n")?;
        *pos = end + 2;
        Some((b[start], parse_int(&b[start + 1..end])?))
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
    let mut keys = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        keys.push(bulk(&mut pos)?);
    }
    Some((cursor, keys))
}

#[cfg(test)]
mod tests {
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
