//! INFO: every master's sections merged, with respgate's own `# Proxy` section.

use super::super::merge::Merge;
use super::super::route::Route;
use super::super::SessionContext;
use super::fan_out;
use crate::commands::CommandInfo;
use crate::protocol::Args;

/// INFO on every master; respgate's section joins the default and "all" views, as
/// Redis's own sections do; a client asking for one section gets just that section.
pub(super) fn route(ctx: &SessionContext, info: &CommandInfo, args: Args<'_>) -> Option<Route> {
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
