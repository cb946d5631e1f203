//! MULTI / EXEC / DISCARD: transactions without a pinned connection.
//!
//! Commands after MULTI are checked and answered `+QUEUED` here; EXEC sends `MULTI`,
//! the queued commands and `EXEC` as one job on the shared link of the slot's master.
//! A link writes a job contiguously and hands its replies back together, so no other
//! client's request can come between them, and the session returns EXEC's reply. As in
//! Redis Cluster, every key of a transaction must live in one slot: a command breaking
//! that is refused with CROSSSLOT and EXEC then answers EXECABORT. A MOVED during EXEC
//! (the slot moved: nothing ran) re-sends the whole transaction to the new owner.
//! WATCH needs the connection state between the client's round trips: the watched keys
//! (one slot) are watched on a connection of the client's own (the one blocking
//! commands use), and its commands for that slot and its EXEC go there until EXEC,
//! DISCARD or UNWATCH.
//!
//! Queued commands are held by respgate until EXEC, so they are bounded in bytes
//! (`server.max_transaction_bytes`) and taken from the process budget
//! (`server.max_client_buffer_bytes`) until the transaction is dropped ([`hold`]). The
//! command crossing either is refused and EXEC answers EXECABORT, as Redis does after
//! any command refused while queueing; from then on nothing more is kept.

use super::dedicated::Pin;
use super::route::{common_slot, Route, Sending};
use super::{ClientState, Transaction};
use crate::commands::policy::Tx;
use crate::commands::{CommandInfo, KeyRef, KeysError};
use crate::guards::ttl::TtlPolicy;
use crate::protocol::refusal::{CrossSlotWhy, Refusal};
use crate::protocol::{reply, Args};
use bytes::{Bytes, BytesMut};

/// Handles MULTI, EXEC, DISCARD, WATCH, UNWATCH, and every command while a transaction
/// is being queued. `queueable` says whether the command can run inside EXEC on a node
/// (false for what respgate answers itself or fans out); `tx` which transaction command
/// it is (its policy row's class), if it is one.
///
/// `ttl`: the TTL policy, when it has rules. Queued writes to keys it covers get their
/// EXPIREs queued last, before EXEC, and EXEC's reply loses their elements (see
/// `crate::guards::ttl`); a DISCARDed or aborted transaction sends none.
pub fn route(
    client: &mut ClientState,
    (info, tx): (&CommandInfo, Option<Tx>),
    args: Args<'_>,
    keys: &mut Vec<KeyRef>,
    queueable: bool,
    ttl: Option<&TtlPolicy>,
) -> Route {
    let ok = || Route::Reply(Bytes::from_static(reply::OK));
    let err = |r: Refusal| Route::Reply(r.reply());
    match (tx, client.tx.is_some()) {
        // As in Redis, these two errors leave the transaction intact.
        (Some(Tx::Multi), true) => err(Refusal::NestedMulti),
        (Some(Tx::Multi), false) => {
            client.tx = Some(Transaction {
                slot: client.watch_slot,
                ..Transaction::default()
            });
            ok()
        }
        (Some(Tx::Exec), false) => err(Refusal::ExecWithoutMulti),
        (Some(Tx::Discard), false) => err(Refusal::DiscardWithoutMulti),
        (Some(Tx::Discard), true) => {
            client.tx = None;
            // DISCARD also forgets the watched keys (on the pinned connection).
            unwatch(client, info)
        }
        (Some(Tx::Exec), true) => {
            let watched = client
                .watch_slot
                .take()
                .map(|slot| (slot, client.watch_identity.take()));
            exec(client.tx.take().unwrap_or_default(), info, watched)
        }
        (Some(Tx::Watch), true) => err(Refusal::WatchInMulti),
        (Some(Tx::Watch), false) => watch(client, info, args, keys),
        (Some(Tx::Unwatch), false) => unwatch(client, info),
        // Queued as Redis does (EXEC then answers OK for it).
        (Some(Tx::Unwatch), true) => queue(client, info, args, keys, true, None),
        (_, true) => queue(client, info, args, keys, queueable, ttl),
        (_, false) => err(Refusal::NotATransactionCommand),
    }
}

