//! The `respgate` binary: its subcommands, and signals ending it cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

fn respgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_respgate"))
}

/// Whether respgate at `addr` serves: PING answered and a keyed command routed (PING
/// alone is answered by respgate before it knows the cluster). The configs here have
/// no users.
fn ping(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if s.write_all(b"PING\r\nEXISTS cli:ready\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 11];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"+PONG\r\n:")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn slot_prints_redis_hash_slots() {
    let out = respgate()
        .args(["slot", "foo", "{user1}:a", "user1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "12182\tfoo\n8106\t{user1}:a\n8106\tuser1\n");
}

/// `respgate slot KEY... | head`: the reader closes the pipe after a line; respgate
/// stops quietly (exit 0, nothing on stderr) instead of panicking on the broken pipe.
#[test]
fn slot_into_a_closed_pipe_exits_quietly() {
    // Far more output than a pipe buffers (64 KiB), so respgate is still writing when
    // the reader goes away.
    let keys: Vec<String> = (0..40_000).map(|i| format!("key:{i:08}")).collect();
    let mut child = respgate()
        .arg("slot")
        .args(&keys)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.ends_with("\tkey:00000000\n"), "{first:?}");
    drop(stdout); // `head -1` exits
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "stderr: {stderr}");
    assert!(out.status.success(), "{:?}", out.status);
}

#[test]
fn check_config_accepts_the_shipped_configs() {
    for f in ["config/respgate.toml", "config/production.example.toml"] {
        let out = respgate()
            .args(["check-config", f])
            .env("RESPGATE_UPSTREAM_PASSWORD", "x")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_config_names_file_key_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[cluster]\nseeds = [\"10.0.0.1:6379\", \"nowhere\"]\n",
    )
    .unwrap();
    let out = respgate().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim(),
        format!(
            "{}: cluster.seeds[1]: \"nowhere\" is not host:port",
            path.display()
        )
    );

    std::fs::write(&path, "[server]\nmax_clients = \"many\"\n").unwrap();
    let out = respgate().arg("check-config").arg(&path).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("server.max_clients"), "{err}");
    assert!(err.starts_with(&path.display().to_string()), "{err}");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    sigterm_drains_and_exits_zero_with(3);
}

/// The same with everything on one thread (no worker pool: the library's own path).
#[test]
fn sigterm_drains_and_exits_zero_on_one_thread() {
    sigterm_drains_and_exits_zero_with(1);
}

fn sigterm_drains_and_exits_zero_with(worker_threads: usize) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("respgate.toml");
    let seeds = toml_seeds();
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\nworker_threads = {worker_threads}\n[cluster]\nseeds = [{seeds}]\n[auth]\nmode = \"none\"\n"
        ),
    )
    .unwrap();
    let mut child = respgate()
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("respgate to answer PING", Duration::from_secs(20), || {
        ping(&addr)
    });
    // Clients spread over the workers (round robin) each get their own replies.
    let mut others: Vec<BufReader<TcpStream>> = (0..4)
        .map(|_| BufReader::new(TcpStream::connect(&addr).unwrap()))
        .collect();
    for (i, c) in others.iter_mut().enumerate() {
        assert_eq!(request(c, &format!("SET cli:term:{i} v{i}\r\n")), "+OK\r\n");
    }
    for (i, c) in others.iter_mut().enumerate() {
        assert_eq!(request(c, &format!("GET cli:term:{i}\r\n")), "$2\r\n");
        assert_eq!(request_line(c), format!("v{i}\r\n"));
    }
    drop(others);
    // A client with a request answered, still connected at shutdown.
    let mut client = TcpStream::connect(&addr).unwrap();
    client.write_all(b"SET cli:term 1\r\n").unwrap();
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "+OK\r\n");

    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "respgate did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The idle client was closed, not left hanging.
    line.clear();
    assert_eq!(reader.read_line(&mut line).unwrap(), 0);
}

