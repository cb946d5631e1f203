//! MONITOR: every master's command stream, merged into one for the client.
//!
//! **How.** MONITOR opens one connection per master (as respgate's own node user, as the
//! control plane does: `cluster::monitor`), sends `MONITOR` on each, and answers the
//! client `+OK` once every master answered its own `+OK`, so every command a master
//! runs after the client's `+OK` is in the stream. The node connections count against
//! the bounds on clients' own connections (`dedicated.rs`), one each.
//!
//! **Order.** Each master's lines arrive in that master's order; across masters they are
//! forwarded as they arrive. Sorting by the lines' timestamps would mean holding every
//! line back for a window (and still be wrong for a master slower than the window),
//! while the timestamps come from different machines' clocks: arrival order is respgate's
//! one clock, and it is what a reader tailing the stream expects. Each line keeps its
//! node's timestamp.
//!
//! **The address in a line** is the node's view: for commands respgate sends on shared
//! links, respgate's own address of that link (which client sent it is not known without
//! a per-request cost, and none is added here). respgate's own background traffic
//! (INFO and CLUSTER SHARDS of discovery and stats, PING of health checks, replica lag
//! heartbeats) shows too, as it would to a MONITOR run on the node: it is not filtered.
//!
//! **Monitor mode**, as Redis 7.0: a second MONITOR gets no reply; commands that read or
//! write the keyspace are refused (`Replica can't interact with the keyspace`); RESET
//! leaves monitor mode (the node connections close), QUIT closes; other commands are
//! served. A master closing its connection (failover, restart) ends the client's
//! connection, as a restarted Redis ends its monitors; so does a client that does not
//! keep up with the stream (`pubsub_queue` lines or `pubsub_queue_bytes` held; a line
//! longer than `pubsub_queue_bytes` ends it too, never read whole).

use super::dedicated::{Pin, Place};
use super::route::Route;
use super::{ClientState, SessionContext};
use crate::budget::{shared_frame, OutputBytes, COUNTED_MIN};
use crate::cluster::monitor::NodeMonitor;
use crate::commands::CommandInfo;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// A client in monitor mode: where its lines arrive, and the task that reads them.
pub struct Monitor {
    rx: mpsc::Receiver<Bytes>,
    /// The client's output bytes: lines are queued and taken as pub/sub messages are
    /// (`pubsub_queue_bytes`, and the process budget); every line taken out of `rx` goes
    /// through [`Monitor::taken`].
    output: Arc<OutputBytes>,
    /// Set once the client was answered `+OK` (before it, a closed stream is a failed
    /// MONITOR, whose error is the reply).
    confirmed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    _places: Vec<Place>,
}

impl Drop for Monitor {
    /// RESET or the client gone: the task and with it every node connection end now;
    /// the lines nobody will take are given back, as a subscription's messages are.
    fn drop(&mut self) {
        self.task.abort();
        self.rx.close();
        while let Ok(line) = self.rx.try_recv() {
            self.output.take_message(line.len());
        }
    }
}

impl Monitor {
    /// A line queued now, if any.
    pub fn try_next(&mut self) -> Option<Bytes> {
        let line = self.rx.try_recv().ok()?;
        Some(self.taken(line))
    }

    /// `line` left the queue: its bytes no longer count.
    fn taken(&self, line: Bytes) -> Bytes {
        self.output.take_message(line.len());
        line
    }

    /// Whether the client was answered `+OK`.
    pub fn confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Relaxed)
    }
}

/// MONITOR: starts monitor mode (the `+OK` arrives once every master confirmed).
pub fn start(ctx: &SessionContext, client: &mut ClientState) -> Route {
    if client.monitor.is_some() {
        // Redis answers a second MONITOR with nothing.
        return Route::Subscribed(Vec::new());
    }
    let Some(masters) = crate::cluster::keyspace::masters(&ctx.cluster) else {
        return Route::Reply(Refusal::NoNodeKnown.reply());
    };
    let user = client.auth.user().map(|u| &**u);
    let mut places = Vec::with_capacity(masters.len());
    for _ in &masters {
        match ctx.dedicated.take(client.auth.name(), user, Pin::Monitor) {
            Ok(place) => places.push(place),
            Err(refused) => return Route::Reply(refused),
        }
    }
    let addrs: Vec<String> = masters.iter().map(|m| m.addr().to_string()).collect();
    let (tx, rx) = mpsc::channel(ctx.bounds.pubsub_queue.max(16));
    let (answer, reply) = oneshot::channel();
    let confirmed = Arc::new(AtomicBool::new(false));
    let output = client.entry.output.clone();
    let lines = Lines {
        tx,
        output: output.clone(),
        max_line: ctx.bounds.output_limits.messages,
    };
    let task = tokio::spawn(run(
        addrs,
        ctx.cluster.link_options().clone(),
        lines,
        answer,
        confirmed.clone(),
    ));
    client.monitor = Some(Box::new(Monitor {
        rx,
        output,
        confirmed,
        task,
        _places: places,
    }));
    Route::Task(reply)
}

