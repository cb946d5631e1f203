//! Authentication and ACL checks for one connection: AUTH, HELLO ... AUTH, ACL WHOAMI /
//! LIST / USERS / GETUSER, and the per-request permission check that runs right after a
//! command is looked up.
//!
//! The check costs one atomic load when nothing was reloaded and the user is
//! unrestricted; otherwise an index into the user's compiled command vector and, for
//! users limited to key patterns, one pattern walk per key (with the read/write meaning
//! each key spec gives). Refusals use Redis 7.0's exact errors, abort a transaction being
//! queued (EXECABORT, as in Redis) and are written to the audit log and a metric.

use super::route::Route;
use super::ClientState;
use super::SessionContext;
use crate::acl::{AuthError, CompiledCommands, Security, User, READ, WRITE};
use crate::commands::policy::AclCheck;
use crate::commands::{cmd_flags, CommandInfo, CommandTable, KeyFlags, KeyRef};
use crate::protocol::refusal::{LockedOutScope, Refusal};
use crate::protocol::reply::{self, put_array_header, put_bulk};
use crate::protocol::Args;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Who this connection is.
pub struct SessionAuth {
    /// `None`: not authenticated yet.
    user: Option<Arc<User>>,
    /// The user's command rules for the table they were resolved against.
    commands: Option<Arc<(usize, CompiledCommands)>>,
    /// The [`Security::generation`] `user` was read at.
    generation: u64,
    /// Whether `[replica_reads] read_your_writes` names the user (decided on the first
    /// write, forgotten when the user changes).
    read_your_writes: Option<bool>,
}

impl SessionAuth {
    /// A new connection: the certificate's user when the client presented a verified
    /// certificate naming an enabled user, else `default` if it needs no password, else
    /// nobody.
    pub fn new(security: &Security, cert_identity: Option<&str>) -> SessionAuth {
        let generation = security.generation();
        let users = security.users();
        let by_cert = cert_identity
            .filter(|_| users.required)
            .and_then(|name| users.get(name))
            .filter(|u| u.acl.enabled)
            .cloned();
        SessionAuth {
            user: by_cert.or_else(|| users.initial()),
            commands: None,
            generation,
            read_your_writes: None,
        }
    }

    /// Whether the connection was logged in by its certificate naming `identity`.
    fn by_certificate(&self, identity: Option<&str>) -> bool {
        identity.is_some_and(|id| self.user.as_ref().is_some_and(|u| u.name == id))
    }

    /// Whether `policy` tracks this user's writes for read-your-writes.
    pub fn read_your_writes(&mut self, policy: &crate::cluster::replicas::ReadPolicy) -> bool {
        let name = self.user.as_ref().map_or("default", |u| u.name.as_str());
        *self
            .read_your_writes
            .get_or_insert_with(|| policy.read_your_writes(name))
    }

    /// The user's name (`default` before authentication, as CLIENT LIST shows it).
    pub fn name(&self) -> &str {
        self.user.as_ref().map_or("default", |u| u.name.as_str())
    }

    pub fn user(&self) -> Option<&Arc<User>> {
        self.user.as_ref()
    }

    /// The user when its key access is limited to patterns (KEYS / SCAN / RANDOMKEY
    /// results are then filtered).
    pub fn key_filter(&self) -> Option<Arc<User>> {
        self.user.as_ref().filter(|u| !u.acl.allkeys).cloned()
    }

    fn login(&mut self, user: Arc<User>, generation: u64) {
        self.user = Some(user);
        self.commands = None;
        self.generation = generation;
        self.read_your_writes = None;
    }

    /// RESET: back to how a new connection starts.
    pub fn reset(&mut self, security: &Security) {
        *self = SessionAuth::new(security, None);
    }

    /// After a reload: the same user name under the new rules; a user that was removed
    /// or disabled is no longer authenticated.
    fn refresh(&mut self, security: &Security, generation: u64) {
        let users = security.users();
        self.user = match &self.user {
            Some(u) => users.get(&u.name).filter(|u| u.acl.enabled).cloned(),
            None => None,
        };
        self.commands = None;
        self.generation = generation;
        self.read_your_writes = None;
    }
}

