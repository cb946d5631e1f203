//! Cross-slot commands computed by respgate (`compat.cross_slot = "compute"`, issue 16),
//! against the shared cluster and a standalone redis-server of the same version: each
//! family's replies byte for byte (errors included), the data left afterwards, the
//! refusals that stay, the size limit, the ACL, and the internal keys never seen.

mod support;

use respgate::acl::hash_password;
use respgate::cluster::key_slot;
use respgate::config::{AuthConfig, AuthMode, Config, CrossSlotMode, UserConfig};
use std::sync::atomic::{AtomicU32, Ordering};
use support::standalone::Standalone;
use support::{same, RawConn};

/// A reply as text.
fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const CROSSSLOT: &str = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
const NOPERM_KEYS: &str =
    "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";

/// A key prefix no other test (or run) uses.
fn prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "xs{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn compute() -> Config {
    let mut c = support::test_config(&support::shared_cluster_seeds());
    c.compat.cross_slot = CrossSlotMode::Compute;
    c
}

/// Every command of `script` (`{}` replaced by the prefix, words split on spaces)
/// through respgate and on the standalone: the same reply bytes.
async fn replay(via: &mut RawConn, direct: &mut RawConn, p: &str, script: &str, ctx: &str) {
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let line = line.replace("{}", p);
        let words: Vec<&str> = line.split(' ').collect();
        same(via, direct, &words, ctx).await;
    }
}

/// Keys `{p}:<name>` of the script, checked to spread over more than one slot each.
fn assert_spread(p: &str, names: &[&str]) {
    let slots: std::collections::HashSet<u16> = names
        .iter()
        .map(|n| key_slot(format!("{p}:{n}").as_bytes()))
        .collect();
    assert!(slots.len() > names.len() / 2, "keys of {p} share slots");
}

