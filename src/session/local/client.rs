//! CLIENT subcommands, answered over respgate's own clients (the registry), not the
//! nodes': a client of respgate sees respgate's clients, as it would a standalone Redis's.

use super::super::client_scope::ClientScope;
use super::super::merge::Merge;
use super::super::route::Route;
use super::super::{ClientState, ReplyMode, SessionContext};
use super::{err, not_yet, ok};
use crate::commands::CommandInfo;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use crate::protocol::scan::parse_int;
use crate::protocol::Args;
use bytes::Bytes;

/// CLIENT <sub>: `sub` is the subcommand's name (`setname`).
pub(super) fn command(
    ctx: &SessionContext,
    client: &mut ClientState,
    info: &CommandInfo,
    sub: &str,
    args: Args<'_>,
) -> Option<Route> {
    match sub {
        "list" => Some(client_list(ctx, client, args)),
        "kill" => Some(client_kill(ctx, client, args)),
        "unblock" => Some(client_unblock(ctx, client, info, args)),
        // respgate holds its clients' paused commands itself and pauses every master.
        "pause" => super::pause::pause(ctx, info, args),
        "unpause" => super::pause::unpause(ctx),
        // respgate never evicts clients: accepted for compatibility, with Redis's
        // argument check.
        "no-evict" => {
            let on_off = args.get(2);
            if on_off.eq_ignore_ascii_case(b"on") || on_off.eq_ignore_ascii_case(b"off") {
                ok()
            } else {
                err(Refusal::Syntax)
            }
        }
        "reply" => {
            let mode = args.get(2);
            if mode.eq_ignore_ascii_case(b"on") {
                client.reply = ReplyMode::On;
                ok()
            } else if mode.eq_ignore_ascii_case(b"off") {
                client.reply = ReplyMode::Off;
                ok() // muted: OFF has no reply
            } else if mode.eq_ignore_ascii_case(b"skip") {
                if client.reply != ReplyMode::Off {
                    client.reply = ReplyMode::SkipThis;
                }
                ok() // muted
            } else {
                err(Refusal::Syntax)
            }
        }
        "setname" => {
            let name = args.get(2);
            if let Some(refused) = bad_client_name(ctx, name) {
                return refused;
            }
            client.set_name((!name.is_empty()).then(|| Bytes::copy_from_slice(name)));
            ok()
        }
        "getname" => Some(Route::Reply(match &client.entry.name() {
            Some(n) => reply::bulk(n),
            None if client.resp3 => Bytes::from_static(b"_\r\n"),
            None => Bytes::from_static(reply::NULL),
        })),
        "id" => Some(Route::Reply(reply::integer(client.meta.id as i64))),
        "info" => Some(Route::Reply(reply::verbatim(
            client.info_line().as_bytes(),
            client.resp3,
        ))),
        "setinfo" => ok(),
        // Tracking is never on through respgate, so the questions about it get the
        // answers Redis gives a client without tracking; only turning it on is refused.
        "getredir" => Some(Route::Reply(reply::integer(-1))),
        "trackinginfo" => Some(Route::Reply(Bytes::from_static(if client.resp3 {
            b"%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"
        } else {
            b"*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"
        }))),
        "caching" => err(Refusal::CachingWithoutTracking),
        "tracking" if args.get(2).eq_ignore_ascii_case(b"off") => ok(),
        "tracking" if !args.get(2).eq_ignore_ascii_case(b"on") => err(Refusal::Syntax),
        "tracking" => err(Refusal::ClientTracking),
        _ => not_yet(
            format!("CLIENT {}", sub.to_uppercase()),
            "respgate answers CLIENT SETNAME, GETNAME, ID, INFO, LIST, KILL, UNBLOCK, REPLY, NO-EVICT, PAUSE, UNPAUSE, GETREDIR and TRACKINGINFO",
        ),
    }
}

