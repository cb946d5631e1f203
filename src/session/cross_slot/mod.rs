//! Cross-slot commands computed by respgate (`compat.cross_slot = "compute"`, issue 16).
//!
//! A cluster refuses a multi-key command whose keys hash to different slots; with
//! `compute`, respgate carries out the commands of the README's list itself, with
//! Redis's own replies and errors: it copies the sources next to the destination and
//! runs the original command there (`plan.rs` reads which keys are sources off the
//! command's key specs, `copy.rs` does DUMP / RESTORE / run / DEL), or, where a copy
//! would change the meaning, takes dedicated steps: RENAME / RENAMENX / COPY
//! (`rename.rs`), SMOVE / LMOVE / RPOPLPUSH (`moves.rs`, destination first so an
//! element is never lost), non-blocking XREAD (`xread.rs`, split by slot and merged).
//!
//! **Where it runs.** Only where routing would answer CROSSSLOT (`routing.rs` asks
//! [`route`] before its refusal): with `refuse`, and for every request whose keys share
//! a slot, nothing here runs. The caller's ACL and the guards were applied to the
//! original command before routing; the steps run as respgate's node user, as tasks of
//! their own ([`crate::workers::spawn_answer`]), so the client's later replies wait in
//! order behind this one. The task starts only once every earlier request of the
//! client is answered ([`Route::Compute`]): its steps go on other connections than the
//! client's, which give no order against requests still in flight there (a WATCH or
//! blocking command's dedicated connection, a script's identity, or another node).
//! A computed write counts for read-your-writes on the masters of the keys it writes.
//!
//! **Not atomic.** Between the copy and the command another client may write a source;
//! the README's "Cross-slot commands" lists what can interleave and what each command
//! guarantees. Commands that cannot be made safe this way stay refused with CROSSSLOT
//! and a reason: MSETNX, blocking commands, EVAL/FCALL, transactions and WATCH.

mod copy;
pub(in crate::session) mod internal;
mod moves;
mod plan;
mod rename;
mod steps;
mod xread;

pub use internal::is_internal;

use super::route::{Computed, Route};
use super::{ClientState, SessionContext};
use crate::commands::policy::Class;
use crate::commands::{CommandInfo, KeyRef};
use crate::config::{AuthConfig, CompatConfig, CrossSlotMode};
use crate::guards::ttl::{TtlDecision, TtlPolicy};
use crate::protocol::refusal::{CrossSlotWhy, Refusal};
use crate::protocol::Args;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use steps::Job;

/// The commands computed by copying their sources (`copy.rs`).
const GENERIC: [&str; 22] = [
    "sunion",
    "sinter",
    "sdiff",
    "sintercard",
    "sunionstore",
    "sinterstore",
    "sdiffstore",
    "zunion",
    "zinter",
    "zdiff",
    "zintercard",
    "zunionstore",
    "zinterstore",
    "zdiffstore",
    "zrangestore",
    "bitop",
    "pfcount",
    "pfmerge",
    "lcs",
    "geosearchstore",
    "georadius",
    "georadiusbymember",
];

/// `[compat]` as sessions read it (reloadable: [`Settings::apply`]).
#[derive(Debug, Default)]
pub struct Settings {
    /// `compat.cross_slot = "compute"`.
    compute: AtomicBool,
    /// `compat.max_cross_slot_bytes`.
    max_bytes: AtomicU64,
    /// Some user (or everyone) may compute: clients' commands on internal key names
    /// are refused. Off when every user is refused, so `refuse` adds nothing.
    guarding: AtomicBool,
}

impl Settings {
    pub fn new(compat: &CompatConfig, auth: &AuthConfig) -> Settings {
        let s = Settings::default();
        s.apply(compat, auth);
        steps::describe();
        s
    }

    /// Takes a (re)loaded configuration's `[compat]` and users' overrides.
    pub fn apply(&self, compat: &CompatConfig, auth: &AuthConfig) {
        let compute = compat.cross_slot == CrossSlotMode::Compute;
        let any_user = auth
            .users
            .iter()
            .any(|u| u.cross_slot == Some(CrossSlotMode::Compute));
        self.compute.store(compute, Ordering::Relaxed);
        self.max_bytes
            .store(compat.max_cross_slot_bytes, Ordering::Relaxed);
        self.guarding.store(compute || any_user, Ordering::Relaxed);
    }

    /// Whether clients' commands on internal key names are refused.
    #[inline]
    pub fn guarding(&self) -> bool {
        self.guarding.load(Ordering::Relaxed)
    }

    /// Whether `user`'s cross-slot commands are computed.
    fn computes(&self, user: Option<&std::sync::Arc<crate::acl::User>>) -> bool {
        user.and_then(|u| u.cross_slot)
            .unwrap_or_else(|| self.compute.load(Ordering::Relaxed))
    }
}

/// The refusal for a client's command on an internal key name, when guarding.
pub(in crate::session) fn touches_internal(
    ctx: &SessionContext,
    keys: &[KeyRef],
    args: Args<'_>,
) -> Option<Route> {
    if !ctx.cross_slot.guarding() || !keys.iter().any(|k| is_internal(k.key(args))) {
        return None;
    }
    Some(Route::Reply(Refusal::CrossSlotInternalKey.reply()))
}

