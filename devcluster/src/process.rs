//! One node's process: its redis.conf, and the fork that ties its life to ours
//! (`PR_SET_PDEATHSIG`), done on one long-lived thread.

use std::io;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;

use crate::cluster::DevCluster;
use crate::error::{io_err, DevClusterError, Result};
use crate::{lock, BUS_OFFSET, LOCALHOST};

impl DevCluster {
    /// (Re)starts node `i` on `port`: writes its redis.conf and forks redis-server.
    pub(crate) fn spawn(&mut self, i: usize, port: u16, fresh_log: bool) -> Result<()> {
        let node = &mut self.nodes[i];
        node.addr = (LOCALHOST, port).into();
        let dir = node.dir.clone();
        if fresh_log {
            let _ = std::fs::remove_file(node.log_path());
            let _ = std::fs::remove_file(dir.join("stderr.log"));
        }
        let conf = self.redis_conf(i, port);
        let conf_path = dir.join("redis.conf");
        std::fs::write(&conf_path, conf)
            .map_err(io_err(format!("writing {}", conf_path.display())))?;

        // Config errors go to stderr, before the log file is opened.
        let stderr_path = dir.join("stderr.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path);
        let stderr = stderr.map_err(io_err(format!("opening {}", stderr_path.display())))?;
        let child = on_spawner_thread(move || {
            let parent = std::process::id() as libc::pid_t;
            let mut cmd = Command::new("redis-server");
            cmd.arg(&conf_path)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        return Err(io::Error::other("parent exited before exec"));
                    }
                    Ok(())
                });
            }
            cmd.spawn()
        });
        let child = child.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DevClusterError::RedisServerMissing,
            _ => DevClusterError::Io {
                context: "spawning redis-server".into(),
                source: e,
            },
        })?;
        *lock(&self.nodes[i].child) = Some(child);
        Ok(())
    }

    /// Node `i`'s redis.conf: cluster mode on loopback, no persistence (unless
    /// `appendonly`), TLS-only ports for a TLS cluster, then the caller's extra directives.
    fn redis_conf(&self, i: usize, port: u16) -> String {
        let node = &self.nodes[i];
        let ports = match &self.opts.tls {
            None => format!("port {port}\n"),
            Some(t) => format!(
                "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                 tls-ca-cert-file {}\ntls-cluster yes\ntls-replication yes\n",
                quote(&t.cert),
                quote(&t.key),
                quote(&t.ca)
            ),
        };
        let mut conf = format!(
            "{ports}bind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
             cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout {}\n\
             cluster-announce-ip 127.0.0.1\ncluster-replica-validity-factor 0\n\
             repl-diskless-sync-delay 0\nsave \"\"\nappendonly {}\nenable-debug-command yes\n\
             dir {}\nlogfile {}\n",
            self.opts.node_timeout_ms,
            if self.opts.appendonly { "yes" } else { "no" },
            quote(&node.dir),
            quote(&node.log_path()),
        );
        for (k, v) in &self.opts.extra_config {
            conf.push_str(&format!("{k} {v}\n"));
        }
        conf
    }
}

/// A port `p` with `p` and `p + 10000` both bindable on loopback. Client ports come from
/// 12000..22000 (bus 22000..32000): below Linux's ephemeral range, so outgoing connections
/// don't steal them. A random start keeps concurrent test processes apart; a counter keeps
/// threads of one process apart. Losing a race anyway is handled by `launch`.
pub(crate) fn pick_port() -> Result<u16> {
    const LO: u32 = 12000;
    const SPAN: u32 = 10000;
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| rand::random_range(0..SPAN));
    let free = |p: u16| TcpListener::bind((LOCALHOST, p)).is_ok();
    for _ in 0..SPAN {
        let port = (LO + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if free(port) && free(port + BUS_OFFSET) {
            return Ok(port);
        }
    }
    Err(DevClusterError::Setup(
        "no free port pair (port and port+10000)".into(),
    ))
}

/// Runs `f` on one long-lived thread. `PR_SET_PDEATHSIG` fires when the *thread* that forked
/// the child exits, so children must not be forked from short-lived test or blocking-pool
/// threads, or they would be killed as soon as that thread ends.
pub(crate) fn on_spawner_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    type Job = Box<dyn FnOnce() + Send>;
    static JOBS: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("devcluster-spawner".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .expect("starting the devcluster spawner thread");
        tx
    });
    let (tx, rx) = mpsc::sync_channel(1);
    jobs.send(Box::new(move || {
        let _ = tx.send(f());
    }))
    .expect("devcluster spawner thread is gone");
    rx.recv().expect("devcluster spawner thread is gone")
}

/// A path as a double-quoted redis.conf string.
pub(crate) fn quote(p: &Path) -> String {
    format!(
        "\"{}\"",
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    )
}
