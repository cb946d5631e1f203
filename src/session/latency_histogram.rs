//! LATENCY HISTOGRAM over the whole cluster: every master's per-command histograms
//! merged into the one a single Redis running all those commands would show.
//!
//! **Why merge.** Each master only counts the commands it ran; one node's answer misses
//! the calls the other shards served. The merge is exact because every node buckets on
//! the same boundaries (HdrHistogram's powers of two of microseconds): a node reports,
//! at each boundary where its count grew, the *cumulative* number of calls at or under
//! it. So at a boundary `b` the cluster's cumulative count is the sum over nodes of each
//! node's cumulative count at its last boundary `<= b`, and the merged buckets are the
//! union of the nodes' (each one grows there, as Redis prints only growing buckets).
//! `calls` is summed.
//!
//! **Order.** With command names as arguments Redis answers in the arguments' order
//! (repeats included, a container name standing for its subcommands that ran); without
//! arguments, in its table's order, here the order the masters first name them. The
//! reply's shape is the nodes' own: a flat array of pairs in RESP2, maps in RESP3.

use crate::protocol::scan::{parse_int, scan_reply};
use bytes::Bytes;

/// One command's merged histogram: its name (as the nodes spell it), calls, and
/// `(bucket upper bound in µs, cumulative calls)` in increasing order.
struct Entry {
    name: String,
    calls: i64,
    buckets: Vec<(i64, i64)>,
}

/// Merges the masters' replies; `order` holds the command names the client asked for
/// (lowercase), empty for all. None when a part is not a histogram reply.
pub fn merge(parts: &[Bytes], order: &[String]) -> Option<Bytes> {
    let resp3 = parts.first()?.first() == Some(&b'%');
    let mut merged: Vec<Entry> = Vec::new();
    for part in parts {
        let items = pairs(part)?;
        let mut seen: Vec<&str> = Vec::new();
        for pair in items.chunks(2) {
            let name = text(pair.first()?)?;
            // A name the client repeated comes back repeated: count it once per node.
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            let (calls, buckets) = histogram(pair.get(1)?)?;
            match merged.iter_mut().find(|e| e.name == name) {
                Some(e) => {
                    e.calls += calls;
                    e.buckets = add_cumulative(&e.buckets, &buckets);
                }
                None => merged.push(Entry {
                    name: name.to_string(),
                    calls,
                    buckets,
                }),
            }
        }
    }
    let shown: Vec<&Entry> = if order.is_empty() {
        merged.iter().collect()
    } else {
        order
            .iter()
            .flat_map(|want| {
                merged.iter().filter(move |e| {
                    e.name.eq_ignore_ascii_case(want)
                        || (!want.contains('|')
                            && e.name.len() > want.len()
                            && e.name.as_bytes()[want.len()] == b'|'
                            && e.name[..want.len()].eq_ignore_ascii_case(want))
                })
            })
            .collect()
    };
    Some(render(&shown, resp3))
}

/// The sum of two cumulative histograms over the union of their buckets.
fn add_cumulative(a: &[(i64, i64)], b: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let at = |h: &[(i64, i64)], bound: i64| {
        h.iter()
            .take_while(|(b, _)| *b <= bound)
            .last()
            .map_or(0, |(_, c)| *c)
    };
    let mut bounds: Vec<i64> = a.iter().chain(b).map(|(b, _)| *b).collect();
    bounds.sort_unstable();
    bounds.dedup();
    bounds
        .into_iter()
        .map(|bound| (bound, at(a, bound) + at(b, bound)))
        .collect()
}

fn render(entries: &[&Entry], resp3: bool) -> Bytes {
    let map = |n: usize| {
        if resp3 {
            format!("%{n}\r\n")
        } else {
            format!("*{}\r\n", n * 2)
        }
    };
    let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len());
    let mut out = map(entries.len());
    for e in entries {
        out.push_str(&bulk(&e.name));
        out.push_str(&map(2));
        out.push_str(&bulk("calls"));
        out.push_str(&format!(":{}\r\n", e.calls));
        out.push_str(&bulk("histogram_usec"));
        out.push_str(&map(e.buckets.len()));
        for (bound, count) in &e.buckets {
            out.push_str(&format!(":{bound}\r\n:{count}\r\n"));
        }
    }
    Bytes::from(out)
}