/// What a client in monitor mode may not run (`None`: route as usual).
pub fn in_monitor_mode(info: &CommandInfo) -> Option<Route> {
    use crate::commands::cmd_flags::{MAY_REPLICATE, READONLY, WRITE};
    let keyspace = info.flags & (WRITE | READONLY | MAY_REPLICATE) != 0;
    keyspace.then(|| Route::Reply(Refusal::ReplicaKeyspace.reply()))
}

/// Opens every master's MONITOR, answers the client, then forwards lines until a node
/// connection ends or the client falls behind (the stream then closes: the session
/// ends). Aborted when the client leaves monitor mode, which drops every connection.
/// Where the readers put lines: the client's queue, bounded in lines and in bytes.
#[derive(Clone)]
struct Lines {
    tx: mpsc::Sender<Bytes>,
    /// The client's output bytes (`OutputBytes::queue_message` bounds the queue).
    output: Arc<OutputBytes>,
    /// `pubsub_queue_bytes`: the longest line read (a longer one could never be queued).
    max_line: usize,
}

async fn run(
    addrs: Vec<String>,
    opts: crate::backend::LinkOptions,
    lines: Lines,
    answer: oneshot::Sender<Bytes>,
    confirmed: Arc<AtomicBool>,
) {
    let mut opening = JoinSet::new();
    for addr in addrs {
        let opts = opts.clone();
        opening.spawn(async move { crate::cluster::monitor::open(&addr, &opts).await });
    }
    let mut nodes = Vec::new();
    while let Some(opened) = opening.join_next().await {
        match opened {
            Ok(Ok(node)) => nodes.push(node),
            Ok(Err(e)) => {
                let _ = answer.send(Refusal::Backend(e.to_string()).reply());
                return;
            }
            Err(e) => {
                let _ = answer.send(Refusal::Backend(e.to_string()).reply());
                return;
            }
        }
    }
    confirmed.store(true, Ordering::Relaxed);
    if answer.send(Bytes::from_static(reply::OK)).is_err() {
        return;
    }
    let mut readers = JoinSet::new();
    for node in nodes {
        readers.spawn(forward(node, lines.clone()));
    }
    drop(lines);
    // The first reader to end ends them all (dropping the set aborts the others).
    readers.join_next().await;
}

/// One master's lines into the client's queue, until the node closes or the queue is
/// full, in lines or in bytes (a client that does not keep up is closed, as a
/// subscriber is; a line longer than the byte bound is never held whole).
async fn forward(mut node: NodeMonitor, lines: Lines) {
    loop {
        match node.next_line(lines.max_line).await {
            Ok(Some(line)) => {
                let len = line.len();
                // Counted as a pub/sub message is: a large one as a frame the process
                // budget counts while it lives, over `pubsub_queue_bytes` closed.
                let line = match len >= COUNTED_MIN {
                    true => shared_frame(lines.output.process(), &line),
                    false => line,
                };
                if !lines.output.queue_message(len) {
                    tracing::info!(
                        node = node.addr(),
                        "closing MONITOR client that did not keep up (pubsub_queue_bytes)"
                    );
                    return;
                }
                match lines.tx.try_send(line) {
                    Ok(()) => {}
                    Err(e) => {
                        lines.output.take_message(len);
                        if matches!(e, mpsc::error::TrySendError::Full(_)) {
                            tracing::info!(
                                node = node.addr(),
                                "closing MONITOR client that did not keep up"
                            );
                        }
                        return;
                    }
                }
            }
            Ok(None) => {
                tracing::info!(node = node.addr(), "node closed its MONITOR connection");
                return;
            }
            Err(e) => {
                tracing::info!(node = node.addr(), error = %e, "MONITOR connection failed");
                return;
            }
        }
    }
}

/// The next monitor line (`None`: the stream ended).
pub(super) async fn next_line(monitor: &mut Option<Box<Monitor>>) -> Option<Bytes> {
    match monitor {
        Some(m) => {
            let line = m.rx.recv().await?;
            Some(m.taken(line))
        }
        None => std::future::pending().await,
    }
}