/// Whether [`route`] will refuse this command without running or queueing it (MULTI's
/// rules), so a guard's token is not spent on it. `tx`: which transaction command it is.
pub fn refuses(
    client: &ClientState,
    tx: Option<Tx>,
    queueable: bool,
    transaction_command: bool,
) -> bool {
    let in_multi = client.tx.is_some();
    match tx {
        Some(Tx::Multi | Tx::Watch) => in_multi,
        Some(Tx::Exec | Tx::Discard) => !in_multi,
        Some(Tx::Unwatch) => false,
        _ => in_multi && !transaction_command && !queueable,
    }
}

fn queue(
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
    keys: &mut Vec<KeyRef>,
    queueable: bool,
    ttl: Option<&TtlPolicy>,
) -> Route {
    if !queueable {
        client.abort_transaction();
        return Route::Reply(Refusal::NotQueueable(Refusal::command_text(&info.name)).reply());
    }
    let mut slot = None;
    match info.keys(args, keys) {
        Ok(()) => match common_slot(keys, args) {
            Ok(s) => slot = s,
            Err(()) => {
                client.abort_transaction();
                return Route::Reply(Refusal::CrossSlot(CrossSlotWhy::Plain).reply());
            }
        },
        // Malformed: queued as is; the node refuses it and EXEC answers EXECABORT.
        Err(KeysError::Invalid) => {}
        Err(_) => {
            client.abort_transaction();
            return Route::Reply(Refusal::KeysUnknown(info.name.clone()).reply());
        }
    }
    let Some(tx) = client.tx.as_mut() else {
        return Route::Reply(Refusal::ExecWithoutMulti.reply());
    };
    if let Some(s) = slot {
        if tx.slot.is_some_and(|t| t != s) {
            tx.aborted = true;
            return Route::Reply(Refusal::CrossSlot(CrossSlotWhy::Transaction).reply());
        }
    }
    let mut rewritten = None;
    if let Some(ttl) = ttl.filter(|_| info.is_write()) {
        match ttl.apply_queued(info, args, keys, &mut tx.expires) {
            Ok(r) => rewritten = r,
            Err(refusal) => {
                tx.aborted = true;
                return Route::Reply(refusal);
            }
        }
    }
    if slot.is_some() {
        tx.slot = slot;
    }
    Route::Queue(rewritten)
}

const QUEUED: &[u8] = b"+QUEUED\r\n";

/// Keeps a command routing queued in `tx` (see the module docs): the client's reply,
/// `+QUEUED` or the refusal naming the limit.
pub fn hold(
    tx: &mut Transaction,
    command: Bytes,
    limit: usize,
    process: &std::sync::Arc<crate::budget::ClientBuffers>,
) -> Bytes {
    if tx.aborted {
        // EXEC answers EXECABORT whatever is queued: nothing is kept any more.
        tx.queued = Vec::new();
        tx.charge = None;
        return Bytes::from_static(QUEUED);
    }
    let len = command.len();
    let held = tx.charge.as_ref().map_or(0, |c| c.bytes());
    let refusal = if held.saturating_add(len) > limit {
        Some(crate::protocol::refusal::Refusal::TransactionTooLong(limit))
    } else {
        let charge = tx
            .charge
            .get_or_insert_with(|| crate::budget::Charge::new(process.clone()));
        (!charge.try_add(len)).then(|| process.refusal())
    };
    if let Some(refusal) = refusal {
        tx.aborted = true;
        tx.queued = Vec::new();
        tx.charge = None;
        return refusal.reply();
    }
    // A small command is a slice of a read buffer it would pin whole until EXEC.
    let command = if len < crate::budget::COUNTED_MIN {
        Bytes::copy_from_slice(&command)
    } else {
        command
    };
    tx.queued.push(command);
    Bytes::from_static(QUEUED)
}

const UNWATCH: &[u8] = b"*1\r\n$7\r\nUNWATCH\r\n";

