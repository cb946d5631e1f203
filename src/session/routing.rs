//! Deciding what to do with one request: answer it here, refuse it, or forward it to the
//! node that serves its keys' slot.

use super::dedicated::Pin;
use super::local;
use super::merge::Merge;
use super::subscribe;
use super::transaction;
use super::ClientState;
use super::SessionContext;
use crate::backend::NodeIdentity;
use crate::cluster::key_slot;
use crate::commands::{CommandInfo, KeyRef, KeysError, Lookup};
use crate::guards::ttl::{TtlDecision, TtlPolicy};
use crate::guards::Verdict;
use crate::protocol::{reply, Args};
use crate::pubsub::Kind;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

/// The decision for one request.
pub enum Route {
    /// Answer with these bytes.
    Reply(Bytes),
    /// Answer, then close the connection once every earlier reply is written.
    ReplyAndClose(Bytes),
    /// Forward to the master of `slot` (any master when `None`). `rewritten` replaces
    /// the client's bytes when respgate had to change the request.
    Forward {
        slot: Option<u16>,
        rewritten: Option<Bytes>,
        /// Where the reply latency is recorded.
        latency: metrics::Histogram,
        /// Replies the forwarded bytes produce (N+2 for a transaction).
        replies: u32,
        /// On the client's own connection, and why (blocking commands, WATCH).
        dedicated: Option<Pin>,
        /// A read a replica may serve under this lag bound (`[replica_reads]`).
        replica: Option<u8>,
        /// Runs on the node as this identity (a script, or a transaction holding one).
        run_as: Option<Arc<NodeIdentity>>,
        /// A script call: its replies are data ([`crate::cluster::redirect`]).
        script: bool,
        /// A transaction: the last `hidden` elements of EXEC's reply answer commands
        /// respgate queued itself (the TTL policy's EXPIREs) and are taken out.
        hidden: u32,
    },
    /// Queue the request (or these bytes instead: the TTL policy capped its expiry) in
    /// the client's transaction and answer `+QUEUED`.
    Queue(Option<Bytes>),
    /// (Un)subscription replies, each ready or waiting for the hub's confirmation.
    Subscribed(subscribe::Confirmations),
    /// Send each part (a request for a slot, producing `n` replies of which the first
    /// is merged: the rest answer the TTL policy's EXPIREs) and merge the replies.
    Split {
        parts: Vec<(Option<u16>, Bytes, u32)>,
        merge: Merge,
        latency: metrics::Histogram,
    },
    /// A reply a task of its own computes (CONFIG SET on every node). The client's next
    /// requests wait for it.
    Task(tokio::sync::oneshot::Receiver<Bytes>),
    /// Count the request against a shared budget first: `None` from the task lets it
    /// route again (past the guard), an error is its reply. The client's next requests
    /// wait for it.
    Gate(tokio::sync::oneshot::Receiver<Option<Bytes>>),
    /// Send the request as it is to every master and merge the replies.
    FanOut {
        merge: Merge,
        latency: metrics::Histogram,
    },
}

/// `Route::Forward::replica` for a write whose master read-your-writes must track.
pub const TRACKED_WRITE: u8 = u8::MAX;

/// How a multi-key command whose keys span slots is split.
enum Layout {
    /// Every argument after the name is a key (MGET, DEL, EXISTS, ...).
    Keys,
    /// Key-value pairs (MSET).
    Pairs,
}

/// Splits a multi-key request by slot, keeping the order in which slots first appear.
/// With `ttl` (an MSET under a TTL policy), each part's covered keys get the policy's
/// EXPIRE behind it.
fn split_by_slot(
    args: Args<'_>,
    layout: Layout,
    merge_for: impl FnOnce(Vec<Vec<u32>>, usize) -> Merge,
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
        merge: merge_for(positions, (args.len() - 1) / step),
        latency,
    }
}