/// A command's `calls` and buckets from its `[calls, n, histogram_usec, [b, c, ...]]`.
fn histogram(item: &[u8]) -> Option<(i64, Vec<(i64, i64)>)> {
    let fields = pairs(item)?;
    let mut calls = None;
    let mut buckets = None;
    for pair in fields.chunks(2) {
        match text(pair.first()?)? {
            "calls" => calls = Some(int(pair.get(1)?)?),
            "histogram_usec" => {
                let flat = pairs(pair.get(1)?)?;
                let mut list = Vec::with_capacity(flat.len() / 2);
                for bc in flat.chunks(2) {
                    list.push((int(bc.first()?)?, int(bc.get(1)?)?));
                }
                buckets = Some(list);
            }
            _ => {}
        }
    }
    Some((calls?, buckets.unwrap_or_default()))
}

/// The elements of a RESP2 array or, flattened to key, value, ..., of a RESP3 map.
fn pairs(reply: &[u8]) -> Option<Vec<&[u8]>> {
    let header_end = reply.iter().position(|&b| b == b'\r')?;
    let n = parse_int(reply.get(1..header_end)?)?.max(0) as usize;
    let items = match reply.first()? {
        b'*' => n,
        b'%' => n.checked_mul(2)?,
        _ => return None,
    };
    let mut pos = header_end + 2;
    let mut out = Vec::with_capacity(items.min(reply.len() / 3));
    for _ in 0..items {
        let len = scan_reply(reply.get(pos..)?).ok()??;
        out.push(&reply[pos..pos + len]);
        pos += len;
    }
    Some(out)
}

fn text(item: &[u8]) -> Option<&str> {
    crate::protocol::value::bulk_text(item)
}

fn int(item: &[u8]) -> Option<i64> {
    crate::protocol::value::integer(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry2(name: &str, calls: i64, buckets: &[(i64, i64)]) -> String {
        let mut s = format!(
            "${}\r\n{name}\r\n*4\r\n$5\r\ncalls\r\n:{calls}\r\n$14\r\nhistogram_usec\r\n*{}\r\n",
            name.len(),
            buckets.len() * 2
        );
        for (b, c) in buckets {
            s.push_str(&format!(":{b}\r\n:{c}\r\n"));
        }
        s
    }

    fn reply2(entries: &[String]) -> Bytes {
        Bytes::from(format!("*{}\r\n{}", entries.len() * 2, entries.concat()))
    }

    #[test]
    fn calls_and_cumulative_buckets_add_up_over_the_masters() {
        let a = reply2(&[
            entry2("set", 3, &[(4, 1), (8, 3)]),
            entry2("get", 1, &[(2, 1)]),
        ]);
        let b = reply2(&[entry2("get", 2, &[(8, 2)]), entry2("del", 1, &[(16, 1)])]);
        let want = reply2(&[
            entry2("set", 3, &[(4, 1), (8, 3)]),
            entry2("get", 3, &[(2, 1), (8, 3)]),
            entry2("del", 1, &[(16, 1)]),
        ]);
        assert_eq!(merge(&[a, b], &[]).unwrap(), want);
    }

    #[test]
    fn asked_names_come_back_in_their_order_repeats_included() {
        let a = reply2(&[entry2("get", 1, &[(2, 1)])]);
        let b = reply2(&[
            entry2("set", 1, &[(8, 1)]),
            entry2("get", 1, &[(8, 1)]),
            entry2("set", 1, &[(8, 1)]),
        ]);
        let order = ["set", "get", "set", "nosuch"].map(String::from);
        let want = reply2(&[
            entry2("set", 1, &[(8, 1)]),
            entry2("get", 2, &[(2, 1), (8, 2)]),
            entry2("set", 1, &[(8, 1)]),
        ]);
        assert_eq!(merge(&[a, b], &order).unwrap(), want);
        let c = reply2(&[entry2("client|list", 1, &[(16, 1)])]);
        assert_eq!(
            merge(std::slice::from_ref(&c), &["client".into()]).unwrap(),
            c
        );
    }

    #[test]
    fn resp3_maps_stay_maps() {
        let node = Bytes::from_static(
            b"%1\r\n$3\r\nset\r\n%2\r\n$5\r\ncalls\r\n:1\r\n$14\r\nhistogram_usec\r\n%1\r\n:8\r\n:1\r\n",
        );
        let want = Bytes::from_static(
            b"%1\r\n$3\r\nset\r\n%2\r\n$5\r\ncalls\r\n:2\r\n$14\r\nhistogram_usec\r\n%1\r\n:8\r\n:2\r\n",
        );
        assert_eq!(merge(&[node.clone(), node], &[]).unwrap(), want);
    }
}
