//! One run: connect the clients, start them together, load for the duration, wait a
//! little for the replies still in flight, and merge what the threads measured.
//!
//! Load threads are plain OS threads, each with a single-threaded tokio runtime and its
//! share of the clients (client `i` on thread `i % threads`): no work stealing, no locks
//! on the request path. Closed loop: each client writes a batch of at least `pipeline`
//! requests, waits for all their replies, and writes the next (as `redis-benchmark -P`).
//! Open loop: each load thread sleeps on a `timerfd` ([`PreciseTimer`]) until the next
//! intended send time of its clients and writes every request due by then; tokio's own
//! timer wheel has a 1 ms granularity, far too coarse for a latency target of 1 ms
//! measured from the intended time.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::client::{Client, Env};
use crate::cluster::SlotMap;
use crate::schedule::Schedule;
use crate::stats::Stats;
use crate::timer::PreciseTimer;
use crate::workload::Workload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Closed,
    Open,
}

#[derive(Clone)]
pub struct RunSpec {
    pub addr: SocketAddr,
    pub map: Option<SlotMap>,
    pub workload: Arc<Workload>,
    pub mode: Mode,
    pub pipeline: usize,
    /// Open loop: requests per second, all clients together.
    pub rate: f64,
    pub clients: usize,
    pub threads: usize,
    pub duration: Duration,
    pub drain: Duration,
    pub bucket: Duration,
    pub seed: u64,
    pub auth: Option<(String, String)>,
    pub allow_remote: bool,
    /// Open loop: a client stops sending while this many of its requests are in flight
    /// (the ones it holds back keep their intended time, so the wait is measured).
    pub max_in_flight: usize,
}

pub struct RunOutput {
    pub stats: Stats,
    /// Requests sent but not answered when the run ended.
    pub unanswered: u64,
    pub failures: Vec<String>,
    pub interrupted: bool,
}

struct Ctx {
    barrier: Barrier,
    start: OnceLock<Instant>,
    abort: AtomicBool,
    failures: Mutex<Vec<String>>,
}

/// Runs the load; `progress(done, elapsed)` is called about every 100 ms.
pub fn run(
    spec: &RunSpec,
    stop: &'static AtomicBool,
    done: &Arc<AtomicU64>,
    progress: &dyn Fn(u64, Duration),
) -> RunOutput {
    let threads = spec.threads.clamp(1, spec.clients.max(1));
    let ctx = Ctx {
        barrier: Barrier::new(threads + 1),
        start: OnceLock::new(),
        abort: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
    };
    let mut total = Stats::new(spec.workload.kinds.len(), spec.bucket);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let ctx = &ctx;
                let done = done.clone();
                s.spawn(move || load_thread(spec, ctx, t, threads, stop, done))
            })
            .collect();
        ctx.barrier.wait();
        if !ctx.abort.load(Ordering::SeqCst) {
            ctx.start.set(Instant::now()).expect("set once");
        }
        ctx.barrier.wait();
        if let Some(&start) = ctx.start.get() {
            while !handles.iter().all(|h| h.is_finished()) {
                std::thread::sleep(Duration::from_millis(100));
                progress(done.load(Ordering::Relaxed), start.elapsed());
            }
        }
        for h in handles {
            match h.join() {
                Ok(st) => total.merge(st),
                Err(_) => ctx
                    .failures
                    .lock()
                    .expect("lock")
                    .push("a load thread panicked".into()),
            }
        }
    });
    let failures = ctx.failures.into_inner().unwrap_or_else(|e| e.into_inner());
    RunOutput {
        unanswered: total.sent.saturating_sub(total.done),
        stats: total,
        failures,
        interrupted: stop.load(Ordering::SeqCst),
    }
}

fn record_failure(ctx: &Ctx, msg: String) {
    let mut f = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
    if f.len() < 20 {
        f.push(msg);
    }
}

fn load_thread(
    spec: &RunSpec,
    ctx: &Ctx,
    t: usize,
    threads: usize,
    stop: &'static AtomicBool,
    done: Arc<AtomicU64>,
) -> Stats {
    let stats = Rc::new(RefCell::new(Stats::new(
        spec.workload.kinds.len(),
        spec.bucket,
    )));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        // The clock starts after everybody connected; until then `start` is a placeholder.
        let env = Env {
            workload: spec.workload.clone(),
            stats: stats.clone(),
            start: Instant::now(),
            done,
            auth: spec.auth.clone(),
            seed: spec.addr,
            allow_remote: spec.allow_remote,
        };
        let clients = connect_all(spec, &env, t, threads).await;
        if let Err(e) = &clients {
            record_failure(ctx, e.clone());
            ctx.abort.store(true, Ordering::SeqCst);
        }
        ctx.barrier.wait();
        ctx.barrier.wait();
        let (Ok(clients), Some(&start)) = (clients, ctx.start.get()) else {
            return;
        };
        let env = Rc::new(Env { start, ..env });
        let deadline = start + spec.duration;
        match spec.mode {
            Mode::Closed => {
                let tasks: Vec<_> = clients
                    .into_iter()
                    .map(|c| {
                        tokio::task::spawn_local(closed_loop(
                            c,
                            env.clone(),
                            spec.pipeline,
                            deadline,
                            spec.drain,
                            stop,
                        ))
                    })
                    .collect();
                for task in tasks {
                    match task.await {
                        Ok(Err(e)) => record_failure(ctx, e),
                        Err(e) => record_failure(ctx, e.to_string()),
                        Ok(Ok(())) => {}
                    }
                }
            }
            Mode::Open => open_loop(clients, &env, spec, ctx, t, stop).await,
        }
    });
    drop(local);
    let fresh = Stats::new(spec.workload.kinds.len(), spec.bucket);
    let out = std::mem::replace(&mut *stats.borrow_mut(), fresh);
    out
}

