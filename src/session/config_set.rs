//! CONFIG SET on every node of the cluster (masters and replicas), all or nothing.
//!
//! A standalone Redis applies a multi-parameter CONFIG SET atomically; respgate keeps
//! that across nodes: it first reads the parameters' current values on every node
//! (CONFIG GET), then sets them everywhere at once. If any node refuses, the nodes that
//! accepted (or whose answer was lost) are given their previous values back, and the
//! client gets the refusing node's error, as that node worded it. If a node cannot be
//! read first, nothing is set.
//!
//! Runs as a task of its own; the session queues its reply in request order and reads
//! the client's next requests only once it is done, so a pipelined `CONFIG GET` after
//! it sees its effect. The task uses the client's own backend links, behind whatever
//! that client sent before.

use crate::cluster::{keyspace, Cluster};
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use crate::protocol::scan::{parse_int, scan_reply};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Starts CONFIG SET `args` (the whole request: `CONFIG SET p v [p v ...]`); the reply
/// arrives on the returned receiver.
pub fn start(
    cluster: Arc<Cluster>,
    client_id: u64,
    resp3: bool,
    args: Vec<Bytes>,
) -> oneshot::Receiver<Bytes> {
    crate::workers::spawn_answer(async move { run(&cluster, client_id, resp3, &args).await })
}

async fn run(cluster: &Cluster, client_id: u64, resp3: bool, args: &[Bytes]) -> Bytes {
    let nodes = keyspace::every_node(cluster);
    if nodes.is_empty() {
        return Refusal::NoNodeKnown.reply();
    }
    let names: Vec<&Bytes> = args.iter().skip(2).step_by(2).collect();

    // 1. The values to go back to, from every node.
    let get = reply::command(
        [&b"CONFIG"[..], b"GET"]
            .into_iter()
            .chain(names.iter().map(|n| &n[..]))
            .collect::<Vec<_>>(),
    );
    let mut previous = Vec::with_capacity(nodes.len());
    for (node, answer) in nodes
        .iter()
        .zip(keyspace::ask_all(&nodes, client_id, resp3, &get).await)
    {
        let values = match answer {
            Ok(bytes) if bytes.first() == Some(&b'-') => return bytes,
            Ok(bytes) => config_pairs(&bytes).ok_or_else(|| "unreadable CONFIG GET reply".into()),
            Err(why) => Err(why),
        };
        let values = match values {
            Ok(values) => values,
            Err(why) => {
                let addr = node.addr();
                return Refusal::ConfigSetUnread {
                    addr: addr.to_string(),
                    why: why.to_string(),
                }
                .reply();
            }
        };
        previous.push(values);
    }

    // 2. Set everywhere.
    let set = reply::command(args.iter().map(|a| &a[..]).collect::<Vec<_>>());
    let answers = keyspace::ask_all(&nodes, client_id, resp3, &set).await;
    let refusal = answers.iter().zip(&nodes).find_map(|(a, node)| match a {
        Ok(bytes) if bytes.first() == Some(&b'-') => Some(bytes.clone()),
        Ok(_) => None,
        Err(why) => Some(
            Refusal::ConfigSetFailed {
                addr: node.addr().to_string(),
                why: why.to_string(),
            }
            .reply(),
        ),
    });
    let Some(refusal) = refusal else {
        return Bytes::from_static(reply::OK);
    };

    // 3. Someone refused: put back the old values wherever it may have been applied.
    for ((node, answer), values) in nodes.iter().zip(&answers).zip(&previous) {
        if matches!(answer, Ok(bytes) if bytes.first() == Some(&b'-')) {
            continue;
        }
        let mut words: Vec<&[u8]> = vec![b"CONFIG", b"SET"];
        for name in &names {
            match values.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                Some((n, v)) => {
                    words.push(n);
                    words.push(v);
                }
                None => tracing::warn!(
                    node = node.addr(),
                    parameter = %String::from_utf8_lossy(name),
                    "CONFIG SET rollback: no previous value"
                ),
            }
        }
        if words.len() == 2 {
            continue;
        }
        match node.ask(client_id, resp3, reply::command(words)).await {
            Ok(bytes) if bytes.first() != Some(&b'-') => {}
            other => tracing::warn!(
                node = node.addr(),
                answer = ?other,
                "CONFIG SET rollback failed: the node keeps the new value"
            ),
        }
    }
    refusal
}

/// The (name, value) pairs of a CONFIG GET reply (a RESP2 array or a RESP3 map).
fn config_pairs(reply: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let header_end = reply.iter().position(|&b| b == b'\r')?;
    let n = parse_int(reply.get(1..header_end)?)?;
    let items = match reply.first()? {
        b'*' => n,
        b'%' => n.checked_mul(2)?,
        _ => return None,
    };
    let mut pos = header_end + 2;
    let mut values = Vec::with_capacity((items.max(0) as usize).min(reply.len() / 3));
    for _ in 0..items {
        let len = scan_reply(reply.get(pos..)?).ok()??;
        values.push(string_payload(&reply[pos..pos + len])?.to_vec());
        pos += len;
    }
    let mut pairs = Vec::with_capacity(values.len() / 2);
    let mut it = values.into_iter();
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        pairs.push((name, value));
    }
    Some(pairs)
}

/// The text of a bulk or simple string reply.
fn string_payload(item: &[u8]) -> Option<&[u8]> {
    let body = item.strip_suffix(b"\r\n")?;
    match item.first()? {
        b'+' => body.get(1..),
        b'$' => {
            let start = body.iter().position(|&b| b == b'\n')? + 1;
            body.get(start..)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config_get_replies_in_both_protocols() {
        let resp2 = b"*4\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n$4\r\nsave\r\n$0\r\n\r\n";
        let resp3 = b"%2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n$4\r\nsave\r\n$0\r\n\r\n";
        let want = vec![
            (b"maxmemory".to_vec(), b"0".to_vec()),
            (b"save".to_vec(), b"".to_vec()),
        ];
        assert_eq!(config_pairs(resp2), Some(want.clone()));
        assert_eq!(config_pairs(resp3), Some(want));
        assert_eq!(config_pairs(b"*0\r\n"), Some(Vec::new()));
        assert_eq!(config_pairs(b"-ERR x\r\n"), None);
    }

    #[test]
    fn a_hostile_count_is_neither_doubled_past_i64_nor_allocated() {
        assert_eq!(config_pairs(b"%9223372036854775807\r\n"), None);
        assert_eq!(config_pairs(b"*576460752303423487\r\n$1\r\na\r\n"), None);
    }
}
