//! Fairness between tenants (issue 13, findings 4, 5 and 10), against real clusters:
//! keyspace-walking commands costed as what they are (KEYS of any pattern served by
//! SCAN, SCAN COUNT capped, walks in flight bounded per user), per-user quotas on
//! clients' own connections (blocking commands, WATCH), and guard tokens spent only by
//! commands that run.
//!
//! Mechanisms are asserted (what the nodes ran: `INFO commandstats`, `SLOWLOG`), never
//! timings.

mod support;

use devcluster::Reply;
use std::net::SocketAddr;
use std::time::Duration;
use support::shop::{self, cmd, login};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `KEYS` refused inside MULTI (served by SCAN under the safe defaults: it cannot be
/// queued) spends no token of the 1/min rule: KEYS outside MULTI still runs.
#[tokio::test]
async fn keys_refused_inside_multi_spends_no_guard_token() {
    let proxy = start_proxy(shop::config(&shared_cluster_seeds())).await;
    let mut c = login(proxy.local_addr(), "ops").await;
    assert_eq!(cmd(&mut c, &["MULTI"]).await, "+OK\r\n");
    let refused = cmd(&mut c, &["KEYS", "*"]).await;
    assert!(
        refused.starts_with("-ERR respgate: KEYS cannot be queued"),
        "{refused}"
    );
    assert!(cmd(&mut c, &["EXEC"]).await.starts_with("-EXECABORT"));
    let keys = cmd(&mut c, &["KEYS", "*"]).await;
    assert!(
        keys.starts_with('*'),
        "the refused KEYS spent the token: {keys}"
    );
    // The token is spent now: the next one is limited.
    let limited = cmd(&mut c, &["KEYS", "*"]).await;
    assert!(
        limited.contains("is limited to 1/min per user (rule keys-scan)"),
        "{limited}"
    );
}

/// One user at its quota of connections of its own (blocking commands) is refused with
/// the per-user limit named; another user's BLPOP and WATCH are served. The refused
/// WATCH leaves nothing watched: the slot's commands work, and a transaction runs.
#[tokio::test]
async fn a_tenant_at_its_dedicated_quota_does_not_starve_another() {
    let mut c = shop::config(&shared_cluster_seeds());
    c.server.max_dedicated_connections = 10;
    c.server.max_dedicated_per_user = 3;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    let id = std::process::id();

    // order-service takes its 3 places with BLPOPs that never end.
    let mut blocked = Vec::new();
    for i in 0..3 {
        let mut b = login(addr, "order-service").await;
        b.send(&encode_command(&[
            "BLPOP",
            &format!("saga:q:{id}:{i}"),
            "0",
        ]))
        .await;
        blocked.push(b);
    }
    for b in &mut blocked {
        expect_blocked(b).await;
    }
    let mut a = login(addr, "order-service").await;
    let per_user = "connections of its own (blocking commands, WATCH), its limit (server.max_dedicated_per_user = 3)";
    assert_eq!(
        cmd(&mut a, &["BLPOP", &format!("saga:q:{id}:a"), "0.05"]).await,
        format!("-ERR respgate: blocking command refused: user 'order-service' already holds 3 {per_user}\r\n")
    );
    // Its WATCH is refused too, naming WATCH and the per-user limit.
    let w = format!("saga:w:{id}");
    assert_eq!(
        cmd(&mut a, &["WATCH", &w]).await,
        format!(
            "-ERR respgate: WATCH refused: user 'order-service' already holds 3 {per_user}\r\n"
        )
    );
    // ... and leaves nothing watched: the slot's commands run on the shared links.
    assert_eq!(cmd(&mut a, &["SET", &w, "1"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut a, &["GET", &w]).await, "$1\r\n1\r\n");
    assert_eq!(cmd(&mut a, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut a, &["INCR", &w]).await, "+QUEUED\r\n");
    assert_eq!(cmd(&mut a, &["EXEC"]).await, "*1\r\n:2\r\n");
    assert_eq!(cmd(&mut a, &["UNWATCH"]).await, "+OK\r\n");

    // Another tenant is served: BLPOP (times out with nil) and WATCH + EXEC.
    let mut b = login(addr, "auth-service").await;
    assert_eq!(
        cmd(&mut b, &["BLPOP", &format!("session:q:{id}"), "0.05"]).await,
        "*-1\r\n"
    );
    let k = format!("session:w:{id}");
    assert_eq!(cmd(&mut b, &["WATCH", &k]).await, "+OK\r\n");
    assert_eq!(cmd(&mut b, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut b, &["SET", &k, "x"]).await, "+QUEUED\r\n");
    assert_eq!(cmd(&mut b, &["EXEC"]).await, "*1\r\n+OK\r\n");

    // One of order-service's blocked clients is served and leaves: its place frees.
    let mut ops = login(addr, "ops").await;
    assert_eq!(
        cmd(&mut ops, &["RPUSH", &format!("saga:q:{id}:0"), "v"]).await,
        ":1\r\n"
    );
    let served = blocked.remove(0).read_reply().await;
    assert!(served.starts_with(b"*2"), "{}", show(&served));
    drop(served);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = cmd(&mut a, &["BLPOP", &format!("saga:q:{id}:a"), "0.05"]).await;
        if r == "*-1\r\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "place not given back: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(blocked);
}

/// With every connection of clients' own taken, a WATCH is refused naming WATCH and
/// the global limit, and leaves nothing watched: the same slot's commands keep working
/// (they failed until UNWATCH before).
#[tokio::test]
async fn a_refused_watch_leaves_nothing_watched() {
    let mut c = test_config(&shared_cluster_seeds());
    c.server.max_dedicated_connections = 1;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();
    let id = std::process::id();
    let mut blocked = RawConn::connect(addr).await;
    blocked
        .send(&encode_command(&["BLPOP", &format!("fair:q:{id}"), "0"]))
        .await;
    expect_blocked(&mut blocked).await;
    let mut a = RawConn::connect(addr).await;
    let k = format!("fair:w:{id}");
    let refusal = cmd(&mut a, &["WATCH", &k]).await;
    assert_eq!(
        refusal,
        "-ERR respgate: WATCH refused: every connection of clients' own is taken (server.max_dedicated_connections = 1, for all users together)\r\n"
    );
    for _ in 0..3 {
        assert_eq!(cmd(&mut a, &["SET", &k, "v"]).await, "+OK\r\n");
        assert_eq!(cmd(&mut a, &["GET", &k]).await, "$1\r\nv\r\n");
    }
    assert_eq!(cmd(&mut a, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut a, &["GET", &k]).await, "+QUEUED\r\n");
    assert_eq!(cmd(&mut a, &["EXEC"]).await, "*1\r\n$1\r\nv\r\n");
    drop(blocked);
}

/// Asserts that `c`'s blocking command is blocked (not refused: a refusal comes at
/// once) after a generous wait.
async fn expect_blocked(c: &mut RawConn) {
    let r = tokio::time::timeout(Duration::from_millis(500), c.read_reply()).await;
    if let Ok(r) = r {
        panic!("expected a blocked client, got {}", show(&r));
    }
}

/// `KEYS_PER_MASTER` keys `q<d>:{tag}:<n>` on each master, written by pipelines sent to
/// the masters directly.
const KEYS_PER_MASTER: usize = 70_000;

async fn load_keys(quiet: &QuietCluster) {
    for (m, master) in quiet.masters().into_iter().enumerate() {
        // A hash tag the master owns.
        let tag = (0u32..)
            .map(|n| format!("t{n}"))
            .find(|t| {
                quiet.with(|c| c.master_for_slot(respgate::cluster::key_slot(t.as_bytes())))
                    == master
            })
            .unwrap();
        let mut stream = tokio::net::TcpStream::connect(master).await.unwrap();
        const BATCH: usize = 10_000;
        for start in (0..KEYS_PER_MASTER).step_by(BATCH) {
            let mut out = Vec::new();
            for n in start..start + BATCH {
                let key = format!("q{}:{{{tag}}}:{m}:{n}", n % 10);
                out.extend_from_slice(&encode_command(&["SET", &key, "v"]));
            }
            stream.write_all(&out).await.unwrap();
            let want = BATCH * b"+OK\r\n".len();
            let mut got = 0;
            let mut buf = vec![0u8; 64 * 1024];
            while got < want {
                let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
                    .await
                    .expect("the node answers the load")
                    .unwrap();
                assert!(n > 0 && buf[..n].iter().all(|b| b"+OK\r\n".contains(b)));
                got += n;
            }
        }
    }
}

fn node(quiet: &QuietCluster, master: SocketAddr, args: &[&str]) -> Reply {
    quiet.command(master, args)
}

/// `cmdstat_<name>`'s calls in a node's INFO commandstats (0 when absent).
fn calls(quiet: &QuietCluster, master: SocketAddr, name: &str) -> u64 {
    let info = node(quiet, master, &["INFO", "commandstats"]);
    let text = String::from_utf8_lossy(info.as_bytes().unwrap()).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{name}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// The COUNT of every SCAN in a node's slow log.
fn scan_counts_logged(quiet: &QuietCluster, master: SocketAddr) -> Vec<u64> {
    let Reply::Array(entries) = node(quiet, master, &["SLOWLOG", "GET", "100000"]) else {
        panic!("SLOWLOG GET");
    };
    let mut counts = Vec::new();
    for e in entries {
        let Reply::Array(fields) = e else { continue };
        let Some(Reply::Array(args)) = fields.get(3) else {
            continue;
        };
        let words: Vec<String> = args
            .iter()
            .filter_map(|a| {
                a.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).to_lowercase())
            })
            .collect();
        if words.first().map(String::as_str) != Some("scan") {
            continue;
        }
        if let Some(i) = words.iter().position(|w| w == "count") {
            counts.push(words[i + 1].parse().unwrap());
        }
    }
    counts
}

/// Over 210,000 keys: KEYS with a literal prefix runs on no node as KEYS (served by
/// SCAN), no SCAN reaches a node with a COUNT above `guards.max_scan_count`, and
/// another tenant's SETs meanwhile are all served. A user past
/// `guards.max_keyspace_walks_per_user` is refused, naming it.
#[tokio::test]
async fn keyspace_walks_are_served_by_scan_capped_and_bounded_per_user() {
    let quiet = quiet_cluster().await;
    quiet.flush();
    load_keys(&quiet).await;
    let masters = quiet.masters();
    for &m in &masters {
        node(&quiet, m, &["CONFIG", "RESETSTAT"]);
        node(
            &quiet,
            m,
            &["CONFIG", "SET", "slowlog-log-slower-than", "0"],
        );
        node(&quiet, m, &["CONFIG", "SET", "slowlog-max-len", "100000"]);
        node(&quiet, m, &["SLOWLOG", "RESET"]);
    }
    let mut c = shop::config(&quiet.seeds());
    c.guards.max_keyspace_walks_per_user = 2;
    let proxy = start_proxy(c).await;
    let addr = proxy.local_addr();

    // ops (every key) walks: KEYS q0* and SCAN COUNT 100000000 from two connections,
    // while auth-service writes.
    let walker = |args: Vec<&'static str>| {
        tokio::spawn(async move {
            let mut c = login(addr, "ops").await;
            loop {
                let r = cmd(&mut c, &args).await;
                // The probes below may hold a place for a moment: a refused walk of
                // this test's walkers tries again.
                if !r.contains("keyspace walks") {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let keys = walker(vec!["KEYS", "q0*"]);
    let scan = walker(vec!["SCAN", "0", "MATCH", "*", "COUNT", "100000000"]);
    let mut writer = login(addr, "auth-service").await;
    for i in 0..200 {
        let r = cmd(&mut writer, &["SET", &format!("session:fair:{i}"), "v"]).await;
        assert_eq!(r, "+OK\r\n", "another tenant's SET {i}");
    }
    let keys = keys.await.unwrap();
    let n: usize = keys[1..keys.find('\r').unwrap()].parse().unwrap();
    assert_eq!(n, KEYS_PER_MASTER * masters.len() / 10, "KEYS q0* by SCAN");
    let scan = scan.await.unwrap();
    assert!(
        scan.starts_with("*2\r\n"),
        "{}",
        &scan[..scan.len().min(200)]
    );

    for &m in &masters {
        assert_eq!(calls(&quiet, m, "keys"), 0, "{m} ran KEYS");
        assert!(calls(&quiet, m, "scan") > 0, "{m} ran no SCAN");
        let counts = scan_counts_logged(&quiet, m);
        assert!(
            counts.iter().all(|&n| n <= 1000),
            "{m}: SCAN COUNTs {counts:?}"
        );
    }

    // Walks in flight per user: one master paused, two KEYS walks of ops wait on it;
    // a third walk of ops (KEYS or SCAN) is refused, another user's is not.
    // Not the master SCAN 0 goes to (slot 0's), so the probes below never wait on it.
    let first_shard = quiet.with(|c| c.master_for_slot(0));
    let paused = *masters.iter().find(|m| **m != first_shard).unwrap();
    // (A paused node runs no command, CLIENT UNPAUSE included: the pause just ends,
    // well within respgate's request timeout.)
    let r = node(&quiet, paused, &["CLIENT", "PAUSE", "2500", "ALL"]);
    assert_eq!(r, Reply::Simple("OK".into()));
    let first = walker(vec!["KEYS", "q1*"]);
    let second = walker(vec!["KEYS", "q2*"]);
    let mut third = login(addr, "ops").await;
    let limit = "keyspace walks (KEYS, SCAN, RANDOMKEY searches) in flight, its limit (guards.max_keyspace_walks_per_user = 2); retry once one is answered\r\n";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = cmd(&mut third, &["SCAN", "0", "MATCH", "q3*", "COUNT", "10"]).await;
        if r.starts_with('-') {
            assert_eq!(
                r,
                format!("-ERR respgate: SCAN refused: user 'ops' already has 2 {limit}")
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never refused: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = cmd(&mut third, &["KEYS", "q3*"]).await;
    assert_eq!(
        r,
        format!("-ERR respgate: KEYS refused: user 'ops' already has 2 {limit}")
    );
    let mut other = login(addr, "auth-service").await;
    let r = cmd(
        &mut other,
        &["SCAN", "0", "MATCH", "session:*", "COUNT", "10"],
    )
    .await;
    assert!(r.starts_with("*2\r\n"), "{r}");
    for walk in [first, second] {
        assert!(walk.await.unwrap().starts_with('*'));
    }
    // Both done: ops walks again.
    assert!(
        cmd(&mut third, &["SCAN", "0", "MATCH", "q3*", "COUNT", "10"])
            .await
            .starts_with("*2\r\n")
    );

    for &m in &masters {
        node(
            &quiet,
            m,
            &["CONFIG", "SET", "slowlog-log-slower-than", "10000"],
        );
        node(&quiet, m, &["CONFIG", "SET", "slowlog-max-len", "128"]);
        node(&quiet, m, &["SLOWLOG", "RESET"]);
    }
    quiet.flush();
}

/// HSCAN / SSCAN / ZSCAN: a COUNT above `guards.max_scan_count` (1000) is lowered as
/// SCAN's is, so one step over a 5,000-field hash (a real hash table, not a listpack)
/// returns part of it and a cursor to go on with, where COUNT 100000000 reached the node
/// would have walked it all at once.
#[tokio::test]
async fn key_scans_count_is_capped_like_scan() {
    let proxy = start_proxy(test_config(&shared_cluster_seeds())).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let key = "fairness:hscan:{h}";
    let set = "fairness:sscan:{h}";
    let mut hset: Vec<String> = vec!["HSET".into(), key.into()];
    let mut sadd: Vec<String> = vec!["SADD".into(), set.into()];
    for i in 0..5000 {
        hset.push(format!("f{i}"));
        hset.push("v".into());
        sadd.push(format!("m{i}"));
    }
    c.command(&["DEL", key, set]).await;
    assert_eq!(c.command(&hset).await, b":5000\r\n");
    assert_eq!(c.command(&sadd).await, b":5000\r\n");
    for (cmd, k) in [("HSCAN", key), ("SSCAN", set)] {
        let reply = c.command(&[cmd, k, "0", "COUNT", "100000000"]).await;
        // *2 $<n> <cursor> *<items>
        let text = String::from_utf8_lossy(&reply).into_owned();
        let mut lines = text.split("\r\n");
        assert_eq!(lines.next(), Some("*2"), "{cmd}: {}", show(&reply[..64]));
        lines.next();
        let cursor = lines.next().unwrap();
        let items: usize = lines.next().unwrap()[1..].parse().unwrap();
        assert_ne!(cursor, "0", "{cmd} walked the whole key in one step");
        assert!(items < 5000 * 2, "{cmd}: {items} items in one step");
    }
    // Below the cap, and options the cap does not touch, reach the node as sent.
    let reply = c
        .command(&["HSCAN", key, "0", "COUNT", "10", "MATCH", "f1*"])
        .await;
    assert!(reply.starts_with(b"*2\r\n"), "{}", show(&reply));
    let reply = c.command(&["HSCAN", key, "0", "COUNT", "0"]).await;
    assert_eq!(show(&reply), "-ERR syntax error\\r\\n");
    c.command(&["DEL", key, set]).await;
    proxy.shutdown().await;
}
