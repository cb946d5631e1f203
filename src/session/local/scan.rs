//! SCAN over the whole cluster, and the COUNT cap SCAN, HSCAN, SSCAN and ZSCAN share
//! (`guards.max_scan_count`).

use super::super::merge::{self, Merge};
use super::super::route::Route;
use super::super::{ClientState, SessionContext};
use super::{readable, walk};
use crate::commands::{CommandInfo, CommandTable};
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use crate::protocol::scan::parse_int;
use crate::protocol::Args;
use bytes::Bytes;

/// SCAN, as one of the user's keyspace walks in flight, its keys filtered to what a
/// restricted user may read.
pub(super) fn route(
    ctx: &SessionContext,
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
    table: &std::sync::Arc<CommandTable>,
) -> Route {
    let max_count = client.guards.set(&ctx.guards, table).max_scan_count;
    let hold = match walk(ctx, client, table, "SCAN") {
        Ok(hold) => hold,
        Err(refused) => return refused,
    };
    match scan(ctx, info, args, max_count) {
        Route::Split {
            parts,
            merge,
            latency,
        } => Route::Split {
            parts,
            merge: Merge::Walk {
                inner: Box::new(readable(ctx, client, merge)),
                hold,
            },
            latency,
        },
        other => other,
    }
}

/// SCAN over the whole cluster: one shard at a time, in slot order, the shard and its
/// node's cursor packed into the cursor the client sees (see `merge::encode_scan_cursor`).
///
/// A COUNT above `max_count` (`guards.max_scan_count`) is lowered to it: SCAN may
/// return fewer keys than COUNT, and no node walks more of its table in one step.
fn scan(ctx: &SessionContext, info: &CommandInfo, args: Args<'_>, max_count: u64) -> Route {
    let Some(cursor) = std::str::from_utf8(args.get(1))
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return Route::Reply(Refusal::InvalidCursor.reply());
    };
    let topo_guard = ctx.cluster.topology();
    let Some(topo) = topo_guard.as_ref() else {
        return Route::Reply(Refusal::NoMasterKnown.reply());
    };
    let shards = topo.shards().len();
    if shards > 255 {
        return Route::Reply(Refusal::ScanTooManyMasters.reply());
    }
    let (mut node_cursor, tag, shard) = merge::decode_scan_cursor(cursor);
    if shard as usize >= shards {
        return Route::Reply(Refusal::InvalidCursor.reply());
    }
    if cursor != 0 && tag != topo.shard_tag(shard as usize) {
        // The shard failed over since this cursor was made: its new master orders keys
        // differently, so scan that shard again from the start.
        node_cursor = 0;
    }
    let node_cursor = node_cursor.to_string();
    let capped = max_count.to_string();
    let mut words: Vec<&[u8]> = args.iter().collect();
    words[1] = node_cursor.as_bytes();
    cap_count(&mut words, 2, max_count, &capped);
    let request = reply::command(words);
    Route::Split {
        parts: vec![(topo.shard_slot(shard as usize), request, 1)],
        merge: Merge::Scan {
            shard,
            tags: (0..shards).map(|i| topo.shard_tag(i)).collect(),
        },
        latency: info.metrics().latency.clone(),
    }
}

/// Lowers a COUNT option above `max` (from `words[from]` on, in name/value pairs) to
/// `capped` (`max`'s text); `true` when it did. Only a valid COUNT above the cap: anything
/// else reaches the node as it is (and gets Redis's own error).
fn cap_count<'a>(words: &mut [&'a [u8]], from: usize, max: u64, capped: &'a str) -> bool {
    let mut lowered = false;
    for i in (from..words.len().saturating_sub(1)).step_by(2) {
        let above = words[i].eq_ignore_ascii_case(b"count")
            && parse_int(words[i + 1]).is_some_and(|n| n > max as i64);
        if above {
            words[i + 1] = capped.as_bytes();
            lowered = true;
        }
    }
    lowered
}

/// HSCAN / SSCAN / ZSCAN `key cursor [MATCH p] [COUNT n] ...`: the request with a COUNT
/// above `max` (`guards.max_scan_count`) lowered to it, as SCAN's; `None` when nothing
/// is above it (the request goes as it came).
pub(in crate::session) fn capped_key_scan(args: Args<'_>, max: u64) -> Option<Bytes> {
    let capped = max.to_string();
    let mut words: Vec<&[u8]> = args.iter().collect();
    cap_count(&mut words, 3, max, &capped).then(|| reply::command(words))
}
