//! Commands respgate answers itself, and those it refuses because one endpoint in front
//! of a cluster cannot honour them (yet).
//!
//! respgate presents a standalone Redis: connection commands (PING, ECHO, SELECT 0,
//! CLIENT SETNAME, HELLO, ...) are answered here with Redis's exact replies, and CLUSTER
//! gets the error a standalone server gives. Returning `None` lets the request route
//! normally (keyed, or to any master when keyless).

use super::routing::Route;
use super::{ClientState, SessionContext};
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
    table: &CommandTable,
) -> Option<Route> {
    let name = info.name.as_str();
    match name {
        "ping" => match args.len() {
            1 => Some(Route::Reply(Bytes::from_static(reply::PONG))),
            _ => Some(Route::Reply(reply::bulk(args.get(1)))),
        },
        "echo" => Some(Route::Reply(reply::bulk(args.get(1)))),
        "quit" => Some(Route::ReplyAndClose(Bytes::from_static(reply::OK))),
        "reset" => {
            client.name = None;
            Some(Route::Reply(reply::simple("RESET")))
        }
        "select" => match parse_int(args.get(1)) {
            Some(0) => ok(),
            Some(_) => err("ERR DB index is out of range"),
            None => err("ERR value is not an integer or out of range"),
        },
        "readonly" | "readwrite" => ok(),
        "auth" => auth(args),
        "hello" => hello(ctx, client, args),
        "command" => Some(Route::Reply(ctx.cluster.command_reply().unwrap_or_else(
            || reply::error("ERR respgate: command table not loaded"),
        ))),
        "command|count" => Some(Route::Reply(reply::integer(table.len() as i64))),
        _ if name == "cluster" || name.starts_with("cluster|") => {
            err("ERR This instance has cluster support disabled")
        }
        _ if name.starts_with("client|") => client_command(client, &name[7..], args),
        "multi" | "exec" | "discard" | "watch" | "unwatch" => not_yet(
            "MULTI/EXEC/WATCH",
            "transactions need a pinned backend connection",
        ),
        "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
        | "sunsubscribe" | "monitor" => not_yet(&name.to_uppercase(), "pub/sub and MONITOR"),
        "keys" | "scan" | "dbsize" | "flushall" | "flushdb" | "randomkey" => {
            not_yet(&name.to_uppercase(), "it needs every master of the cluster")
        }
        _ if name.starts_with("script|")
            || name.starts_with("function|")
            || name.starts_with("pubsub|") =>
        {
            not_yet(
                &name.to_uppercase().replace('|', " "),
                "it needs every master of the cluster",
            )
        }
        "swapdb" | "move" => err(&format!(
            "ERR respgate: {} is not allowed: a Redis Cluster has only database 0",
            name.to_uppercase()
        )),
        "sync" | "psync" | "replicaof" | "slaveof" | "shutdown" | "debug" | "failover" => {
            err(&format!(
                "ERR respgate: {} is not allowed through the proxy; run it on a node",
                name.to_uppercase()
            ))
        }
        "xread" | "xreadgroup" => {
            let blocking = args
                .iter()
                .skip(1)
                .take_while(|a| !a.eq_ignore_ascii_case(b"streams"))
                .any(|a| a.eq_ignore_ascii_case(b"block"));
            if blocking {
                not_yet(
                    &format!("{} BLOCK", name.to_uppercase()),
                    "blocking commands need a dedicated backend connection",
                )
            } else {
                None
            }
        }
        // WAIT counts acknowledgements of the whole shared link's writes and holds it
        // while it waits: it needs a connection of its own.
        _ if info.is_blocking() || name == "wait" || name == "waitaof" => not_yet(
            &name.to_uppercase(),
            "blocking commands need a dedicated backend connection",
        ),
        _ => None,
    }
}

fn auth(args: Args<'_>) -> Option<Route> {
    if args.len() == 2 {
        return err("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?");
    }
    if args.get(1) == b"default" {
        ok()
    } else {
        err("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

fn hello(ctx: &SessionContext, client: &mut ClientState, args: Args<'_>) -> Option<Route> {
    let mut i = 1;
    if args.len() > 1 {
        match parse_int(args.get(1)) {
            Some(2) => {}
            Some(3) => return err("NOPROTO sorry, this protocol version is not supported."),
            Some(_) => return err("NOPROTO unsupported protocol version"),
            None => return err("ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    let mut new_name = None;
    while i < args.len() {
        let opt = args.get(i);
        let more = args.len() - i - 1;
        if opt.eq_ignore_ascii_case(b"auth") && more >= 2 {
            if args.get(i + 1) != b"default" {
                return err("WRONGPASS invalid username-password pair or user is disabled.");
            }
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"setname") && more >= 1 {
            let name = args.get(i + 1);
            if !valid_client_name(name) {
                return err(BAD_NAME);
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
    if let Some(name) = new_name {
        client.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
    }
    let version = ctx.cluster.redis_version();
    let mut out = BytesMut::new();
    put_array_header(&mut out, 14);
    for (k, v) in [("server", "redis"), ("version", version.as_str())] {
        put_bulk(&mut out, k.as_bytes());
        put_bulk(&mut out, v.as_bytes());
    }
    put_bulk(&mut out, b"proto");
    out.extend_from_slice(b":2\r\n");
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

fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

fn client_command(client: &mut ClientState, sub: &str, args: Args<'_>) -> Option<Route> {
    match sub {
        "setname" => {
            let name = args.get(2);
            if !valid_client_name(name) {
                return err(BAD_NAME);
            }
            client.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
            ok()
        }
        "getname" => Some(Route::Reply(match &client.name {
            Some(n) => reply::bulk(n),
            None => Bytes::from_static(reply::NULL),
        })),
        "id" => Some(Route::Reply(reply::integer(client.meta.id as i64))),
        "info" => Some(Route::Reply(reply::bulk(client.info_line().as_bytes()))),
        "setinfo" => ok(),
        _ => not_yet(
            &format!("CLIENT {}", sub.to_uppercase()),
            "respgate answers CLIENT SETNAME, GETNAME, ID and INFO",
        ),
    }
}