/// CLIENT LIST [TYPE normal|pubsub] [ID id ...]: respgate's own clients that the caller
/// may see ([`ClientScope`]).
fn client_list(ctx: &SessionContext, client: &ClientState, args: Args<'_>) -> Route {
    let mut want_type: Option<Vec<u8>> = None;
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < args.len() {
        let opt = args.get(i);
        if opt.eq_ignore_ascii_case(b"type") && i + 1 < args.len() {
            want_type = Some(args.get(i + 1).to_ascii_lowercase());
            i += 2;
        } else if opt.eq_ignore_ascii_case(b"id") && i + 1 < args.len() {
            let mut list = Vec::new();
            for a in args.iter().skip(i + 1) {
                match std::str::from_utf8(a).ok().and_then(|s| s.parse().ok()) {
                    Some(id) => list.push(id),
                    None => return Route::Reply(Refusal::InvalidClientId.reply()),
                }
            }
            ids = Some(list);
            i = args.len();
        } else {
            return Route::Reply(Refusal::Syntax.reply());
        }
    }
    let mut out = String::new();
    for entry in ClientScope::of(ctx, client).clients(&ctx.registry) {
        if ids.as_ref().is_some_and(|ids| !ids.contains(&entry.id)) {
            continue;
        }
        let pubsub = entry
            .subs
            .iter()
            .any(|c| c.load(std::sync::atomic::Ordering::Relaxed) > 0);
        match want_type.as_deref() {
            Some(b"pubsub") if !pubsub => continue,
            Some(b"normal") if pubsub => continue,
            Some(b"master" | b"replica" | b"slave") => continue,
            Some(b"pubsub" | b"normal") | None => {}
            Some(other) => {
                return Route::Reply(
                    Refusal::UnknownClientType(String::from_utf8_lossy(other).into_owned()).reply(),
                )
            }
        }
        if entry.id == client.meta.id {
            out.push_str(&client.info_line());
        } else {
            out.push_str(&entry.info_line(None));
        }
    }
    Route::Reply(reply::verbatim(out.as_bytes(), client.resp3))
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR]: a respgate client blocks on connections of its
/// own, so the unblock goes to each of those nodes naming that connection's id there;
/// the blocked client then gets the node's timeout or `-UNBLOCKED` reply as usual. The
/// answer is how many nodes had it blocked (0 or 1), as Redis answers.
fn client_unblock(
    ctx: &SessionContext,
    client: &ClientState,
    info: &CommandInfo,
    args: Args<'_>,
) -> Route {
    let mode: &[u8] = match args.len() {
        4 if args.get(3).eq_ignore_ascii_case(b"timeout") => b"TIMEOUT",
        4 if args.get(3).eq_ignore_ascii_case(b"error") => b"ERROR",
        4 => return Route::Reply(Refusal::UnblockReason.reply()),
        _ => b"TIMEOUT",
    };
    let Some(id) = parse_int(args.get(2)) else {
        return Route::Reply(Refusal::NotAnInteger.reply());
    };
    let zero = || Route::Reply(reply::integer(0));
    let Some(target) = ClientScope::of(ctx, client)
        .clients(&ctx.registry)
        .into_iter()
        .find(|e| e.id as i64 == id)
    else {
        return zero();
    };
    let links = target
        .dedicated
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let topo = ctx.cluster.topology();
    let Some(topo) = topo.as_ref() else {
        return zero();
    };
    let parts: Vec<(Option<u16>, Bytes, u32)> = links
        .iter()
        .filter_map(|(addr, backend_id)| {
            let backend_id = backend_id.load(std::sync::atomic::Ordering::Relaxed);
            let shard = topo
                .shards()
                .iter()
                .position(|s| s.master.addr() == &**addr)?;
            (backend_id >= 0).then(|| {
                let id = backend_id.to_string();
                let words: [&[u8]; 4] = [b"CLIENT", b"UNBLOCK", id.as_bytes(), mode];
                (topo.shard_slot(shard), reply::command(words), 1)
            })
        })
        .collect();
    if parts.is_empty() {
        return zero();
    }
    Route::Split {
        parts,
        merge: Merge::Sum,
        latency: info.metrics().latency.clone(),
    }
}

/// CLIENT KILL addr (old form: +OK or an error) or CLIENT KILL <filter value> ...
/// (ID, ADDR, LADDR, USER, SKIPME: the number killed), over respgate's own clients that
/// the caller may act on ([`ClientScope`]).
fn client_kill(ctx: &SessionContext, client: &ClientState, args: Args<'_>) -> Route {
    let all = ClientScope::of(ctx, client).clients(&ctx.registry);
    if args.len() == 3 {
        let addr = String::from_utf8_lossy(args.get(2)).into_owned();
        return match all.iter().find(|e| e.peer.to_string() == addr) {
            Some(e) if e.id == client.meta.id => {
                Route::ReplyAndClose(Bytes::from_static(reply::OK))
            }
            Some(e) => {
                e.kill();
                Route::Reply(Bytes::from_static(reply::OK))
            }
            None => Route::Reply(Refusal::NoSuchClient.reply()),
        };
    }
    if args.len() % 2 != 0 {
        return Route::Reply(Refusal::Syntax.reply());
    }
    let mut id = None;
    let mut addr = None;
    let mut laddr = None;
    let mut user = None;
    let mut skipme = true;
    for pair in (2..args.len()).step_by(2) {
        let (k, v) = (
            args.get(pair),
            String::from_utf8_lossy(args.get(pair + 1)).into_owned(),
        );
        match k.to_ascii_lowercase().as_slice() {
            // Redis: `client-id should be greater than 0` for 0 as for anything else
            // that is not a positive id.
            b"id" => match v.parse::<u64>() {
                Ok(n) if n > 0 => id = Some(n),
                _ => return Route::Reply(Refusal::ClientIdNotPositive.reply()),
            },
            b"addr" => addr = Some(v),
            b"laddr" => laddr = Some(v),
            b"user" => user = Some(v),
            b"skipme" => match v.to_ascii_lowercase().as_str() {
                "yes" => skipme = true,
                "no" => skipme = false,
                _ => return Route::Reply(Refusal::Syntax.reply()),
            },
            _ => return Route::Reply(Refusal::Syntax.reply()),
        }
    }
    let mut killed = 0;
    let mut me = false;
    for e in &all {
        let matches = id.is_none_or(|i| e.id == i)
            && addr.as_ref().is_none_or(|a| e.peer.to_string() == *a)
            && laddr.as_ref().is_none_or(|a| e.local.to_string() == *a)
            && user.as_ref().is_none_or(|u| **u == *e.user());
        if !matches {
            continue;
        }
        if e.id == client.meta.id {
            if skipme {
                continue;
            }
            me = true;
        } else {
            e.kill();
        }
        killed += 1;
    }
    if me {
        Route::ReplyAndClose(reply::integer(killed))
    } else {
        Route::Reply(reply::integer(killed))
    }
}

/// Redis's check of the characters, and respgate's own bound on the length
/// (`server.max_client_name_bytes`: every name is kept for CLIENT LIST, and Redis has
/// no bound). The refusal, if refused.
pub(super) fn bad_client_name(ctx: &SessionContext, name: &[u8]) -> Option<Option<Route>> {
    if name.len() > ctx.bounds.max_client_name {
        return Some(err(Refusal::ClientNameTooLong(ctx.bounds.max_client_name)));
    }
    (!name.iter().all(|&b| (b'!'..=b'~').contains(&b))).then(|| err(Refusal::BadClientName))
}