const SETS: &str = "
    SADD {}:a 1 2 3 4
    SADD {}:b 3 4 5
    SET {}:s str
    SUNION {}:a {}:b
    SINTER {}:a {}:b
    SDIFF {}:a {}:b
    SINTERCARD 2 {}:a {}:b
    SINTERCARD 2 {}:a {}:b LIMIT 1
    SINTERCARD 2 {}:a {}:b LIMIT x
    SUNION {}:a {}:missing
    SADD {}:a}b{c 7
    SUNION {}:a {}:a}b{c
    SUNIONSTORE {}:a}b{c {}:a {}:a}b{c
    SMEMBERS {}:a}b{c
    SINTER {}:a {}:missing
    SINTER {}:a {}:s
    SUNIONSTORE {}:d {}:a {}:b
    SMEMBERS {}:d
    SINTERSTORE {}:d {}:a {}:b
    SMEMBERS {}:d
    SDIFFSTORE {}:d {}:a {}:b
    SMEMBERS {}:d
    SDIFFSTORE {}:d {}:missing {}:b
    EXISTS {}:d
    SMOVE {}:a {}:b 1
    SMOVE {}:a {}:b 99
    SMOVE {}:missing {}:b 1
    SMOVE {}:missing {}:s 1
    SMOVE {}:a {}:s 2
    SMOVE {}:s {}:a 2
    SMOVE {}:a {}:c 2
    SMEMBERS {}:a
    SMEMBERS {}:b
    SMEMBERS {}:c
";

const ZSETS: &str = "
    ZADD {}:za 1 x 2 y 3 z
    ZADD {}:zb 2 y 5 w
    SET {}:s str
    ZUNION 2 {}:za {}:zb WITHSCORES
    ZINTER 2 {}:za {}:zb WEIGHTS 2 3 AGGREGATE MAX WITHSCORES
    ZDIFF 2 {}:za {}:zb WITHSCORES
    ZINTERCARD 2 {}:za {}:zb
    ZUNION 2 {}:za {}:missing
    ZUNION 2 {}:za {}:s
    ZUNION 2 {}:za {}:zb WEIGHTS 1
    ZUNIONSTORE {}:d 2 {}:za {}:zb AGGREGATE MIN
    ZRANGE {}:d 0 -1 WITHSCORES
    ZINTERSTORE {}:d 2 {}:za {}:zb
    ZRANGE {}:d 0 -1 WITHSCORES
    ZDIFFSTORE {}:d 2 {}:za {}:zb
    ZRANGE {}:d 0 -1 WITHSCORES
    ZRANGESTORE {}:d {}:za 0 1
    ZRANGESTORE {}:d {}:za (1 +inf BYSCORE LIMIT 0 1
    ZRANGE {}:d 0 -1 WITHSCORES
    ZRANGESTORE {}:d {}:missing 0 -1
    EXISTS {}:d
";

const LISTS: &str = "
    RPUSH {}:la 1 2 3 4
    RPUSH {}:lb 9
    SET {}:s str
    LMOVE {}:la {}:lb LEFT RIGHT
    LMOVE {}:la {}:lb RIGHT LEFT
    RPOPLPUSH {}:la {}:lb
    LMOVE {}:la {}:lc left left
    LMOVE {}:la {}:lb LEFT RIGHT
    LMOVE {}:missing {}:lb LEFT RIGHT
    LMOVE {}:missing {}:s LEFT RIGHT
    LMOVE {}:la {}:lb UP LEFT
    LMOVE {}:s {}:lb LEFT LEFT
    RPOPLPUSH {}:lb {}:s
    LRANGE {}:lb 0 -1
    LRANGE {}:lc 0 -1
    EXISTS {}:la
";

const STRINGS: &str = "
    SET {}:s1 foobar
    SET {}:s2 abcdef
    BITOP AND {}:d {}:s1 {}:s2
    GET {}:d
    BITOP OR {}:d {}:s1 {}:missing
    GET {}:d
    BITOP NOT {}:d {}:s1
    GET {}:d
    LCS {}:s1 {}:s2
    LCS {}:s1 {}:s2 LEN
    LCS {}:s1 {}:s2 IDX MINMATCHLEN 1 WITHMATCHLEN
    LCS {}:s1 {}:missing
    PFADD {}:h1 a b c
    PFADD {}:h2 c d
    PFCOUNT {}:h1 {}:h2
    PFCOUNT {}:h1 {}:s1
    DEL {}:d
    PFMERGE {}:d {}:h1 {}:h2
    PFCOUNT {}:d
";

const OTHERS: &str = "
    GEOADD {}:g 13.361389 38.115556 Palermo 15.087269 37.502669 Catania
    GEOSEARCHSTORE {}:d {}:g FROMLONLAT 15 37 BYRADIUS 200 km ASC
    ZRANGE {}:d 0 -1 WITHSCORES
    GEOSEARCHSTORE {}:d {}:g FROMLONLAT 15 37 BYRADIUS 200 km ASC STOREDIST
    ZRANGE {}:d 0 -1 WITHSCORES
    GEORADIUS {}:g 15 37 200 km STORE {}:d
    ZRANGE {}:d 0 -1 WITHSCORES
    GEORADIUSBYMEMBER {}:g Palermo 200 km STOREDIST {}:d
    ZRANGE {}:d 0 -1 WITHSCORES
    RPUSH {}:sl 3 1 2
    SORT {}:sl STORE {}:d
    LRANGE {}:d 0 -1
    SORT {}:sl DESC LIMIT 0 2 STORE {}:d
    LRANGE {}:d 0 -1
    SORT {}:missing STORE {}:d
    EXISTS {}:d
    SET {}:r1 v
    RENAME {}:r1 {}:r2
    GET {}:r2
    EXISTS {}:r1
    RENAME {}:missing {}:r2
    RENAMENX {}:missing {}:r2
    SET {}:r3 w
    RENAMENX {}:r2 {}:r3
    RENAMENX {}:r2 {}:r4
    GET {}:r4
    EXISTS {}:r2
    COPY {}:r4 {}:r5
    COPY {}:r4 {}:r5
    SET {}:r4 changed
    COPY {}:r4 {}:r5 REPLACE
    GET {}:r5
    COPY {}:r4 {}:r5 DB 0 REPLACE
    COPY {}:r4 {}:r5 foo
    COPY {}:r4 {}:r5 DB x
    COPY {}:missing {}:r5
    SADD {}:r6 1 2
    RENAME {}:r6 {}:r5
    TYPE {}:r5
    SMEMBERS {}:r5
    XADD {}:x1 1-1 f v
    XADD {}:x2 2-1 g w
    XADD {}:x2 2-2 h u
    XREAD COUNT 10 STREAMS {}:x1 {}:x2 0 0
    XREAD COUNT 1 STREAMS {}:x2 {}:x1 0 0
    XREAD STREAMS {}:x1 {}:x2 $ $
    XREAD STREAMS {}:x1 {}:x2 1-1 0
    XREAD STREAMS {}:missing {}:x2 0 0
    XREAD STREAMS {}:x1 {}:x2 {}:x1 0 0 1-1
    XREAD STREAMS {}:x2 {}:x1 {}:x2 2-1 0 0
    XREAD STREAMS {}:x1 {}:x2 0
    XREAD STREAMS {}:x1 {}:x2 0 bad
";

/// Each family through a computing respgate and on a standalone: the same bytes, for
/// RESP2 and RESP3 (acceptance: "same reply, same errors, same effect").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_replies_as_one_redis() {
    let standalone = Standalone::start();
    let proxy = support::start_proxy(compute()).await;
    for resp in ["2", "3"] {
        let mut via = RawConn::connect(proxy.local_addr()).await;
        let mut direct = RawConn::connect(standalone.addr).await;
        if resp == "3" {
            via.command(&["HELLO", "3"]).await;
            direct.command(&["HELLO", "3"]).await;
        }
        for (family, script) in [
            ("sets", SETS),
            ("zsets", ZSETS),
            ("lists", LISTS),
            ("strings", STRINGS),
            ("others", OTHERS),
        ] {
            let p = prefix();
            assert_spread(
                &p,
                &[
                    "a", "b", "d", "za", "zb", "la", "lb", "s1", "s2", "r1", "r2",
                ],
            );
            replay(
                &mut via,
                &mut direct,
                &p,
                script,
                &format!("RESP{resp} {family}: "),
            )
            .await;
        }
    }
}

/// RENAME and COPY carry the source's TTL (to the millisecond it had left).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_copy_carry_the_ttl() {
    let proxy = support::start_proxy(compute()).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let p = prefix();
    let k = |n: &str| format!("{p}:{n}");
    assert_ne!(key_slot(k("t1").as_bytes()), key_slot(k("t2").as_bytes()));
    c.command(&["SET", &k("t1"), "v", "PX", "100000"]).await;
    assert_eq!(
        show(&c.command(&["RENAME", &k("t1"), &k("t2")]).await),
        "+OK\r\n"
    );
    let ttl = support::trailing_int(&c.command(&["PTTL", &k("t2")]).await);
    assert!((90_000..=100_000).contains(&ttl), "RENAME kept PTTL {ttl}");
    assert_eq!(
        show(&c.command(&["COPY", &k("t2"), &k("t3")]).await),
        ":1\r\n"
    );
    let ttl = support::trailing_int(&c.command(&["PTTL", &k("t3")]).await);
    assert!((90_000..=100_000).contains(&ttl), "COPY kept PTTL {ttl}");
    // No TTL stays none (not the copy's own).
    c.command(&["SET", &k("t4"), "v"]).await;
    c.command(&["RENAME", &k("t4"), &k("t5")]).await;
    assert_eq!(show(&c.command(&["PTTL", &k("t5")]).await), ":-1\r\n");
}