/// The audit line for a verified client certificate: a login as the user it names, or
/// a refusal when it names no enabled user (the connection then starts as `default`, or
/// unauthenticated).
pub fn audit_certificate(security: &Security, auth: &SessionAuth, meta: &super::ClientMeta) {
    if !security.users().required {
        return; // auth.mode = "none": certificates name nobody
    }
    let identity = meta.cert_identity.as_deref();
    if auth.by_certificate(identity) {
        crate::audit::authenticated(
            auth.name(),
            meta.peer.ip(),
            crate::audit::Method::Certificate,
        );
    } else {
        crate::audit::certificate_refused(
            meta.peer.ip(),
            identity,
            "verified certificate names no enabled user",
        );
    }
}

/// `auth.login_timeout_secs`: when a connection that has not authenticated is closed.
/// Checked by the session's housekeeping timer, never per request: a silent
/// connection must not hold a `server.max_clients` place for good (Redis has no such
/// limit; this is respgate's own).
pub struct LoginDeadline(Option<Instant>);

impl LoginDeadline {
    /// Set for a connection that starts unauthenticated while the timeout is on.
    pub fn new(security: &Security, auth: &SessionAuth, connected_at: Instant) -> LoginDeadline {
        let timeout = security
            .users()
            .login_timeout
            .filter(|_| auth.user.is_none());
        LoginDeadline(timeout.and_then(|t| connected_at.checked_add(t)))
    }

    /// Whether the connection must be closed now (logs it and counts it). Once the
    /// client has authenticated, the deadline is gone for good.
    pub fn expired(&mut self, client: &ClientState) -> bool {
        let Some(deadline) = self.0 else { return false };
        if client.auth.user.is_some() {
            self.0 = None;
            return false;
        }
        if Instant::now() < deadline {
            return false;
        }
        tracing::info!(
            client = client.meta.id,
            peer = %client.meta.peer,
            "closing client that did not authenticate within auth.login_timeout_secs"
        );
        metrics::counter!("respgate_clients_disconnected_total", "reason" => "login_timeout_secs")
            .increment(1);
        true
    }