#[test]
fn dev_runs_a_cluster_and_ctrl_c_stops_all_of_it() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = respgate()
        .args(["dev", "--listen", &addr])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "respgate dev to answer PING",
        Duration::from_secs(30),
        || ping(&addr),
    );
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"SET dev:k hello\r\nGET dev:k\r\n").unwrap();
    let mut buf = [0u8; 16];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"+OK\r\n$5\r\nhello\r\n");
    // Guarded by the built-in safe rules unless --no-guards.
    s.write_all(b"FLUSHALL\r\n").unwrap();
    let refusal =
        b"-ERR respgate: FLUSHALL is denied by rule 'dangerous-admin-only' (ask an admin)\r\n";
    let mut buf = vec![0u8; refusal.len()];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&buf),
        String::from_utf8_lossy(refusal)
    );

    let children: Vec<u32> = std::fs::read_dir(format!("/proc/{}/task", child.id()))
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("children")).unwrap_or_default())
        .collect::<Vec<String>>()
        .join(" ")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(children.len(), 6, "six redis-server processes");

    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    wait_for(
        "redis-server processes to be gone",
        Duration::from_secs(5),
        || children.iter().all(|p| !pid_alive(*p)),
    );
}

#[test]
fn dev_no_guards_lets_flushall_through() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = respgate()
        .args(["dev", "--listen", &addr, "--replicas", "0", "--no-guards"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "respgate dev to answer PING",
        Duration::from_secs(30),
        || ping(&addr),
    );
    // PING is answered by respgate itself: wait until every master answers (DBSIZE
    // goes to all of them).
    wait_for("every master to answer", Duration::from_secs(30), || {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 1];
        s.write_all(b"DBSIZE\r\n").is_ok() && s.read_exact(&mut b).is_ok() && b[0] == b':'
    });
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"SET dev:k v\r\nFLUSHALL\r\nKEYS *\r\nKEYS *\r\n")
        .unwrap();
    let want = b"+OK\r\n+OK\r\n*0\r\n*0\r\n";
    let mut buf = vec![0u8; want.len()];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), String::from_utf8_lossy(want));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// The next line the server sends.
fn request_line(reader: &mut BufReader<TcpStream>) -> String {
    let mut out = String::new();
    reader.read_line(&mut out).unwrap();
    out
}

/// One request on a plain socket, one line of reply.
fn request(reader: &mut BufReader<TcpStream>, line: &str) -> String {
    reader.get_mut().write_all(line.as_bytes()).unwrap();
    request_line(reader)
}

