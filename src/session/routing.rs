//! Deciding what to do with one request: answer it here, refuse it, or forward it to the
//! node that serves its keys' slot.
//!
//! What a command is to respgate is its row in the command policy
//! ([`crate::commands::policy`]), looked up by id: routing is that lookup and a match
//! over the row's class. Requests whose keys span slots are split in `split.rs`.

mod split;

use super::dedicated::Pin;
use super::local;
use super::route::{common_slot, Route, Sending, TRACKED_WRITE};
use super::subscribe;
use super::transaction;
use super::ClientState;
use super::SessionContext;
use crate::backend::NodeIdentity;
use crate::commands::policy::{Class, Multi, Row, Tx};
use crate::commands::{CommandInfo, CommandTable, KeyRef, KeysError, Lookup};
use crate::guards::ttl::TtlDecision;
use crate::guards::Verdict;
use crate::protocol::refusal::Refusal;
use crate::protocol::{reply, Args};
use bytes::Bytes;
use std::sync::Arc;

/// A command refused before it runs (wrong arity, NOAUTH, NOPERM), as Redis's
/// `rejectCommand` does it: inside MULTI the transaction is flagged (EXEC will answer
/// EXECABORT); a refused EXEC discards the transaction and words the error as
/// `EXECABORT Transaction discarded because of: <error>`, in or out of MULTI.
fn rejected(client: &mut ClientState, row: Row, error: Bytes) -> Route {
    if row.class == Class::Transaction(Tx::Exec) {
        client.tx = None;
        let text = error.strip_prefix(b"-").unwrap_or(&error);
        let text = text.strip_suffix(b"\r\n").unwrap_or(text);
        // Redis formats the arity refusal without its `ERR ` code here.
        let text = if text.starts_with(b"ERR wrong number of arguments") {
            &text[4..]
        } else {
            text
        };
        // The wrapped refusal was counted when it was made: one reply, one count.
        return Route::Reply(
            Refusal::ExecAbortBecause(String::from_utf8_lossy(text).into_owned()).reply_uncounted(),
        );
    }
    client.abort_transaction();
    Route::Reply(error)
}

/// Routes a request whose arguments are `args`.
pub fn route(
    ctx: &SessionContext,
    client: &mut ClientState,
    args: Args<'_>,
    keys: &mut Vec<KeyRef>,
) -> Route {
    let table_guard = ctx.cluster.commands();
    let Some(table) = table_guard.as_ref() else {
        return before_discovery(client, args);
    };
    let lookup = table.lookup(args);
    let Lookup::Found(info) = lookup else {
        let error = lookup.error_reply(args).unwrap_or_default();
        if let Lookup::WrongArity(info) = lookup {
            return rejected(client, table.policy(info), error);
        }
        client.abort_transaction();
        return Route::Reply(error);
    };
    client.entry.set_cmd(&info.name);
    let row = table.policy(info);
    // Counted once the client is logged in, refused by its ACL or not (an attempt to
    // FLUSHALL is what an alert wants to see): a command's series is registered on its
    // first use, and a stranger sending every command name must not create ~370 of them.
    let checked = super::auth::check(ctx, client, info, args, keys, table);
    if checked.is_ok() || client.auth.user().is_some() {
        info.metrics().requests.increment(1);
    }
    let keys_found = match checked {
        Ok(found) => found,
        Err(refused) => return rejected(client, row, refused),
    };
    // A limit rule's token is owed (`charge`) and paid only where the request is about
    // to run: a command refused for another reason spends none.
    let mut charge = None;
    if let Some(verdict) = crate::guards::check(
        &ctx.guards,
        &mut client.guards,
        table,
        info,
        args,
        client.auth.user().map(|u| &u.name),
        client.meta.peer.ip(),
    ) {
        if let Some(route) = guarded(ctx, client, table, (info, args), verdict, &mut charge) {
            return route;
        }
    }
    let request = Request {
        info,
        row,
        args,
        table,
    };
    routed(ctx, client, request, keys, keys_found, &mut charge)
}

