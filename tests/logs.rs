//! What the `respgate` binary writes for operators: log lines (JSON on request, no
//! colour codes into a pipe, a repeated warning once per interval with its count), the
//! `respgate dev` ready line, a busy port named before anything starts, and PING
//! answered while no node is reachable.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn respgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_respgate"))
}

/// `respgate --config <dir>/respgate.toml` holding `toml` (the file written first).
fn with_config(dir: &tempfile::TempDir, toml: &str) -> Command {
    let config = dir.path().join("respgate.toml");
    std::fs::write(&config, toml).unwrap();
    let mut cmd = respgate();
    cmd.arg("--config").arg(config);
    cmd
}

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A port nothing listens on (bound, then released).
fn dead_seed() -> String {
    free_addr()
}

/// One request on a fresh connection, its first reply line.
fn request(addr: &str, line: &str) -> Option<String> {
    let s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    (&s).write_all(line.as_bytes()).ok()?;
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).ok()?;
    Some(reply)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm_and_wait(child: &mut Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Runs respgate in front of a dead seed with `[log]` set to `log` for `run`, PINGs it,
/// stops it, and returns its stderr (read through a pipe).
fn stderr_of_a_run_without_nodes(log: &str, run: Duration) -> String {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let toml = format!(
        "[server]\nlisten = \"{addr}\"\n[cluster]\nseeds = [\"{}\"]\n[auth]\nmode = \"none\"\n[log]\n{log}\n",
        dead_seed()
    );
    let mut child = with_config(&dir, &toml)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    wait_for("respgate to listen", Duration::from_secs(20), || {
        TcpStream::connect(&addr).is_ok()
    });
    // No node was ever reached: PING is still answered by respgate itself; a command
    // for the nodes is not.
    assert_eq!(request(&addr, "PING\r\n").as_deref(), Some("+PONG\r\n"));
    assert!(request(&addr, "GET k\r\n")
        .unwrap()
        .starts_with("-CLUSTERDOWN"));
    std::thread::sleep(run.saturating_sub(started.elapsed()));
    sigterm_and_wait(&mut child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// `format = "json"`: every stderr line is one JSON object with a level and a message;
/// the topology refresh, failing every 200 ms, is logged once per second
/// (`repeat_interval_secs = 1`) with the count of the repeats left out.
#[test]
fn json_lines_and_a_failing_refresh_logged_once_per_interval_with_its_count() {
    let err = stderr_of_a_run_without_nodes(
        "format = \"json\"\nrepeat_interval_secs = 1",
        Duration::from_millis(3500),
    );
    let mut refresh = Vec::new();
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        let message = v["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{line}"));
        if message.starts_with("topology refresh failed") {
            refresh.push((
                message.to_string(),
                v["fields"]["repeated"].as_u64().unwrap(),
            ));
        }
    }
    assert!(err.contains("respgate: listening on"), "{err}");
    // ~17 failures in 3.5 s: the first, then one a second.
    assert!((2..=5).contains(&refresh.len()), "{refresh:?}\n{err}");
    assert_eq!(refresh[0], ("topology refresh failed".to_string(), 0));
    let (message, repeated) = &refresh[1];
    assert!(*repeated >= 2, "{refresh:?}");
    assert_eq!(
        message,
        &format!("topology refresh failed (repeated {repeated} times in the last 1 s)")
    );
}

/// Text logs into a pipe carry no ANSI colour codes, and with the default interval
/// (30 s) a refresh failing for 2 s is one line.
#[test]
fn text_logs_into_a_pipe_have_no_colour_codes() {
    let err = stderr_of_a_run_without_nodes("format = \"text\"", Duration::from_secs(2));
    assert!(!err.contains("\x1b["), "{err:?}");
    assert!(err.contains(" WARN "), "{err}");
    assert_eq!(err.matches("topology refresh failed").count(), 1, "{err}");
}

/// `respgate dev` on a port in use fails at once naming the address, before starting
/// any redis-server (starting six takes seconds and would say "cluster nodes ...").
#[test]
fn dev_on_a_busy_port_fails_at_once_naming_the_address() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let start = Instant::now();
    let out = respgate()
        .args(["dev", "--listen", &addr])
        .output()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("respgate dev: cannot listen on {addr}: ")),
        "{err}"
    );
    assert!(!err.contains("cluster nodes"), "{err}");
}

/// The proxy itself on a port in use: the error names the address.
#[test]
fn a_busy_port_is_named() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[server]\nlisten = \"{addr}\"\n[cluster]\nseeds = [\"{}\"]\n[auth]\nmode = \"none\"\n",
        dead_seed()
    );
    let out = with_config(&dir, &toml).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("respgate: cannot listen: {addr}: ")),
        "{err}"
    );
}

/// `respgate dev` says on stdout, in one line, when and where it is ready.
#[test]
fn dev_prints_one_ready_line_with_the_address() {
    let addr = free_addr();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let mut child = respgate()
        .args(["dev", "--listen", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready = line.clone();
    // Ready means ready: a key command is served at once.
    let set = request(&addr, "SET dev:ready 1\r\n");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(
        ready,
        format!("respgate dev: ready on {addr} (3 masters + 3 replicas, guards on); redis-cli -p {port}\n")
    );
    assert_eq!(set.as_deref(), Some("+OK\r\n"));
}

/// A dead master fails every request for its slots on each of respgate's links to it
/// (one per worker thread): its connect-failure warning is still logged once per
/// interval for the node, not once per link.
#[test]
fn a_dead_node_is_warned_about_once_per_interval_not_once_per_link() {
    use devcluster::{DevCluster, DevClusterOptions};
    let mut cluster = DevCluster::start(DevClusterOptions {
        node_timeout_ms: 5000,
        ..DevClusterOptions::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let seeds: Vec<String> = cluster.seeds().iter().map(|s| format!("\"{s}\"")).collect();
    let toml = format!(
        "[server]\nlisten = \"{addr}\"\nworker_threads = 2\n[cluster]\nseeds = [{}]\n[auth]\nmode = \"none\"\n",
        seeds.join(",")
    );
    let mut child = with_config(&dir, &toml)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    wait_for("respgate to serve", Duration::from_secs(20), || {
        request(&addr, "SET k 1\r\n").as_deref() == Some("+OK\r\n")
    });
    let victim = cluster.masters()[0];
    cluster.kill_node(victim);
    // Keys over every master, on connections spread over both workers, for 2 s (well
    // inside the 30 s interval and the node timeout): each link to the victim fails.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let conns: Vec<_> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        for (i, c) in conns.iter().enumerate() {
            for k in 0..12 {
                (&*c)
                    .write_all(format!("GET key:{i}:{k}\r\n").as_bytes())
                    .unwrap();
            }
        }
        drop(conns);
        std::thread::sleep(Duration::from_millis(100));
    }
    sigterm_and_wait(&mut child);
    let lines = lines.join().unwrap();
    let warned: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("backend connect failed") && l.contains(&victim.to_string()))
        .collect();
    assert_eq!(warned.len(), 1, "{warned:#?}");
    cluster.shutdown();
}
