//! Commands respgate answers itself, and those it refuses because one endpoint in front
//! of a cluster cannot honour them (yet).
//!
//! respgate presents a standalone Redis: connection commands (PING, ECHO, SELECT 0,
//! CLIENT SETNAME, HELLO, ...) are answered here with Redis's exact replies, and CLUSTER
//! gets the error a standalone server gives. Returning `None` lets the request route
//! normally (keyed, or to any master when keyless).

//!
//! Which command is which is the command policy's ([`crate::commands::policy`]): this
//! module acts on a row's class. CLIENT, HELLO, INFO and SCAN have files of their own.

mod client;
mod hello;
mod info;
mod pause;
mod scan;

pub(super) use scan::capped_key_scan;

use super::merge::{self, Merge};
use super::route::{Route, Sending};
use super::{ClientState, SessionContext};
use crate::commands::policy::{Class, Local, MergeKind, RefuseReason};
use crate::commands::{CommandInfo, CommandTable};
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use crate::protocol::scan::parse_int;
use crate::protocol::Args;
use bytes::Bytes;

fn ok() -> Option<Route> {
    Some(Route::Reply(Bytes::from_static(reply::OK)))
}

fn err(refusal: Refusal) -> Option<Route> {
    Some(Route::Reply(refusal.reply()))
}

fn not_yet(what: String, why: &'static str) -> Option<Route> {
    err(Refusal::NotSupportedYet {
        what: what.into(),
        why,
    })
}

/// Answers `args` by its policy row's class: respgate's own handlers, fan-outs and
/// refusals. `None` lets the request route on (keyed, or to any master when keyless).
pub fn answer(
    ctx: &SessionContext,
    client: &mut ClientState,
    class: Class,
    info: &CommandInfo,
    args: Args<'_>,
    table: &std::sync::Arc<CommandTable>,
) -> Option<Route> {
    match class {
        Class::Local(kind) => handle(ctx, client, kind, info, args, table),
        Class::FanOut(kind) => fan_out(info, merge_of(kind, Vec::new(), 0)),
        Class::Refused(why) => Some(Route::Reply(why.refusal(&info.name).reply())),
        _ => None,
    }
}

/// The session's merge for a policy's merge kind; `positions` and `total` are a split's
/// (which keys each part holds, how many in all) for [`MergeKind::ByPosition`].
pub(super) fn merge_of(kind: MergeKind, positions: Vec<Vec<u32>>, total: usize) -> Merge {
    match kind {
        MergeKind::Sum => Merge::Sum,
        MergeKind::AllOk => Merge::AllOk,
        MergeKind::First => Merge::First,
        MergeKind::AndArrays => Merge::AndArrays,
        MergeKind::Union => Merge::Union,
        MergeKind::Concat => Merge::Concat,
        MergeKind::AnyNonNull => Merge::AnyNonNull,
        MergeKind::ByPosition => Merge::Mget { positions, total },
    }
}

/// PING's answer (`+PONG`, or its argument), `None` for a wrong number of arguments.
pub(super) fn ping(args: Args<'_>) -> Option<Route> {
    match args.len() {
        1 => Some(Route::Reply(Bytes::from_static(reply::PONG))),
        2 => Some(Route::Reply(reply::bulk(args.get(1)))),
        _ => None,
    }
}

/// respgate's own handlers.
fn handle(
    ctx: &SessionContext,
    client: &mut ClientState,
    kind: Local,
    info: &CommandInfo,
    args: Args<'_>,
    table: &std::sync::Arc<CommandTable>,
) -> Option<Route> {
    let name = info.name.as_str();
    match kind {
        Local::Ping => Some(
            ping(args)
                .unwrap_or_else(|| Route::Reply(crate::commands::replies::wrong_arity_reply(info))),
        ),
        Local::Echo => Some(Route::Reply(reply::bulk(args.get(1)))),
        Local::Quit => Some(Route::ReplyAndClose(Bytes::from_static(reply::OK))),
        Local::Reset => Some(reset(ctx, client)),
        Local::Select => match parse_int(args.get(1)) {
            Some(0) => ok(),
            Some(_) => err(Refusal::DbIndexOutOfRange),
            None => err(Refusal::NotAnInteger),
        },
        Local::Auth => Some(super::auth::auth(ctx, client, args)),
        Local::Hello => hello::hello(ctx, client, args),
        Local::Command => Some(Route::Reply(
            ctx.cluster
                .command_reply()
                .unwrap_or_else(|| Refusal::CommandTableNotLoaded.reply()),
        )),
        Local::CommandCount => Some(Route::Reply(reply::integer(table.len() as i64))),
        Local::Acl => super::auth::acl(ctx, client, &name[4..], args),
        Local::Client => client::command(ctx, client, info, &name[7..], args),
        Local::Keys => Some(keys(ctx, client, info, table)),
        Local::Flush => {
            crate::audit::flush_passed(
                client.auth.name(),
                client.meta.peer.ip(),
                name,
                args.iter().skip(1),
            );
            fan_out(info, Merge::AllOk)
        }
        Local::ConfigGet => Some(config_get(info, args)),
        Local::ConfigSet => Some(match super::config_managed::refusal(args) {
            Some(managed) => Route::Reply(managed.reply()),
            None => Route::Task(super::config_set::start(
                ctx.cluster.clone(),
                client.meta.id,
                client.resp3,
                args.iter().map(Bytes::copy_from_slice).collect(),
            )),
        }),
        Local::KillScript => Some(Route::Task(super::script_kill::start(
            ctx.cluster.clone(),
            args.iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        ))),
        Local::RandomKey => random_key(ctx, client, table),
        Local::Info => info::route(ctx, info, args),
        Local::Scan => Some(scan::route(ctx, client, info, args, table)),
        Local::FunctionList => function_list(ctx, client, args),
        Local::Publish | Local::SPublish | Local::NumSub(_) => {
            pubsub_counted(ctx, kind, info, args)
        }
        Local::LatencyHistogram => fan_out(
            info,
            Merge::Histograms {
                order: args
                    .iter()
                    .skip(2)
                    .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
                    .collect(),
            },
        ),
        Local::Debug => debug(info, args),
        Local::Monitor => Some(super::monitor::start(ctx, client)),
    }
}