/// A request before any node has answered (no command table): QUIT closes, PING is
/// answered here (so a health check sees the proxy alive while every node is
/// unreachable) for a client that may run anything (its rules cannot be read without
/// the table, so a restricted or unauthenticated client gets the same refusal as
/// everything else: no ACL or AUTH decision changes), the rest is refused.
fn before_discovery(client: &ClientState, args: Args<'_>) -> Route {
    let name = args.get(0);
    if name.eq_ignore_ascii_case(b"quit") {
        return Route::ReplyAndClose(Bytes::from_static(reply::OK));
    }
    let may_run_anything = client.auth.user().is_some_and(|u| u.unrestricted);
    if name.eq_ignore_ascii_case(b"ping") && may_run_anything {
        if let Some(pong) = local::ping(args) {
            return pong;
        }
    }
    Route::Reply(Refusal::NoNodeReached.reply())
}

/// A request past the ACL and the guards, with what respgate knows of its command.
#[derive(Clone, Copy)]
struct Request<'a> {
    info: &'a CommandInfo,
    row: Row,
    args: Args<'a>,
    table: &'a Arc<CommandTable>,
}

/// Routes a request the ACL and the guards let through: subscriptions, scripts,
/// transactions, then by its policy row's class.
fn routed(
    ctx: &SessionContext,
    client: &mut ClientState,
    req: Request<'_>,
    keys: &mut Vec<KeyRef>,
    keys_found: bool,
    charge: &mut Option<crate::guards::Charge>,
) -> Route {
    let Request {
        info,
        row,
        args,
        table,
    } = req;
    // Monitor mode refuses what touches the keyspace, as Redis refuses it to a monitor.
    if client.monitor.is_some() {
        if let Some(route) = super::monitor::in_monitor_mode(info) {
            return route;
        }
    }
    // Subscribed-mode rules come first (MULTI is refused there too); SUBSCRIBE inside
    // MULTI is left to the transaction rules.
    if client.subs.is_some() || (info.is_pubsub() && client.tx.is_none()) {
        let refused = client.subs.is_some() && !client.resp3 && !row.subscribed;
        if !refused {
            if let Some(route) = pay(charge, client, info, args) {
                return route;
            }
        }
        if let Some(route) = subscribe::route(ctx, client, info, row, args) {
            return route;
        }
    }

    // Scripts run under the caller's rules on the node (or only when allow-listed).
    let script = info.runs_script();
    let run_as = if script {
        match ctx
            .scripts
            .decide(client.auth.user(), &info.name, args, table)
        {
            crate::scripts::Decision::As(id) => Some(id),
            crate::scripts::Decision::AsRespgate => None,
            crate::scripts::Decision::Refuse(e) => return rejected(client, row, e),
        }
    } else {
        None
    };

    // RESET and QUIT act at once even inside MULTI, as in Redis.
    let queueing = client.tx.is_some() && row.multi != Multi::Immediate;
    if queueing || matches!(row.class, Class::Transaction(_)) {
        return in_transaction(ctx, client, req, keys, run_as, charge);
    }

    // The common case, a plain keyed data command, decides without side effects: its
    // refusals spend no token. Anything else pays first, then respgate decides.
    if !row.class.is_plain_keyed() {
        if let Some(route) = pay(charge, client, info, args) {
            return route;
        }
        if let Some(route) = local::answer(ctx, client, row.class, info, args, table) {
            return route;
        }
    }
    let route = keyed(ctx, client, req, keys, keys_found, (run_as, script));
    if matches!(&route, Route::Reply(e) if e.first() == Some(&b'-')) {
        return route;
    }
    pay(charge, client, info, args).unwrap_or(route)
}