/// The shared cluster's seeds as the items of a TOML array (`"a", "b"`).
fn toml_seeds() -> String {
    support::shared_cluster_seeds()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Starts `respgate --config config` (killed when dropped, so no respgate outlives a
/// failed assertion) and connects to `addr` once it listens.
fn start_with_config(config: &std::path::Path, addr: &str) -> (KillOnDrop, BufReader<TcpStream>) {
    let child = KillOnDrop(
        respgate()
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("respgate to listen", Duration::from_secs(20), || {
        TcpStream::connect(addr).is_ok()
    });
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    (child, BufReader::new(stream))
}

#[test]
fn hash_password_prints_a_redis_acl_hash() {
    let mut child = respgate()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // sha256("s3cret"), as Redis's `ACL SETUSER u >s3cret` stores it.
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("#{}\n", respgate::acl::hash_password(b"s3cret"))
    );
}

#[test]
fn sighup_reloads_users_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("respgate.toml");
    let seeds = toml_seeds();
    let hash = respgate::acl::hash_password(b"pw");
    let write = |rules: &str, guards: &str| {
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"{addr}\"\n[cluster]\nseeds = [{seeds}]\n[auth]\nmode = \"users\"\n[[auth.users]]\nname = \"svc\"\nrules = \"on #{hash} {rules}\"\n{guards}"
            ),
        )
        .unwrap()
    };
    // No [guards] section: the built-in safe rules apply.
    write("~hup:a:* ~hup:b:* +@all", "");
    let (mut child, mut c) = start_with_config(&config, &addr);
    let child = &mut child.0;
    assert_eq!(request(&mut c, "AUTH svc pw\r\n"), "+OK\r\n");
    wait_for(
        "the cluster to be discovered",
        Duration::from_secs(20),
        || request(&mut c, "SET hup:b:1 v\r\n") == "+OK\r\n",
    );
    let hup = |child: &std::process::Child| unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    };
    assert!(request(&mut c, "KEYS *hup-none*\r\n").starts_with('*'));
    assert!(request(&mut c, "KEYS *hup-none*\r\n")
        .starts_with("-ERR respgate: KEYS without a prefix is limited to 1/min per user (rule keys-scan); retry in "));
    assert_eq!(request(&mut c, "ECHO x\r\n"), "$1\r\n");
    request_line(&mut c);
    // Remove hup:b:* from the user: its next command on that prefix is refused; and a
    // guard rule is added.
    write(
        "~hup:a:* +@all",
        "[[guards.rules]]\nname = \"no-echo\"\ncommands = [\"echo\"]\naction = \"deny\"\n",
    );
    hup(child);
    wait_for("the reload to apply", Duration::from_secs(10), || {
        request(&mut c, "EXISTS hup:b:1\r\n").starts_with("-NOPERM")
    });
    assert_eq!(
        request(&mut c, "ECHO x\r\n"),
        "-ERR respgate: ECHO is denied by rule 'no-echo' (ask an admin)\r\n"
    );
    assert_eq!(request(&mut c, "SET hup:a:1 v\r\n"), "+OK\r\n");
    // A broken file: rejected, the running rules stay.
    std::fs::write(&config, "[auth]\nmode = \"users\"\nthis is not toml\n").unwrap();
    hup(child);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(request(&mut c, "SET hup:a:2 v\r\n"), "+OK\r\n");
    assert!(request(&mut c, "EXISTS hup:b:1\r\n").starts_with("-NOPERM"));
    assert!(child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(request(&mut c, "DEL hup:a:1 hup:a:2\r\n"), ":2\r\n");
    support::on_owner("hup:b:1", &["DEL", "hup:b:1"]);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// SIGHUP applies a lowered `server.max_clients` to new connections (it used to log
/// "configuration reloaded" and keep the old limit), and names the changed settings a
/// reload cannot apply instead of ignoring them in silence.
#[test]
fn sighup_applies_max_clients_and_names_settings_that_need_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("respgate.toml");
    let log = dir.path().join("stderr.log");
    let seeds = toml_seeds();
    let write = |max_clients: usize, idle: u64, guards: &str| {
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"{addr}\"\nmax_clients = {max_clients}\nidle_timeout_secs = {idle}\n[cluster]\nseeds = [{seeds}]\n[auth]\nmode = \"none\"\n{guards}"
            ),
        )
        .unwrap()
    };
    write(3, 0, "");
    let child = KillOnDrop(
        respgate()
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("respgate to listen", Duration::from_secs(20), || {
        ping(&addr)
    });
    // Two clients connected, under the limit of 3.
    let connect = || {
        let s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        BufReader::new(s)
    };
    let mut first = connect();
    let mut second = connect();
    assert_eq!(request(&mut first, "PING\r\n"), "+PONG\r\n");
    assert_eq!(request(&mut second, "PING\r\n"), "+PONG\r\n");
    // Lower the limit to 2 (and change a setting a reload cannot apply); a guard rule
    // denying ECHO shows when the reload has happened.
    write(
        2,
        30,
        "[[guards.rules]]\nname = \"no-echo\"\ncommands = [\"echo\"]\naction = \"deny\"\n",
    );
    unsafe {
        libc::kill(child.0.id() as i32, libc::SIGHUP);
    }
    wait_for("the reload to apply", Duration::from_secs(20), || {
        request(&mut first, "ECHO x\r\n").starts_with("-ERR respgate: ECHO is denied")
    });
    // A third client is now one too many; the two connected stay.
    let mut third = connect();
    assert_eq!(
        request(&mut third, "PING\r\n"),
        "-ERR max number of clients reached\r\n"
    );
    assert_eq!(request(&mut second, "PING\r\n"), "+PONG\r\n");
    // Only the setting that was not applied is named.
    let text = std::fs::read_to_string(&log).unwrap();
    let said = text
        .lines()
        .find(|l| l.starts_with("respgate: reloaded"))
        .unwrap_or_else(|| panic!("no reload line: {text}"));
    assert!(
        said.ends_with("need a restart and keep their running values: server.idle_timeout_secs"),
        "{said}"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two respgate processes over one cluster, one shared global budget (the counter lives
/// in the cluster): across both, exactly the budget passes.
#[test]
fn two_respgate_processes_share_one_global_budget() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = toml_seeds();
    let rule = format!("shared-echo-procs-{}", std::process::id());
    let mut children = Vec::new();
    let mut conns = Vec::new();
    for i in 0..2 {
        let addr = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join(format!("respgate{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"{addr}\"\n[cluster]\nseeds = [{seeds}]\n[auth]\nmode = \"none\"\n\
                 [guards]\nsafe_defaults = false\n[[guards.rules]]\nname = \"{rule}\"\n\
                 commands = [\"echo\"]\naction = \"limit\"\nrate = \"5/h\"\nscope = \"global\"\nshared = true\n"
            ),
        )
        .unwrap();
        let (child, mut c) = start_with_config(&config, &addr);
        children.push(child);
        wait_for(
            "the cluster to be discovered",
            Duration::from_secs(20),
            || request(&mut c, "SET cli:shared:ready 1\r\n") == "+OK\r\n",
        );
        conns.push(c);
    }
    let mut passed = 0;
    for i in 0..12 {
        let c = &mut conns[i % 2];
        let first = request(c, "ECHO x\r\n");
        if first == "$1\r\n" {
            assert_eq!(request_line(c), "x\r\n");
            passed += 1;
        } else {
            assert!(
                first.contains(&format!("(rule {rule})")),
                "refused by the shared rule: {first}"
            );
        }
    }
    assert_eq!(passed, 5, "exactly the budget passes across both processes");
    support::on_owner("cli:shared:ready", &["DEL", "cli:shared:ready"]);
}

#[test]
fn check_config_says_which_script_isolation_is_active() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scripts.toml");
    let base = "[server]\nlisten = \"127.0.0.1:0\"\n[cluster]\nseeds = [\"127.0.0.1:7000\"]\n[auth]\nmode = \"none\"\n";
    std::fs::write(&path, base).unwrap();
    let out = respgate().arg("check-config").arg(&path).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("script isolation: acl ("), "{text}");

    let sha = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
    std::fs::write(
        &path,
        format!("{base}[scripts]\nisolation = \"allowlist\"\nallowed_sha1 = [\"{sha}\"]\n"),
    )
    .unwrap();
    let out = respgate().arg("check-config").arg(&path).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "script isolation: allowlist (restricted users may run 1 allow-listed script(s)"
        ),
        "{text}"
    );

    std::fs::write(
        &path,
        format!("{base}[scripts]\nisolation = \"allowlist\"\nallowed_sha1 = [\"nope\"]\n"),
    )
    .unwrap();
    let out = respgate().arg("check-config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("scripts.allowed_sha1[0]: \"nope\" is not a SHA1"),
        "{err}"
    );
}

