//! HELLO: the protocol version, an optional login and name, and the standalone
//! server's greeting (respgate presents one Redis of the cluster's version).

use super::super::route::Route;
use super::super::{ClientState, SessionContext};
use super::client::bad_client_name;
use super::err;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply::{put_array_header, put_bulk};
use crate::protocol::scan::parse_int;
use crate::protocol::Args;
use bytes::{Bytes, BytesMut};

pub(super) fn hello(
    ctx: &SessionContext,
    client: &mut ClientState,
    args: Args<'_>,
) -> Option<Route> {
    let mut i = 1;
    let mut resp3 = client.resp3;
    if args.len() > 1 {
        match parse_int(args.get(1)) {
            Some(2) => resp3 = false,
            Some(3) => resp3 = true,
            Some(_) => return err(Refusal::NoProto),
            None => return err(Refusal::ProtocolVersion),
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
            return err(Refusal::HelloOption(
                String::from_utf8_lossy(opt).into_owned(),
            ));
        }
    }
    match credentials {
        Some((user, password)) => {
            if let Err(e) = super::super::auth::login(ctx, client, user, password) {
                return Some(Route::Reply(e));
            }
        }
        None if client.auth.user().is_none() => return err(Refusal::HelloNoAuth),
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
