//! Merging the replies of a request respgate split over several shards (MGET, DEL, ...)
//! or sent to every master (KEYS, DBSIZE, FLUSHALL, SCAN's next shard, INFO, ...).
//!
//! Pure functions over reply bytes: the parts arrive in the order the request was split,
//! each a complete RESP reply; an error from any part is the merged reply (the first one,
//! in part order), so a client never sees a half-merged answer.

use crate::protocol::refusal::Refusal;
use crate::protocol::reply::{put_array_header, put_bulk};
use crate::protocol::value::{array_items, bulk_payload, bulk_text, integer, is_null};
use bytes::{Bytes, BytesMut};

/// How the parts' replies become one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merge {
    /// Integer replies added up (DEL, UNLINK, EXISTS, TOUCH, DBSIZE).
    Sum,
    /// `+OK` when every part said OK (MSET, FLUSHALL, SCRIPT FLUSH, SAVE, ...).
    AllOk,
    /// Arrays concatenated (KEYS).
    Concat,
    /// Every part answers the same; the first is returned (SCRIPT LOAD, FUNCTION LOAD).
    First,
    /// The first non-null reply (RANDOMKEY).
    AnyNonNull,
    /// Arrays of 0/1 combined element-wise with AND (SCRIPT EXISTS).
    AndArrays,
    /// MGET: part `i`'s `j`-th value is element `positions[i][j]` of the result.
    Mget {
        positions: Vec<Vec<u32>>,
        total: usize,
    },
    /// INFO: sections of the first master, `redis_mode:standalone`, `cluster_enabled:0`,
    /// the [`SUMMED`] counters and Keyspace summed over every master, and respgate's own
    /// `# Proxy` section appended.
    Info { proxy_section: String },
    /// LATENCY HISTOGRAM: every master's histograms added up (`latency_histogram`);
    /// `order` holds the command names asked for, lowercase (empty: all).
    Histograms { order: Vec<String> },
    /// SCAN on shard `shard` (one part): the node's cursor is wrapped into respgate's.
    Scan { shard: u8, tags: Vec<u8> },
    /// Arrays concatenated without duplicates (PUBSUB CHANNELS).
    Union,
    /// PUBSUB NUMSUB: `[channel, count, ...]` with the counts summed over the parts,
    /// plus `adjust[i]` for the i-th channel (respgate's own subscribers).
    NumSub { adjust: Vec<i64> },
    /// PUBLISH / SPUBLISH (one part): the node's receiver count plus `adjust`
    /// (respgate's own subscribers in place of its one backend subscription); an error
    /// passes through.
    Add(i64),
    /// `inner`, after dropping from each part the keys the user may not read (KEYS,
    /// SCAN, RANDOMKEY for a user limited to key patterns).
    Readable {
        inner: Box<Merge>,
        filter: ReadFilter,
    },
    /// CONFIG GET (one part): secret parameters' values redacted (`config_get`).
    RedactSecrets,
    /// `inner`, for a keyspace walk (KEYS, SCAN): the request holds its place among
    /// its user's walks in flight (`guards.max_keyspace_walks_per_user`) until its
    /// reply is merged or the client goes.
    Walk {
        inner: Box<Merge>,
        hold: crate::guards::in_flight::WalkHold,
    },
}

/// The user whose readable keys a reply is filtered to.
#[derive(Clone)]
pub struct ReadFilter {
    /// A user limited to key patterns: only keys it may read are kept.
    pub user: Option<std::sync::Arc<crate::acl::User>>,
    /// respgate's internal keys (`cross_slot::internal`, a move's claim) are left out:
    /// set while any user computes cross-slot commands.
    pub hide_internal: bool,
}

impl ReadFilter {
    fn readable(&self, key: &[u8]) -> bool {
        !(self.hide_internal && super::cross_slot::internal::is_internal(key))
            && self
                .user
                .as_ref()
                .is_none_or(|u| u.acl.key_allowed(key, crate::acl::READ))
    }
}

