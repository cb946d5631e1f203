//! The `respgate` command line: run the proxy, check a config, compute slots, or start a
//! throw-away local cluster with the proxy in front of it.

use clap::{Parser, Subcommand};
#[cfg(feature = "dev")]
use devcluster::{DevCluster, DevClusterOptions};
use respgate::config::Config;
use respgate::server::Proxy;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "respgate",
    version,
    about = "A cluster-aware Redis proxy: one endpoint in front of a Redis Cluster"
)]
struct Cli {
    /// Configuration file (TOML) to run with. The container image sets RESPGATE_CONFIG
    /// to /etc/respgate/respgate.toml, where a mounted file (or ConfigMap) is expected.
    #[arg(
        long,
        short,
        env = "RESPGATE_CONFIG",
        default_value = "config/respgate.toml",
        global = false
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and explain what is wrong with it.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the SHA-256 hash of a password (read from stdin, one line) for a user's
    /// rules: `#<hash>`. The password itself is never stored in the config.
    HashPassword,
    /// Print the hash slot of each key.
    Slot {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Start a throw-away local cluster (3 masters + 3 replicas on loopback, in a temp
    /// dir) with respgate in front of it; Ctrl-C stops all of it.
    // Only with the (default) `dev` feature: the production build leaves it out.
    #[cfg(feature = "dev")]
    Dev {
        /// Where respgate listens.
        #[arg(long, default_value = "127.0.0.1:6380")]
        listen: String,
        /// Number of masters.
        #[arg(long, default_value_t = 3)]
        masters: usize,
        /// Replicas per master.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
        /// Proxy worker threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Run without guards (FLUSHALL, KEYS *, ... pass): for test suites that reset
        /// the cluster between tests. Without it the built-in safe rules apply.
        #[arg(long)]
        no_guards: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::HashPassword) => hash_password(),
        Some(Command::Slot { keys }) => print_lines(
            keys.iter()
                .map(|k| format!("{}\t{}", respgate::cluster::key_slot(k.as_bytes()), k)),
        ),
        #[cfg(feature = "dev")]
        Some(Command::Dev {
            listen,
            masters,
            replicas,
            threads,
            no_guards,
        }) => dev(listen, masters, replicas, threads, no_guards),
        None => {
            // Only a file that is not there: one that cannot be read (permissions) is
            // the loader's to explain.
            let missing = std::fs::metadata(&cli.config)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            if missing {
                // The container's usual first mistake: no file mounted. Say where one is
                // expected and how to point elsewhere, not "No such file or directory".
                eprintln!(
                    "respgate: no configuration at {}: mount one there or set RESPGATE_CONFIG \
                     (or pass --config; see config/production.example.toml)",
                    cli.config.display()
                );
                return ExitCode::from(2);
            }
            let config = match respgate::loader::load(&cli.config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            respgate::logging::init(&config.log);
            run(config, Some(cli.config), None)
        }
    }
}

/// `respgate check-config FILE`: the summary of a valid file, or what is wrong (exit 2).
fn check_config(file: &std::path::Path) -> ExitCode {
    match respgate::loader::load(file) {
        Ok(c) => {
            let listen = if c.server.listen.is_empty() {
                "no plain listener".to_string()
            } else {
                format!("listen {}", c.server.listen)
            };
            let tls = c
                .tls
                .as_ref()
                .map(|t| {
                    format!(
                        ", TLS {} (client certificates: {:?})",
                        t.listen, t.client_auth
                    )
                })
                .unwrap_or_default();
            let auth = match c.auth.mode {
                Some(respgate::config::AuthMode::Users) => {
                    format!("{} user(s)", c.auth.users.len())
                }
                _ => "no authentication".to_string(),
            };
            let replicas = if c.replica_reads.enabled() {
                ", replica reads on"
            } else {
                ""
            };
            let guards = respgate::guards::GuardSet::from_config(&c.guards, &c.ttl)
                .map(|g| g.describe().len())
                .unwrap_or(0);
            print_lines([
                format!(
                    "{}: OK ({listen}{tls}, {} seed(s), {auth}{replicas}, {guards} guard rule(s), {} ttl rule(s))",
                    file.display(),
                    c.cluster.seeds.len(),
                    c.ttl.len()
                ),
                c.scripts.describe(),
            ])
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// `respgate hash-password`: `#<sha256>` of the password read from stdin.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() || line.is_empty() {
        eprintln!("respgate hash-password: type the password on stdin");
        return ExitCode::from(2);
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    print_lines([format!(
        "#{}",
        respgate::acl::hash_password(password.as_bytes())
    )])
}

/// `respgate dev`: a throw-away local cluster with the proxy in front of it.
///
/// The listen address is tried before any redis-server is started (a port in use fails
/// at once, naming the address), and one "ready" line goes to stdout once respgate
/// accepts and knows the cluster's map.
#[cfg(feature = "dev")]
fn dev(
    listen: String,
    masters: usize,
    replicas: usize,
    threads: usize,
    no_guards: bool,
) -> ExitCode {
    respgate::logging::init(&respgate::config::LogConfig::default());
    if let Err(e) = std::net::TcpListener::bind(&listen) {
        eprintln!("respgate dev: cannot listen on {listen}: {e}");
        return ExitCode::FAILURE;
    }
    let opts = DevClusterOptions {
        masters,
        replicas_per_master: replicas,
        ..Default::default()
    };
    let cluster = match DevCluster::start(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("respgate dev: cannot start the local cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = Config::default();
    config.server.listen = listen;
    config.server.worker_threads = threads;
    config.guards = if no_guards {
        respgate::config::GuardsConfig::none()
    } else {
        respgate::config::GuardsConfig::file_default()
    };
    config.cluster.seeds = cluster.seeds().iter().map(|a| a.to_string()).collect();
    // A development cluster behaves like one Redis: cross-slot commands are computed.
    config.compat.cross_slot = respgate::config::CrossSlotMode::Compute;
    eprintln!(
        "respgate dev: cluster nodes {}",
        config.cluster.seeds.join(" ")
    );
    let shape = format!(
        "{masters} masters + {} replicas, guards {}",
        masters * replicas,
        if no_guards { "off" } else { "on" }
    );
    let ready = move |addr: std::net::SocketAddr| {
        print_lines([format!(
            "respgate dev: ready on {addr} ({shape}); redis-cli -p {}",
            addr.port()
        )]);
    };
    let code = run(config, None, Some(Box::new(ready)));
    drop(cluster);
    code
}

/// Writes `lines` to stdout. A reader that stops early (`respgate slot ... | head`)
/// closes the pipe: that ends the output quietly with success, where `println!` would
/// panic ("failed printing to stdout: Broken pipe"); any other write error is reported.
fn print_lines(lines: impl IntoIterator<Item = String>) -> ExitCode {
    use std::io::{ErrorKind, Write};
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = lines
        .into_iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("respgate: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the proxy until SIGTERM or Ctrl-C, then drains and exits 0. SIGHUP re-reads
/// `path` and applies users, ACLs and certificates; a file that does not load is
/// reported and changes nothing. `ready` is given the plain listener's address once it
/// accepts and the cluster's map is known (or after 10 s without one).
fn run(
    config: Config,
    path: Option<PathBuf>,
    ready: Option<Box<dyn FnOnce(std::net::SocketAddr)>>,
) -> ExitCode {
    use respgate::logging::{announce, complain};
    // `worker_threads`: 0 = one per core, 1 = one thread for everything, n = n workers.
    // Workers are single-threaded runtimes, each running its clients' sessions and its
    // own links to every node (src/workers.rs); the main runtime, single-threaded too,
    // runs the control plane (accept, topology, signals).
    let workers = match config.server.worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    if workers > 1 {
        if let Err(e) = respgate::workers::start(workers) {
            complain(&format!(
                "respgate: cannot start {workers} worker threads: {e}"
            ));
            return ExitCode::FAILURE;
        }
    }
    let mut builder = tokio::runtime::Builder::new_current_thread();
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            complain(&format!("respgate: cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let proxy = match Proxy::start(config).await {
            Ok(p) => p,
            Err(e) => {
                complain(&format!("respgate: cannot listen: {e}"));
                return ExitCode::FAILURE;
            }
        };
        if let Some(addr) = proxy.plain_addr() {
            announce(&format!("respgate: listening on {addr}"));
        }
        if let Some(addr) = proxy.tls_addr() {
            announce(&format!("respgate: listening on {addr} (TLS)"));
        }
        let interrupted = match (ready, proxy.plain_addr()) {
            (Some(ready), Some(addr)) => tokio::select! {
                waited = proxy.wait_ready(Duration::from_secs(10)) => {
                    match waited {
                        Ok(()) => ready(addr),
                        // Said as it is: listening, but not serving every slot yet.
                        Err(e) => complain(&format!(
                            "respgate dev: listening on {addr} but not ready: {e}"
                        )),
                    }
                    false
                }
                _ = tokio::signal::ctrl_c() => true,
            },
            _ => false,
        };
        if !interrupted {
            wait_for_signal(&proxy, path.as_deref()).await;
        }
        tracing::info!("shutting down: no new connections, finishing in-flight replies");
        proxy.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal(proxy: &Proxy, path: Option<&std::path::Path>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(h)) => (t, h),
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => reload(proxy, path),
        }
    }
    // A second signal during the drain is not waited for here: the runtime ends when
    // `run` returns.
    let _ = Duration::ZERO;
}

/// SIGHUP: re-read the config file and apply what can change while running; say which
/// changed settings need a restart.
fn reload(proxy: &Proxy, path: Option<&std::path::Path>) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP ignored: no configuration file to reload");
        return;
    };
    match respgate::loader::load(path)
        .map_err(|e| e.to_string())
        .and_then(|c| proxy.reload(&c))
    {
        Ok(restart) if restart.is_empty() => {
            respgate::logging::announce(&format!("respgate: reloaded {}", path.display()))
        }
        Ok(restart) => respgate::logging::announce(&format!(
            "respgate: reloaded {}; these settings need a restart and keep their running values: {}",
            path.display(),
            restart.join(", ")
        )),
        Err(e) => respgate::logging::complain(&format!(
            "respgate: reload rejected, running configuration unchanged: {e}"
        )),
    }
}
