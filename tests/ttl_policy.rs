//! The TTL policy (`[[ttl]]`) against a real cluster: every way a covered key can be
//! created gets it an expiry (destinations of RENAME, SMOVE, *STORE ..., writes queued
//! in MULTI, MSET split over slots, scripts and writes straight to a node through the
//! sweeper), and `max_seconds` refuses or caps expiries that are too long. Each test
//! has its own pattern; replies are compared byte for byte.

mod support;

use respgate::config::{TtlOverMax, TtlRuleConfig};
use std::time::{Duration, Instant};
use support::*;

async fn cmd(c: &mut RawConn, args: &[&str]) -> String {
    String::from_utf8_lossy(&c.command(args).await).into_owned()
}

fn ttl_of(key: &str) -> i64 {
    on_owner(key, &["TTL", key]).as_int().unwrap()
}

/// A rule for `pattern` with `seconds` and no sweeper (so only the request path adds
/// expiries).
fn rule(pattern: &str, seconds: u64) -> TtlRuleConfig {
    TtlRuleConfig {
        sweep_interval_secs: 0,
        ..TtlRuleConfig::new(pattern, seconds)
    }
}

async fn proxy_with(rules: Vec<TtlRuleConfig>) -> respgate::server::Proxy {
    let mut c = test_config(&shared_cluster_seeds());
    c.ttl = rules;
    start_proxy(c).await
}