/// With the default `refuse`, today's CROSSSLOT, byte for byte; MSET still splits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_is_todays_crossslot() {
    let proxy = support::proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let p = prefix();
    for cmd in [
        vec!["SUNION", "{}:a", "{}:b"],
        vec!["RENAME", "{}:a", "{}:b"],
        vec!["XREAD", "STREAMS", "{}:a", "{}:b", "0", "0"],
        vec!["EVAL", "return 1", "2", "{}:a", "{}:b"],
        vec!["BLMOVE", "{}:a", "{}:b", "LEFT", "LEFT", "0"],
    ] {
        let cmd: Vec<String> = cmd.iter().map(|w| w.replace("{}", &p)).collect();
        assert_eq!(
            show(&c.command(&cmd).await),
            show(CROSSSLOT.as_bytes()),
            "{cmd:?}"
        );
    }
    let (a, b) = (format!("{p}:a"), format!("{p}:b"));
    assert_eq!(
        show(&c.command(&["MSET", &a, "1", &b, "2"]).await),
        "+OK\r\n"
    );
}

/// What stays refused with `compute`, with its reason (blocking commands, XREAD BLOCK,
/// scripts, MSETNX, a transaction's keys over several slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_commands_stay_refused_with_a_reason() {
    let proxy = support::start_proxy(compute()).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let p = prefix();
    let why = |r: &str| format!("-CROSSSLOT Keys in request don't hash to the same slot ({r})\r\n");
    let blocking = why("respgate does not compute blocking commands across slots: it cannot wait on several nodes as one");
    for (cmd, want) in [
        (
            vec!["BLMOVE", "{}:a", "{}:b", "LEFT", "LEFT", "0"],
            blocking.clone(),
        ),
        (
            vec!["XREAD", "BLOCK", "10", "STREAMS", "{}:a", "{}:b", "0", "0"],
            blocking,
        ),
        (
            vec!["EVAL", "return 1", "2", "{}:a", "{}:b"],
            why("respgate does not compute scripts across slots: a script runs on one node"),
        ),
        (
            vec!["MSETNX", "{}:a", "1", "{}:b", "2"],
            why("respgate cannot split MSETNX: it would lose its all-or-nothing guarantee"),
        ),
        (
            vec!["LMPOP", "2", "{}:a", "{}:b", "LEFT"],
            why("respgate does not compute this command across slots"),
        ),
    ] {
        let cmd: Vec<String> = cmd.iter().map(|w| w.replace("{}", &p)).collect();
        assert_eq!(
            show(&c.command(&cmd).await),
            show(want.as_bytes()),
            "{cmd:?}"
        );
    }
    c.command(&["MULTI"]).await;
    c.command(&["SUNION", &format!("{p}:a"), &format!("{p}:b")])
        .await;
    let exec = c.command(&["EXEC"]).await;
    assert!(
        show(&exec).starts_with("-"),
        "a transaction is not computed: {}",
        show(&exec)
    );
}