/// A request whose keys span slots, when its user computes them: the task computing
/// it, or CROSSSLOT with the reason it is not computed. `None`: routing answers as
/// without this module (split, MSETNX's refusal, or the plain CROSSSLOT).
pub(in crate::session) fn route(
    ctx: &SessionContext,
    client: &mut ClientState,
    (info, class): (&CommandInfo, Class),
    args: Args<'_>,
    keys: &[KeyRef],
    ttl: Option<&TtlPolicy>,
) -> Option<Route> {
    if matches!(class, Class::SplitBySlot { .. } | Class::AllOrNothing)
        || !ctx.cross_slot.computes(client.auth.user())
    {
        return None;
    }
    let name = info.name.as_str();
    let expires = match ttl_expires(ttl, info, args, keys) {
        Ok(e) => e,
        Err(refused) => return Some(Route::Reply(refused)),
    };
    let job = Job {
        expires,
        cluster: ctx.cluster.clone(),
        client_id: client.meta.id,
        resp3: client.resp3,
        command: name.to_uppercase(),
        max_bytes: ctx.cross_slot.max_bytes.load(Ordering::Relaxed),
    };
    let writes = tracked_writes(ctx, client, info, args, keys);
    let reply = |r: Bytes| Some(Route::Reply(r));
    let refuse = |why| reply(Refusal::CrossSlot(why).reply());
    let word = |i: usize| Bytes::copy_from_slice(args.get(i));
    // Started by the pipeline once the client's earlier requests are answered.
    let start = |run: futures_task::Task| {
        steps::count_command(name);
        Some(Route::Compute(Box::new(Computed { run, writes })))
    };
    match name {
        "xread" if blocks(class, args) => refuse(CrossSlotWhy::Blocking),
        "xread" => match xread::split(args, keys) {
            Some(split) => start(Box::pin(async move { xread::run(&job, split).await })),
            None => {
                let words: Vec<Bytes> = (0..args.len()).map(word).collect();
                let first = keys.first().map_or(args.len(), |k| k.index as usize);
                start(Box::pin(async move {
                    xread::malformed(&job, words, first).await
                }))
            }
        },
        "rename" | "renamenx" | "copy" => {
            let kind = match name {
                "rename" => rename::Kind::Rename,
                "renamenx" => rename::Kind::RenameNx,
                _ => match rename::copy_options(args) {
                    Ok(kind) => kind,
                    Err(e) => return reply(e),
                },
            };
            let (src, dst) = (word(1), word(2));
            start(Box::pin(
                async move { rename::run(&job, kind, src, dst).await },
            ))
        }
        "smove" => {
            let (src, dst, member) = (word(1), word(2), word(3));
            start(Box::pin(async move {
                moves::smove(&job, src, dst, member).await
            }))
        }
        "lmove" | "rpoplpush" => {
            let ends = if name == "lmove" {
                moves::End::parse(args.get(3))
                    .and_then(|f| Ok((f, moves::End::parse(args.get(4))?)))
            } else {
                Ok((moves::End::Right, moves::End::Left))
            };
            let (from, to) = match ends {
                Ok(e) => e,
                Err(e) => return reply(e),
            };
            let (src, dst) = (word(1), word(2));
            start(Box::pin(async move {
                moves::lmove(&job, src, dst, from, to).await
            }))
        }
        _ if name == "sort" || GENERIC.contains(&name) => {
            let Some(plan) = plan::plan(name, args, keys) else {
                return refuse(CrossSlotWhy::NotComputed);
            };
            start(Box::pin(async move { copy::run(&job, plan).await }))
        }
        _ if info.is_blocking() => refuse(CrossSlotWhy::Blocking),
        _ if info.runs_script() => refuse(CrossSlotWhy::Script),
        _ => refuse(CrossSlotWhy::NotComputed),
    }
}

/// The slots a computed write writes, when read-your-writes tracks the client's writes
/// (empty otherwise): its reads then stay on those masters until it is answered and a
/// replica has caught up, as after a forwarded write.
fn tracked_writes(
    ctx: &SessionContext,
    client: &mut ClientState,
    info: &CommandInfo,
    args: Args<'_>,
    keys: &[KeyRef],
) -> Vec<u16> {
    match &ctx.read_policy {
        Some(policy) if info.is_write() && client.auth.read_your_writes(policy) => keys
            .iter()
            .filter(|k| k.flags.is_write())
            .map(|k| crate::cluster::key_slot(k.key(args)))
            .collect(),
        _ => Vec::new(),
    }
}

/// What the TTL policy asks of this write: its refusal, or the `EXPIRE key N NX` of
/// each destination key a rule covers (the same verdict as on the forward path, whose
/// appended EXPIREs go behind the write here).
fn ttl_expires(
    ttl: Option<&TtlPolicy>,
    info: &CommandInfo,
    args: Args<'_>,
    keys: &[KeyRef],
) -> Result<Vec<Bytes>, Bytes> {
    let Some(ttl) = ttl.filter(|_| info.is_write()) else {
        return Ok(Vec::new());
    };
    match ttl.apply(info, args, keys) {
        TtlDecision::Refuse(e) => return Err(e),
        TtlDecision::Pass => return Ok(Vec::new()),
        TtlDecision::Rewrite { .. } => {}
    }
    let moves = ["rename", "renamenx", "copy", "smove", "lmove", "rpoplpush"];
    let mut out = bytes::BytesMut::new();
    let n = if moves.contains(&info.name.as_str()) {
        ttl.expire_covered(&mut out, std::iter::once(args.get(2)))
    } else {
        let written = keys.iter().filter(|k| k.flags.is_write());
        ttl.expire_covered(&mut out, written.map(|k| k.key(args)))
    };
    Ok(steps::split(&out.freeze(), n as usize).unwrap_or_default())
}

/// Whether this request blocks (XREAD with BLOCK).
fn blocks(class: Class, args: Args<'_>) -> bool {
    match class {
        Class::Blocking(block) => block.blocks(args),
        _ => false,
    }
}

/// The futures the tasks run (boxed: one `start` for every command).
mod futures_task {
    pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = bytes::Bytes> + Send>>;
}