/// A transaction command, or any command while MULTI queues.
fn in_transaction(
    ctx: &SessionContext,
    client: &mut ClientState,
    req: Request<'_>,
    keys: &mut Vec<KeyRef>,
    run_as: Option<Arc<NodeIdentity>>,
    charge: &mut Option<crate::guards::Charge>,
) -> Route {
    let Request {
        info,
        row,
        args,
        table,
    } = req;
    let tx = match row.class {
        Class::Transaction(tx) => Some(tx),
        _ => None,
    };
    let transaction_command = tx.is_some();
    let queueable = !transaction_command && row.multi.queueable(args);
    if queueable && run_as.is_some() {
        if let Some(tx) = client.tx.as_mut() {
            tx.run_as = run_as;
        }
    }
    // A first WATCH pins a connection of the client's own that runs as the user's
    // script identity: a script queued in the transaction then runs as the caller.
    if tx == Some(Tx::Watch) && client.watch_slot.is_none() && client.tx.is_none() {
        client.watch_identity = client
            .auth
            .user()
            .and_then(|u| ctx.scripts.identity(&u.name, table));
    }
    if !transaction::refuses(client, tx, queueable, transaction_command) {
        if let Some(route) = pay(charge, client, info, args) {
            return route;
        }
    }
    // Queued commands and WATCH stay off respgate's internal keys too.
    if ctx.cross_slot.guarding() && info.keys(args, keys).is_ok() {
        if let Some(refused) = super::cross_slot::touches_internal(ctx, keys, args) {
            if queueable {
                client.abort_transaction();
            }
            return refused;
        }
    }
    // The TTL policy applies to queued commands too (its EXPIREs go before EXEC).
    let set = client.guards.set(&ctx.guards, table).clone();
    let ttl = (!set.ttl.is_empty()).then_some(&set.ttl);
    transaction::route(client, (info, tx), args, keys, queueable, ttl)
}

/// Takes the token a limit rule matched for a request about to run; the refusal when
/// none is left (inside MULTI it aborts the transaction, as every guard refusal does).
fn pay(
    charge: &mut Option<crate::guards::Charge>,
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
) -> Option<Route> {
    let user = client.auth.user().map(|u| &u.name);
    let refusal = charge
        .take()?
        .pay(info, args, user, client.meta.peer.ip())
        .err()?;
    client.abort_transaction();
    Some(Route::Reply(refusal))
}