/// A client's own command on an internal key name is refused (a tenant cannot read
/// another's copy); with `refuse` everywhere nothing is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_key_names_are_refused_to_clients() {
    let proxy = support::start_proxy(compute()).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let refused = "-NOPERM respgate: keys containing 'respgate:xslot:' are reserved for respgate's cross-slot copies\r\n";
    for cmd in [
        vec!["GET", "respgate:xslot:{0}:1:1"],
        vec!["SET", "x:respgate:xslot:", "v"],
        vec!["MGET", "a", "respgate:xslot:{1}:2:3"],
        vec!["SUNION", "respgate:xslot:{a}", "b"],
    ] {
        assert_eq!(show(&c.command(&cmd).await), refused, "{cmd:?}");
    }
    let plain = support::proxy_for_shared().await;
    let mut c = RawConn::connect(plain.local_addr()).await;
    assert_eq!(
        show(&c.command(&["GET", "respgate:xslot:{0}:nothing"]).await),
        "$-1\r\n"
    );
}

/// Internal keys never show up: while clients compute SUNIONSTOREs, no node (asked
/// directly) and no KEYS / SCAN through respgate ever lists one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_keys_are_never_seen() {
    let proxy = support::start_proxy(compute()).await;
    let addr = proxy.local_addr();
    let p = prefix();
    let (a, b, d) = (format!("{p}:a"), format!("{p}:b"), format!("{p}:d"));
    let mut c = RawConn::connect(addr).await;
    c.command(&["SADD", &a, "1", "2", "3"]).await;
    c.command(&["SADD", &b, "3", "4"]).await;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (a, b, d) = (a.clone(), b.clone(), d.clone());
            tokio::spawn(async move {
                let mut c = RawConn::connect(addr).await;
                for _ in 0..300 {
                    assert_eq!(
                        show(&c.command(&["SUNIONSTORE", &d, &a, &b]).await),
                        ":4\r\n"
                    );
                }
            })
        })
        .collect();
    let masters = support::with_shared_cluster(|cl| cl.masters());
    // Copies only (`...:{tag}:<8 hex>:<n>`): a move's claim (`...:{tag}:claim:<hash>`)
    // is a visible key while a move of other tests runs.
    let copies =
        "*respgate:xslot:*:[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]:*";
    let mut looks = 0;
    while !workers.iter().all(|w| w.is_finished()) {
        for m in &masters {
            let seen = support::on_node(*m, &["KEYS", copies]);
            assert!(
                matches!(&seen, devcluster::Reply::Array(v) if v.is_empty()),
                "on {m}: {seen:?}"
            );
        }
        assert_eq!(show(&c.command(&["KEYS", copies]).await), "*0\r\n");
        looks += 1;
    }
    for w in workers {
        w.await.unwrap();
    }
    assert!(looks > 0);
}

/// Over `max_cross_slot_bytes` the command is refused, naming the limit, and nothing
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_limit_refuses_before_copying() {
    let mut config = compute();
    config.compat.max_cross_slot_bytes = 1000;
    let proxy = support::start_proxy(config).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let p = prefix();
    let (a, b, d) = (format!("{p}:a"), format!("{p}:b"), format!("{p}:d"));
    assert_ne!(key_slot(a.as_bytes()), key_slot(d.as_bytes()));
    let mut sadd = vec!["SADD".to_string(), a.clone()];
    sadd.extend((0..200).map(|i| format!("member-number-{i:06}")));
    c.command(&sadd).await;
    c.command(&["SADD", &b, "x"]).await;
    let r = show(&c.command(&["SUNIONSTORE", &d, &a, &b]).await);
    assert!(
        r.starts_with("-ERR respgate: cross-slot SUNIONSTORE would copy ")
            && r.ends_with("bytes, over compat.max_cross_slot_bytes (1000)\r\n"),
        "{r}"
    );
    assert_eq!(show(&c.command(&["EXISTS", &d]).await), ":0\r\n");
    let r = show(&c.command(&["RENAME", &a, &d]).await);
    assert!(r.contains("over compat.max_cross_slot_bytes (1000)"), "{r}");
    assert_eq!(show(&c.command(&["EXISTS", &a]).await), ":1\r\n");
}

fn user(name: &str, rules: &str, cross_slot: Option<CrossSlotMode>) -> UserConfig {
    UserConfig {
        name: name.into(),
        rules: format!("{rules} #{}", hash_password(b"pw")),
        max_dedicated_connections: None,
        cross_slot,
    }
}