/// UNWATCH (and DISCARD's forgetting): sent on the pinned connection when something is
/// watched; with nothing watched there is nothing to forget.
fn unwatch(client: &mut ClientState, info: &CommandInfo) -> Route {
    match client.watch_slot.take() {
        Some(slot) => pinned(
            slot,
            UNWATCH,
            1,
            info,
            client.watch_identity.take(),
            Pin::Watched,
        ),
        None => Route::Reply(Bytes::from_static(reply::OK)),
    }
}

/// Sends `job` (producing `replies` replies; the client gets the last) on the client's
/// connection pinned to the master of `slot`.
fn pinned(
    slot: u16,
    job: &[u8],
    replies: u32,
    info: &CommandInfo,
    run_as: Option<std::sync::Arc<crate::backend::NodeIdentity>>,
    pin: Pin,
) -> Route {
    Route::Forward {
        slot: Some(slot),
        rewritten: Some(Bytes::copy_from_slice(job)),
        latency: info.metrics().latency.clone(),
        how: Sending {
            replies,
            dedicated: Some(pin),
            run_as,
            ..Sending::one()
        },
    }
}

/// WATCH: the keys (one slot, as in a cluster) are watched on a connection of the
/// client's own to their master, where its later commands for that slot, and its
/// EXEC, go too. A first WATCH clears whatever an earlier aborted transaction left
/// watched on that connection.
fn watch(
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
    keys: &mut Vec<KeyRef>,
) -> Route {
    let slot = match info.keys(args, keys).ok().map(|()| common_slot(keys, args)) {
        Some(Ok(Some(slot))) => slot,
        _ => return Route::Reply(Refusal::CrossSlot(CrossSlotWhy::Plain).reply()),
    };
    if client.watch_slot.is_some_and(|w| w != slot) {
        return Route::Reply(Refusal::CrossSlot(CrossSlotWhy::Watch).reply());
    }
    let mut job = BytesMut::new();
    let replies = if client.watch_slot.is_none() {
        job.extend_from_slice(UNWATCH);
        2
    } else {
        1
    };
    job.extend_from_slice(&reply::command(args.iter().collect::<Vec<_>>()));
    // Undone if the connection cannot be had (`Session::send_job`): a refused WATCH
    // leaves nothing watched.
    client.watch_slot = Some(slot);
    pinned(
        slot,
        &job,
        replies,
        info,
        client.watch_identity.clone(),
        Pin::Watch,
    )
}

/// EXEC: the transaction as one job, on the connection that watched its keys when
/// `watched` (its slot and the identity that connection runs as).
fn exec(
    tx: Transaction,
    info: &CommandInfo,
    watched: Option<(u16, Option<std::sync::Arc<crate::backend::NodeIdentity>>)>,
) -> Route {
    if tx.aborted {
        return Route::Reply(Refusal::ExecAbort.reply());
    }
    if tx.queued.is_empty() && watched.is_none() {
        return Route::Reply(Bytes::from_static(b"*0\r\n"));
    }
    let mut job = BytesMut::new();
    job.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
    for q in &tx.queued {
        job.extend_from_slice(q);
    }
    // The TTL policy's EXPIREs run last, inside the transaction: only if it runs.
    tx.expires.write_to(&mut job);
    job.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
    let hidden = tx.expires.len() as u32;
    let dedicated = watched.is_some();
    let (watched, run_as) = match watched {
        // On the watching connection, which runs as the user's script identity.
        Some((slot, identity)) => (Some(slot), identity),
        // A queued script runs as its caller's identity.
        None => (None, tx.run_as),
    };
    Route::Forward {
        slot: tx.slot.or(watched),
        rewritten: Some(job.freeze()),
        latency: info.metrics().latency.clone(),
        // The transaction's own replies (OK, QUEUED, EXEC's array) come from the node,
        // so it is no script call.
        how: Sending {
            replies: tx.queued.len() as u32 + hidden + 2,
            // With WATCH, on the connection that watched the keys.
            dedicated: dedicated.then_some(Pin::Exec),
            run_as,
            hidden,
            ..Sending::one()
        },
    }
}