/// A command refused before it runs (wrong arity, NOAUTH, NOPERM), as Redis's
/// `rejectCommand` does it: inside MULTI the transaction is flagged (EXEC will answer
/// EXECABORT); a refused EXEC discards the transaction and words the error as
/// `EXECABORT Transaction discarded because of: <error>`, in or out of MULTI.
fn rejected(client: &mut ClientState, info: &CommandInfo, error: Bytes) -> Route {
    if info.name == "exec" {
        client.tx = None;
        let text = error.strip_prefix(b"-").unwrap_or(&error);
        let text = text.strip_suffix(b"\r\n").unwrap_or(text);
        // Redis formats the arity refusal without its `ERR ` code here.
        let text = if text.starts_with(b"ERR wrong number of arguments") {
            &text[4..]
        } else {
            text
        };
        return Route::Reply(reply::error(&format!(
            "EXECABORT Transaction discarded because of: {}",
            String::from_utf8_lossy(text)
        )));
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
        if args.get(0).eq_ignore_ascii_case(b"quit") {
            return Route::ReplyAndClose(Bytes::from_static(reply::OK));
        }
        return Route::Reply(reply::error(
            "CLUSTERDOWN The cluster is down (respgate has not reached any node yet)",
        ));
    };
    let lookup = table.lookup(args);
    let Lookup::Found(info) = lookup else {
        let error = lookup.error_reply(args).unwrap_or_default();
        if let Lookup::WrongArity(info) = lookup {
            return rejected(client, info, error);
        }
        client.abort_transaction();
        return Route::Reply(error);
    };
    info.metrics.requests.increment(1);
    client.entry.set_cmd(&info.name);
    let keys_found = match super::auth::check(ctx, client, info, args, keys, table) {
        Ok(found) => found,
        Err(refused) => return rejected(client, info, refused),
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

    // Subscribed-mode rules come first (MULTI is refused there too); SUBSCRIBE inside
    // MULTI is left to the transaction rules.
    if client.subs.is_some() || (info.is_pubsub() && client.tx.is_none()) {
        let refused = client.subs.is_some()
            && !client.resp3
            && !subscribe::allowed_in_subscribed_mode(&info.name);
        if !refused {
            if let Some(route) = pay(&mut charge, client, info, args) {
                return route;
            }
        }
        if let Some(route) = pubsub(ctx, client, info, args) {
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
            crate::scripts::Decision::Refuse(e) => return rejected(client, info, e),
        }
    } else {
        None
    };

    let transaction_command = info.acl_categories & transaction_category() != 0;
    // RESET and QUIT act at once even inside MULTI, as in Redis (the names are compared
    // only inside a transaction: not on the common path).
    let queueing = client.tx.is_some() && !matches!(info.name.as_str(), "reset" | "quit");
    if queueing || transaction_command {
        let queueable = !transaction_command && local::queueable(info, args);
        if queueable && run_as.is_some() {
            if let Some(tx) = client.tx.as_mut() {
                tx.run_as = run_as;
            }
        }
        // A first WATCH pins a connection of the client's own that runs as the user's
        // script identity: a script queued in the transaction then runs as the caller.
        if info.name == "watch" && client.watch_slot.is_none() && client.tx.is_none() {
            client.watch_identity = client
                .auth
                .user()
                .and_then(|u| ctx.scripts.identity(&u.name, table));
        }
        if !transaction::refuses(client, info, queueable, transaction_command) {
            if let Some(route) = pay(&mut charge, client, info, args) {
                return route;
            }
        }
        // The TTL policy applies to queued commands too (its EXPIREs go before EXEC).
        let set = client.guards.set(&ctx.guards, table).clone();
        let ttl = (!set.ttl.is_empty()).then_some(&set.ttl);
        return transaction::route(client, info, args, keys, queueable, ttl);
    }

    // The common case: a plain keyed data command.
    let special = info.is_blocking() || info.is_pubsub() || info.has_no_keys();
    if special || info.name == "move" {
        if let Some(route) = pay(&mut charge, client, info, args) {
            return route;
        }
        if let Some(route) = local::answer(ctx, client, info, args, table) {
            return route;
        }
    }

    // The plain path decides without side effects: its refusals spend no token.
    let route = keyed(
        ctx,
        client,
        info,
        args,
        keys,
        table,
        keys_found,
        (run_as, script),
    );
    if matches!(&route, Route::Reply(e) if e.first() == Some(&b'-')) {
        return route;
    }
    pay(&mut charge, client, info, args).unwrap_or(route)
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
    info: &CommandInfo,
    args: Args<'_>,
    keys: &mut Vec<KeyRef>,
    table: &Arc<crate::commands::CommandTable>,
    keys_found: bool,
    (run_as, script): (Option<Arc<NodeIdentity>>, bool),
) -> Route {
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
                latency: info.metrics.latency.clone(),
                replies: 1,
                dedicated: None,
                replica: None,
                run_as,
                script,
                hidden: 0,
            }
        }
        Err(_) => {
            return Route::Reply(reply::error(&format!(
                "ERR respgate: cannot tell which keys '{}' touches, so it cannot be routed",
                info.name
            )))
        }
    }
    let Ok(slot) = common_slot(keys, args) else {
        let set = client.guards.set(&ctx.guards, table);
        return cross_slot(info, args, (!set.ttl.is_empty()).then_some(&set.ttl));
    };
    // Blocking commands, and while keys are watched, the commands for their slot, go on
    // the client's own connection.
    let watched = slot.is_some() && slot == client.watch_slot;
    let dedicated = if watched {
        Some(Pin::Watched)
    } else if info.is_blocking() && blocks(info, args) {
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
    // The TTL policy may send the write with its EXPIRE behind it, as one job.
    let (mut rewritten, mut replies) = (None, 1);
    // PERSIST and GETEX are `write` commands too.
    if info.is_write() {
        let set = client.guards.set(&ctx.guards, table);
        if !set.ttl.is_empty() {
            match set.ttl.apply(info, args, keys) {
                TtlDecision::Pass => {}
                TtlDecision::Refuse(e) => return Route::Reply(e),
                TtlDecision::Rewrite { job, replies: n } => (rewritten, replies) = (Some(job), n),
            }
        }
    }
    // HSCAN / SSCAN / ZSCAN: a COUNT above `guards.max_scan_count` is lowered, as SCAN's
    // (one step of a huge hash or set would hold its node). The argument count is tested
    // first, so a GET or SET pays nothing for this.
    if args.len() >= 5
        && rewritten.is_none()
        && info.is_readonly()
        && matches!(info.name.as_str(), "hscan" | "sscan" | "zscan")
    {
        let max = client.guards.set(&ctx.guards, table).max_scan_count;
        rewritten = local::capped_key_scan(args, max);
    }
    let replica = match (&ctx.read_policy, keys.first()) {
        (Some(policy), Some(k)) if dedicated.is_none() && !script && info.is_readonly() => {
            policy.bound_for(k.key(args))
        }
        _ => ryw_write,
    };
    Route::Forward {
        slot,
        rewritten,
        latency: info.metrics.latency.clone(),
        replies,
        dedicated,
        replica,
        run_as,
        script,
        hidden: 0,
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
            reply::error(&format!(
                "ERR respgate: {} cannot be queued in MULTI under its guard rule (served by SCAN or counted in the cluster)",
                info.name.to_uppercase()
            )),
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
        client.auth.key_filter(),
        hold,
    ))
}