/// The caller's ACL decides first, on the original command's keys: read access to the
/// sources is not write access to the destination (Redis's NOPERM). A user's own
/// `cross_slot` overrides the global setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_acl_and_its_own_setting_apply() {
    let p = prefix();
    let mut config = compute();
    config.auth = AuthConfig {
        mode: Some(AuthMode::Users),
        users: vec![
            user("reader", &format!("on %R~{p}:r:* ~{p}:w:* +@all"), None),
            user("refuser", "on ~* +@all", Some(CrossSlotMode::Refuse)),
            user("ops", "on ~* +@all", None),
        ],
        ..AuthConfig::default()
    };
    let proxy = support::start_proxy(config).await;
    let login = |name: &'static str| {
        let addr = proxy.local_addr();
        async move {
            let mut c = RawConn::connect(addr).await;
            assert_eq!(show(&c.command(&["AUTH", name, "pw"]).await), "+OK\r\n");
            c
        }
    };
    let (ra, rb) = (format!("{p}:r:a"), format!("{p}:r:b"));
    let mut ops = login("ops").await;
    ops.command(&["SADD", &ra, "1"]).await;
    ops.command(&["SADD", &rb, "2"]).await;
    let mut reader = login("reader").await;
    assert_eq!(
        show(&reader.command(&["SUNION", &ra, &rb]).await),
        "*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
    // Readable sources, a destination it may not write: refused before anything runs.
    let dst = format!("{p}:r:d");
    assert_eq!(
        show(&reader.command(&["SUNIONSTORE", &dst, &ra, &rb]).await),
        show(NOPERM_KEYS.as_bytes())
    );
    assert_eq!(show(&ops.command(&["EXISTS", &dst]).await), ":0\r\n");
    // A source it may not read.
    let other = format!("{p}:secret");
    assert_eq!(
        show(
            &reader
                .command(&["SUNIONSTORE", &format!("{p}:w:d"), &ra, &other])
                .await
        ),
        show(NOPERM_KEYS.as_bytes())
    );
    assert_eq!(
        show(
            &reader
                .command(&["SUNIONSTORE", &format!("{p}:w:d"), &ra, &rb])
                .await
        ),
        ":2\r\n"
    );
    let mut refuser = login("refuser").await;
    assert_eq!(
        show(&refuser.command(&["SUNION", &ra, &rb]).await),
        show(CROSSSLOT.as_bytes())
    );
}

/// The cost is reported: computed commands by name, requests sent, bytes copied, and
/// the copies-in-flight gauge, on the admin endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_is_in_the_metrics() {
    let mut config = compute();
    config.admin.listen = Some("127.0.0.1:0".into());
    let proxy = support::start_proxy(config).await;
    let admin = proxy.admin_addr().expect("the admin listener is up");
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let p = prefix();
    let (a, b, d) = (format!("{p}:a"), format!("{p}:b"), format!("{p}:d"));
    c.command(&["SADD", &a, "1", "2"]).await;
    c.command(&["SADD", &b, "2", "3"]).await;
    assert_eq!(
        show(&c.command(&["SUNIONSTORE", &d, &a, &b]).await),
        ":3\r\n"
    );
    let (status, body) = support::http_get(admin, "/metrics", None).await;
    assert_eq!(status, 200);
    let value = |name: &str| -> f64 {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{body}"))
    };
    assert!(value("respgate_cross_slot_commands_total{command=\"sunionstore\"}") >= 1.0);
    assert!(value("respgate_cross_slot_round_trips_total") >= 2.0);
    assert!(value("respgate_cross_slot_bytes_copied_total") > 0.0);
    assert!(value("respgate_cross_slot_internal_keys") >= 0.0);
}

/// `[compat]` is applied by a reload (SIGHUP): no restart, a live connection's next
/// command follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_computing_on_and_off() {
    let proxy = support::proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let p = prefix();
    let (a, b) = (format!("{p}:a"), format!("{p}:b"));
    c.command(&["SADD", &a, "1"]).await;
    let sunion = ["SUNION", a.as_str(), b.as_str()];
    assert_eq!(show(&c.command(&sunion).await), CROSSSLOT);
    assert_eq!(
        proxy.reload(&compute()),
        Ok(vec![]),
        "nothing needs a restart"
    );
    assert_eq!(show(&c.command(&sunion).await), "*1\r\n$1\r\n1\r\n");
    let back = support::test_config(&support::shared_cluster_seeds());
    assert_eq!(proxy.reload(&back), Ok(vec![]));
    assert_eq!(show(&c.command(&sunion).await), CROSSSLOT);
}

