//! MULTI / EXEC / DISCARD: transactions without a pinned connection.
//!
//! Commands after MULTI are checked and answered `+QUEUED` here; EXEC sends `MULTI`,
//! the queued commands and `EXEC` as one job on the shared link of the slot's master.
//! A link writes a job contiguously and hands its replies back together, so no other
//! client's request can come between them, and the session returns EXEC's reply. As in
//! Redis Cluster, every key of a transaction must live in one slot: a command breaking
//! that is refused with CROSSSLOT and EXEC then answers EXECABORT. A MOVED during EXEC
//! (the slot moved: nothing ran) re-sends the whole transaction to the new owner.
//! WATCH needs the connection state between the client's round trips, i.e. a connection
//! pinned to the client; it is refused until that exists.

use super::routing::{common_slot, Route};
use super::{ClientState, Transaction};
use crate::commands::{CommandInfo, KeyRef, KeysError};
use crate::protocol::{reply, Args};
use bytes::{Bytes, BytesMut};

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// Handles MULTI, EXEC, DISCARD, WATCH, UNWATCH, and every command while a transaction
/// is being queued. `queueable` says whether the command can run inside EXEC on a node
/// (false for what respgate answers itself or fans out).
pub fn route(
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
    keys: &mut Vec<KeyRef>,
    queueable: bool,
) -> Route {
    let ok = || Route::Reply(Bytes::from_static(reply::OK));
    let err = |m: &str| Route::Reply(reply::error(m));
    match (info.name.as_str(), client.tx.is_some()) {
        // As in Redis, these two errors leave the transaction intact.
        ("multi", true) => err("ERR MULTI calls can not be nested"),
        ("multi", false) => {
            client.tx = Some(Transaction::default());
            ok()
        }
        ("exec", false) => err("ERR EXEC without MULTI"),
        ("discard", false) => err("ERR DISCARD without MULTI"),
        ("discard", true) => {
            client.tx = None;
            ok()
        }
        ("exec", true) => exec(client.tx.take().unwrap_or_default(), info),
        ("watch", true) => err("ERR WATCH inside MULTI is not allowed"),
        ("watch", false) => err(
            "ERR respgate: WATCH is not supported yet (optimistic locking needs a backend connection pinned to the client)",
        ),
        // Nothing can be watched, so there is nothing to forget.
        ("unwatch", false) => ok(),
        // Queued as Redis does (EXEC then answers OK for it).
        ("unwatch", true) => queue(client, info, args, keys, true),
        (_, true) => queue(client, info, args, keys, queueable),
        (_, false) => err("ERR respgate: not a transaction command"),
    }
}

fn abort(client: &mut ClientState) {
    if let Some(tx) = client.tx.as_mut() {
        tx.aborted = true;
    }
}

fn queue(
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
    keys: &mut Vec<KeyRef>,
    queueable: bool,
) -> Route {
    if !queueable {
        abort(client);
        return Route::Reply(reply::error(&format!(
            "ERR respgate: {} cannot be queued in a transaction (it is not a single-node command)",
            info.name.to_uppercase().replace('|', " ")
        )));
    }
    let mut slot = None;
    match info.keys(args, keys) {
        Ok(()) => match common_slot(keys, args) {
            Ok(s) => slot = s,
            Err(()) => {
                abort(client);
                return Route::Reply(reply::error(
                    "CROSSSLOT Keys in request don't hash to the same slot",
                ));
            }
        },
        // Malformed: queued as is; the node refuses it and EXEC answers EXECABORT.
        Err(KeysError::Invalid) => {}
        Err(_) => {
            abort(client);
            return Route::Reply(reply::error(&format!(
                "ERR respgate: cannot tell which keys '{}' touches, so it cannot be routed",
                info.name
            )));
        }
    }
    let Some(tx) = client.tx.as_mut() else {
        return Route::Reply(reply::error("ERR EXEC without MULTI"));
    };
    if let Some(s) = slot {
        if tx.slot.is_some_and(|t| t != s) {
            tx.aborted = true;
            return Route::Reply(reply::error(
                "CROSSSLOT Keys in request don't hash to the same slot (respgate: every key of a transaction must share one slot)",
            ));
        }
        tx.slot = Some(s);
    }
    Route::Queue
}

fn exec(tx: Transaction, info: &CommandInfo) -> Route {
    if tx.aborted {
        return Route::Reply(reply::error(EXECABORT));
    }
    if tx.queued.is_empty() {
        return Route::Reply(Bytes::from_static(b"*0\r\n"));
    }
    let mut job = BytesMut::new();
    job.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
    for q in &tx.queued {
        job.extend_from_slice(q);
    }
    job.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
    Route::Forward {
        slot: tx.slot,
        rewritten: Some(job.freeze()),
        latency: info.metrics.latency.clone(),
        replies: tx.queued.len() as u32 + 2,
        dedicated: false,
    }
}
