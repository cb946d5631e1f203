//! Issue 15, items 4 and 8: where tools and test suites read respgate as one Redis.
//! INFO's counters summed over the masters (`blocked_clients` while a client blocks
//! through respgate, `expired_keys`), `redis_mode:standalone`, the small replies a
//! standalone Redis 7.0 gives (CLIENT KILL ID 0, READONLY, READWRITE, CLIENT LIST/INFO
//! fields), RANDOMKEY drawing from every master, LATENCY HISTOGRAM over every master.
//!
//! Differential streams compare with a standalone redis-server: exact bytes for the
//! deterministic replies, the named INFO fields' values (and CLIENT INFO's field names,
//! in order) where the rest of the text differs by nature (ports, memory, timings).

mod support;

use std::time::{Duration, Instant};
use support::standalone::Standalone;
use support::{encode_command, same, show, RawConn};

/// The value of `name` in an INFO (or CLIENT INFO) text reply.
fn field(reply: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(reply);
    text.split(['\r', '\n', ' '])
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
}

/// The field names of a CLIENT INFO line, in order.
fn client_fields(reply: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(reply);
    let line = text.lines().nth(1).unwrap_or_default().to_string();
    line.split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

/// Polls `INFO <section>` on `conn` until `blocked_clients` is `want` (bounded).
async fn wait_blocked(conn: &mut RawConn, section: &str, want: &str, who: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut args = vec!["INFO"];
        if !section.is_empty() {
            args.push(section);
        }
        let got = field(&conn.command(&args).await, "blocked_clients");
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{who}: INFO {section} blocked_clients stayed {got:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// INFO blocked_clients during BLPOPs: one more per client waiting, 0 once they are
/// served, through respgate as on a standalone Redis. One key per master, so a count
/// taken from one master (old respgate) misses the others' blocked clients. (The only
/// blocking test in this binary: nothing else blocks on the shared cluster meanwhile.)
#[tokio::test]
async fn info_blocked_clients_during_a_blpop_matches_a_standalone_redis() {
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    let prefix = format!("dinfo:blpop:{}:", std::process::id());
    let keys: Vec<String> =
        support::with_shared_cluster(|cl| support::keys_on_every_master(cl, &prefix, 1))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
    for (addr, who) in [(proxy.local_addr(), "respgate"), (standalone.addr, "redis")] {
        let mut other = RawConn::connect(addr).await;
        wait_blocked(&mut other, "", "0", who).await;
        let mut blocked = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let mut c = RawConn::connect(addr).await;
            c.send(&encode_command(&["BLPOP", key.as_str(), "0"])).await;
            blocked.push(c);
            let want = (i + 1).to_string();
            wait_blocked(&mut other, "", &want, who).await;
            wait_blocked(&mut other, "clients", &want, who).await;
            wait_blocked(&mut other, "all", &want, who).await;
        }
        for (key, c) in keys.iter().zip(&mut blocked) {
            assert_eq!(
                show(&other.command(&["LPUSH", key.as_str(), "v"]).await),
                ":1\\r\\n"
            );
            let served = c.read_reply().await;
            assert!(
                show(&served).contains("$1\\r\\nv\\r\\n"),
                "{who}: {}",
                show(&served)
            );
        }
        wait_blocked(&mut other, "clients", "0", who).await;
    }
    proxy.shutdown().await;
}

/// INFO says what a standalone server says about its mode.
#[tokio::test]
async fn info_mode_matches_a_standalone_redis() {
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    for section in ["server", "cluster", "default"] {
        let (a, b) = (
            via.command(&["INFO", section]).await,
            direct.command(&["INFO", section]).await,
        );
        for name in ["redis_mode", "cluster_enabled"] {
            if field(&b, name).is_some() {
                assert_eq!(field(&a, name), field(&b, name), "INFO {section} {name}");
            }
        }
    }
    assert_eq!(
        field(&via.command(&["INFO"]).await, "redis_mode").as_deref(),
        Some("standalone")
    );
    // Sections that do not exist: an empty string, byte for byte.
    for args in [
        &["INFO", "nosuch"][..],
        &["INFO", "blocked"],
        &["INFO", "nosuch", "other"],
    ] {
        support::same(&mut via, &mut direct, args, "").await;
    }
    proxy.shutdown().await;
}

/// expired_keys counts the keys expired on every master, not only the first one's.
#[tokio::test]
async fn info_expired_keys_sums_the_masters() {
    let proxy = support::proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let prefix = format!("dinfo:exp:{}:", std::process::id());
    let keys = support::with_shared_cluster(|cl| support::keys_on_every_master(cl, &prefix, 3));
    let expired = |r: &[u8]| -> i64 { field(r, "expired_keys").unwrap().trim().parse().unwrap() };
    let before = expired(&c.command(&["INFO", "stats"]).await);
    for (k, _) in &keys {
        assert_eq!(
            show(&c.command(&["SET", k.as_str(), "v", "PX", "1"]).await),
            "+OK\\r\\n"
        );
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    for (k, _) in &keys {
        // Touching an expired key expires it at once (counted in expired_keys).
        assert_eq!(show(&c.command(&["GET", k.as_str()]).await), "$-1\\r\\n");
    }
    let after = expired(&c.command(&["INFO", "stats"]).await);
    assert!(
        after - before >= keys.len() as i64,
        "expired_keys went {before} -> {after}, {} keys expired over every master",
        keys.len()
    );
    proxy.shutdown().await;
}

/// The small replies: exactly a standalone Redis 7.0's bytes.
#[tokio::test]
async fn small_replies_match_a_standalone_redis() {
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    let script: &[&[&str]] = &[
        &["CLIENT", "KILL", "ID", "0"],
        &["CLIENT", "KILL", "ID", "-1"],
        &["CLIENT", "KILL", "ID", "abc"],
        &["CLIENT", "KILL", "ID", "987654321"],
        &["CLIENT", "KILL", "ADDR", "1.2.3.4:5"],
        &["CLIENT", "KILL", "LADDR", "1.2.3.4:5"],
        &["CLIENT", "KILL", "1.2.3.4:5"],
        &["READONLY"],
        &["READWRITE"],
        &["readonly"],
        &["CLUSTER", "INFO"],
        &["LATENCY", "HISTOGRAM", "nosuchcommand"],
        &["PING"],
    ];
    for args in script {
        same(&mut via, &mut direct, args, "").await;
    }
    proxy.shutdown().await;
}

/// CLIENT INFO and CLIENT LIST lines carry Redis 7.0's fields, in its order.
#[tokio::test]
async fn client_info_fields_match_a_standalone_redis() {
    let standalone = Standalone::start();
    let proxy = support::proxy_for_shared().await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    for sub in ["INFO", "LIST"] {
        let ours = client_fields(&via.command(&["CLIENT", sub]).await);
        let theirs = client_fields(&direct.command(&["CLIENT", sub]).await);
        assert!(theirs.contains(&"tot-mem".to_string()), "{theirs:?}");
        assert_eq!(ours, theirs, "CLIENT {sub} fields");
    }
    proxy.shutdown().await;
}

/// RANDOMKEY draws from every master: 200 calls over 10 keys on 3 masters see them all
/// (a key missing from 200 fair draws: probability 0.9^200, about 1e-9).
#[tokio::test]
async fn randomkey_returns_keys_of_every_master() {
    let quiet = support::quiet_cluster().await;
    quiet.flush();
    let proxy = quiet.proxy().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let keys: Vec<String> = quiet
        .with(|cl| support::keys_on_every_master(cl, "dinfo:rk:", 4))
        .into_iter()
        .take(10)
        .map(|(k, _)| k)
        .collect();
    for k in &keys {
        c.command(&["SET", k.as_str(), "v"]).await;
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let r = c.command(&["RANDOMKEY"]).await;
        let text = String::from_utf8_lossy(&r).into_owned();
        let key = text.lines().nth(1).unwrap_or_default().to_string();
        assert!(keys.contains(&key), "RANDOMKEY gave {}", show(&r));
        seen.insert(key);
    }
    let missing: Vec<&String> = keys.iter().filter(|k| !seen.contains(*k)).collect();
    assert!(missing.is_empty(), "never drawn: {missing:?}");
    quiet.flush();
    assert_eq!(show(&c.command(&["RANDOMKEY"]).await), "$-1\\r\\n");
    proxy.shutdown().await;
}

/// LATENCY HISTOGRAM counts the calls every master served, in Redis's reply shape.
#[tokio::test]
async fn latency_histogram_sums_the_masters() {
    let quiet = support::quiet_cluster().await;
    let standalone = Standalone::start();
    let proxy = quiet.proxy().await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    let keys = quiet.with(|cl| support::keys_on_every_master(cl, "dinfo:lh:", 3));
    for conn in [&mut via, &mut direct] {
        assert_eq!(
            show(&conn.command(&["CONFIG", "RESETSTAT"]).await),
            "+OK\\r\\n"
        );
        for (k, _) in &keys {
            conn.command(&["SET", k.as_str(), "v"]).await;
        }
    }
    let (ours, theirs) = (
        via.command(&["LATENCY", "HISTOGRAM", "set"]).await,
        direct.command(&["LATENCY", "HISTOGRAM", "set"]).await,
    );
    // Same shape and calls; the buckets are timings (their cumulative count ends at calls).
    let head = |r: &[u8]| {
        let t = String::from_utf8_lossy(r).into_owned();
        t.split("histogram_usec").next().unwrap().to_string()
    };
    assert_eq!(head(&ours), head(&theirs), "{}", show(&ours));
    assert!(
        head(&ours).contains(&format!(":{}\r\n", keys.len())),
        "{}",
        show(&ours)
    );
    let last_count = |r: &[u8]| {
        let t = String::from_utf8_lossy(r).into_owned();
        t.trim_end().rsplit('\n').next().unwrap().trim().to_string()
    };
    assert_eq!(
        last_count(&ours),
        format!(":{}", keys.len()),
        "{}",
        show(&ours)
    );
    proxy.shutdown().await;
}
