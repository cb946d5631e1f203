//! Integration tests for the `devcluster` crate against real `redis-server` processes.
//! They fail (never skip) when redis-server is missing: every other integration test needs it.

use std::path::Path;
use std::time::{Duration, Instant};

use devcluster::{DevCluster, DevClusterOptions, Reply};

fn start(opts: DevClusterOptions) -> DevCluster {
    let began = Instant::now();
    let cluster =
        DevCluster::start(opts).unwrap_or_else(|e| panic!("dev cluster failed to start: {e}"));
    eprintln!(
        "dev cluster of {} nodes ready in {:?}",
        cluster.nodes().len(),
        began.elapsed()
    );
    cluster
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn three_masters_three_replicas_cover_all_slots() {
    let c = start(DevClusterOptions::default());
    assert_eq!(c.nodes().len(), 6);
    assert_eq!(c.seeds().len(), 6);

    let masters = c.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    for &m in &masters {
        assert_eq!(c.replicas_of(m).len(), 1, "replicas of {m}");
    }

    // Same split as redis-cli, every slot served by one of the masters.
    for (lo, hi) in [(0, 5460), (5461, 10922), (10923, 16383)] {
        let owner = c.master_for_slot(lo);
        assert_eq!(c.master_for_slot(hi), owner);
        assert!(masters.contains(&owner));
    }
    for node in c.nodes() {
        let info = c.command(node.addr, &["CLUSTER", "INFO"]).unwrap();
        let info = info.as_str().unwrap();
        assert!(info.contains("cluster_state:ok"), "{}: {info}", node.addr);
        assert!(
            info.contains("cluster_slots_assigned:16384"),
            "{}: {info}",
            node.addr
        );
        assert_eq!(node.id.len(), 40);
        assert!(node.dir.join("redis.conf").exists());
    }

    // Writes land on the slot's master and reach its replica.
    let key = "devcluster:key";
    let master = c.master_for_slot(respgate::cluster::key_slot(key.as_bytes()));
    assert_eq!(
        c.command(master, &["SET", key, "v"]).unwrap(),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        c.command(master, &["GET", key]).unwrap(),
        Reply::Bulk(Some(b"v".to_vec()))
    );
    let other = masters.iter().copied().find(|&m| m != master).unwrap();
    match c.command(other, &["GET", key]).unwrap() {
        Reply::Error(e) => assert!(e.starts_with("MOVED"), "{e}"),
        r => panic!("expected MOVED from {other}, got {r:?}"),
    }
    let replica = c.replicas_of(master)[0];
    assert_eq!(
        c.command(master, &["WAIT", "1", "5000"]).unwrap(),
        Reply::Int(1)
    );
    assert_eq!(
        c.command(replica, &["READONLY"]).unwrap(),
        Reply::Simple("OK".into())
    );
    assert_eq!(
        c.command(replica, &["GET", key]).unwrap(),
        Reply::Bulk(Some(b"v".to_vec()))
    );

    // The dev cluster's own slot function (the tests' oracle) and the proxy's agree with
    // Redis itself on keys with and without hash tags.
    for key in [
        "",
        "foo",
        "bar",
        "123456789",
        "{user1000}.following",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "{",
        "}",
        "{}",
        "a{b",
        "a}b{c}",
        "\u{e9}t\u{e9}",
    ] {
        let Reply::Int(slot) = c.command(master, &["CLUSTER", "KEYSLOT", key]).unwrap() else {
            panic!("CLUSTER KEYSLOT {key:?}: not an integer");
        };
        assert_eq!(
            i64::from(devcluster::key_slot(key.as_bytes())),
            slot,
            "{key:?}"
        );
        assert_eq!(
            i64::from(respgate::cluster::key_slot(key.as_bytes())),
            slot,
            "{key:?}"
        );
    }
}

/// devcluster has its own CRC16 (so it cannot share the proxy's bugs); the two must agree
/// on any key, hash tags and binary bytes included.
#[test]
fn devcluster_and_proxy_slot_functions_agree() {
    const ALPHABET: &[u8] = b"{}{}ab:\0\xff";
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..100_000 {
        let len = (next() % 24) as usize;
        let key: Vec<u8> = (0..len)
            .map(|_| match next() % 4 {
                0 => (next() & 0xff) as u8,
                _ => ALPHABET[(next() % ALPHABET.len() as u64) as usize],
            })
            .collect();
        assert_eq!(
            devcluster::key_slot(&key),
            respgate::cluster::key_slot(&key),
            "{key:?}"
        );
    }
}

#[test]
fn drop_kills_every_process_and_removes_the_dir() {
    let c = start(DevClusterOptions {
        masters: 3,
        replicas_per_master: 0,
        ..Default::default()
    });
    let pids: Vec<u32> = c
        .seeds()
        .into_iter()
        .map(|a| c.pid(a).expect("running node has a pid"))
        .collect();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&p| alive(p)));
    let dir = c.nodes()[0].dir.parent().unwrap().to_path_buf();
    assert!(dir.exists());

    drop(c);
    for pid in pids {
        assert!(!alive(pid), "redis-server pid {pid} survived drop");
    }
    assert!(!dir.exists(), "{} survived drop", dir.display());
}

