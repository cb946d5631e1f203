//! The standard Redis tools work against respgate unchanged: `redis-cli` (arguments,
//! commands on stdin, error display) and `redis-benchmark` (plain and pipelined).
//!
//! They come from Debian's redis-tools; the tests fail (never skip) when they are missing.

mod support;

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Only prevents a hung tool from hanging the suite.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{name} not found on PATH: install it with `apt-get install -y redis-tools`"
    );
    let mut cmd = Command::new(name);
    cmd.kill_on_drop(true);
    cmd
}

/// Runs a tool to completion, with `stdin` as its input.
async fn run(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn tool");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    tokio::time::timeout(TOOL_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} did not finish within {TOOL_TIMEOUT:?}"))
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn redis_cli(addr: SocketAddr, args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = tool("redis-cli");
    cmd.arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .args(args);
    run(cmd, stdin).await
}

async fn redis_benchmark(addr: SocketAddr, args: &[&str]) -> Output {
    let mut cmd = tool("redis-benchmark");
    cmd.arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string())
        .args(args);
    run(cmd, b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_sets_and_gets_a_key_given_as_arguments() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let set = redis_cli(addr, &["SET", "tools-cli:k", "hello world"], b"").await;
    assert!(set.status.success(), "{}", describe(&set));
    assert_eq!(stdout(&set), "OK\n");
    let get = redis_cli(addr, &["GET", "tools-cli:k"], b"").await;
    assert!(get.status.success(), "{}", describe(&get));
    assert_eq!(stdout(&get), "hello world\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_runs_commands_fed_on_stdin() {
    let proxy = proxy_for_shared().await;
    let input = b"SET tools-stdin:n 41\nINCR tools-stdin:n\nGET tools-stdin:n\nPING\n\
                  RPUSH tools-stdin:l a b\nLRANGE tools-stdin:l 0 -1\n";
    let out = redis_cli(proxy.local_addr(), &[], input).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out), "OK\n42\n42\nPONG\n2\na\nb\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_shows_errors_from_respgate_as_from_redis() {
    let proxy = proxy_for_shared().await;
    let node = with_shared_cluster(|c| c.masters()[0]);
    for args in [
        vec!["GET"],
        vec!["NOSUCHCOMMAND", "a"],
        vec!["INCR", "tools-err:not-a-number-key", "extra"],
    ] {
        let cli_args: Vec<&str> = std::iter::once("--no-raw").chain(args.clone()).collect();
        let ours = redis_cli(proxy.local_addr(), &cli_args, b"").await;
        let theirs = redis_cli(node, &cli_args, b"").await;
        assert!(
            stdout(&ours).starts_with("(error) ERR "),
            "{args:?}: {}",
            describe(&ours)
        );
        assert_eq!(stdout(&ours), stdout(&theirs), "{args:?}");
        assert_eq!(ours.status.code(), theirs.status.code(), "{args:?}");
    }
    // (Not CLUSTER INFO: redis-cli always prints that one raw.)
    let cluster = redis_cli(proxy.local_addr(), &["--no-raw", "CLUSTER", "SLOTS"], b"").await;
    assert_eq!(
        stdout(&cluster),
        "(error) ERR This instance has cluster support disabled\n",
        "{}",
        describe(&cluster)
    );
}

/// Asserts a quiet (`-q`) redis-benchmark run succeeded and reported every test.
fn assert_clean_benchmark(out: &Output, tests: &[&str]) {
    assert!(out.status.success(), "{}", describe(out));
    let text = format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("ERR"), "{}", describe(out));
    assert!(!text.contains("Error"), "{}", describe(out));
    for t in tests {
        let reported = text
            .split(['\n', '\r'])
            .any(|l| l.starts_with(&format!("{t}: ")) && l.contains("requests per second"));
        assert!(reported, "no result line for {t}: {}", describe(out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_runs_without_errors() {
    let proxy = proxy_for_shared().await;
    // Without -r every key is the literal `key:__rand_int__`, so MSET's ten keys share a
    // slot and are allowed.
    let out = redis_benchmark(
        proxy.local_addr(),
        &[
            "-t",
            "set,get,incr,lpush,lpop,mset",
            "-n",
            "2000",
            "-c",
            "10",
            "-q",
        ],
    )
    .await;
    assert_clean_benchmark(
        &out,
        &["SET", "GET", "INCR", "LPUSH", "LPOP", "MSET (10 keys)"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_pipelining_16_runs_without_errors() {
    let proxy = proxy_for_shared().await;
    let out = redis_benchmark(
        proxy.local_addr(),
        &[
            "-t",
            "set,get,incr,lpush,lpop",
            "-n",
            "2000",
            "-c",
            "10",
            "-P",
            "16",
            "-q",
        ],
    )
    .await;
    assert_clean_benchmark(&out, &["SET", "GET", "INCR", "LPUSH", "LPOP"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_random_keys_run_without_errors() {
    let proxy = proxy_for_shared().await;
    let out = redis_benchmark(
        proxy.local_addr(),
        &[
            "-t",
            "set,get,incr",
            "-n",
            "2000",
            "-c",
            "10",
            "-r",
            "100000",
            "-q",
        ],
    )
    .await;
    assert_clean_benchmark(&out, &["SET", "GET", "INCR"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_mset_with_random_keys_is_split_across_slots() {
    // With -r, MSET's ten keys land in different slots: respgate splits it by slot, so
    // it works as against one Redis (a cluster node would answer CROSSSLOT).
    let proxy = proxy_for_shared().await;
    let out = redis_benchmark(
        proxy.local_addr(),
        &["-t", "mset", "-n", "200", "-c", "2", "-r", "100000", "-q"],
    )
    .await;
    assert_clean_benchmark(&out, &["MSET (10 keys)"]);
}
