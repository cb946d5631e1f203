//! Commands respgate answers itself, and those it refuses because one endpoint in front
//! of a cluster cannot honour them (yet).
//!
//! respgate presents a standalone Redis: connection commands (PING, ECHO, SELECT 0,
//! CLIENT SETNAME, HELLO, ...) are answered here with Redis's exact replies, and CLUSTER
//! gets the error a standalone server gives. Returning `None` lets the request route
//! normally (keyed, or to any master when keyless).

use super::client_scope::ClientScope;
use super::merge::{self, Merge};
use super::routing::Route;
use super::{ClientState, ReplyMode, SessionContext};
use crate::commands::{CommandInfo, CommandTable};
use crate::protocol::reply::{self, put_array_header, put_bulk};
use crate::protocol::scan::parse_int;
use crate::protocol::Args;
use bytes::{Bytes, BytesMut};

fn ok() -> Option<Route> {
    Some(Route::Reply(Bytes::from_static(reply::OK)))
}

fn err(msg: &str) -> Option<Route> {
    Some(Route::Reply(reply::error(msg)))
}

fn not_yet(what: &str, why: &str) -> Option<Route> {
    err(&format!(
        "ERR respgate: {what} is not supported yet ({why})"
    ))
}

/// Answers `args` locally when it is a connection-level or refused command.
pub fn answer(
    ctx: &SessionContext,
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
    table: &std::sync::Arc<CommandTable>,
) -> Option<Route> {
    let name = info.name.as_str();
    match name {
        "ping" => match args.len() {
            1 => Some(Route::Reply(Bytes::from_static(reply::PONG))),
            2 => Some(Route::Reply(reply::bulk(args.get(1)))),
            _ => Some(Route::Reply(crate::commands::replies::wrong_arity_reply(
                info,
            ))),
        },
        "echo" => Some(Route::Reply(reply::bulk(args.get(1)))),
        "quit" => Some(Route::ReplyAndClose(Bytes::from_static(reply::OK))),
        "reset" => {
            client.set_name(None);
            client.tx = None;
            client.subs = None;
            client.resp3 = false;
            client
                .entry
                .resp
                .store(2, std::sync::atomic::Ordering::Relaxed);
            client.watch_slot = None;
            client.auth.reset(&ctx.security);
            client
                .entry
                .set_user(std::sync::Arc::from(client.auth.name()));
            for count in &client.entry.subs {
                count.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            Some(Route::Reply(reply::simple("RESET")))
        }
        "select" => match parse_int(args.get(1)) {
            Some(0) => ok(),
            Some(_) => err("ERR DB index is out of range"),
            None => err("ERR value is not an integer or out of range"),
        },
        "readonly" | "readwrite" => ok(),
        "auth" => Some(super::auth::auth(ctx, client, args)),
        "hello" => hello(ctx, client, args),
        "command" => Some(Route::Reply(ctx.cluster.command_reply().unwrap_or_else(
            || reply::error("ERR respgate: command table not loaded"),
        ))),
        "command|count" => Some(Route::Reply(reply::integer(table.len() as i64))),
        _ if name == "cluster" || name.starts_with("cluster|") => {
            err("ERR This instance has cluster support disabled")
        }
        _ if name.starts_with("acl|") => super::auth::acl(ctx, client, &name[4..], args),
        _ if name.starts_with("client|") => client_command(ctx, client, info, &name[7..], args),
        "multi" | "exec" | "discard" | "watch" | "unwatch" => not_yet(
            "MULTI/EXEC/WATCH",
            "transactions need a pinned backend connection",
        ),
        "monitor" => not_yet(
            "MONITOR",
            "it would need every node's command stream merged",
        ),
        // KEYS on every node (no guard rule serves it by SCAN).
        "keys" => Some(match walk(ctx, client, table, "KEYS") {
            Ok(hold) => Route::FanOut {
                merge: Merge::Walk {
                    inner: Box::new(readable(client, Merge::Concat)),
                    hold,
                },
                latency: info.metrics.latency.clone(),
            },
            Err(refused) => refused,
        }),
        "dbsize" => fan_out(info, Merge::Sum),
        "flushall" | "flushdb" => {
            crate::audit::flush_passed(
                client.auth.name(),
                client.meta.peer.ip(),
                name,
                args.iter().skip(1),
            );
            fan_out(info, Merge::AllOk)
        }
        "script|flush" | "function|flush" | "function|delete" | "function|restore"
        | "config|resetstat" | "config|rewrite" => fan_out(info, Merge::AllOk),
        "config|get" => Some(super::config_get::route(info, args)),
        "config|set" => Some(Route::Task(super::config_set::start(
            ctx.cluster.clone(),
            client.meta.id,
            client.resp3,
            args.iter().map(Bytes::copy_from_slice).collect(),
        ))),
        "randomkey" => match client.auth.key_filter() {
            Some(user) => Some(match walk(ctx, client, table, "RANDOMKEY") {
                Ok(hold) => Route::Task(super::random_key::start(
                    ctx.cluster.clone(),
                    client.meta.id,
                    client.resp3,
                    user,
                    hold,
                )),
                Err(refused) => refused,
            }),
            None => fan_out(info, Merge::AnyNonNull),
        },
        "script|load" | "function|load" => fan_out(info, Merge::First),
        "script|exists" => fan_out(info, Merge::AndArrays),
        "info" => {
            // respgate's section joins the default and "all" views, as Redis's own
            // sections do; a client asking for one section gets just that section.
            let wants_proxy = args.len() == 1
                || args.iter().skip(1).any(|a| {
                    [&b"all"[..], b"everything", b"default", b"proxy"]
                        .iter()
                        .any(|s| a.eq_ignore_ascii_case(s))
                });
            fan_out(
                info,
                Merge::Info {
                    proxy_section: if wants_proxy {
                        proxy_info(ctx)
                    } else {
                        String::new()
                    },
                },
            )
        }
        "scan" => {
            let max_count = client.guards.set(&ctx.guards, table).max_scan_count;
            let hold = match walk(ctx, client, table, "SCAN") {
                Ok(hold) => hold,
                Err(refused) => return Some(refused),
            };
            Some(match scan(ctx, info, args, max_count) {
                Route::Split {
                    parts,
                    merge,
                    latency,
                } => Route::Split {
                    parts,
                    merge: Merge::Walk {
                        inner: Box::new(readable(client, merge)),
                        hold,
                    },
                    latency,
                },
                other => other,
            })
        }
        // Library code is every team's: a restricted user who is no admin sees the
        // libraries and their functions, not their code.
        "function|list"
            if args.iter().skip(2).any(|a| a.eq_ignore_ascii_case(b"withcode"))
                && client.auth.user().is_some_and(|u| !u.unrestricted)
                && !ctx.guards.current().is_admin(client.auth.name()) =>
        {
            err("ERR respgate: FUNCTION LIST WITHCODE shows every team's library code: admins only ([guards] admins)")
        }
        // The Lua debugger holds the connection it was asked on: a node link other
        // clients share. Refused for everyone.
        "script|debug" => err(
            "ERR respgate: SCRIPT DEBUG is not supported (the Lua debugger would take over a node connection other clients share)",
        ),
        // A standalone Redis's answer; forwarded, it would flag a shared node link for
        // another client's next command.
        "asking" => err("ERR This instance has cluster support disabled"),
        "script|kill" | "function|kill" | "function|stats" => not_yet(
            &name.to_uppercase().replace('|', " "),
            "it would need every master's running script",
        ),
        // The receiver count a standalone Redis gives: respgate's subscribers count one
        // by one, not as the one backend subscription the node sees (see
        // `PubSubHub::publish_plan`).
        "publish" if args.len() == 3 => {
            let (slot, adjust) = ctx.pubsub.publish_plan(&ctx.cluster, args.get(1));
            publish(info, args, slot, adjust)
        }
        "spublish" if args.len() == 3 => {
            let channel = args.get(1);
            let local =
                ctx.pubsub
                    .local_subscribers(crate::pubsub::Kind::Shard, channel) as i64;
            let slot = crate::cluster::key_slot(channel);
            publish(info, args, Some(slot), local - i64::from(local > 0))
        }
        "pubsub|channels" | "pubsub|shardchannels" => fan_out(info, Merge::Union),
        "pubsub|numpat" => fan_out(info, Merge::Sum),
        "pubsub|numsub" | "pubsub|shardnumsub" => {
            // The nodes see respgate's one subscription per channel; count its clients.
            let kind = if name == "pubsub|numsub" {
                crate::pubsub::Kind::Channel
            } else {
                crate::pubsub::Kind::Shard
            };
            let adjust = args
                .iter()
                .skip(2)
                .map(|ch| {
                    let local = ctx.pubsub.local_subscribers(kind, ch) as i64;
                    local - i64::from(local > 0)
                })
                .collect();
            fan_out(info, Merge::NumSub { adjust })
        }
        "swapdb" | "move" => err(&format!(
            "ERR respgate: {} is not allowed: a Redis Cluster has only database 0",
            name.to_uppercase()
        )),
        // DEBUG OBJECT reads one key's internals: asked of the key's master.
        "debug" if args.len() == 3 && args.get(1).eq_ignore_ascii_case(b"object") => {
            Some(Route::Forward {
                slot: Some(crate::cluster::key_slot(args.get(2))),
                rewritten: None,
                latency: info.metrics.latency.clone(),
                replies: 1,
                dedicated: None,
                replica: None,
                run_as: None,
                script: false,
                hidden: 0,
            })
        }
        // Persistence on every master: the client asked for the whole dataset.
        "save" => fan_out(info, Merge::AllOk),
        "bgsave" | "bgrewriteaof" => fan_out(info, Merge::First),
        "slowlog|len" => fan_out(info, Merge::Sum),
        "slowlog|reset" => fan_out(info, Merge::AllOk),
        "slowlog|get" => fan_out(info, Merge::Concat),
        "sync" | "psync" | "replicaof" | "slaveof" | "shutdown" | "debug" | "failover" => {
            err(&format!(
                "ERR respgate: {} is not allowed through the proxy; run it on a node",
                name.to_uppercase()
            ))
        }
        // WAIT counts acknowledgements of the connection's own writes, and a client's
        // writes go over shared connections: the answer would mean nothing.
        "wait" | "waitaof" => not_yet(
            &name.to_uppercase(),
            "the client's writes travel on shared backend connections",
        ),
        _ => None,
    }
}

/// Whether `info` can be queued in a transaction, i.e. run by the node inside EXEC:
/// not for what respgate answers itself, fans out or refuses, nor for connection state
/// that would land on a shared backend connection (SELECT other than 0, CLIENT, HELLO,
/// ...). SELECT 0 and COMMAND run on the node as they would on a standalone Redis.
pub fn queueable(info: &CommandInfo, args: Args<'_>) -> bool {
    let name = info.name.as_str();
    let family = name.split('|').next().unwrap_or(name);
    if family == "select" {
        return args.len() == 2 && parse_int(args.get(1)) == Some(0);
    }
    !matches!(
        family,
        "quit"
            | "reset"
            | "readonly"
            | "readwrite"
            | "asking"
            | "acl"
            | "auth"
            | "hello"
            | "cluster"
            | "client"
            | "keys"
            | "scan"
            | "dbsize"
            | "flushall"
            | "flushdb"
            | "randomkey"
            | "script"
            | "function"
            | "config"
            | "info"
            | "swapdb"
            | "move"
            | "sync"
            | "psync"
            | "replicaof"
            | "slaveof"
            | "shutdown"
            | "debug"
            | "failover"
            | "subscribe"
            | "psubscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "punsubscribe"
            | "sunsubscribe"
            | "pubsub"
            | "monitor"
            | "wait"
            | "waitaof"
    )
}

/// A place for one keyspace walk of the client's user
/// (`guards.max_keyspace_walks_per_user`); the refusal as the route otherwise.
pub(super) fn walk(
    ctx: &SessionContext,
    client: &mut ClientState,
    table: &std::sync::Arc<CommandTable>,
    what: &str,
) -> Result<crate::guards::in_flight::WalkHold, Route> {
    let max = client.guards.set(&ctx.guards, table).max_walks;
    ctx.guards
        .begin_walk(max, client.auth.name(), what)
        .map_err(Route::Reply)
}

/// `merge`, filtered to the keys the client's user may read when it is limited to key
/// patterns: a tenant never learns another tenant's key names.
fn readable(client: &ClientState, merge: Merge) -> Merge {
    match client.auth.key_filter() {
        Some(user) => Merge::Readable {
            inner: Box::new(merge),
            filter: merge::ReadFilter(user),
        },
        None => merge,
    }
}

/// A PUBLISH / SPUBLISH sent to the master of `slot` (any master: `None`) whose
/// receiver count gets `adjust` added. Without an adjustment it routes like any command.
fn publish(info: &CommandInfo, args: Args<'_>, slot: Option<u16>, adjust: i64) -> Option<Route> {
    if adjust == 0 && slot.is_none() {
        return None;
    }
    Some(Route::Split {
        parts: vec![(slot, reply::command(args.iter().collect::<Vec<_>>()), 1)],
        merge: Merge::Add(adjust),
        latency: info.metrics.latency.clone(),
    })
}

fn fan_out(info: &CommandInfo, merge: Merge) -> Option<Route> {
    Some(Route::FanOut {
        merge,
        latency: info.metrics.latency.clone(),
    })
}

/// respgate's own INFO section.
fn proxy_info(ctx: &SessionContext) -> String {
    let masters = ctx
        .cluster
        .topology()
        .as_ref()
        .map_or(0, |t| t.shards().len());
    let mut out = format!(
        "# Proxy\r\nproxy:respgate\r\nproxy_version:{}\r\ncluster_masters:{masters}\r\nproxy_connected_clients:{}\r\nproxy_client_buffer_bytes:{}\r\nproxy_client_buffer_limit:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        ctx.clients.load(std::sync::atomic::Ordering::Relaxed),
        ctx.client_buffers.used(),
        ctx.client_buffers.limit(),
    );
    if let Some(policy) = &ctx.read_policy {
        out.push_str(&policy.info(&ctx.cluster));
    }
    out
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
        return Route::Reply(reply::error("ERR invalid cursor"));
    };
    let topo_guard = ctx.cluster.topology();
    let Some(topo) = topo_guard.as_ref() else {
        return Route::Reply(reply::error(
            "CLUSTERDOWN The cluster is down (respgate knows no master yet)",
        ));
    };
    let shards = topo.shards().len();
    if shards > 255 {
        return Route::Reply(reply::error(
            "ERR respgate: SCAN supports clusters of up to 255 masters",
        ));
    }
    let (mut node_cursor, tag, shard) = merge::decode_scan_cursor(cursor);
    if shard as usize >= shards {
        return Route::Reply(reply::error("ERR invalid cursor"));
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
        latency: info.metrics.latency.clone(),
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
pub(super) fn capped_key_scan(args: Args<'_>, max: u64) -> Option<Bytes> {
    let capped = max.to_string();
    let mut words: Vec<&[u8]> = args.iter().collect();
    cap_count(&mut words, 3, max, &capped).then(|| reply::command(words))
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
                    None => return Route::Reply(reply::error("ERR Invalid client ID")),
                }
            }
            ids = Some(list);
            i = args.len();
        } else {
            return Route::Reply(reply::error("ERR syntax error"));
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
                return Route::Reply(reply::error(&format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(other)
                )))
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
        4 => {
            return Route::Reply(reply::error(
                "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            ))
        }
        _ => b"TIMEOUT",
    };
    let Some(id) = parse_int(args.get(2)) else {
        return Route::Reply(reply::error("ERR value is not an integer or out of range"));
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
        latency: info.metrics.latency.clone(),
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
            None => Route::Reply(reply::error("ERR No such client")),
        };
    }
    if args.len() % 2 != 0 {
        return Route::Reply(reply::error("ERR syntax error"));
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
            b"id" => match v.parse::<u64>() {
                Ok(n) => id = Some(n),
                Err(_) => {
                    return Route::Reply(reply::error("ERR client-id should be greater than 0"))
                }
            },
            b"addr" => addr = Some(v),
            b"laddr" => laddr = Some(v),
            b"user" => user = Some(v),
            b"skipme" => match v.to_ascii_lowercase().as_str() {
                "yes" => skipme = true,
                "no" => skipme = false,
                _ => return Route::Reply(reply::error("ERR syntax error")),
            },
            _ => return Route::Reply(reply::error("ERR syntax error")),
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

fn hello(ctx: &SessionContext, client: &mut ClientState, args: Args<'_>) -> Option<Route> {
    let mut i = 1;
    let mut resp3 = client.resp3;
    if args.len() > 1 {
        match parse_int(args.get(1)) {
            Some(2) => resp3 = false,
            Some(3) => resp3 = true,
            Some(_) => return err("NOPROTO unsupported protocol version"),
            None => return err("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let mut new_name = None;
    let mut credentials = None;
    while i < args.len() {
        let opt = args.get(i);
        let more = args.len() - i - 1;
        if opt.eq_ignore_ascii_case(b"auth") && more >= 2 {
            credentials = Some((args.get(i + 1), args.get(i + 2)));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"setname") && more >= 1 {
            let name = args.get(i + 1);
            if let Some(refused) = bad_client_name(ctx, name) {
                return refused;
            }
            new_name = Some(name);
            i += 2;
        } else {
            return err(&format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
            ));
        }
    }
    match credentials {
        Some((user, password)) => {
            if let Err(e) = super::auth::login(ctx, client, user, password) {
                return Some(Route::Reply(e));
            }
        }
        None if client.auth.user().is_none() => return err(super::auth::HELLO_NOAUTH),
        None => {}
    }
    if let Some(name) = new_name {
        client.set_name((!name.is_empty()).then(|| Bytes::copy_from_slice(name)));
    }
    client.resp3 = resp3;
    client.entry.resp.store(
        if resp3 { 3 } else { 2 },
        std::sync::atomic::Ordering::Relaxed,
    );
    let version = ctx.cluster.redis_version();
    let mut out = BytesMut::new();
    if resp3 {
        out.extend_from_slice(b"%7\r\n");
    } else {
        put_array_header(&mut out, 14);
    }
    for (k, v) in [("server", "redis"), ("version", version.as_str())] {
        put_bulk(&mut out, k.as_bytes());
        put_bulk(&mut out, v.as_bytes());
    }
    put_bulk(&mut out, b"proto");
    out.extend_from_slice(if resp3 { b":3\r\n" } else { b":2\r\n" });
    put_bulk(&mut out, b"id");
    out.extend_from_slice(format!(":{}\r\n", client.meta.id).as_bytes());
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        put_bulk(&mut out, k.as_bytes());
        put_bulk(&mut out, v.as_bytes());
    }
    put_bulk(&mut out, b"modules");
    out.extend_from_slice(b"*0\r\n");
    Some(Route::Reply(out.freeze()))
}

const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

/// Redis's check of the characters, and respgate's own bound on the length
/// (`server.max_client_name_bytes`: every name is kept for CLIENT LIST, and Redis has
/// no bound). The refusal, if refused.
fn bad_client_name(ctx: &SessionContext, name: &[u8]) -> Option<Option<Route>> {
    if name.len() > ctx.max_client_name {
        return Some(err(&format!(
            "ERR respgate: client name longer than server.max_client_name_bytes ({} bytes)",
            ctx.max_client_name
        )));
    }
    (!name.iter().all(|&b| (b'!'..=b'~').contains(&b))).then(|| err(BAD_NAME))
}

fn client_command(
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
        // Every master pauses (or resumes) its clients, respgate's links among them:
        // respgate's clients wait as a standalone Redis's would.
        "pause" | "unpause" => fan_out(info, Merge::AllOk),
        // respgate never evicts clients: accepted for compatibility, with Redis's
        // argument check.
        "no-evict" => {
            let on_off = args.get(2);
            if on_off.eq_ignore_ascii_case(b"on") || on_off.eq_ignore_ascii_case(b"off") {
                ok()
            } else {
                err("ERR syntax error")
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
                err("ERR syntax error")
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
        "caching" => err("ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled"),
        "tracking" if args.get(2).eq_ignore_ascii_case(b"off") => ok(),
        "tracking" if !args.get(2).eq_ignore_ascii_case(b"on") => err("ERR syntax error"),
        "tracking" => err(
            "ERR respgate: CLIENT TRACKING is not supported: client-side caching needs invalidation messages from every node for this connection's keys, which respgate does not relay",
        ),
        _ => not_yet(
            &format!("CLIENT {}", sub.to_uppercase()),
            "respgate answers CLIENT SETNAME, GETNAME, ID, INFO, LIST, KILL, UNBLOCK, REPLY, NO-EVICT, PAUSE, UNPAUSE, GETREDIR and TRACKINGINFO",
        ),
    }
}