/// A plain keyed command: forwarded to its slot's master (split by slot, or refused).
#[allow(clippy::too_many_arguments)]
fn keyed(
    ctx: &SessionContext,
    client: &mut ClientState,
    req: Request<'_>,
    keys: &mut Vec<KeyRef>,
    keys_found: bool,
    (run_as, script): (Option<Arc<NodeIdentity>>, bool),
) -> Route {
    let Request {
        info,
        row,
        args,
        table,
    } = req;
    // A restricted user's keys were found for the ACL check already (nothing since
    // touched `keys`).
    let found = if keys_found {
        Ok(())
    } else {
        info.keys(args, keys)
    };
    match found {
        Ok(()) => {}
        // Malformed for its key specs: the node answers with Redis's own syntax error.
        Err(KeysError::Invalid) => {
            return Route::Forward {
                slot: None,
                rewritten: None,
                latency: info.metrics().latency.clone(),
                how: Sending {
                    run_as,
                    script,
                    ..Sending::one()
                },
            }
        }
        Err(_) => return Route::Reply(Refusal::KeysUnknown(info.name.clone()).reply()),
    }
    if let Some(refused) = super::cross_slot::touches_internal(ctx, keys, args) {
        return refused;
    }
    let Ok(slot) = common_slot(keys, args) else {
        let set = client.guards.set(&ctx.guards, table).clone();
        let ttl = (!set.ttl.is_empty()).then_some(&set.ttl);
        let computed = super::cross_slot::route(ctx, client, (info, row.class), args, keys, ttl);
        if let Some(route) = computed {
            return route;
        }
        return split::cross_slot(info, row.class, args, ttl);
    };
    // Blocking commands, and while keys are watched, the commands for their slot, go on
    // the client's own connection.
    let watched = slot.is_some() && slot == client.watch_slot;
    let dedicated = if watched {
        Some(Pin::Watched)
    } else if info.is_blocking() && blocks(row.class, args) {
        // From now on, writes that could wake it are ordered across workers.
        crate::workers::fence::note_blocking(std::time::Instant::now());
        Some(Pin::Blocking)
    } else {
        None
    };
    // The watching connection runs as the identity it was opened with.
    let run_as = match run_as {
        None if watched => client.watch_identity.clone(),
        other => other,
    };
    // Read-your-writes: this client's writes are tracked per master.
    let ryw_write = match &ctx.read_policy {
        Some(policy) if info.is_write() && client.auth.read_your_writes(policy) => {
            Some(TRACKED_WRITE)
        }
        _ => None,
    };
    let (rewritten, replies) = match rewrite(ctx, client, req, keys) {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let replica = match (&ctx.read_policy, keys.first()) {
        (Some(policy), Some(k)) if dedicated.is_none() && !script && info.is_readonly() => {
            policy.bound_for(k.key(args))
        }
        _ => ryw_write,
    };
    Route::Forward {
        slot,
        rewritten,
        latency: info.metrics().latency.clone(),
        how: Sending {
            replies,
            dedicated,
            replica,
            run_as,
            script,
            ..Sending::one()
        },
    }
}

/// Acts on a guard's verdict; `None` lets the request route on (with the token a limit
/// rule matched left in `charge`, to be paid where it runs).
fn guarded(
    ctx: &SessionContext,
    client: &mut ClientState,
    table: &Arc<crate::commands::CommandTable>,
    (info, args): (&CommandInfo, Args<'_>),
    verdict: Verdict,
    charge: &mut Option<crate::guards::Charge>,
) -> Option<Route> {
    let in_multi = client.tx.is_some();
    let refuse = |client: &mut ClientState, e: Bytes| {
        client.abort_transaction();
        Some(Route::Reply(e))
    };
    match verdict {
        Verdict::Refuse(e) => refuse(client, e),
        Verdict::SafeKeys { .. } | Verdict::Shared(..) if in_multi => refuse(
            client,
            Refusal::GuardNotInMulti(info.name.to_uppercase()).reply(),
        ),
        Verdict::Charge(c) => {
            *charge = Some(c);
            None
        }
        Verdict::SafeKeys { max, charge: owed } => {
            *charge = owed;
            Some(safe_keys(ctx, client, table, (info, args), max, charge))
        }
        Verdict::Shared(budget, refusal) => Some(Route::Gate(crate::guards::shared::start(
            ctx.cluster.clone(),
            client.meta.id,
            budget,
            refusal,
        ))),
    }
}

/// KEYS served by SCAN (a task), as one of the user's keyspace walks in flight.
/// The walk's place is taken before the guard's token, so a walk refused spends none.
fn safe_keys(
    ctx: &SessionContext,
    client: &mut ClientState,
    table: &Arc<crate::commands::CommandTable>,
    (info, args): (&CommandInfo, Args<'_>),
    max: usize,
    charge: &mut Option<crate::guards::Charge>,
) -> Route {
    let hold = match local::walk(ctx, client, table, "KEYS") {
        Ok(hold) => hold,
        Err(refused) => return refused,
    };
    if let Some(refused) = pay(charge, client, info, args) {
        return refused;
    }
    Route::Task(super::safe_keys::start(
        ctx.cluster.clone(),
        client.meta.id,
        Bytes::copy_from_slice(args.get(1)),
        max,
        (client.auth.key_filter(), ctx.cross_slot.guarding()),
        hold,
    ))
}

/// The request as the node gets it, and how many replies it produces: the TTL policy
/// may send a write with its EXPIRE behind it, as one job, and HSCAN / SSCAN / ZSCAN get
/// their COUNT capped. `Err`: the TTL policy's refusal.
fn rewrite(
    ctx: &SessionContext,
    client: &mut ClientState,
    Request {
        info,
        row,
        args,
        table,
    }: Request<'_>,
    keys: &[KeyRef],
) -> Result<(Option<Bytes>, u32), Route> {
    let (mut rewritten, mut replies) = (None, 1);
    // PERSIST and GETEX are `write` commands too.
    if info.is_write() {
        let set = client.guards.set(&ctx.guards, table);
        if !set.ttl.is_empty() {
            match set.ttl.apply(info, args, keys) {
                TtlDecision::Pass => {}
                TtlDecision::Refuse(e) => return Err(Route::Reply(e)),
                TtlDecision::Rewrite { job, replies: n } => (rewritten, replies) = (Some(job), n),
            }
        }
    }
    // A COUNT above `guards.max_scan_count` is lowered, as SCAN's (one step of a huge
    // hash or set would hold its node). The argument count is tested first, so a GET or
    // SET pays nothing for this.
    if args.len() >= 5 && rewritten.is_none() && info.is_readonly() && row.class == Class::KeyScan {
        let max = client.guards.set(&ctx.guards, table).max_scan_count;
        rewritten = local::capped_key_scan(args, max);
    }
    Ok((rewritten, replies))
}

/// Whether a command flagged `blocking` may block with these arguments (XREAD only with
/// BLOCK: its row says so).
fn blocks(class: Class, args: Args<'_>) -> bool {
    match class {
        Class::Blocking(block) => block.blocks(args),
        _ => true,
    }
}
