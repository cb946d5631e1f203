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
        if ends(ms) {
            ctx.pause
                .pause(Instant::now(), Duration::from_millis(ms as u64), mode);
        }
    }
    fan_out(info, Merge::AllOk)
}

/// Whether a pause of `ms` has an end one Redis can represent: 7.0.15 adds the timeout
/// to the Unix time in ms (a signed 64-bit sum), and a sum that overflows makes an end
/// in the past, i.e. no pause at all, while it still answers `+OK`. respgate does the
/// same, so a pause nothing could ever end (ALL mode holds UNPAUSE too) is not made.
fn ends(ms: i64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    now.checked_add(ms).is_some()
}

/// How many times UNPAUSE is tried on a master.
const UNPAUSE_ATTEMPTS: u32 = 3;

/// CLIENT UNPAUSE: the held commands go on now; each master is unpaused on a
/// connection of its own, in the background.
pub(super) fn unpause(ctx: &SessionContext) -> Option<Route> {
    ctx.pause.unpause();
    if let Some(masters) = crate::cluster::keyspace::masters(&ctx.cluster) {
        for master in masters {
            let cluster = ctx.cluster.clone();
            tokio::spawn(async move {
                // A master left paused would hold writes released here on the shared
                // links: a failed delivery is tried again, a few times.
                for attempt in 1..=UNPAUSE_ATTEMPTS {
                    let sent = crate::cluster::control::query(
                        master.addr(),
                        &["CLIENT", "UNPAUSE"],
                        cluster.link_options(),
                    )
                    .await;
                    match sent {
                        Ok(_) => return,
                        Err(e) if attempt == UNPAUSE_ATTEMPTS => {
                            tracing::warn!(node = master.addr(), error = %e, "CLIENT UNPAUSE not delivered to a master")
                        }
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await
                        }
                    }
                }
            });
        }
    }
    ok()
}