impl PartialEq for ReadFilter {
    fn eq(&self, other: &Self) -> bool {
        self.hide_internal == other.hide_internal
            && match (&self.user, &other.user) {
                (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for ReadFilter {}

impl std::fmt::Debug for ReadFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.user.as_ref().map(|u| u.name.as_str());
        write!(
            f,
            "ReadFilter({user:?}, hide_internal: {})",
            self.hide_internal
        )
    }
}

/// Merges `parts` (one reply per part, in split order).
pub fn merge(how: &Merge, parts: &[Bytes]) -> Bytes {
    if let Some(err) = parts.iter().find(|p| p.first() == Some(&b'-')) {
        return err.clone();
    }
    let merged = match how {
        Merge::Sum => sum(parts),
        Merge::AllOk => Some(Bytes::from_static(b"+OK\r\n")),
        Merge::Concat => concat(parts),
        Merge::First => parts.first().cloned(),
        Merge::AnyNonNull => parts
            .iter()
            .find(|p| !is_null(p))
            .or(parts.first())
            .cloned(),
        Merge::AndArrays => and_arrays(parts),
        Merge::Mget { positions, total } => mget(parts, positions, *total),
        Merge::Info { proxy_section } => info(parts, proxy_section),
        Merge::Scan { shard, tags } => scan(parts, *shard, tags),
        Merge::Histograms { order } => super::latency_histogram::merge(parts, order),
        Merge::Union => union(parts),
        Merge::NumSub { adjust } => numsub(parts, adjust),
        Merge::Add(adjust) => match parts.first() {
            Some(p) if p.first() == Some(&b':') => {
                integer(p).map(|n| Bytes::from(format!(":{}\r\n", (n + adjust).max(0))))
            }
            other => other.cloned(),
        },
        Merge::RedactSecrets => parts.first().and_then(|p| super::config_get::redact(p)),
        Merge::Walk { inner, .. } => return merge(inner, parts),
        Merge::Readable { inner, filter } => {
            let filtered: Option<Vec<Bytes>> =
                parts.iter().map(|p| filter_part(p, filter)).collect();
            return match filtered {
                Some(parts) => merge(inner, &parts),
                None => merge(&Merge::First, &[]),
            };
        }
    };
    merged.unwrap_or_else(|| Refusal::Unmergeable.reply())
}

fn sum(parts: &[Bytes]) -> Option<Bytes> {
    let mut total = 0i64;
    for p in parts {
        total += integer(p)?;
    }
    Some(Bytes::from(format!(":{total}\r\n")))
}

/// One part's reply with unreadable keys removed: an array of keys (KEYS), a SCAN reply
/// (`[cursor, keys]`), or a single key (RANDOMKEY, which becomes null).
fn filter_part(part: &Bytes, filter: &ReadFilter) -> Option<Bytes> {
    let keep = |item: &[u8]| bulk_payload(item).is_some_and(|k| filter.readable(k));
    match part.first() {
        Some(b'$') if is_null(part) => Some(part.clone()),
        Some(b'$') => Some(if keep(part) {
            part.clone()
        } else {
            Bytes::from_static(b"$-1\r\n")
        }),
        Some(b'*') => {
            let items = array_items(part)?;
            if items.len() == 2 && items[1].first() == Some(&b'*') {
                // SCAN: the cursor, then the keys.
                let keys = array_items(items[1])?;
                let kept = array_of(
                    keys.into_iter()
                        .filter(|k| keep(k))
                        .collect::<Vec<_>>()
                        .into_iter(),
                );
                let mut out = BytesMut::new();
                put_array_header(&mut out, 2);
                out.extend_from_slice(items[0]);
                out.extend_from_slice(&kept);
                return Some(out.freeze());
            }
            Some(array_of(
                items
                    .into_iter()
                    .filter(|k| keep(k))
                    .collect::<Vec<_>>()
                    .into_iter(),
            ))
        }
        _ => Some(part.clone()),
    }
}

fn array_of<'a>(items: impl ExactSizeIterator<Item = &'a [u8]>) -> Bytes {
    let mut out = BytesMut::new();
    put_array_header(&mut out, items.len());
    for item in items {
        out.extend_from_slice(item);
    }
    out.freeze()
}

fn concat(parts: &[Bytes]) -> Option<Bytes> {
    let mut all = Vec::new();
    for p in parts {
        all.extend(array_items(p)?);
    }
    Some(array_of(all.into_iter()))
}

fn union(parts: &[Bytes]) -> Option<Bytes> {
    let mut seen = std::collections::HashSet::new();
    let mut all = Vec::new();
    for p in parts {
        for item in array_items(p)? {
            if seen.insert(item) {
                all.push(item);
            }
        }
    }
    Some(array_of(all.into_iter()))
}

fn numsub(parts: &[Bytes], adjust: &[i64]) -> Option<Bytes> {
    let first = array_items(parts.first()?)?;
    let mut counts: Vec<i64> = adjust.to_vec();
    counts.resize(first.len() / 2, 0);
    for p in parts {
        let items = array_items(p)?;
        for (i, pair) in items.chunks(2).enumerate() {
            *counts.get_mut(i)? += integer(pair.get(1)?)?;
        }
    }
    let mut out = BytesMut::new();
    put_array_header(&mut out, first.len());
    for (i, pair) in first.chunks(2).enumerate() {
        out.extend_from_slice(pair[0]);
        out.extend_from_slice(format!(":{}\r\n", counts[i].max(0)).as_bytes());
    }
    Some(out.freeze())
}

fn and_arrays(parts: &[Bytes]) -> Option<Bytes> {
    let mut acc: Option<Vec<bool>> = None;
    for p in parts {
        let flags: Vec<bool> = array_items(p)?
            .iter()
            .map(|i| integer(i) == Some(1))
            .collect();
        acc = Some(match acc {
            None => flags,
            Some(a) => a.iter().zip(flags).map(|(x, y)| *x && y).collect(),
        });
    }
    let acc = acc.unwrap_or_default();
    let items: Vec<&[u8]> = acc
        .iter()
        .map(|&b| if b { &b":1\r\n"[..] } else { &b":0\r\n"[..] })
        .collect();
    Some(array_of(items.into_iter()))
}

fn mget(parts: &[Bytes], positions: &[Vec<u32>], total: usize) -> Option<Bytes> {
    let mut slots: Vec<&[u8]> = vec![b"$-1\r\n"; total];
    for (p, pos) in parts.iter().zip(positions) {
        let items = array_items(p)?;
        if items.len() != pos.len() {
            return None;
        }
        for (item, &i) in items.into_iter().zip(pos) {
            *slots.get_mut(i as usize)? = item;
        }
    }
    Some(array_of(slots.into_iter()))
}

fn info(parts: &[Bytes], proxy_section: &str) -> Option<Bytes> {
    let first = bulk_text(parts.first()?)?;
    let dbs = keyspace(parts)?;
    let sums = summed(parts)?;
    let own_clients = proxy_section
        .lines()
        .find_map(|l| l.strip_prefix("proxy_connected_clients:"));
    let mut out = String::with_capacity(first.len() + 256);
    let mut in_keyspace = false;
    let mut saw_keyspace = false;
    for line in first.split("\r\n") {
        if let Some((name, _)) = line.split_once(':') {
            if let Some(i) = SUMMED.iter().position(|s| *s == name) {
                out.push_str(&format!("{name}:{}\r\n", sums[i]));
                continue;
            }
            if let (Some(n), "connected_clients") = (own_clients, name) {
                out.push_str(&format!("connected_clients:{}\r\n", n.trim()));
                continue;
            }
        }
        if line.starts_with('#') {
            in_keyspace = line.trim() == "# Keyspace";
            if in_keyspace {
                saw_keyspace = true;
                out.push_str("# Keyspace\r\n");
                for (db, k, e, t) in &dbs {
                    out.push_str(&format!("{db}:keys={k},expires={e},avg_ttl={t}\r\n"));
                }
                continue;
            }
        }
        if in_keyspace && line.starts_with("db") {
            continue;
        }
        if line == "cluster_enabled:1" {
            out.push_str("cluster_enabled:0\r\n");
            continue;
        }
        if line == "redis_mode:cluster" {
            out.push_str("redis_mode:standalone\r\n");
            continue;
        }
        if line.is_empty() && out.ends_with("\r\n\r\n") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    let _ = saw_keyspace;
    while out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    // No section asked for exists (`INFO nosuch`): Redis answers an empty string.
    if out == "\r\n" {
        out.clear();
    }
    if !proxy_section.is_empty() {
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str(proxy_section);
    }
    // Over RESP3 the nodes answer with a verbatim string: so does respgate.
    let resp3 = parts.first().is_some_and(|p| p.first() == Some(&b'='));
    Some(crate::protocol::reply::verbatim(out.as_bytes(), resp3))
}

/// Per `db` line of the masters' `# Keyspace`: keys and expires summed, avg_ttl of the
/// first master reporting it.
fn keyspace(parts: &[Bytes]) -> Option<Vec<(String, i64, i64, i64)>> {
    let mut dbs: Vec<(String, i64, i64, i64)> = Vec::new();
    for p in parts {
        let text = bulk_text(p)?;
        for line in text.lines() {
            let Some((db, rest)) = line.split_once(':') else {
                continue;
            };
            if !db.starts_with("db") || !rest.starts_with("keys=") {
                continue;
            }
            let field = |name: &str| -> i64 {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            match dbs.iter_mut().find(|d| d.0 == db) {
                Some(d) => {
                    d.1 += field("keys");
                    d.2 += field("expires");
                }
                None => dbs.push((db.into(), field("keys"), field("expires"), field("avg_ttl"))),
            }
        }
    }
    Some(dbs)
}

/// The fields summed over the masters. The rule: a count of data-side events or of
/// state a client sees on the nodes (commands run, keys expired or evicted, hits and
/// misses, writes since the last save, error replies, clients blocked in a command) is
/// what one Redis holding the whole data set would show as the sum of the masters'
/// figures. `blocked_clients` in particular: a respgate client in BLPOP/XREAD BLOCK/...
/// blocks on a connection of its own to the key's node, where the node counts it, so
/// the sum is 1 exactly while that client waits (and tools that wait for "a client is
/// blocked" before pushing see it). Fields about connections (`connected_clients`) are
/// respgate's own clients' (its `# Proxy` section has the figure); everything else is
/// the first master's, as before. Replicas are not asked: they repeat the masters'
/// data-side events.
const SUMMED: [&str; 10] = [
    "total_commands_processed",
    "instantaneous_ops_per_sec",
    "keyspace_hits",
    "keyspace_misses",
    "blocked_clients",
    "expired_keys",
    "evicted_keys",
    "total_error_replies",
    "rdb_changes_since_last_save",
    "expired_time_cap_reached_count",
];

/// The [`SUMMED`] counters, summed over the masters.
fn summed(parts: &[Bytes]) -> Option<[i64; SUMMED.len()]> {
    let mut sums = [0i64; SUMMED.len()];
    for p in parts {
        let text = bulk_text(p)?;
        for line in text.lines() {
            if let Some((name, value)) = line.split_once(':') {
                if let Some(i) = SUMMED.iter().position(|s| *s == name) {
                    sums[i] += value.trim().parse::<i64>().unwrap_or(0);
                }
            }
        }
    }
    Some(sums)
}

/// Packs a shard index, a tag of the shard's master and the node's cursor into one
/// cursor: `node << 16 | tag << 8 | shard`. A changed tag (the shard failed over to a
/// node whose hash table orders keys differently) restarts that shard from 0: SCAN may
/// return duplicates, never miss a key.
pub fn encode_scan_cursor(node: u64, tag: u8, shard: u8) -> u64 {
    (node << 16) | ((tag as u64) << 8) | shard as u64
}

/// The (node cursor, tag, shard) inside a respgate SCAN cursor, or None when it cannot
/// be one (node cursor too large to have been produced here).
pub fn decode_scan_cursor(cursor: u64) -> (u64, u8, u8) {
    (cursor >> 16, (cursor >> 8) as u8, cursor as u8)
}

fn scan(parts: &[Bytes], shard: u8, tags: &[u8]) -> Option<Bytes> {
    let items = array_items(parts.first()?)?;
    if items.len() != 2 {
        return None;
    }
    let node_cursor: u64 = bulk_text(items[0])?.parse().ok()?;
    if node_cursor >= 1 << 48 {
        return None;
    }
    let next = if node_cursor != 0 {
        encode_scan_cursor(node_cursor, tags[shard as usize], shard)
    } else if (shard as usize) + 1 < tags.len() {
        encode_scan_cursor(0, tags[shard as usize + 1], shard + 1)
    } else {
        0
    };
    let mut out = BytesMut::new();
    put_array_header(&mut out, 2);
    put_bulk(&mut out, next.to_string().as_bytes());
    out.extend_from_slice(items[1]);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn sums_integers_and_passes_the_first_error() {
        assert_eq!(
            &merge(&Merge::Sum, &[b(":2\r\n"), b(":3\r\n")])[..],
            b":5\r\n"
        );
        assert_eq!(
            &merge(
                &Merge::Sum,
                &[b(":2\r\n"), b("-ERR x\r\n"), b("-ERR y\r\n")]
            )[..],
            b"-ERR x\r\n"
        );
    }

    #[test]
    fn mget_puts_values_back_in_request_order() {
        let how = Merge::Mget {
            positions: vec![vec![0, 2], vec![1]],
            total: 3,
        };
        let parts = [b("*2\r\n$1\r\na\r\n$-1\r\n"), b("*1\r\n$1\r\nb\r\n")];
        assert_eq!(
            &merge(&how, &parts)[..],
            b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n"
        );
    }

    #[test]
    fn concatenates_and_ands_arrays() {
        let parts = [b("*1\r\n$1\r\na\r\n"), b("*0\r\n"), b("*1\r\n$1\r\nb\r\n")];
        assert_eq!(
            &merge(&Merge::Concat, &parts)[..],
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        let parts = [b("*2\r\n:1\r\n:1\r\n"), b("*2\r\n:0\r\n:1\r\n")];
        assert_eq!(&merge(&Merge::AndArrays, &parts)[..], b"*2\r\n:0\r\n:1\r\n");
    }

    #[test]
    fn pubsub_introspection_merges() {
        let parts = [b("*2\r\n$1\r\na\r\n$1\r\nb\r\n"), b("*1\r\n$1\r\na\r\n")];
        assert_eq!(
            &merge(&Merge::Union, &parts)[..],
            b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        );
        let parts = [b("*2\r\n$1\r\na\r\n:1\r\n"), b("*2\r\n$1\r\na\r\n:2\r\n")];
        let how = Merge::NumSub { adjust: vec![4] };
        assert_eq!(&merge(&how, &parts)[..], b"*2\r\n$1\r\na\r\n:7\r\n");
    }

    #[test]
    fn random_key_prefers_a_non_null_reply() {
        let parts = [b("$-1\r\n"), b("$1\r\nk\r\n")];
        assert_eq!(&merge(&Merge::AnyNonNull, &parts)[..], b"$1\r\nk\r\n");
    }

    #[test]
    fn scan_cursor_moves_to_the_next_shard_when_a_node_is_done() {
        let tags = vec![7, 9, 11];
        let how = Merge::Scan {
            shard: 0,
            tags: tags.clone(),
        };
        let out = merge(&how, &[b("*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n")]);
        let next = encode_scan_cursor(0, 9, 1);
        assert_eq!(
            &out[..],
            format!(
                "*2\r\n${}\r\n{next}\r\n*1\r\n$1\r\nk\r\n",
                next.to_string().len()
            )
            .as_bytes()
        );
        let how = Merge::Scan { shard: 2, tags };
        let out = merge(&how, &[b("*2\r\n$1\r\n0\r\n*0\r\n")]);
        assert_eq!(&out[..], b"*2\r\n$1\r\n0\r\n*0\r\n");
        assert_eq!(
            decode_scan_cursor(encode_scan_cursor(123, 9, 1)),
            (123, 9, 1)
        );
    }

    #[test]
    fn info_sums_the_keyspace_and_reports_standalone() {
        let node = |keys: u32| {
            let text = format!(
                "# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\n\r\n# Cluster\r\ncluster_enabled:1\r\n\r\n# Keyspace\r\ndb0:keys={keys},expires=1,avg_ttl=5\r\n"
            );
            b(&format!("${}\r\n{text}\r\n", text.len()))
        };
        let how = Merge::Info {
            proxy_section: "# Proxy\r\nproxy:respgate\r\n".into(),
        };
        let out = merge(&how, &[node(2), node(3)]);
        let text = bulk_text(&out).unwrap();
        assert!(text.contains("cluster_enabled:0\r\n"), "{text}");
        assert!(text.contains("redis_mode:standalone\r\n"), "{text}");
        assert!(
            text.contains("db0:keys=5,expires=2,avg_ttl=5\r\n"),
            "{text}"
        );
        assert!(text.ends_with("# Proxy\r\nproxy:respgate\r\n"), "{text}");
    }

    #[test]
    fn info_counts_respgate_clients_and_sums_cluster_counters() {
        let node = |commands: u32, blocked: u32| {
            let text = format!(
                "# Clients\r\nconnected_clients:7\r\nblocked_clients:{blocked}\r\n\r\n# Stats\r\ntotal_commands_processed:{commands}\r\ninstantaneous_ops_per_sec:2\r\nexpired_keys:3\r\n"
            );
            b(&format!("${}\r\n{text}\r\n", text.len()))
        };
        let how = Merge::Info {
            proxy_section: "# Proxy\r\nproxy_connected_clients:42\r\n".into(),
        };
        let out = merge(&how, &[node(10, 0), node(5, 1)]);
        let text = bulk_text(&out).unwrap();
        assert!(text.contains("connected_clients:42\r\n"), "{text}");
        assert!(text.contains("total_commands_processed:15\r\n"), "{text}");
        assert!(text.contains("instantaneous_ops_per_sec:4\r\n"), "{text}");
        assert!(text.contains("blocked_clients:1\r\n"), "{text}");
        assert!(text.contains("expired_keys:6\r\n"), "{text}");
    }
}
