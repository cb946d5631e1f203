//! Non-blocking XREAD over streams in several slots: one XREAD per slot (the same
//! options, that slot's streams and their IDs), sent at once, the answers merged back
//! into the request's stream order. COUNT bounds each stream, so the split reads
//! exactly what one XREAD would; streams without new entries are left out, as Redis
//! does, and when none has any the reply is the node's null. A stream named twice goes
//! in two parts, so each mention's answer is known. An error is Redis's: the first
//! failing stream's in request order (each stream asked alone, on the error path
//! only), and a malformed request's option or unbalanced-list error is the node's own
//! ([`malformed`]). XREAD BLOCK over several slots stays refused.

use super::steps::Job;
use crate::cluster::key_slot;
use crate::commands::KeyRef;
use crate::protocol::reply;
use crate::protocol::scan::scan_reply;
use crate::protocol::value::{array_items, bulk_payload, is_null};
use crate::protocol::Args;
use bytes::{Bytes, BytesMut};

/// One slot's part: the request positions of its streams, and its XREAD.
pub struct Part {
    slot: u16,
    streams: Vec<usize>,
    request: Bytes,
    /// Each stream's XREAD alone, by request position (asked only after an error).
    singles: Vec<(usize, Bytes)>,
}

/// An XREAD cut by slot: the parts, and every stream's name by request position.
pub struct Split {
    parts: Vec<Part>,
    names: Vec<Bytes>,
}

/// Runs an XREAD cut by [`split`]; the client's reply.
pub async fn run(job: &Job, split: Split) -> Bytes {
    let Split { parts, names } = split;
    let mut pending = Vec::with_capacity(parts.len());
    for p in &parts {
        let node = match job.master(p.slot) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let rx = job.send(&node, std::slice::from_ref(&p.request), job.resp3);
        pending.push((node, rx));
    }
    let mut answers = Vec::with_capacity(parts.len());
    for (node, rx) in pending {
        match job.replies(&node, rx, 1).await {
            Ok(mut r) => answers.push(r.remove(0)),
            Err(e) => return e,
        }
    }
    if let Some(e) = answers.iter().find(|a| a.first() == Some(&b'-')) {
        if names.len() < 2 {
            return e.clone();
        }
        return first_error(job, &parts, e.clone()).await;
    }
    merge(job, &parts, &names, answers)
}

/// The error one Redis gives: it checks each stream's type, then its ID, in request
/// order, so the error is the first failing stream's, whichever slot it is in. Each
/// stream alone (sent at once), the first error in request order (`fallback` when none
/// fails now: a key changed meanwhile). Only on the error path.
async fn first_error(job: &Job, parts: &[Part], fallback: Bytes) -> Bytes {
    let mut singles: Vec<(usize, u16, Bytes)> = parts
        .iter()
        .flat_map(|p| p.singles.iter().map(move |(i, r)| (*i, p.slot, r.clone())))
        .collect();
    singles.sort_by_key(|s| s.0);
    let mut pending = Vec::with_capacity(singles.len());
    for (_, slot, request) in &singles {
        let node = match job.master(*slot) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let rx = job.send(&node, std::slice::from_ref(request), job.resp3);
        pending.push((node, rx));
    }
    for (node, rx) in pending {
        match job.replies(&node, rx, 1).await {
            Ok(r) if r[0].first() == Some(&b'-') => return r[0].clone(),
            Ok(_) => {}
            Err(e) => return e,
        }
    }
    fallback
}

/// A malformed XREAD over several slots (its stream list does not balance): the error
/// Redis gives, which comes from its options before any key is looked up (an option's
/// value, or the unbalanced list). The node parses it with every word from the first
/// key (`first`, by the key specs) on made that key, so the request stays in one slot:
/// Redis's option loop stops with an error before that point (a `STREAMS` taken as an
/// option's value is not a number) or at the `STREAMS` before it (then only the count
/// of words after it matters). A reply that is not an error (never expected) is the
/// plain CROSSSLOT.
pub async fn malformed(job: &Job, mut words: Vec<Bytes>, first: usize) -> Bytes {
    let plain = || {
        crate::protocol::refusal::Refusal::CrossSlot(crate::protocol::refusal::CrossSlotWhy::Plain)
            .reply()
    };
    let Some(key) = words.get(first).cloned() else {
        return plain();
    };
    for w in &mut words[first..] {
        *w = key.clone();
    }
    let request = reply::command(words.iter().map(|w| &w[..]));
    let node = match job.master(key_slot(&key)) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let rx = job.send(&node, std::slice::from_ref(&request), job.resp3);
    match job.replies(&node, rx, 1).await {
        Ok(r) if r[0].first() == Some(&b'-') => r[0].clone(),
        Ok(_) => plain(),
        Err(e) => e,
    }
}