async fn connect_all(
    spec: &RunSpec,
    env: &Env,
    t: usize,
    threads: usize,
) -> Result<Vec<Client>, String> {
    let map = spec.map.clone().map(Rc::new);
    let mut out = Vec::new();
    for id in (t..spec.clients).step_by(threads) {
        out.push(Client::connect(env, id as u64, spec.seed, spec.addr, map.clone()).await?);
    }
    Ok(out)
}

async fn closed_loop(
    mut c: Client,
    env: Rc<Env>,
    pipeline: usize,
    deadline: Instant,
    drain: Duration,
    stop: &'static AtomicBool,
) -> Result<(), String> {
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if c.shared.stale.get() {
            if let Err(e) = c.refresh(&env).await {
                result = Err(e);
                break;
            }
        }
        let mut n = 0;
        while n < pipeline.max(1) {
            n += c.stage_op(&env.workload);
        }
        let sent = c.commit(Instant::now());
        env.stats.borrow_mut().sent += sent as u64;
        if let Err(e) = c.flush().await {
            result = Err(e);
            break;
        }
        match tokio::time::timeout_at((deadline + drain).into(), c.wait_below(0)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                result = Err(e);
                break;
            }
            Err(_) => break,
        }
    }
    c.close();
    result
}

async fn open_loop(
    mut clients: Vec<Client>,
    env: &Env,
    spec: &RunSpec,
    ctx: &Ctx,
    t: usize,
    stop: &AtomicBool,
) {
    let timer = match PreciseTimer::new() {
        Ok(timer) => timer,
        Err(e) => return record_failure(ctx, format!("timerfd: {e}")),
    };
    let ops_per_sec = spec.rate / env.workload.mean_commands();
    let threads = spec.threads.clamp(1, spec.clients.max(1));
    let mut scheds: Vec<Schedule> = (0..clients.len())
        .map(|i| Schedule::new(env.start, ops_per_sec, spec.clients, t + i * threads))
        .collect();
    let mut dead = vec![false; clients.len()];
    loop {
        let released = env.start.elapsed().as_nanos() as u64;
        let mut next = spec.duration;
        for (i, c) in clients.iter_mut().enumerate() {
            if dead[i] {
                continue;
            }
            if let Err(e) = send_due(c, &mut scheds[i], env, spec, released).await {
                record_failure(ctx, e);
                dead[i] = true;
                continue;
            }
            next = next.min(scheds[i].next_offset());
        }
        if next >= spec.duration || stop.load(Ordering::Relaxed) {
            break;
        }
        // A client held back by --max-in-flight is looked at again within 10 ms.
        let wake = (env.start + next).min(Instant::now() + Duration::from_millis(10));
        if let Err(e) = timer.sleep_until(wake).await {
            record_failure(ctx, format!("timerfd: {e}"));
            break;
        }
    }
    let until = Instant::now() + spec.drain;
    for c in clients {
        let _ = tokio::time::timeout_at(until.into(), c.wait_below(0)).await;
        c.close();
    }
}

/// Writes every request of `c` whose intended time is released, unless too many are in
/// flight (they then wait, and their wait is measured from the intended time).
async fn send_due(
    c: &mut Client,
    s: &mut Schedule,
    env: &Env,
    spec: &RunSpec,
    released: u64,
) -> Result<(), String> {
    if c.shared.stale.get() {
        c.refresh(env).await?;
    }
    if let Some(e) = c.shared.failed.borrow().as_ref() {
        return Err(e.clone());
    }
    let now = Instant::now();
    let mut sent = 0;
    let mut lag = Duration::ZERO;
    while s.next_offset() < spec.duration
        && s.next_offset().as_nanos() as u64 <= released
        && c.outstanding() < spec.max_in_flight
    {
        c.stage_op(&env.workload);
        let intended = s.next_due();
        sent += c.commit(intended);
        lag = lag.max(now.saturating_duration_since(intended));
        s.advance();
    }
    if sent > 0 {
        {
            let mut st = env.stats.borrow_mut();
            st.sent += sent as u64;
            st.max_send_lag = st.max_send_lag.max(lag);
        }
        c.flush().await?;
    }
    Ok(())
}