/// The TTL policy holds for computed writes as for forwarded ones: a destination its
/// rule covers gets the rule's expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ttl_policy_covers_computed_destinations() {
    let p = prefix();
    let mut config = compute();
    config.ttl = vec![respgate::config::TtlRuleConfig::new(
        &format!("{p}:t:*"),
        500,
    )];
    let proxy = support::start_proxy(config).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let k = |n: &str| format!("{p}:{n}");
    c.command(&["SADD", &k("a"), "1", "2"]).await;
    c.command(&["SADD", &k("b"), "2", "3"]).await;
    c.command(&["SET", &k("s"), "v"]).await;
    c.command(&["RPUSH", &k("l"), "x"]).await;
    let ttl = |r: Vec<u8>| support::trailing_int(&r);
    for (cmd, dst) in [
        (vec!["SUNIONSTORE".into(), k("t:d"), k("a"), k("b")], "t:d"),
        (vec!["RENAME".into(), k("s"), k("t:r")], "t:r"),
        (vec!["SMOVE".into(), k("a"), k("t:m"), "1".into()], "t:m"),
        (
            vec![
                "LMOVE".into(),
                k("l"),
                k("t:l"),
                "LEFT".into(),
                "LEFT".into(),
            ],
            "t:l",
        ),
    ] {
        let r = show(&c.command(&cmd).await);
        assert!(!r.starts_with('-'), "{cmd:?}: {r}");
        let left = ttl(c.command(&["TTL", &k(dst)]).await);
        assert!((490..=500).contains(&left), "{cmd:?}: TTL {left}");
    }
}