/// PUBLISH, SPUBLISH and PUBSUB NUMSUB / SHARDNUMSUB, whose counts are respgate's
/// subscribers (see `PubSubHub::publish_plan`).
fn pubsub_counted(
    ctx: &SessionContext,
    kind: Local,
    info: &CommandInfo,
    args: Args<'_>,
) -> Option<Route> {
    match kind {
        Local::Publish | Local::SPublish if args.len() != 3 => None,
        // The receiver count a standalone Redis gives: respgate's subscribers count one
        // by one, not as the one backend subscription the node sees (see
        // `PubSubHub::publish_plan`).
        Local::Publish => {
            let (slot, adjust) = ctx.pubsub.publish_plan(&ctx.cluster, args.get(1));
            publish(info, args, slot, adjust)
        }
        Local::SPublish => {
            let channel = args.get(1);
            let local =
                ctx.pubsub
                    .local_subscribers(crate::pubsub::Kind::Shard, channel) as i64;
            let slot = crate::cluster::key_slot(channel);
            publish(info, args, Some(slot), local - i64::from(local > 0))
        }
        Local::NumSub(channels) => {
            // The nodes see respgate's one subscription per channel; count its clients.
            let kind = super::subscribe::kind(channels);
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
        _ => None,
    }
}

/// DEBUG OBJECT reads one key's internals: asked of the key's master. Any other DEBUG
/// is the node's business.
fn debug(info: &CommandInfo, args: Args<'_>) -> Option<Route> {
    if args.len() == 3 && args.get(1).eq_ignore_ascii_case(b"object") {
        return Some(Route::Forward {
            slot: Some(crate::cluster::key_slot(args.get(2))),
            rewritten: None,
            latency: info.metrics().latency.clone(),
            how: Sending::one(),
        });
    }
    Some(Route::Reply(
        RefuseReason::NodeOnly.refusal(&info.name).reply(),
    ))
}

/// RESET: the connection as new (RESP2, no name, no transaction, no subscription, the
/// default user).
fn reset(ctx: &SessionContext, client: &mut ClientState) -> Route {
    client.set_name(None);
    client.tx = None;
    client.subs = None;
    client.monitor = None;
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
    Route::Reply(reply::simple("RESET"))
}

/// KEYS on every node (no guard rule serves it by SCAN).
fn keys(
    ctx: &SessionContext,
    client: &mut ClientState,
    info: &CommandInfo,
    table: &std::sync::Arc<CommandTable>,
) -> Route {
    match walk(ctx, client, table, "KEYS") {
        Ok(hold) => Route::FanOut {
            merge: Merge::Walk {
                inner: Box::new(readable(ctx, client, Merge::Concat)),
                hold,
            },
            latency: info.metrics().latency.clone(),
        },
        Err(refused) => refused,
    }
}

/// RANDOMKEY: from a master drawn by its key count, or for a user limited to key
/// patterns, one of its keys.
fn random_key(
    ctx: &SessionContext,
    client: &mut ClientState,
    table: &std::sync::Arc<CommandTable>,
) -> Option<Route> {
    let Some(user) = client.auth.key_filter() else {
        return Some(Route::Task(super::random_key::start_weighted(
            ctx.cluster.clone(),
            client.meta.id,
            client.resp3,
        )));
    };
    Some(match walk(ctx, client, table, "RANDOMKEY") {
        Ok(hold) => Route::Task(super::random_key::start(
            ctx.cluster.clone(),
            client.meta.id,
            client.resp3,
            user,
            hold,
        )),
        Err(refused) => refused,
    })
}

/// Library code is every team's: a restricted user who is no admin sees the libraries
/// and their functions, not their code. Anything else is forwarded.
fn function_list(ctx: &SessionContext, client: &ClientState, args: Args<'_>) -> Option<Route> {
    let refused = args
        .iter()
        .skip(2)
        .any(|a| a.eq_ignore_ascii_case(b"withcode"))
        && client.auth.user().is_some_and(|u| !u.unrestricted)
        && !ctx.guards.current().is_admin(client.auth.name());
    if refused {
        return err(Refusal::FunctionCodeAdminsOnly);
    }
    None
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
fn readable(ctx: &SessionContext, client: &ClientState, merge: Merge) -> Merge {
    let user = client.auth.key_filter();
    let hide_internal = ctx.cross_slot.guarding();
    if user.is_none() && !hide_internal {
        return merge;
    }
    Merge::Readable {
        inner: Box::new(merge),
        filter: merge::ReadFilter {
            user,
            hide_internal,
        },
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
        latency: info.metrics().latency.clone(),
    })
}

fn fan_out(info: &CommandInfo, merge: Merge) -> Option<Route> {
    Some(Route::FanOut {
        merge,
        latency: info.metrics().latency.clone(),
    })
}

/// CONFIG GET: asked of one master, answered with secrets redacted
/// ([`super::config_get::redact`]).
fn config_get(info: &CommandInfo, args: Args<'_>) -> Route {
    Route::Split {
        parts: vec![(None, reply::command(args.iter().collect::<Vec<_>>()), 1)],
        merge: Merge::RedactSecrets,
        latency: info.metrics().latency.clone(),
    }
}
