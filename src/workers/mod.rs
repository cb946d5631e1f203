//! Thread-per-core workers: the hot path never crosses a thread.
//!
//! With a work-stealing runtime a client's session and the backend link it queues on
//! usually run on different threads, so every request costs two cross-thread wake-ups
//! (session -> link, link -> session): a futex or eventfd write, often an inter-processor
//! interrupt, and contended atomics on the channel. On the 2-core benchmark machine
//! those were a quarter of respgate's CPU per request (docs/ARCHITECTURE.md,
//! "Thread-per-core workers").
//!
//! So the binary runs `n` workers, each an OS thread with a single-threaded tokio
//! runtime. Every node gets `connections_per_node` links *per worker*, each link task
//! living on its worker; a client is handed to one worker (round robin) and its
//! session always uses its own worker's links ([`link_index`]). A request and its reply
//! then stay on one thread from the client socket to the backend socket and back. The
//! control plane (accepting, topology refresh, replica tracker, pub/sub hub, signals)
//! runs on the main runtime and may use any link: channels are thread-safe, that path is
//! just not the hot one.
//!
//! Without a pool (the library inside tests, or `worker_threads = 1`), everything runs on
//! the caller's runtime exactly as before: [`count`] is 0 and [`spawn_on`] is
//! `tokio::spawn`.

pub mod fence;

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use tokio::runtime::Handle;

static POOL: OnceLock<Pool> = OnceLock::new();

thread_local! {
    /// The worker this thread is, if it is one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

struct Pool {
    handles: Vec<Handle>,
    /// Round robin for new clients.
    next: AtomicUsize,
}

/// Starts `n` worker threads (n >= 2) for the rest of the process. Call once, before the
/// proxy starts; a second call fails.
pub fn start(n: usize) -> std::io::Result<()> {
    let mut handles = Vec::with_capacity(n);
    for index in 0..n {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("respgate-w{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                CURRENT.with(|c| c.set(Some(index)));
                let _ = tx.send(Ok(runtime.handle().clone()));
                // Runs the tasks spawned onto this worker until the process exits.
                runtime.block_on(std::future::pending::<()>());
            })?;
        let handle = rx
            .recv()
            .map_err(|_| std::io::Error::other("worker thread died during start-up"))??;
        handles.push(handle);
    }
    POOL.set(Pool {
        handles,
        next: AtomicUsize::new(0),
    })
    .map_err(|_| std::io::Error::other("workers already started"))
}

/// Workers running (0: no pool, everything runs on the caller's runtime).
pub fn count() -> usize {
    POOL.get().map_or(0, |p| p.handles.len())
}

/// The worker the calling thread is, if any.
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// Spawns `fut` on the caller's runtime (a session's worker) and returns where its one
/// result arrives: the control-plane tasks a request waits for (CONFIG SET, KEYS and
/// RANDOMKEY served by SCAN, shared guard budgets).
pub fn spawn_answer<T, F>(fut: F) -> tokio::sync::oneshot::Receiver<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx
}

/// Spawns `fut` on worker `index % count()`, or with `tokio::spawn` without a pool.
pub fn spawn_on<F>(index: usize, fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match POOL.get() {
        Some(p) => {
            p.handles[index % p.handles.len()].spawn(fut);
        }
        None => {
            tokio::spawn(fut);
        }
    }
}

/// Spawns a new client's session on the next worker (round robin), or with
/// `tokio::spawn` without a pool.
pub fn spawn_client<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let next = POOL
        .get()
        .map_or(0, |p| p.next.fetch_add(1, Ordering::Relaxed));
    spawn_on(next, fut);
}

/// Links per node for `per_worker` connections on each worker.
pub fn links_per_node(per_worker: usize) -> usize {
    per_worker.max(1) * count().max(1)
}

/// Which of a node's `links` serves `client_id` when called from the current thread:
/// on a worker, one of that worker's own links (links are laid out worker by worker,
/// see [`worker_of_link`]); elsewhere, any link by client id.
#[inline]
pub fn link_index(links: usize, client_id: u64) -> usize {
    let workers = count();
    match current() {
        Some(w) if workers > 0 && links >= workers => {
            let per = links / workers;
            w * per + (client_id % per as u64) as usize
        }
        _ => (client_id % links as u64) as usize,
    }
}

/// The worker link number `link` of `links` lives on (see [`link_index`]).
pub fn worker_of_link(link: usize, links: usize) -> usize {
    let workers = count().max(1);
    link / (links / workers).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_pool_links_are_chosen_by_client_id() {
        assert_eq!(count(), 0);
        assert_eq!(link_index(3, 7), 1);
        assert_eq!(links_per_node(2), 2);
        assert_eq!(worker_of_link(1, 2), 0);
    }
}
