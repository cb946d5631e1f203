//! CLIENT PAUSE / UNPAUSE. respgate holds its own clients' paused commands
//! (`crate::pause`, `session/io/hold.rs`) and pauses every master too, so clients
//! connected to the nodes directly (or through another respgate) see the pause as
//! they would on one Redis. UNPAUSE is answered here at once and reaches each master
//! on a connection of its own (`cluster::control::query`): it never queues on a shared
//! link behind anything, and a node paused in WRITE mode answers it on any connection.

use super::super::merge::Merge;
use super::super::route::Route;
use super::super::SessionContext;
use super::{fan_out, ok};
use crate::commands::CommandInfo;
use crate::pause::Mode;
use crate::protocol::scan::parse_int;
use crate::protocol::Args;
use std::time::{Duration, Instant};

/// CLIENT PAUSE timeout [WRITE|ALL]: held here from now on, and sent to every master.
/// Arguments Redis would refuse are only sent on: the nodes answer the error.
pub(super) fn pause(ctx: &SessionContext, info: &CommandInfo, args: Args<'_>) -> Option<Route> {
    let timeout = parse_int(args.get(2)).filter(|ms| *ms >= 0);
    let mode = match args.try_get(3) {
        None => Some(Mode::All),
        Some(m) if m.eq_ignore_ascii_case(b"write") => Some(Mode::Write),
        Some(m) if m.eq_ignore_ascii_case(b"all") => Some(Mode::All),
        Some(_) => None,
    };
    if let (Some(ms), Some(mode), 3 | 4) = (timeout, mode, args.len()) {
        ctx.pause
            .pause(Instant::now(), Duration::from_millis(ms as u64), mode);
    }
    fan_out(info, Merge::AllOk)
}

/// CLIENT UNPAUSE: the held commands go on now; each master is unpaused on a
/// connection of its own, in the background.
pub(super) fn unpause(ctx: &SessionContext) -> Option<Route> {
    ctx.pause.unpause();
    if let Some(masters) = crate::cluster::keyspace::masters(&ctx.cluster) {
        for master in masters {
            let cluster = ctx.cluster.clone();
            tokio::spawn(async move {
                let sent = crate::cluster::control::query(
                    master.addr(),
                    &["CLIENT", "UNPAUSE"],
                    cluster.link_options(),
                )
                .await;
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "CLIENT UNPAUSE not delivered to a master");
                }
            });
        }
    }
    ok()
}