/// Review finding 3: four workers looping RPOPLPUSH off one queue (into lists in other
/// slots) through respgate hand every job out exactly once, as movers one after the
/// other would; the queue ends empty and the lists hold the 300 jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rpoplpush_hands_each_job_out_once() {
    let proxy = support::start_proxy(compute()).await;
    let addr = proxy.local_addr();
    let p = prefix();
    let queue = format!("{p}:{{q}}jobs");
    let outs: Vec<String> = (0..4).map(|n| format!("{p}:{{w{n}}}processing")).collect();
    for o in &outs {
        assert_ne!(key_slot(o.as_bytes()), key_slot(queue.as_bytes()));
    }
    let mut c = RawConn::connect(addr).await;
    for chunk in (0..300).collect::<Vec<_>>().chunks(100) {
        let mut cmd = vec!["RPUSH".to_string(), queue.clone()];
        cmd.extend(chunk.iter().map(|j| format!("job{j}")));
        c.command(&cmd).await;
    }
    let workers: Vec<_> = outs
        .iter()
        .map(|out| {
            let (queue, out) = (queue.clone(), out.clone());
            tokio::spawn(async move {
                let mut c = RawConn::connect(addr).await;
                let mut got = Vec::new();
                loop {
                    let r = c.command(&["RPOPLPUSH", &queue, &out]).await;
                    if r == b"$-1\r\n" {
                        return got;
                    }
                    assert!(r.starts_with(b"$"), "{}", show(&r));
                    got.push(show(&r));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let distinct: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 300, "hand-outs for 300 jobs");
    assert_eq!(distinct.len(), 300);
    assert_eq!(show(&c.command(&["LLEN", &queue]).await), ":0\r\n");
    let mut held = 0;
    for o in &outs {
        held += support::trailing_int(&c.command(&["LLEN", o]).await);
    }
    assert_eq!(held, 300);
}

/// Review finding 3: two clients SMOVE the same member out of one set into two sets
/// (in other slots) at once: exactly one answers 1, the other 0 (as Redis), and the
/// member ends in exactly one of them, in each of 50 trials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_smove_has_exactly_one_winner() {
    let proxy = support::start_proxy(compute()).await;
    let addr = proxy.local_addr();
    let mut c = RawConn::connect(addr).await;
    let mut one = RawConn::connect(addr).await;
    let mut two = RawConn::connect(addr).await;
    let mut sources = Vec::new();
    for trial in 0..50 {
        let p = prefix();
        let (src, x, y) = (
            format!("{p}:{{src}}s"),
            format!("{p}:{{1}}x"),
            format!("{p}:{{2}}y"),
        );
        assert_ne!(key_slot(src.as_bytes()), key_slot(x.as_bytes()));
        assert_ne!(key_slot(src.as_bytes()), key_slot(y.as_bytes()));
        c.command(&["SADD", &src, "token", "other"]).await;
        let (to_x, to_y) = (["SMOVE", &src, &x, "token"], ["SMOVE", &src, &y, "token"]);
        let (a, b) = tokio::join!(one.command(&to_x), two.command(&to_y));
        let answers = [show(&a), show(&b)];
        assert!(
            answers == [":1\r\n", ":0\r\n"] || answers == [":0\r\n", ":1\r\n"],
            "trial {trial}: {answers:?}"
        );
        let inx = show(&c.command(&["SISMEMBER", &x, "token"]).await);
        let iny = show(&c.command(&["SISMEMBER", &y, "token"]).await);
        assert_eq!(
            (inx == ":1\r\n", iny == ":1\r\n"),
            (answers[0] == ":1\r\n", answers[1] == ":1\r\n"),
            "trial {trial}"
        );
        assert_eq!(
            show(&c.command(&["SMEMBERS", &src]).await),
            "*1\r\n$5\r\nother\r\n"
        );
        sources.push(src);
    }
    // Every claim given back: none named after one of these sources is left (other
    // tests' moves may hold claims of their own meanwhile), and any claim carries a TTL.
    let masters = support::with_shared_cluster(|cl| cl.masters());
    for src in &sources {
        use sha2::Digest as _;
        let hash: String = sha2::Sha256::digest(src.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for m in &masters {
            let left = support::on_node(*m, &["KEYS", &format!("*respgate:xslot:*:claim:{hash}")]);
            assert!(
                matches!(&left, devcluster::Reply::Array(v) if v.is_empty()),
                "claim of {src} left on {m}: {left:?}"
            );
        }
    }
    for m in &masters {
        let devcluster::Reply::Array(claims) =
            support::on_node(*m, &["KEYS", "*respgate:xslot:*:claim:*"])
        else {
            panic!("KEYS on {m}")
        };
        for k in claims {
            let k = String::from_utf8(k.as_bytes().unwrap().to_vec()).unwrap();
            let ttl = support::on_node(*m, &["PTTL", &k]).as_int().unwrap();
            assert!(ttl == -2 || (0..=10_000).contains(&ttl), "{k}: PTTL {ttl}");
        }
    }
}

/// `commands` (`{}` replaced by `p`) in one pipelined write through respgate and on the
/// standalone: the same replies, in order.
async fn same_pipelined(via: &mut RawConn, direct: &mut RawConn, p: &str, commands: &[&str]) {
    let lines: Vec<String> = commands.iter().map(|c| c.replace("{}", p)).collect();
    let words: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    let refs: Vec<&[&str]> = words.iter().map(|w| w.as_slice()).collect();
    let bytes = support::encode_pipeline(&refs);
    via.send(&bytes).await;
    direct.send(&bytes).await;
    let (got, want) = (
        via.read_replies(refs.len()).await,
        direct.read_replies(refs.len()).await,
    );
    let show_all = |r: &[Vec<u8>]| r.iter().map(|b| show(b)).collect::<Vec<_>>().join(" ");
    assert_eq!(show_all(&got), show_all(&want), "{lines:?}");
}

/// A computed command starts only once the client's earlier requests are answered,
/// even those in flight on another connection than the one its steps use: a script
/// (on the script identity's connection), a write after WATCH (on the client's own
/// connection). Pipelined in one write, each runs before the computed command after
/// it, as on one Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computed_command_waits_for_the_clients_earlier_requests() {
    let standalone = Standalone::start();
    let proxy = support::start_proxy(compute()).await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    let p = prefix();
    assert_ne!(key_slot(b"{1}"), key_slot(b"{2}"));
    let script = "EVAL return(redis.call('sadd',KEYS[1],ARGV[1])) 1 {}:{1}s v";
    for _ in 0..10 {
        for commands in [
            vec![
                "DEL {}:{1}s {}:{2}d",
                script,
                "SUNIONSTORE {}:{2}d {}:{1}s",
                "SMEMBERS {}:{2}d",
            ],
            vec![
                "DEL {}:{1}s {}:{2}d",
                "WATCH {}:{1}s",
                "SADD {}:{1}s v",
                "SUNIONSTORE {}:{2}d {}:{1}s",
                "SMEMBERS {}:{2}d",
                "UNWATCH",
            ],
            vec![
                "DEL {}:{1}r {}:{2}r",
                "WATCH {}:{1}x",
                "SET {}:{1}r v",
                "RENAME {}:{1}r {}:{2}r",
                "GET {}:{2}r",
                "UNWATCH",
            ],
            vec![
                "DEL {}:{1}l {}:{2}l",
                "WATCH {}:{1}x",
                "RPUSH {}:{1}l a b",
                "UNWATCH",
                "LMOVE {}:{1}l {}:{2}l LEFT LEFT",
                "LRANGE {}:{2}l 0 -1",
            ],
        ] {
            same_pipelined(&mut via, &mut direct, &p, &commands).await;
        }
    }
}

/// Read-your-writes covers computed writes as forwarded ones: after a SUNIONSTORE the
/// client's read of the destination is not served by a replica that has not got the
/// write yet (its writes paused on purpose).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_covers_computed_writes() {
    use respgate::config::ReadPolicyKind;
    let p = prefix();
    let mut config = compute();
    config.replica_reads.default_policy = ReadPolicyKind::PreferReplica;
    config.replica_reads.max_lag_ms = 5000;
    config.replica_reads.poll_interval_ms = 50;
    config.replica_reads.hedge_after_ms = 0;
    config.replica_reads.read_your_writes = vec!["*".into()];
    let proxy = support::start_proxy(config).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let src = format!("{p}:{{3}}w");
    assert_eq!(c.command(&["SADD", &src, "v"]).await, b":1\r\n");
    let owner = support::shared_owner_of(&format!("{p}:{{2}}d"));
    let replicas = support::with_shared_cluster(|cl| cl.replicas_of(owner));
    assert!(!replicas.is_empty(), "no replica of {owner}");
    let mut missed = 0;
    for i in 0..10 {
        // Replicas have the client's earlier writes (heartbeats newer than them).
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        for r in &replicas {
            support::on_node(*r, &["CLIENT", "PAUSE", "300", "WRITE"]);
        }
        let dst = format!("{p}:{{2}}d{i}");
        assert_eq!(
            c.command(&["SUNIONSTORE", &dst, &src]).await,
            b":1\r\n",
            "SUNIONSTORE"
        );
        if c.command(&["SISMEMBER", &dst, "v"]).await != b":1\r\n" {
            missed += 1;
        }
    }
    assert_eq!(
        missed, 0,
        "reads that missed the client's own computed write"
    );
}

/// XREAD over several slots answers errors as one Redis: the first failing stream's in
/// request order (a WRONGTYPE before a later bad ID in another slot), a malformed
/// request's option or unbalanced-list error (not a bare CROSSSLOT); and a stream named
/// twice, where the first mention reads nothing, keeps Redis's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xread_errors_and_repeated_streams_as_one_redis() {
    let standalone = Standalone::start();
    let proxy = support::start_proxy(compute()).await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    let p = prefix();
    replay(
        &mut via,
        &mut direct,
        &p,
        "
        SET {}:{3}c x
        XADD {}:{1}a 1-1 f v
        XADD {}:{2}b 1-1 f v
        XADD {}:{2}b 2-1 f w
        XREAD STREAMS {}:{1}a {}:{3}c {}:{1}d 0 0 bad
        XREAD STREAMS {}:{1}a {}:{2}b {}:{3}c 0 bad 0
        XREAD STREAMS {}:{1}a {}:{2}b 0 0 0
        XREAD COUNT STREAMS STREAMS {}:{1}a {}:{2}b 0 0
        XREAD COUNT x STREAMS {}:{1}a {}:{2}b 0 0
        XREAD STREAMS {}:{2}b {}:{1}a {}:{2}b $ 0 0
        XREAD COUNT 1 STREAMS {}:{2}b {}:{1}a {}:{2}b 0 0 2-0
        XREAD STREAMS {}:{1}a {}:{2}b {}:{1}a 0 $ 1-0
        XREAD STREAMS {}:{1}a {}:{2}b {}:{1}a {}:{2}b 0 0 0 0
        ",
        "",
    )
    .await;
}