/// Subscriptions and subscribed-mode rules; `None` lets the command route on.
fn pubsub(
    ctx: &SessionContext,
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
) -> Option<Route> {
    let entry = client.entry.clone();
    let resp3 = client.resp3;
    // RESP3 clients may run any command while subscribed (messages are pushes).
    let subscribed = client.subs.is_some() && !resp3;
    let route = match info.name.as_str() {
        "subscribe" => subscribe::subscribe(
            &mut client.subs,
            &entry,
            &ctx.pubsub,
            ctx.pubsub_queue,
            Kind::Channel,
            args,
            resp3,
        ),
        "psubscribe" => subscribe::subscribe(
            &mut client.subs,
            &entry,
            &ctx.pubsub,
            ctx.pubsub_queue,
            Kind::Pattern,
            args,
            resp3,
        ),
        "ssubscribe" => subscribe::subscribe(
            &mut client.subs,
            &entry,
            &ctx.pubsub,
            ctx.pubsub_queue,
            Kind::Shard,
            args,
            resp3,
        ),
        "unsubscribe" => subscribe::unsubscribe(&mut client.subs, Kind::Channel, args, resp3),
        "punsubscribe" => subscribe::unsubscribe(&mut client.subs, Kind::Pattern, args, resp3),
        "sunsubscribe" => subscribe::unsubscribe(&mut client.subs, Kind::Shard, args, resp3),
        "ping" if subscribed => subscribe::ping(info, args),
        name if subscribed && !subscribe::allowed_in_subscribed_mode(name) => {
            subscribe::refuse(info)
        }
        _ => return None,
    };
    let counts = client.subs.as_ref().map_or([0; 3], |s| s.counts());
    for (stored, n) in client.entry.subs.iter().zip(counts) {
        stored.store(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    Some(route)
}

/// The slot every key hashes to (`None` without keys), or `Err` when they differ.
pub(super) fn common_slot(keys: &[KeyRef], args: Args<'_>) -> Result<Option<u16>, ()> {
    let mut slot = None;
    for k in keys {
        let s = key_slot(k.key(args));
        if slot.is_some_and(|prev| prev != s) {
            return Err(());
        }
        slot = Some(s);
    }
    Ok(slot)
}

/// Whether a command flagged `blocking` really may block: XREAD / XREADGROUP only with
/// BLOCK (before STREAMS).
fn blocks(info: &CommandInfo, args: Args<'_>) -> bool {
    match info.name.as_str() {
        "xread" | "xreadgroup" => args
            .iter()
            .skip(1)
            .take_while(|a| !a.eq_ignore_ascii_case(b"streams"))
            .any(|a| a.eq_ignore_ascii_case(b"block")),
        _ => true,
    }
}

/// The ACL category bit of `@transaction` (MULTI, EXEC, DISCARD, WATCH, UNWATCH).
fn transaction_category() -> u64 {
    static BIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BIT.get_or_init(|| crate::commands::acl_category_bit(b"transaction").unwrap_or(0))
}

/// A request whose keys span slots: split when the command allows it, else CROSSSLOT.
/// `ttl`: the TTL policy, when it has rules (MSET's parts get their EXPIREs).
fn cross_slot(info: &CommandInfo, args: Args<'_>, ttl: Option<&TtlPolicy>) -> Route {
    let latency = info.metrics.latency.clone();
    match info.name.as_str() {
        "mget" => split_by_slot(args, Layout::Keys, |positions, total| Merge::Mget { positions, total }, latency, None),
        "del" | "unlink" | "exists" | "touch" => split_by_slot(args, Layout::Keys, |_, _| Merge::Sum, latency, None),
        "mset" if args.len() % 2 == 0 => {
            Route::Reply(crate::commands::replies::wrong_arity_reply(info))
        }
        "mset" => split_by_slot(args, Layout::Pairs, |_, _| Merge::AllOk, latency, ttl),
        "msetnx" => Route::Reply(reply::error(
            "CROSSSLOT Keys in request don't hash to the same slot (respgate cannot split MSETNX: it would lose its all-or-nothing guarantee)",
        )),
        _ => Route::Reply(reply::error(
            reply::CROSSSLOT,
        )),
    }
}
