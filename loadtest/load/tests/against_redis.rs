//! The tool against real servers: a standalone `redis-server` (a single-address target,
//! as respgate is) and a 3-master cluster from `devcluster` (the cluster-aware target),
//! interleaved in one invocation; then an open-loop run; then a refused remote target.
//! Checks the JSON it writes, and that the writes reached the servers.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use devcluster::{DevCluster, DevClusterOptions, Reply};
use serde_json::Value;

struct Standalone {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Standalone {
    fn start() -> Standalone {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Standalone {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_respgate-load"))
        .args(args)
        .output()
        .unwrap()
}

fn workload(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workloads")
        .join(name)
        .display()
        .to_string()
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_f64().unwrap_or_else(|| panic!("{path:?} in {v}"))
}

fn check_run(r: &Value, target: &str, kinds: usize) {
    assert_eq!(r["target"], target);
    let requests = num(r, &["requests"]);
    assert!(requests > 100.0, "{r}");
    assert_eq!(num(r, &["sent"]), requests, "every request answered");
    assert_eq!(r["errors"].as_object().unwrap().len(), 0, "{}", r["errors"]);
    assert_eq!(
        r["failures"].as_array().unwrap().len(),
        0,
        "{}",
        r["failures"]
    );
    let l = &r["latency_us"];
    let (p50, p99, max) = (num(l, &["p50"]), num(l, &["p99"]), num(l, &["max"]));
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{l}");
    assert_eq!(num(l, &["count"]), requests);
    assert_eq!(r["kinds"].as_object().unwrap().len(), kinds);
    let cpu = r["cpu"].as_object().unwrap();
    for g in ["single", "nodes", "load"] {
        assert!(cpu.contains_key(g), "cpu group {g}: {cpu:?}");
    }
    assert_eq!(cpu["nodes"]["pids"].as_array().unwrap().len(), 3);
    assert!(num(&cpu["load"], &["ticks", "utime"]) + num(&cpu["load"], &["ticks", "stime"]) > 0.0);
    assert!(!r["timeline_rps"].as_array().unwrap().is_empty());
}

/// A throw-away cluster of 3 masters, no replicas.
fn three_masters() -> DevCluster {
    DevCluster::start(DevClusterOptions {
        masters: 3,
        replicas_per_master: 0,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn loads_a_standalone_and_a_cluster_interleaved_and_writes_json() {
    let cluster = three_masters();
    let single = Standalone::start();
    let seed = cluster.seeds()[0];
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("shop.json");
    let svg = dir.path().join("shop.svg");
    let out = tool(&[
        "--target",
        &format!("single={}", single.addr),
        "--target",
        &format!("cluster=cluster:{seed}"),
        "-w",
        &workload("shop.toml"),
        "-c",
        "4",
        "-P",
        "4",
        "-d",
        "1s",
        "--rounds",
        "2",
        "-q",
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("medians over the rounds"), "{stdout}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    let order: Vec<&str> = runs.iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(
        order,
        ["single", "cluster", "single", "cluster"],
        "interleaved"
    );
    for r in runs {
        check_run(r, r["target"].as_str().unwrap(), 10);
    }
    assert_eq!(v["targets"][1]["masters"].as_array().unwrap().len(), 3);
    assert_eq!(v["baseline"], "cluster");
    let summary = v["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2);
    assert!(num(&summary[0], &["ratio_to_baseline"]) > 0.0);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<polyline"));
    // The shop's writes reached every master (sessions spread over all slots).
    for m in cluster.masters() {
        let Reply::Int(n) = cluster.command(m, &["DBSIZE"]).unwrap() else {
            panic!()
        };
        assert!(n > 0, "master {m} got no key");
    }
}

#[test]
fn open_loop_keeps_the_rate() {
    let single = Standalone::start();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("open.json");
    let out = tool(&[
        "--target",
        &format!("single={}", single.addr),
        "-w",
        &workload("shop.toml"),
        "--mode",
        "open",
        "--rate",
        "2000",
        "-c",
        "8",
        "-d",
        "2s",
        "--rounds",
        "1",
        "-q",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = &v["runs"][0];
    assert_eq!(r["mode"], "open");
    let requests = num(r, &["requests"]);
    // 2000 req/s for 2 s; an operation of two requests may straddle the end.
    assert!((3800.0..=4200.0).contains(&requests), "{requests}");
    assert_eq!(num(r, &["sent"]), requests);
}

#[test]
fn refuses_a_remote_target_without_sending_anything() {
    let out = tool(&[
        "--target",
        "x=192.0.2.1:6379",
        "-w",
        &workload("get.toml"),
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
    let long = tool(&[
        "--target",
        "x=127.0.0.1:1",
        "-w",
        &workload("get.toml"),
        "-d",
        "10m",
        "--rounds",
        "3",
    ]);
    assert_eq!(long.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&long.stderr).contains("--max-duration"));
}

fn node_id(c: &DevCluster, node: SocketAddr) -> String {
    match c.command(node, &["CLUSTER", "MYID"]).unwrap() {
        Reply::Bulk(Some(id)) => String::from_utf8(id).unwrap(),
        other => panic!("CLUSTER MYID: {other:?}"),
    }
}

/// A slot moves to another master mid-run (the migration steps of `redis-cli --cluster
/// reshard`, with no key to move): the clients see MOVED (or ASK), fetch the slot map
/// again and go on against the new owner; nothing fails.
#[test]
fn follows_a_slot_that_moves() {
    let cluster = three_masters();
    let dir = tempfile::tempdir().unwrap();
    let wl = dir.path().join("one-key.toml");
    std::fs::write(
        &wl,
        "[[op]]\nname = \"get\"\nweight = 1\ncommands = [[\"GET\", \"moving-key\"]]\n",
    )
    .unwrap();
    let json = dir.path().join("moved.json");
    let slot = devcluster::key_slot(b"moving-key");
    let old = cluster.master_for_slot(slot);
    let new = cluster.masters().into_iter().find(|m| *m != old).unwrap();
    let (old_id, new_id) = (node_id(&cluster, old), node_id(&cluster, new));
    let seed = cluster.seeds()[0];
    let bin = env!("CARGO_BIN_EXE_respgate-load");
    let child = Command::new(bin)
        .args([
            "--target",
            &format!("c=cluster:{seed}"),
            "-w",
            wl.to_str().unwrap(),
            "-c",
            "2",
            "-d",
            "3s",
            "--rounds",
            "1",
            "-q",
        ])
        .args(["--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let s = slot.to_string();
    let ok = |node, args: &[&str]| {
        assert_eq!(
            cluster.command(node, args).unwrap(),
            Reply::Simple("OK".into()),
            "{args:?}"
        )
    };
    ok(new, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &old_id]);
    ok(old, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &new_id]);
    ok(new, &["CLUSTER", "SETSLOT", &s, "NODE", &new_id]);
    ok(old, &["CLUSTER", "SETSLOT", &s, "NODE", &new_id]);
    for m in cluster.masters() {
        if m != old && m != new {
            ok(m, &["CLUSTER", "SETSLOT", &s, "NODE", &new_id]);
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let r = &v["runs"][0];
    let errors = r["errors"].as_object().unwrap();
    let redirects: f64 = errors
        .iter()
        .filter(|(k, _)| *k == "MOVED" || *k == "ASK")
        .map(|(_, n)| n.as_f64().unwrap())
        .sum();
    assert!(redirects >= 1.0, "the move was seen: {errors:?}");
    // ASK while the slot is migrating (no refresh: the map is unchanged), then one MOVED
    // or so per client, after which it routes to the new owner.
    let moved = errors.get("MOVED").and_then(Value::as_f64).unwrap_or(0.0);
    assert!(
        (1.0..=10.0).contains(&moved),
        "a refresh per MOVED: {errors:?}"
    );
    let requests = num(r, &["requests"]);
    assert!(
        redirects * 5.0 < requests,
        "{errors:?} of {requests} requests"
    );
    assert_eq!(
        errors.len() as f64,
        errors
            .keys()
            .filter(|k| *k == "MOVED" || *k == "ASK")
            .count() as f64,
        "{errors:?}"
    );
    // Requests kept flowing after the move (the last second is not empty).
    let tl: Vec<f64> = r["timeline_rps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(tl[tl.len() - 5..].iter().all(|x| *x > 0.0), "{tl:?}");
    let stats = cluster.command(new, &["INFO", "commandstats"]).unwrap();
    let text = String::from_utf8_lossy(stats.as_bytes().unwrap()).into_owned();
    assert!(
        text.contains("cmdstat_get:"),
        "the new owner served GETs: {text}"
    );
}
