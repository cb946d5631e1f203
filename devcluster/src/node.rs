//! One `redis-server` process: its address, id, directory, and the signals tests send it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::lock;

#[derive(Debug)]
pub struct DevNode {
    /// `127.0.0.1:port`; stays the same across [`DevCluster::restart_node`].
    pub addr: SocketAddr,
    /// The cluster node id (`CLUSTER MYID`).
    pub id: String,
    /// The node's working directory: `redis.conf`, `redis.log`, `stderr.log`, `nodes.conf`.
    pub dir: PathBuf,
    pub(crate) child: Mutex<Option<Child>>,
    pub(crate) paused: AtomicBool,
}

impl DevNode {
    /// Path of the node's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    /// Whether the process is alive (a paused node is alive).
    pub fn is_running(&self) -> bool {
        matches!(
            lock(&self.child).as_mut().map(|c| c.try_wait()),
            Some(Ok(None))
        )
    }

    /// Running and not paused, so it will answer.
    pub(crate) fn responsive(&self) -> bool {
        !self.paused.load(Ordering::SeqCst) && self.is_running()
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        lock(&self.child).as_ref().map(Child::id)
    }

    pub(crate) fn signal(&self, sig: libc::c_int) {
        // Under the lock nobody can reap the child, so its pid cannot have been reused.
        let mut child = lock(&self.child);
        if let Some(c) = child.as_mut() {
            if let Ok(None) = c.try_wait() {
                // SAFETY: plain kill(2) on our own, running child.
                unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            }
        }
    }

    /// Ends the process (SIGTERM if `graceful`, else SIGKILL) and reaps it.
    pub(crate) fn stop(&mut self, graceful: bool) {
        if let Some(mut c) = lock(&self.child).take() {
            if graceful {
                // SAFETY: kill(2) on our own unreaped child.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
                    libc::kill(c.id() as libc::pid_t, libc::SIGCONT);
                }
            } else {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        self.paused.store(false, Ordering::SeqCst);
    }

    /// The last lines of `redis.log` and of `stderr.log`.
    pub(crate) fn log_tail(&self) -> String {
        let tail = |file: &str| {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(20)..].join("\n")
        };
        match (tail("redis.log"), tail("stderr.log")) {
            (log, stderr) if stderr.is_empty() => log,
            (log, stderr) if log.is_empty() => stderr,
            (log, stderr) => format!("{log}\n--- stderr ---\n{stderr}"),
        }
    }
}
