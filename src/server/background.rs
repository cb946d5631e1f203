//! The tasks a running proxy keeps beside its sessions: script identities pushed to the
//! nodes, the replication-lag tracker, the topology refresher, the TTL sweeper, and the
//! process-wide client-buffer budget's evictor and allocator trimmer.

use crate::cluster::replicas::ReadPolicy;
use crate::session::SessionContext;
use crate::shutdown::{Shutdown, RUNNING};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::AbortHandle;

/// Starts every background task; the handles of those to stop with the accept loop.
pub(super) fn spawn(
    ctx: &Arc<SessionContext>,
    scripts: &Arc<crate::scripts::Scripts>,
    read_policy: Option<Arc<ReadPolicy>>,
    shutdown: &Arc<Shutdown>,
) -> Vec<AbortHandle> {
    let cluster = &ctx.cluster;
    if scripts.isolation() == crate::config::ScriptIsolation::Acl {
        sync_script_identities(cluster.clone(), scripts.clone());
    }
    // Replica reads: the lag tracker runs while the proxy does.
    let tracker = read_policy.map(|policy| {
        tracing::info!(
            bounds = policy.bounds.len(),
            "replica reads enabled: measuring replication lag every {} ms",
            policy.poll_interval.as_millis()
        );
        let listener = shutdown.listen();
        tokio::spawn(crate::cluster::replicas::run_tracker(
            cluster.clone(),
            policy,
            async move {
                listener.above(RUNNING).await;
            },
        ))
    });
    let refresher = {
        let listener = shutdown.listen();
        tokio::spawn(cluster.clone().run_refresher(async move {
            listener.above(RUNNING).await;
        }))
    };
    // The TTL policy's sweeper (idle while no [[ttl]] rule sweeps).
    let sweeper = {
        let listener = shutdown.listen();
        tokio::spawn(crate::guards::sweeper::run(
            cluster.clone(),
            ctx.guards.clone(),
            ctx.pause.clone(),
            async move {
                listener.above(RUNNING).await;
            },
        ))
    };
    let mut tasks = vec![
        refresher.abort_handle(),
        sweeper.abort_handle(),
        evictor(ctx.clone()),
        trimmer(ctx),
    ];
    tasks.extend(tracker.map(|t| t.abort_handle()));
    tasks
}

/// Script identities, built once the command table is known (their rules name only
/// commands the nodes have), then pushed to every node.
fn sync_script_identities(
    cluster: Arc<crate::cluster::Cluster>,
    scripts: Arc<crate::scripts::Scripts>,
) {
    tokio::spawn(async move {
        loop {
            if let (Some(table), Some(_)) =
                (cluster.commands().as_ref(), cluster.topology().as_ref())
            {
                scripts.rebuild(table);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        crate::scripts::sync(cluster, scripts, Vec::new()).await;
    });
}

/// `server.max_client_buffer_bytes`: woken when the budget is crossed, disconnects the
/// clients holding the most.
fn evictor(ctx: Arc<SessionContext>) -> AbortHandle {
    tokio::spawn(async move {
        loop {
            ctx.client_buffers.over.notified().await;
            // Only an excess that lasts: within one pass of a session the same bytes
            // may be counted twice for a moment (a large request copied out of a read
            // buffer whose charge is given back at the end of the pass), and evicting
            // on that closed an innocent client. Closed clients give their bytes back
            // at their next pass; others may keep growing meanwhile: look again until
            // the budget holds.
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if ctx.client_buffers.excess() == 0 {
                    break;
                }
                ctx.registry.evict_largest(&ctx.client_buffers);
            }
        }
    })
    .abort_handle()
}

/// Gives memory back to the system after a spike of client buffers (see the budget
/// module).
fn trimmer(ctx: &SessionContext) -> AbortHandle {
    let buffers = ctx.client_buffers.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            crate::budget::trim_after_spike(&buffers, 16 << 20);
        }
    })
    .abort_handle()
}