/// COPY across slots checks every option before refusing another DB, and a DB outside
/// 32 bits gets Redis's range error (as one Redis and a cluster node answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_checks_every_option_as_redis() {
    let standalone = Standalone::start();
    let proxy = support::start_proxy(compute()).await;
    let mut via = RawConn::connect(proxy.local_addr()).await;
    let mut direct = RawConn::connect(standalone.addr).await;
    replay(
        &mut via,
        &mut direct,
        &prefix(),
        "
        SET {}:{4}g v
        COPY {}:{4}g {}:{2}e DB 1 FOO
        COPY {}:{4}g {}:{2}e DB 2147483648
        COPY {}:{4}g {}:{2}e DB -2147483649
        COPY {}:{4}g {}:{2}e DB 20 FOO
        COPY {}:{4}g {}:{2}e DB x
        ",
        "",
    )
    .await;
}

/// A step's reply over `cluster.max_reply_bytes` (RENAME of a value larger than it)
/// fails the command with an error naming the limit, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_max_reply_bytes_names_the_limit() {
    let p = prefix();
    let mut config = compute();
    config.cluster.max_reply_bytes = 4 << 20;
    let proxy = support::start_proxy(config).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let (src, dst) = (format!("{p}:{{1}}big"), format!("{p}:{{2}}dst"));
    // Not compressible: DUMP compresses its payload.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: String = (0..5 << 20)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            char::from(b'!' + ((seed >> 33) % 90) as u8)
        })
        .collect();
    assert_eq!(c.command(&["SET", &src, &big]).await, b"+OK\r\n");
    let r = show(&c.command(&["RENAME", &src, &dst]).await);
    assert!(
        r.starts_with("-ERR respgate: cross-slot RENAME failed: reply from ")
            && r.contains("over cluster.max_reply_bytes (4194304 bytes)"),
        "{r}"
    );
    assert_eq!(c.command(&["EXISTS", &src, &dst]).await, b":1\r\n");
    c.command(&["DEL", &src]).await;
}
