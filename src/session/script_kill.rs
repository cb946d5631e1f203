//! SCRIPT KILL and FUNCTION KILL: stop a runaway script wherever in the cluster it runs.
//!
//! **Why a connection of its own.** The busy script's EVAL (or FCALL) sits on a shared
//! backend link; a node reads each connection in order, so a KILL written behind it on
//! that link would be read only once the script ended. A busy node does read *other*
//! connections (once the script ran `busy-reply-threshold`), so the KILL goes on a fresh
//! control connection to each node (`cluster::control`), as an operator's `redis-cli`
//! would.
//!
//! **Which nodes.** Every node the topology names, masters and replicas, at once:
//! asking them all costs one short connection each and never misses a script (an
//! `EVAL_RO` read from a replica, a script sent just before a failover), where tracking
//! which shard each in-flight script went to would add work to every EVAL.
//!
//! **One answer, as one Redis gives it.** `+OK` when any node killed a script; else the
//! first refusal other than `NOTBUSY` a node gave (`UNKILLABLE`: the script already
//! wrote; `BUSY`: SCRIPT KILL of a function, FUNCTION KILL of an EVAL), in the node's own
//! words; else `NOTBUSY` when every node said none runs. A node that could not be asked
//! (down, no answer within the request timeout plus the connect timeout) is reported
//! only when no node answered at all.
//!
//! **Who may.** As in Redis: whoever the ACL allows `script|kill` / `function|kill`
//! (`@scripting`); respgate adds no tenant rule (a node runs one script at a time, and
//! only a script that has not written can be killed, so a kill never loses data).
//!
//! **At most one round per [`ROUND_INTERVAL`]** (per command). A round opens a connection
//! to every node; a tenant sending kills in a loop would otherwise make respgate open
//! thousands per second and fill the ephemeral ports with TIME_WAIT. Kills that arrive
//! while a round is waiting for its turn join it and get its answer (so two concurrent
//! kills of one running script both read `+OK`, where one Redis would answer the second
//! `NOTBUSY`); a kill arriving while a round runs waits for the next one (a script may
//! have started since).

use crate::cluster::control::{self, ControlError};
use crate::cluster::Cluster;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// The shortest time between two rounds of one kill command.
pub const ROUND_INTERVAL: Duration = Duration::from_millis(100);

/// Starts the kill (`args`: `SCRIPT KILL` or `FUNCTION KILL`, as the client sent it); the
/// reply arrives on the returned receiver.
pub fn start(cluster: Arc<Cluster>, args: Vec<String>) -> oneshot::Receiver<Bytes> {
    static SCRIPT: Rounds = Rounds::new();
    static FUNCTION: Rounds = Rounds::new();
    let rounds = match args.first() {
        Some(cmd) if cmd.eq_ignore_ascii_case("function") => &FUNCTION,
        _ => &SCRIPT,
    };
    crate::workers::spawn_answer(async move { rounds.join(&cluster, &args).await })
}

/// The rounds of one kill command (process-wide).
struct Rounds {
    /// The round waiting for its turn, which a new kill joins.
    next: std::sync::Mutex<Option<watch::Receiver<Option<Bytes>>>>,
    /// Held by the running round: when the last one started.
    turn: tokio::sync::Mutex<Option<Instant>>,
}

impl Rounds {
    const fn new() -> Rounds {
        Rounds {
            next: std::sync::Mutex::new(None),
            turn: tokio::sync::Mutex::const_new(None),
        }
    }

    async fn join(&self, cluster: &Cluster, args: &[String]) -> Bytes {
        let lock = || self.next.lock().unwrap_or_else(|e| e.into_inner());
        let (tx, rx) = watch::channel(None);
        let waiting = {
            let mut next = lock();
            match &*next {
                Some(waiting) => Err(waiting.clone()),
                None => {
                    *next = Some(rx);
                    Ok(())
                }
            }
        };
        if let Err(mut rx) = waiting {
            // The round waiting for its turn: its answer is this kill's.
            return match rx.wait_for(Option::is_some).await {
                Ok(answer) => answer.clone().unwrap_or_default(),
                Err(_) => Refusal::Backend("the kill round ended without an answer".into()).reply(),
            };
        }
        let mut turn = self.turn.lock().await;
        if let Some(last) = *turn {
            tokio::time::sleep_until((last + ROUND_INTERVAL).into()).await;
        }
        *turn = Some(Instant::now());
        // From now on a new kill waits for the next round.
        lock().take();
        let answer = run(cluster, args).await;
        let _ = tx.send(Some(answer.clone()));
        answer
    }
}

async fn run(cluster: &Cluster, args: &[String]) -> Bytes {
    // Every node the map names (each once: a node is in one shard or spare).
    let addrs: Vec<String> = cluster
        .topology()
        .as_ref()
        .iter()
        .flat_map(|t| t.nodes())
        .map(|n| n.addr().to_string())
        .collect();
    if addrs.is_empty() {
        return Refusal::NoNodeKnown.reply();
    }
    let opts = cluster.link_options();
    // A busy node reads this connection only after its script ran busy-reply-threshold.
    let deadline = opts.request_timeout + opts.connect_timeout;
    let asks: Vec<_> = addrs
        .into_iter()
        .map(|addr| {
            let (opts, args) = (opts.clone(), args.to_vec());
            tokio::spawn(async move {
                let words: Vec<&str> = args.iter().map(String::as_str).collect();
                answer(control::query_within(&addr, &words, &opts, deadline).await)
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(asks.len());
    for ask in asks {
        answers.push(
            ask.await
                .unwrap_or_else(|e| Answer::Unreached(e.to_string())),
        );
    }
    merge(answers)
}

/// One node's answer, as the merge needs it.
enum Answer {
    Killed,
    /// The node's error text (`NOTBUSY ...`).
    NotBusy(String),
    /// The node's error text (`UNKILLABLE ...`, `BUSY ...`).
    Refused(String),
    Unreached(String),
}

fn answer<T>(result: Result<T, ControlError>) -> Answer {
    match result {
        Ok(_) => Answer::Killed,
        Err(ControlError::NodeError { reply, .. }) if reply.starts_with("NOTBUSY") => {
            Answer::NotBusy(reply)
        }
        Err(ControlError::NodeError { reply, .. }) => Answer::Refused(reply),
        Err(other) => Answer::Unreached(other.to_string()),
    }
}

/// The one reply (see the module docs for the order).
fn merge(answers: Vec<Answer>) -> Bytes {
    if answers.iter().any(|a| matches!(a, Answer::Killed)) {
        return Bytes::from_static(reply::OK);
    }
    let text = |want: fn(&Answer) -> Option<&String>| answers.iter().find_map(want).cloned();
    if let Some(text) = text(|a| match a {
        Answer::Refused(t) => Some(t),
        _ => None,
    }) {
        return reply::error(&text);
    }
    if let Some(text) = text(|a| match a {
        Answer::NotBusy(t) => Some(t),
        _ => None,
    }) {
        return reply::error(&text);
    }
    let why = text(|a| match a {
        Answer::Unreached(t) => Some(t),
        _ => None,
    });
    Refusal::Backend(why.unwrap_or_default()).reply()
}