/// The parts of an XREAD: for each slot (in the order slots first appear), its
/// streams' request positions and its own XREAD. `keys` are the stream keys (found by
/// the key specs, after `STREAMS`); their IDs follow them.
pub fn split(args: Args<'_>, keys: &[KeyRef]) -> Option<Split> {
    let first = keys.first()?.index as usize;
    let n = keys.len();
    if args.len() != first + 2 * n {
        return None;
    }
    // A stream named again goes in another part of its slot: within a part each name
    // is once, so its answer says which mention read what (Redis answers every mention
    // that reads something, in request order).
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for i in 0..n {
        let slot = key_slot(args.get(first + i));
        let name = args.get(first + i);
        let free = groups
            .iter_mut()
            .find(|g| g.0 == slot && !g.1.iter().any(|&j| args.get(first + j) == name));
        match free {
            Some(g) => g.1.push(i),
            None => groups.push((slot, vec![i])),
        }
    }
    let options = |streams: &[usize]| {
        let mut words: Vec<&[u8]> = (0..first).map(|j| args.get(j)).collect();
        words.extend(streams.iter().map(|&i| args.get(first + i)));
        words.extend(streams.iter().map(|&i| args.get(first + n + i)));
        reply::command(words)
    };
    let parts = groups
        .into_iter()
        .map(|(slot, streams)| Part {
            slot,
            request: options(&streams),
            singles: streams.iter().map(|&i| (i, options(&[i]))).collect(),
            streams,
        })
        .collect();
    let names = (0..n)
        .map(|i| Bytes::copy_from_slice(args.get(first + i)))
        .collect();
    Some(Split { parts, names })
}

/// The parts' answers as one XREAD reply.
fn merge(job: &Job, parts: &[Part], names: &[Bytes], answers: Vec<Bytes>) -> Bytes {
    // Each stream's entries (raw reply bytes), by request position.
    let mut found: Vec<Option<Bytes>> = vec![None; names.len()];
    for (part, answer) in parts.iter().zip(&answers) {
        let Some(pairs) = streams_of(answer) else {
            return job.fail("unreadable XREAD reply");
        };
        for (name, entries) in pairs {
            // This part's stream of that name (named once per part).
            let slot = part
                .streams
                .iter()
                .find(|&&i| names[i] == name && found[i].is_none());
            if let Some(&i) = slot {
                found[i] = Some(answer.slice_ref(entries));
            }
        }
    }
    let hits = found.iter().flatten().count();
    if hits == 0 {
        return answers.into_iter().next().unwrap_or_default();
    }
    let mut out = BytesMut::new();
    if job.resp3 {
        out.extend_from_slice(format!("%{hits}\r\n").as_bytes());
    } else {
        reply::put_array_header(&mut out, hits);
    }
    for (i, entries) in found.iter().enumerate() {
        let Some(entries) = entries else { continue };
        if !job.resp3 {
            reply::put_array_header(&mut out, 2);
        }
        reply::put_bulk(&mut out, &names[i]);
        out.extend_from_slice(entries);
    }
    out.freeze()
}

/// The (stream name, entries) pairs of one XREAD answer: RESP2 `[[name, entries], ...]`,
/// RESP3 `{name: entries, ...}`, or none for a null answer.
fn streams_of(answer: &Bytes) -> Option<Vec<(Bytes, &[u8])>> {
    if is_null(answer) {
        return Some(Vec::new());
    }
    let mut out = Vec::new();
    if answer.first() == Some(&b'%') {
        let header = answer.iter().position(|&b| b == b'\n')? + 1;
        let n = crate::protocol::int::parse_int(&answer[1..header - 2])?;
        let mut pos = header;
        for _ in 0..n {
            let klen = scan_reply(&answer[pos..]).ok()??;
            let name = bulk_payload(&answer[pos..pos + klen])?;
            let vlen = scan_reply(&answer[pos + klen..]).ok()??;
            out.push((
                Bytes::copy_from_slice(name),
                &answer[pos + klen..pos + klen + vlen],
            ));
            pos += klen + vlen;
        }
        return Some(out);
    }
    for item in array_items(answer)? {
        let pair = array_items(item)?;
        let (name, entries) = (pair.first()?, pair.get(1)?);
        out.push((Bytes::copy_from_slice(bulk_payload(name)?), *entries));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols_answers_are_read() {
        let resp2 = Bytes::from_static(
            b"*1\r\n*2\r\n$1\r\na\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        );
        let got = streams_of(&resp2).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].0[..], b"a");
        assert!(got[0].1.starts_with(b"*1\r\n*2\r\n$3\r\n1-1"));
        let resp3 = Bytes::from_static(b"%1\r\n$1\r\nb\r\n*0\r\n");
        let got = streams_of(&resp3).unwrap();
        assert_eq!((&got[0].0[..], got[0].1), (&b"b"[..], &b"*0\r\n"[..]));
        assert!(streams_of(&Bytes::from_static(b"*-1\r\n"))
            .unwrap()
            .is_empty());
    }
}