    /// Time left before the deadline (the housekeeping timer's next wake-up at most).
    pub fn remaining(&self) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// Why a request is refused.
#[derive(Clone, Copy)]
enum Denied {
    NoAuth,
    Command,
    Key,
    Channel,
    /// SORT's BY pattern / GET for a user without access to every key (Redis's own
    /// error: those options read keys the key specs do not name).
    SortOption(&'static str),
}

/// The refusal for this request (`Err`), if the connection may not run it. `Ok(true)`:
/// checking a restricted user's keys found them in `keys`, which routing then reuses.
pub fn check(
    ctx: &SessionContext,
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
    keys: &mut Vec<KeyRef>,
    table: &Arc<CommandTable>,
) -> Result<bool, Bytes> {
    let generation = ctx.security.generation();
    if generation != client.auth.generation {
        client.auth.refresh(&ctx.security, generation);
    }
    let no_auth = info.flags & cmd_flags::NO_AUTH != 0;
    let auth = &mut client.auth;
    let Some(user) = &auth.user else {
        if no_auth {
            return Ok(false);
        }
        return Err(deny(client, info, Denied::NoAuth, "not authenticated"));
    };
    if user.unrestricted || no_auth {
        return Ok(false);
    }
    let table_id = Arc::as_ptr(table) as usize;
    if auth.commands.as_ref().is_none_or(|c| c.0 != table_id) {
        auth.commands = Some(user.commands(table));
    }
    // Decided on borrows (no reference counting per request); the refusal, rare, is
    // built afterwards.
    let mut keys_found = false;
    let acl = table.policy(info).acl;
    let request = (info, acl, args);
    let Some((why, rule, object)) = refusal(&client.auth, request, keys, &mut keys_found) else {
        return Ok(keys_found);
    };
    ctx.security.log.add(
        why.log_reason(),
        log_context(client),
        &object,
        client.auth.name(),
        client.info_line().trim_end().to_string(),
    );
    Err(deny(client, info, why, &rule))
}

impl Denied {
    /// ACL LOG's `reason`.
    fn log_reason(self) -> &'static str {
        match self {
            Denied::NoAuth | Denied::Command => "command",
            Denied::Key | Denied::SortOption(_) => "key",
            Denied::Channel => "channel",
        }
    }
}

/// Checks a restricted user's command, keys and channels: why, by which rule, and what
/// (ACL LOG's object: the command, key or channel) the request is refused, if it is.
/// `keys_found`: the request's keys are in `keys` (found to check them).
fn refusal(
    auth: &SessionAuth,
    (info, check, args): (&CommandInfo, AclCheck, Args<'_>),
    keys: &mut Vec<KeyRef>,
    keys_found: &mut bool,
) -> Option<(Denied, String, String)> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let user = auth.user.as_ref()?;
    let compiled = &auth.commands.as_ref()?.1;
    let id = info.id as usize;
    if !compiled.allowed.get(id).copied().unwrap_or(false) {
        let rule = compiled
            .decided_by
            .get(id)
            .and_then(|&i| user.acl.sources.get(i))
            .map_or("no rule allows it", String::as_str);
        return Some((Denied::Command, rule.to_string(), info.name.clone()));
    }
    let acl = &user.acl;
    if !acl.allkeys {
        if check == AclCheck::WritesAllKeys && !acl.writes_all_keys() {
            return Some((
                Denied::Key,
                "needs write permission on all keys".into(),
                info.name.clone(),
            ));
        }
        if check == AclCheck::SortPatterns {
            if let Some(option) = sort_pattern_option(args) {
                return Some((
                    Denied::SortOption(option),
                    "SORT BY/GET needs access to all keys".into(),
                    text(args.get(1)),
                ));
            }
        }
        *keys_found = !info.has_no_keys() && info.keys(args, keys).is_ok();
        if *keys_found {
            let refused = keys.iter().find(|k| {
                !k.flags.contains(KeyFlags::NOT_KEY)
                    && !acl.key_allowed(k.key(args), needed(k.flags))
            });
            if let Some(k) = refused {
                return Some((Denied::Key, acl.keys_description(), text(k.key(args))));
            }
        }
    }
    if !acl.allchannels && info.is_pubsub() {
        let (from, literal) = match check {
            AclCheck::FirstChannel => (1..2.min(args.len()), false),
            AclCheck::AllChannels => (1..args.len(), false),
            AclCheck::AllPatterns => (1..args.len(), true),
            _ => (0..0, false),
        };
        if let Some(i) = from
            .into_iter()
            .find(|&i| !acl.channel_allowed(args.get(i), literal))
        {
            return Some((
                Denied::Channel,
                acl.channels_description(),
                text(args.get(i)),
            ));
        }
    }
    None
}

/// The first SORT option that reads keys named by a pattern (BY with a `*`, any GET),
/// which Redis refuses to users without access to every key.
fn sort_pattern_option(args: Args<'_>) -> Option<&'static str> {
    let mut i = 2;
    while i < args.len() {
        let a = args.get(i);
        if a.eq_ignore_ascii_case(b"by") {
            if args.try_get(i + 1).is_some_and(|p| p.contains(&b'*')) {
                return Some("BY");
            }
            i += 2;
        } else if a.eq_ignore_ascii_case(b"get") {
            return Some("GET");
        } else if a.eq_ignore_ascii_case(b"limit") {
            i += 3;
        } else if a.eq_ignore_ascii_case(b"store") {
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// ACL LOG's `context`: inside MULTI or not.
fn log_context(client: &ClientState) -> &'static str {
    if client.tx.is_some() {
        "multi"
    } else {
        "toplevel"
    }
}

/// The permissions a key spec's flags need (Redis's `ACLSelectorCheckKey`).
#[inline]
fn needed(flags: KeyFlags) -> u8 {
    let mut n = 0;
    if flags.contains(KeyFlags::ACCESS) {
        n |= READ;
    }
    if flags.intersects(KeyFlags(
        KeyFlags::INSERT.0 | KeyFlags::DELETE.0 | KeyFlags::UPDATE.0,
    )) {
        n |= WRITE;
    }
    n
}

/// The refusal's reply (the caller, routing's `rejected`, flags a transaction).
fn deny(client: &mut ClientState, info: &CommandInfo, why: Denied, rule: &str) -> Bytes {
    let (reason, refusal) = match why {
        Denied::NoAuth => ("noauth", Refusal::NoAuth),
        Denied::Command => ("command", Refusal::NoPermCommand(info.name.clone())),
        Denied::Key => ("key", Refusal::NoPermKey),
        Denied::Channel => ("channel", Refusal::NoPermChannel),
        Denied::SortOption(option) => ("key", Refusal::SortOptionDenied(option)),
    };
    metrics::counter!("respgate_acl_denied_total", "reason" => reason).increment(1);
    crate::audit::acl_denied(
        reason,
        client.auth.name(),
        client.meta.peer.ip(),
        &info.name,
        rule,
    );
    refusal.reply()
}

/// Authenticates the connection as `user` / `password` (AUTH, HELLO AUTH). On failure,
/// the error reply; the connection keeps whatever identity it had.
pub fn login(
    ctx: &SessionContext,
    client: &mut ClientState,
    user: &[u8],
    password: &[u8],
) -> Result<(), Bytes> {
    let generation = ctx.security.generation();
    let users = ctx.security.users();
    if !users.required {
        // auth.mode = "none": everyone is `default`, which takes any password.
        return if user == b"default" {
            Ok(())
        } else {
            Err(Refusal::WrongPass.reply())
        };
    }
    let addr = client.meta.peer.ip();
    let shown_user = String::from_utf8_lossy(user);
    match ctx.security.authenticate(addr, user, password) {
        Ok(u) => {
            metrics::counter!("respgate_auth_total", "result" => "ok").increment(1);
            crate::audit::authenticated(&u.name, addr, crate::audit::Method::Password);
            client.entry.set_user(Arc::from(u.name.as_str()));
            client.auth.login(u, generation);
            Ok(())
        }
        Err(AuthError::WrongPass) => {
            ctx.security.log.add(
                "auth",
                log_context(client),
                "AUTH",
                &shown_user,
                client.info_line().trim_end().to_string(),
            );
            metrics::counter!("respgate_auth_total", "result" => "wrongpass").increment(1);
            crate::audit::auth_failed(user, addr);
            Err(Refusal::WrongPass.reply())
        }
        Err(AuthError::LockedOut(locked)) => {
            metrics::counter!("respgate_auth_total", "result" => "locked_out").increment(1);
            crate::audit::auth_locked_out(user, addr, locked.option());
            Err(locked_out(&locked, addr).reply())
        }
    }
}

/// The refusal of a locked-out login, naming the limit reached. The same text whether
/// the user name exists or not.
fn locked_out(locked: &crate::acl::Locked, addr: std::net::IpAddr) -> Refusal {
    Refusal::LockedOut {
        scope: if locked.address {
            LockedOutScope::Address
        } else {
            LockedOutScope::User
        },
        addr,
        wait_secs: locked.wait.as_secs().max(1),
    }
}

/// AUTH [user] password.
pub fn auth(ctx: &SessionContext, client: &mut ClientState, args: Args<'_>) -> Route {
    let (user, password) = match args.len() {
        2 => (&b"default"[..], args.get(1)),
        3 => (args.get(1), args.get(2)),
        _ => return Route::Reply(Refusal::Syntax.reply()),
    };
    if args.len() == 2 {
        let users = ctx.security.users();
        if users.get("default").is_none_or(|u| u.acl.nopass) {
            return Route::Reply(Refusal::NoDefaultPassword.reply());
        }
    }
    match login(ctx, client, user, password) {
        Ok(()) => Route::Reply(Bytes::from_static(reply::OK)),
        Err(e) => Route::Reply(e),
    }
}

/// ACL subcommands answered from respgate's own users.
pub fn acl(ctx: &SessionContext, client: &ClientState, sub: &str, args: Args<'_>) -> Option<Route> {
    let users = ctx.security.users();
    let reply = match sub {
        "whoami" => reply::bulk(client.auth.name().as_bytes()),
        "users" => {
            let mut out = BytesMut::new();
            let all = users.sorted();
            put_array_header(&mut out, all.len());
            for u in all {
                put_bulk(&mut out, u.name.as_bytes());
            }
            out.freeze()
        }
        "list" => {
            let mut out = BytesMut::new();
            let all = users.sorted();
            put_array_header(&mut out, all.len());
            for u in all {
                put_bulk(&mut out, u.acl.describe(&u.name).as_bytes());
            }
            out.freeze()
        }
        "getuser" => {
            let name = String::from_utf8_lossy(args.get(2));
            match users.get(&name) {
                Some(u) => getuser(u, client.resp3),
                None if client.resp3 => Bytes::from_static(b"_\r\n"),
                None => Bytes::from_static(b"*-1\r\n"),
            }
        }
        "log" => acl_log(ctx, args),
        "setuser" | "deluser" | "load" | "save" | "dryrun" => {
            Refusal::AclInConfigFile(sub.to_uppercase()).reply()
        }
        _ => return None,
    };
    Some(Route::Reply(reply))
}

/// ACL LOG [count | RESET], in Redis 7.0's shape.
fn acl_log(ctx: &SessionContext, args: Args<'_>) -> Bytes {
    let count = match args.try_get(2) {
        None => None,
        Some(a) if a.eq_ignore_ascii_case(b"reset") => {
            ctx.security.log.reset();
            return Bytes::from_static(reply::OK);
        }
        Some(a) => match crate::protocol::scan::parse_int(a) {
            Some(n) if n >= 0 => Some(n as usize),
            _ => return Refusal::NotPositive.reply(),
        },
    };
    let entries = ctx.security.log.recent(count);
    let mut out = BytesMut::new();
    put_array_header(&mut out, entries.len());
    for e in entries {
        put_array_header(&mut out, 14);
        put_bulk(&mut out, b"count");
        out.extend_from_slice(format!(":{}\r\n", e.count).as_bytes());
        for (k, v) in [
            ("reason", e.reason),
            ("context", e.context),
            ("object", e.object.as_str()),
            ("username", e.username.as_str()),
        ] {
            put_bulk(&mut out, k.as_bytes());
            put_bulk(&mut out, v.as_bytes());
        }
        put_bulk(&mut out, b"age-seconds");
        put_bulk(
            &mut out,
            format!("{:.3}", e.created.elapsed().as_secs_f64()).as_bytes(),
        );
        put_bulk(&mut out, b"client-info");
        put_bulk(&mut out, e.client_info.as_bytes());
    }
    out.freeze()
}

/// ACL GETUSER's reply, passwords redacted.
fn getuser(u: &User, resp3: bool) -> Bytes {
    let mut out = BytesMut::new();
    if resp3 {
        out.extend_from_slice(b"%6\r\n");
    } else {
        put_array_header(&mut out, 12);
    }
    put_bulk(&mut out, b"flags");
    let mut flags = vec![if u.acl.enabled { "on" } else { "off" }];
    if u.acl.nopass {
        flags.push("nopass");
    }
    out.extend_from_slice(if resp3 { b"~" } else { b"*" });
    out.extend_from_slice(format!("{}\r\n", flags.len()).as_bytes());
    for f in flags {
        put_bulk(&mut out, f.as_bytes());
    }
    put_bulk(&mut out, b"passwords");
    put_array_header(&mut out, u.acl.passwords.len());
    for _ in &u.acl.passwords {
        put_bulk(&mut out, b"<redacted>");
    }
    for (k, v) in [
        ("commands", u.acl.commands_description()),
        ("keys", u.acl.keys_description()),
        ("channels", u.acl.channels_description()),
    ] {
        put_bulk(&mut out, k.as_bytes());
        put_bulk(&mut out, v.as_bytes());
    }
    put_bulk(&mut out, b"selectors");
    put_array_header(&mut out, 0);
    out.freeze()
}