#[test]
fn shutdown_is_idempotent() {
    let mut c = start(DevClusterOptions {
        masters: 1,
        replicas_per_master: 0,
        ..Default::default()
    });
    let pid = c.pid(c.seeds()[0]).unwrap();
    c.shutdown();
    c.shutdown();
    assert!(!alive(pid));
}

#[test]
fn killed_master_is_replaced_by_its_replica() {
    let mut c = start(DevClusterOptions::default());
    let victim = c.master_for_slot(0);
    let replicas = c.replicas_of(victim);
    assert_eq!(replicas.len(), 1);
    let pid = c.pid(victim).unwrap();

    let began = Instant::now();
    c.kill_node(victim);
    assert!(!alive(pid));
    assert_eq!(c.pid(victim), None);
    assert_eq!(c.nodes().len(), 6, "a killed node stays in the list");
    c.wait_for_state_ok(Duration::from_secs(15)).unwrap();
    eprintln!("failover took {:?}", began.elapsed());

    let masters = c.masters();
    assert_eq!(masters.len(), 3, "masters: {masters:?}");
    assert!(!masters.contains(&victim));
    assert!(masters.contains(&replicas[0]));
    assert_eq!(c.master_for_slot(0), replicas[0]);
    assert_eq!(c.master_for_slot(5460), replicas[0]);

    // The old master comes back as a replica of its replacement.
    c.restart_node(victim).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.replicas_of(replicas[0]) != [victim] {
        assert!(
            Instant::now() < deadline,
            "{victim} did not rejoin as replica of {}",
            replicas[0]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn paused_master_fails_over_and_resumes_as_replica() {
    let c = start(DevClusterOptions {
        masters: 3,
        replicas_per_master: 1,
        ..Default::default()
    });
    let victim = c.master_for_slot(16383);
    let replica = c.replicas_of(victim)[0];
    c.pause_node(victim);
    c.wait_for_state_ok(Duration::from_secs(15)).unwrap();
    assert_eq!(c.master_for_slot(16383), replica);
    c.resume_node(victim);
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.replicas_of(replica) != [victim] {
        assert!(
            Instant::now() < deadline,
            "{victim} did not turn into a replica of {replica}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn fixed_base_port_and_extra_config() {
    // Outside the port picker's range (12000..22000); retried in case someone holds the ports.
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut last_error = None;
    for attempt in 0..10u16 {
        let base = 23000 + (std::process::id() as u16 % 300) * 30 + attempt * 3;
        if !(base..base + 2).all(|p| free(p) && free(p + 10000)) {
            continue;
        }
        let opts = DevClusterOptions {
            masters: 2,
            replicas_per_master: 0,
            base_port: Some(base),
            extra_config: vec![("maxmemory".into(), "10mb".into())],
            ..Default::default()
        };
        let c = match DevCluster::start(opts) {
            Ok(c) => c,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let expected: Vec<std::net::SocketAddr> = vec![
            ([127, 0, 0, 1], base).into(),
            ([127, 0, 0, 1], base + 1).into(),
        ];
        assert_eq!(c.seeds(), expected);
        assert_eq!(c.master_for_slot(0).port(), base);
        assert_eq!(c.master_for_slot(16383).port(), base + 1);
        let reply = c
            .command(c.seeds()[0], &["CONFIG", "GET", "maxmemory"])
            .unwrap();
        let bulk = |s: &str| Reply::Bulk(Some(s.as_bytes().to_vec()));
        assert_eq!(
            reply,
            Reply::Array(vec![bulk("maxmemory"), bulk("10485760")])
        );
        return;
    }
    panic!("no fixed-port dev cluster could start; last error: {last_error:?}");
}

#[test]
fn start_errors_name_the_cause_and_leave_nothing_behind() {
    let bad = DevClusterOptions {
        masters: 1,
        replicas_per_master: 0,
        extra_config: vec![("no-such-directive".into(), "1".into())],
        ..Default::default()
    };
    let err = DevCluster::start(bad).unwrap_err().to_string();
    assert!(err.contains("no-such-directive"), "{err}");

    // A fixed port that another cluster already holds: no silent retry, a clear error.
    let taken = start(DevClusterOptions {
        masters: 1,
        replicas_per_master: 0,
        ..Default::default()
    });
    let port = taken.seeds()[0].port();
    let clash = DevClusterOptions {
        masters: 1,
        replicas_per_master: 0,
        base_port: Some(port),
        ..Default::default()
    };
    let err = DevCluster::start(clash).unwrap_err().to_string();
    assert!(err.contains("already in use"), "{err}");
    let info = taken
        .command(taken.seeds()[0], &["CLUSTER", "INFO"])
        .unwrap();
    assert!(
        info.as_str().unwrap().contains("cluster_state:ok"),
        "the clash must not hurt the owner"
    );
}
