//! Requests whose keys span slots: split into one request per slot when the command's
//! policy row allows it ([`Class::SplitBySlot`]), refused with CROSSSLOT otherwise.

use super::super::local::merge_of;
use super::Route;
use crate::cluster::key_slot;
use crate::commands::policy::{Class, Layout, MergeKind};
use crate::commands::CommandInfo;
use crate::guards::ttl::TtlPolicy;
use crate::protocol::refusal::{CrossSlotWhy, Refusal};
use crate::protocol::{reply, Args};
use bytes::BytesMut;

/// A request of `class` whose keys span slots: split when the class allows it, else
/// CROSSSLOT. `ttl`: the TTL policy, when it has rules (MSET's parts get their EXPIREs).
pub(in crate::session) fn cross_slot(
    info: &CommandInfo,
    class: Class,
    args: Args<'_>,
    ttl: Option<&TtlPolicy>,
) -> Route {
    let latency = info.metrics().latency.clone();
    match class {
        Class::SplitBySlot {
            layout: Layout::Pairs,
            ..
        } if args.len() % 2 == 0 => Route::Reply(crate::commands::replies::wrong_arity_reply(info)),
        // Only key-value pairs carry the values the TTL policy's EXPIREs cover.
        Class::SplitBySlot {
            layout: layout @ Layout::Pairs,
            merge,
        } => split_by_slot(args, layout, merge, latency, ttl),
        Class::SplitBySlot { layout, merge } => split_by_slot(args, layout, merge, latency, None),
        Class::AllOrNothing => Route::Reply(Refusal::CrossSlot(CrossSlotWhy::Msetnx).reply()),
        _ => Route::Reply(Refusal::CrossSlot(CrossSlotWhy::Plain).reply()),
    }
}

/// Splits a multi-key request by slot, keeping the order in which slots first appear.
/// With `ttl` (an MSET under a TTL policy), each part's covered keys get the policy's
/// EXPIRE behind it.
fn split_by_slot(
    args: Args<'_>,
    layout: Layout,
    merge: MergeKind,
    latency: metrics::Histogram,
    ttl: Option<&TtlPolicy>,
) -> Route {
    let step = match layout {
        Layout::Keys => 1,
        Layout::Pairs => 2,
    };
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for i in (1..args.len()).step_by(step) {
        let slot = key_slot(args.get(i));
        match groups.iter_mut().find(|g| g.0 == slot) {
            Some(g) => g.1.push(i),
            None => groups.push((slot, vec![i])),
        }
    }
    let name = args.get(0);
    let parts = groups
        .iter()
        .map(|(slot, idx)| {
            let mut words: Vec<&[u8]> = Vec::with_capacity(1 + idx.len() * step);
            words.push(name);
            for &i in idx {
                words.extend((i..(i + step).min(args.len())).map(|j| args.get(j)));
            }
            let part = reply::command(words);
            let Some(ttl) = ttl else {
                return (Some(*slot), part, 1);
            };
            let mut job = BytesMut::new();
            let expires = ttl.expire_covered(&mut job, idx.iter().map(|&i| args.get(i)));
            if expires == 0 {
                return (Some(*slot), part, 1);
            }
            let mut out = BytesMut::with_capacity(part.len() + job.len());
            out.extend_from_slice(&part);
            out.extend_from_slice(&job);
            (Some(*slot), out.freeze(), 1 + expires)
        })
        .collect();
    let positions = groups
        .iter()
        .map(|(_, idx)| idx.iter().map(|&i| ((i - 1) / step) as u32).collect())
        .collect();
    Route::Split {
        parts,
        merge: merge_of(merge, positions, (args.len() - 1) / step),
        latency,
    }
}