/// The container image runs without `--config`: with nothing mounted it says where a
/// file is expected and how to point elsewhere (exit 2), not a bare "No such file".
#[test]
fn missing_config_says_where_one_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("respgate.toml");
    let out = respgate()
        .env("RESPGATE_CONFIG", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim(),
        format!(
            "respgate: no configuration at {}: mount one there or set RESPGATE_CONFIG \
             (or pass --config; see config/production.example.toml)",
            missing.display()
        )
    );
    // A path that exists but cannot be read as a file is the loader's to explain (here
    // a component is a file: ENOTDIR, as a permission error would be), not "mount one".
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = respgate()
        .env("RESPGATE_CONFIG", file.join("respgate.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("no configuration at"), "{err}");
    assert!(err.contains("cannot read"), "{err}");
    // check-config keeps its own message (it names a file the operator typed).
    let out = respgate()
        .arg("check-config")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot read"), "{err}");
}

/// RESPGATE_CONFIG is the file respgate runs with (the image sets it); `--config` wins
/// over it.
#[test]
fn respgate_config_env_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nmax_clients = \"many\"\n").unwrap();
    let out = respgate().env("RESPGATE_CONFIG", &path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with(&path.display().to_string()) && err.contains("server.max_clients"),
        "{err}"
    );
    let other = dir.path().join("other.toml");
    let out = respgate()
        .env("RESPGATE_CONFIG", &path)
        .arg("--config")
        .arg(&other)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("no configuration at {}", other.display())),
        "{err}"
    );
}