fn assert_default_ttl(key: &str) {
    let t = ttl_of(key);
    assert!((990..=1000).contains(&t), "{key}: TTL {t}, want ~1000");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn destinations_of_rename_smove_and_store_commands_get_the_expiry() {
    let proxy = proxy_with(vec![rule("tpd:*", 1000)]).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    // Sources are outside the pattern, destinations inside; one hash tag: one slot.
    let setup: &[&[&str]] = &[
        &["SET", "{tpd}s1", "a"],
        &["SET", "{tpd}s2", "b"],
        &["SADD", "{tpd}set1", "x", "y"],
        &["SADD", "{tpd}set2", "y", "z"],
        &["ZADD", "{tpd}z1", "1", "a", "2", "b"],
        &["ZADD", "{tpd}z2", "1", "b"],
        &["RPUSH", "{tpd}l1", "a", "b", "c", "d"],
        &["RPUSH", "{tpd}nums", "3", "1", "2"],
        &["GEOADD", "{tpd}geo", "13.36", "38.11", "palermo"],
        &["PFADD", "{tpd}hll", "a", "b"],
        &["SET", "{tpd}bits", "ab"],
    ];
    for s in setup {
        assert!(!cmd(&mut c, s).await.starts_with('-'), "{s:?}");
    }
    let dump = c.command(&["DUMP", "{tpd}s2"]).await;
    let payload = &dump[dump.iter().position(|&b| b == b'\n').unwrap() + 1..dump.len() - 2];

    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["RENAME", "{tpd}s1", "tpd:{tpd}rename"],
            "+OK\r\n",
            "tpd:{tpd}rename",
        ),
        (&["SET", "{tpd}s3", "c"], "+OK\r\n", ""),
        (
            &["RENAMENX", "{tpd}s3", "tpd:{tpd}renamenx"],
            ":1\r\n",
            "tpd:{tpd}renamenx",
        ),
        (
            &["SMOVE", "{tpd}set1", "tpd:{tpd}smove", "x"],
            ":1\r\n",
            "tpd:{tpd}smove",
        ),
        (
            &["COPY", "{tpd}s2", "tpd:{tpd}copy"],
            ":1\r\n",
            "tpd:{tpd}copy",
        ),
        (
            &["LMOVE", "{tpd}l1", "tpd:{tpd}lmove", "LEFT", "RIGHT"],
            "$1\r\na\r\n",
            "tpd:{tpd}lmove",
        ),
        (
            &["RPOPLPUSH", "{tpd}l1", "tpd:{tpd}rpoplpush"],
            "$1\r\nd\r\n",
            "tpd:{tpd}rpoplpush",
        ),
        (
            &["BLMOVE", "{tpd}l1", "tpd:{tpd}blmove", "LEFT", "LEFT", "1"],
            "$1\r\nb\r\n",
            "tpd:{tpd}blmove",
        ),
        (
            &["SUNIONSTORE", "tpd:{tpd}sunion", "{tpd}set1", "{tpd}set2"],
            ":2\r\n",
            "tpd:{tpd}sunion",
        ),
        (
            &["SINTERSTORE", "tpd:{tpd}sinter", "{tpd}set1", "{tpd}set2"],
            ":1\r\n",
            "tpd:{tpd}sinter",
        ),
        (
            &["SDIFFSTORE", "tpd:{tpd}sdiff", "{tpd}set2", "{tpd}set1"],
            ":1\r\n",
            "tpd:{tpd}sdiff",
        ),
        (
            &["ZUNIONSTORE", "tpd:{tpd}zunion", "2", "{tpd}z1", "{tpd}z2"],
            ":2\r\n",
            "tpd:{tpd}zunion",
        ),
        (
            &["ZINTERSTORE", "tpd:{tpd}zinter", "2", "{tpd}z1", "{tpd}z2"],
            ":1\r\n",
            "tpd:{tpd}zinter",
        ),
        (
            &["ZDIFFSTORE", "tpd:{tpd}zdiff", "2", "{tpd}z1", "{tpd}z2"],
            ":1\r\n",
            "tpd:{tpd}zdiff",
        ),
        (
            &["ZRANGESTORE", "tpd:{tpd}zrange", "{tpd}z1", "0", "-1"],
            ":2\r\n",
            "tpd:{tpd}zrange",
        ),
        (
            &[
                "GEOSEARCHSTORE",
                "tpd:{tpd}geosearch",
                "{tpd}geo",
                "FROMLONLAT",
                "13.36",
                "38.11",
                "BYRADIUS",
                "10",
                "km",
            ],
            ":1\r\n",
            "tpd:{tpd}geosearch",
        ),
        (
            &["SORT", "{tpd}nums", "STORE", "tpd:{tpd}sort"],
            ":3\r\n",
            "tpd:{tpd}sort",
        ),
        (
            &["BITOP", "NOT", "tpd:{tpd}bitop", "{tpd}bits"],
            ":2\r\n",
            "tpd:{tpd}bitop",
        ),
        (
            &["PFMERGE", "tpd:{tpd}pfmerge", "{tpd}hll"],
            "+OK\r\n",
            "tpd:{tpd}pfmerge",
        ),
    ];
    for (args, want, dest) in cases {
        assert_eq!(cmd(&mut c, args).await, *want, "{args:?}");
        if !dest.is_empty() {
            assert_default_ttl(dest);
        }
    }
    // RESTORE with TTL 0 creates the key without expiry.
    let restore = c
        .command(&[&b"RESTORE"[..], b"tpd:{tpd}restore", b"0", payload])
        .await;
    assert_eq!(restore, b"+OK\r\n");
    assert_default_ttl("tpd:{tpd}restore");
    // Sources outside the pattern stay without expiry; a key with a TTL keeps it.
    assert_eq!(ttl_of("{tpd}set2"), -1);
    assert_eq!(
        cmd(&mut c, &["SET", "{tpd}s4", "v", "EX", "50"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        cmd(&mut c, &["RENAME", "{tpd}s4", "tpd:{tpd}kept"]).await,
        "+OK\r\n"
    );
    assert!((1..=50).contains(&ttl_of("tpd:{tpd}kept")));
}

#[tokio::test]
async fn writes_queued_in_multi_get_the_expiry_and_exec_replies_as_redis() {
    let proxy = proxy_with(vec![rule("tpm:*", 1000)]).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(cmd(&mut c, &["MULTI"]).await, "+OK\r\n");
    for (args, queued) in [
        (&["SET", "tpm:{m}a", "v"][..], "+QUEUED\r\n"),
        (&["HSET", "tpm:{m}b", "f", "v"], "+QUEUED\r\n"),
        (&["INCR", "tpm:{m}c"], "+QUEUED\r\n"),
        (&["SET", "tpm:{m}a", "w"], "+QUEUED\r\n"),
        (&["RENAME", "{m}nosuch", "tpm:{m}d"], "+QUEUED\r\n"),
        (&["GET", "tpm:{m}a"], "+QUEUED\r\n"),
        (&["SET", "{m}other", "v"], "+QUEUED\r\n"),
    ] {
        assert_eq!(cmd(&mut c, args).await, queued, "{args:?}");
    }
    // Exactly Redis's reply for the client's seven commands (the runtime error of
    // RENAME included), nothing of the EXPIREs.
    assert_eq!(
        cmd(&mut c, &["EXEC"]).await,
        "*7\r\n+OK\r\n:1\r\n:1\r\n+OK\r\n-ERR no such key\r\n$1\r\nw\r\n+OK\r\n"
    );
    for k in ["tpm:{m}a", "tpm:{m}b", "tpm:{m}c"] {
        assert_default_ttl(k);
    }
    assert_eq!(ttl_of("{m}other"), -1);
    // The connection goes on in order.
    assert_eq!(cmd(&mut c, &["GET", "tpm:{m}c"]).await, "$1\r\n1\r\n");

    // RESP3: the same, in RESP3.
    let mut c3 = RawConn::connect(proxy.local_addr()).await;
    assert!(cmd(&mut c3, &["HELLO", "3"]).await.starts_with('%'));
    assert_eq!(cmd(&mut c3, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(
        cmd(&mut c3, &["HSET", "tpm:{m}r3", "f", "v"]).await,
        "+QUEUED\r\n"
    );
    assert_eq!(cmd(&mut c3, &["HGETALL", "tpm:{m}r3"]).await, "+QUEUED\r\n");
    assert_eq!(
        cmd(&mut c3, &["EXEC"]).await,
        "*2\r\n:1\r\n%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_default_ttl("tpm:{m}r3");

    // DISCARD: nothing runs, nothing is added.
    on_owner("tpm:{m}e", &["SET", "tpm:{m}e", "direct"]);
    assert_eq!(cmd(&mut c, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut c, &["SET", "tpm:{m}e", "v"]).await, "+QUEUED\r\n");
    assert_eq!(cmd(&mut c, &["DISCARD"]).await, "+OK\r\n");
    assert_eq!(ttl_of("tpm:{m}e"), -1);

    // Aborted by WATCH: EXEC answers null and no EXPIRE runs.
    assert_eq!(cmd(&mut c, &["WATCH", "tpm:{m}e"]).await, "+OK\r\n");
    on_owner("tpm:{m}e", &["SET", "tpm:{m}e", "changed"]);
    assert_eq!(cmd(&mut c, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut c, &["SET", "tpm:{m}e", "v"]).await, "+QUEUED\r\n");
    assert_eq!(cmd(&mut c, &["EXEC"]).await, "*-1\r\n");
    assert_eq!(ttl_of("tpm:{m}e"), -1);
    assert_eq!(
        on_owner("tpm:{m}e", &["GET", "tpm:{m}e"]).as_bytes(),
        Some(&b"changed"[..])
    );

    // Watched and not touched: runs on the watching connection, with its EXPIREs.
    assert_eq!(cmd(&mut c, &["WATCH", "tpm:{m}w"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut c, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut c, &["SADD", "tpm:{m}w", "a"]).await, "+QUEUED\r\n");
    assert_eq!(cmd(&mut c, &["EXEC"]).await, "*1\r\n:1\r\n");
    assert_default_ttl("tpm:{m}w");

    // EXECABORT: nothing runs.
    assert_eq!(cmd(&mut c, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut c, &["SET", "tpm:{m}x", "v"]).await, "+QUEUED\r\n");
    assert!(cmd(&mut c, &["SET", "tpm:{m}x"])
        .await
        .starts_with("-ERR wrong number"));
    assert_eq!(
        cmd(&mut c, &["EXEC"]).await,
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(ttl_of("tpm:{m}x"), -2);

    // PERSIST is still refused inside MULTI, and aborts it.
    assert_eq!(cmd(&mut c, &["MULTI"]).await, "+OK\r\n");
    assert!(cmd(&mut c, &["PERSIST", "tpm:{m}a"])
        .await
        .contains("PERSIST refused by the TTL policy"));
    assert!(cmd(&mut c, &["EXEC"]).await.starts_with("-EXECABORT"));
    assert_default_ttl("tpm:{m}a");
}

#[tokio::test]
async fn mset_split_over_slots_gets_the_expiry_in_every_part() {
    let proxy = proxy_with(vec![rule("tps:*", 1000)]).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let keys: Vec<String> = (0..12).map(|i| format!("tps:k{i}")).collect();
    let slots: std::collections::HashSet<u16> = keys
        .iter()
        .map(|k| respgate::cluster::key_slot(k.as_bytes()))
        .collect();
    assert!(slots.len() > 3, "the keys span several slots");
    let mut args: Vec<&str> = vec!["MSET"];
    for k in &keys {
        args.extend([k.as_str(), "v"]);
    }
    args.extend(["tpsother:k", "v"]);
    assert_eq!(cmd(&mut c, &args).await, "+OK\r\n");
    for k in &keys {
        assert_default_ttl(k);
    }
    assert_eq!(ttl_of("tpsother:k"), -1);
    // Pipelined after it: order and replies kept.
    let mut get = vec!["MGET"];
    get.extend(keys.iter().take(2).map(String::as_str));
    assert_eq!(cmd(&mut c, &get).await, "*2\r\n$1\r\nv\r\n$1\r\nv\r\n");
}

#[tokio::test]
async fn the_sweeper_gives_keys_written_behind_respgates_back_an_expiry() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    static SNAPSHOTTER: std::sync::OnceLock<Snapshotter> = std::sync::OnceLock::new();
    let snapshotter = SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let s = recorder.snapshotter();
        recorder
            .install()
            .expect("first recorder in this test binary");
        s
    });
    // Written straight to a node before respgate starts: the first pass finds it.
    on_owner("tpw:before", &["SET", "tpw:before", "v"]);
    let proxy = proxy_with(vec![TtlRuleConfig {
        sweep_interval_secs: 1,
        sweep_keys_per_sec: 10_000,
        ..TtlRuleConfig::new("tpw:*", 1000)
    }])
    .await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    // Written by a script (respgate sees EVAL, not the SET inside) and straight to a
    // node after respgate started.
    assert_eq!(
        cmd(
            &mut c,
            &[
                "EVAL",
                "redis.call('SET', KEYS[1], 'x') return 1",
                "1",
                "tpw:script"
            ]
        )
        .await,
        ":1\r\n"
    );
    on_owner("tpw:direct", &["HSET", "tpw:direct", "f", "v"]);
    on_owner("tpw:short", &["SET", "tpw:short", "v", "EX", "60"]);
    on_owner("tpwother:k", &["SET", "tpwother:k", "v"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    for k in ["tpw:before", "tpw:script", "tpw:direct"] {
        loop {
            let t = ttl_of(k);
            if t > 0 {
                assert!((990..=1000).contains(&t), "{k}: TTL {t}");
                break;
            }
            assert!(Instant::now() < deadline, "{k} still has TTL {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A key with its own expiry keeps it; other patterns are left alone.
    assert!((1..=60).contains(&ttl_of("tpw:short")));
    assert_eq!(ttl_of("tpwother:k"), -1);
    let expired: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, _, _, _)| {
            let k = key.key();
            k.name() == "respgate_ttl_sweeper_expired_total"
                && k.labels()
                    .any(|l| l.key() == "pattern" && l.value() == "tpw:*")
        })
        .map(|(_, _, _, v)| match v {
            DebugValue::Counter(n) => n,
            other => panic!("{other:?}"),
        })
        .sum();
    assert!(
        expired >= 3,
        "respgate_ttl_sweeper_expired_total = {expired}"
    );
}

#[tokio::test]
async fn expiries_over_max_seconds_are_refused() {
    let proxy = proxy_with(vec![TtlRuleConfig {
        max_seconds: Some(1000),
        ..rule("tpx:*", 100)
    }])
    .await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(cmd(&mut c, &["SET", "tpx:k", "v"]).await, "+OK\r\n");
    let now = unix_now();
    let (at, pat) = ((now + 5000).to_string(), ((now + 5000) * 1000).to_string());
    let refused = |command: &str, value: &str| {
        format!(
            "-ERR respgate: {command} {value} on 'tpx:k' is over the TTL policy's max_seconds (1000) for keys matching 'tpx:*'\r\n"
        )
    };
    for (args, command, value) in [
        (
            &["EXPIRE", "tpx:k", "99999999999"][..],
            "EXPIRE",
            "99999999999",
        ),
        (&["PEXPIRE", "tpx:k", "1000001"], "PEXPIRE", "1000001"),
        (&["EXPIREAT", "tpx:k", &at], "EXPIREAT", &at),
        (&["PEXPIREAT", "tpx:k", &pat, "GT"], "PEXPIREAT", &pat),
        (&["SET", "tpx:k", "v", "EX", "1001"], "SET", "1001"),
        (
            &["SET", "tpx:k", "v", "GET", "PX", "1000001"],
            "SET",
            "1000001",
        ),
        (&["SET", "tpx:k", "v", "EXAT", &at], "SET", &at),
        (&["SETEX", "tpx:k", "1001", "v"], "SETEX", "1001"),
        (&["PSETEX", "tpx:k", "1000001", "v"], "PSETEX", "1000001"),
        (&["GETEX", "tpx:k", "EX", "1001"], "GETEX", "1001"),
        (&["GETEX", "tpx:k", "PXAT", &pat], "GETEX", &pat),
    ] {
        assert_eq!(cmd(&mut c, args).await, refused(command, value), "{args:?}");
    }
    // Nothing of it ran: still the default expiry.
    let t = ttl_of("tpx:k");
    assert!((90..=100).contains(&t), "TTL {t}");
    // Within the maximum, and on other keys, accepted as usual.
    assert_eq!(cmd(&mut c, &["EXPIRE", "tpx:k", "1000"]).await, ":1\r\n");
    assert_eq!(
        cmd(&mut c, &["SET", "tpx:k", "v", "PX", "1000000"]).await,
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut c, &["SET", "tpxother:k", "v"]).await, "+OK\r\n");
    assert_eq!(
        cmd(&mut c, &["EXPIRE", "tpxother:k", "99999999999"]).await,
        ":1\r\n"
    );
    // Redis's own errors still come from Redis.
    assert_eq!(
        cmd(&mut c, &["EXPIRE", "tpx:k", "soon"]).await,
        "-ERR value is not an integer or out of range\r\n"
    );
    // Inside MULTI: refused, and the transaction is aborted.
    assert_eq!(cmd(&mut c, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(
        cmd(&mut c, &["EXPIRE", "tpx:k", "5000"]).await,
        refused("EXPIRE", "5000")
    );
    assert!(cmd(&mut c, &["EXEC"]).await.starts_with("-EXECABORT"));
    // PERSIST stays refused.
    assert!(cmd(&mut c, &["PERSIST", "tpx:k"])
        .await
        .contains("PERSIST refused by the TTL policy"));
}

#[tokio::test]
async fn expiries_over_max_seconds_are_capped() {
    let proxy = proxy_with(vec![TtlRuleConfig {
        max_seconds: Some(1000),
        over_max: Some(TtlOverMax::Cap),
        ..rule("tpc:*", 100)
    }])
    .await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let now = unix_now();
    let (at, pat) = (
        (now + 50_000).to_string(),
        ((now + 50_000) * 1000).to_string(),
    );
    let capped = |k: &str| {
        let t = ttl_of(k);
        assert!(
            (990..=1000).contains(&t),
            "{k}: TTL {t}, want capped to 1000"
        );
    };
    assert_eq!(cmd(&mut c, &["SET", "tpc:a", "v"]).await, "+OK\r\n");
    for args in [
        &["EXPIRE", "tpc:a", "99999999999"][..],
        &["PEXPIRE", "tpc:a", "99999999999"],
        &["EXPIREAT", "tpc:a", &at],
        &["PEXPIREAT", "tpc:a", &pat],
    ] {
        assert_eq!(cmd(&mut c, args).await, ":1\r\n", "{args:?}");
        capped("tpc:a");
        assert_eq!(cmd(&mut c, &["EXPIRE", "tpc:a", "10"]).await, ":1\r\n");
    }
    for (args, want) in [
        (&["SET", "tpc:b", "v", "EX", "5000"][..], "+OK\r\n"),
        (&["SET", "tpc:b", "w", "GET", "PXAT", &pat], "$1\r\nv\r\n"),
        (&["SETEX", "tpc:b", "5000", "v"], "+OK\r\n"),
        (&["PSETEX", "tpc:b", "5000000", "v"], "+OK\r\n"),
        (&["GETEX", "tpc:b", "EXAT", &at], "$1\r\nv\r\n"),
    ] {
        assert_eq!(cmd(&mut c, args).await, want, "{args:?}");
        capped("tpc:b");
        assert_eq!(cmd(&mut c, &["EXPIRE", "tpc:b", "10"]).await, ":1\r\n");
    }
    // Capped inside MULTI too; EXEC's reply is Redis's.
    assert_eq!(cmd(&mut c, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(
        cmd(&mut c, &["SET", "tpc:{t}m", "v", "EX", "9999"]).await,
        "+QUEUED\r\n"
    );
    assert_eq!(cmd(&mut c, &["TTL", "tpc:{t}m"]).await, "+QUEUED\r\n");
    assert_eq!(cmd(&mut c, &["EXEC"]).await, "*2\r\n+OK\r\n:1000\r\n");
}

#[tokio::test]
async fn an_expiry_brought_along_by_rename_copy_or_a_script_is_lowered_to_max_seconds() {
    // RENAME and COPY carry the source's TTL over (EXPIRE ... NX then does nothing), and
    // a script can set any expiry: with max_seconds, the request path lowers what a
    // write brought along, and the sweeper what a script set.
    let proxy = proxy_with(vec![TtlRuleConfig {
        max_seconds: Some(1000),
        sweep_interval_secs: 1,
        ..rule("tpl:*", 100)
    }])
    .await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let within = |k: &str| {
        let t = ttl_of(k);
        assert!((1..=1000).contains(&t), "{k}: TTL {t}, want at most 1000");
    };
    for (i, via) in ["RENAME", "COPY", "RENAMENX"].iter().enumerate() {
        let (src, dst) = (format!("{{tpl{i}}}src"), format!("tpl:{{tpl{i}}}dst"));
        assert_eq!(
            cmd(&mut c, &["SET", &src, "v", "EX", "999999999"]).await,
            "+OK\r\n"
        );
        let r = cmd(&mut c, &[via, &src, &dst]).await;
        assert!(r == "+OK\r\n" || r == ":1\r\n", "{via}: {r}");
        within(&dst);
    }
    // A script's own expiry: the sweeper lowers it.
    let key = "tpl:{script}";
    assert_eq!(
        cmd(
            &mut c,
            &[
                "EVAL",
                "redis.call('SET',KEYS[1],'v','EX',999999999) return 1",
                "1",
                key
            ]
        )
        .await,
        ":1\r\n"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ttl_of(key) > 1000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sweeper never lowered {key}'s TTL"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    within(key);
}
