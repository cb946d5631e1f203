//! respgate as one standalone-Redis endpoint in front of a whole cluster: multi-key
//! commands whose keys span slots are split and their replies merged (MGET, MSET, DEL,
//! UNLINK, EXISTS, TOUCH), whole-server commands are sent to every master and merged
//! (SCRIPT, CONFIG SET, INFO, KEYS, DBSIZE, RANDOMKEY, FLUSHALL), SCAN walks every master
//! behind one cursor, and what cannot be split still gets CROSSSLOT.
//!
//! The reference is what a single Redis answers. Tests that only touch their own keys
//! (`se:<test>:` prefixes) use the binary's shared cluster; tests that flush, count or
//! scan the whole keyspace, or change node configuration, take turns on a second cluster
//! no other test touches ([`support::quiet_cluster`]). Node state is checked directly on
//! the nodes, bypassing respgate, wherever a reply alone could hide a misrouting.

mod support;

use devcluster::Reply;
use redis::aio::MultiplexedConnection;
use redis::Value;
use respgate::cluster::key_slot;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";
/// Anti-hang limit for one call (never a timing assertion).
const LIMIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `{prefix}{n}` keys such that each master of the shared cluster serves `per_master`,
/// interleaved master by master, each with its owner.
fn spread_keys(prefix: &str, per_master: usize) -> Vec<(String, SocketAddr)> {
    with_shared_cluster(|c| keys_on_every_master(c, prefix, per_master))
}

fn distinct_owners(keys: &[(String, SocketAddr)]) -> usize {
    keys.iter().map(|(_, o)| *o).collect::<HashSet<_>>().len()
}

fn shared_masters() -> Vec<SocketAddr> {
    with_shared_cluster(|c| c.masters())
}

fn ok(r: Reply, what: &str) {
    assert_eq!(r, Reply::Simple("OK".into()), "{what}");
}

fn build(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

/// One command through respgate; panics on an error reply.
async fn q<T: redis::FromRedisValue>(con: &mut MultiplexedConnection, args: &[&str]) -> T {
    call(con, &build(args), LIMIT)
        .await
        .unwrap_or_else(|e| panic!("`{}` failed: {e}", args.join(" ")))
}

/// Raw reply bytes of one command sent to `addr` on a fresh connection.
async fn raw(addr: SocketAddr, args: &[&str]) -> Vec<u8> {
    RawConn::connect(addr).await.command(args).await
}

/// The RESP2 array of bulk strings / nils a single Redis sends for MGET.
fn bulk_array(items: &[Option<String>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for item in items {
        match item {
            Some(v) => out.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes()),
            None => out.extend_from_slice(b"$-1\r\n"),
        }
    }
    out
}

fn int_reply(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

/// `-MOVED` replies sent so far by the shared cluster's masters (respgate follows MOVED
/// transparently, so only these counters reveal a request sent to the wrong node).
fn moved_on_shared_masters() -> u64 {
    shared_masters()
        .into_iter()
        .map(|m| {
            let info = on_node(m, &["INFO", "errorstats"]);
            info.as_str()
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("errorstat_MOVED:count="))
                .map_or(0, |n| n.trim().parse::<u64>().unwrap())
        })
        .sum()
}

/// A field `name:value` of an INFO text.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.split("\r\n")
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
}

/// `(keys, expires)` of `db0` in an INFO text's Keyspace section; `(0, 0)` when absent.
fn db0(info: &str) -> (i64, i64) {
    let Some(line) = info_field(info, "db0") else {
        return (0, 0);
    };
    let field = |name: &str| -> i64 {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in db0:{line}"))
            .parse()
            .unwrap()
    };
    (field("keys"), field("expires"))
}

/// Section headers (`# Name`) of an INFO text, in order.
fn sections(info: &str) -> Vec<&str> {
    info.split("\r\n").filter(|l| l.starts_with("# ")).collect()
}

/// A full SCAN iteration through respgate with `extra` options (MATCH, COUNT, TYPE).
/// Returns every key seen (duplicates allowed by SCAN's contract, so a set) and the
/// number of calls; fails if the cursor never comes back to "0".
async fn scan_all(con: &mut MultiplexedConnection, extra: &[&str]) -> (HashSet<String>, usize) {
    let mut cursor = "0".to_string();
    let mut seen = HashSet::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(extra);
        let (next, keys): (String, Vec<String>) = q(con, &args).await;
        calls += 1;
        assert!(
            calls < 200_000,
            "SCAN {extra:?} never returned cursor 0 (last cursor {next})"
        );
        seen.extend(keys);
        if next == "0" {
            return (seen, calls);
        }
        cursor = next;
    }
}

/// A full HSCAN/SSCAN/ZSCAN iteration of `key` through respgate: the flat list of
/// elements returned (field, value, field, value... for HSCAN and ZSCAN).
async fn scan_key(con: &mut MultiplexedConnection, cmd: &str, key: &str) -> Vec<String> {
    let mut cursor = "0".to_string();
    let mut all = Vec::new();
    for _ in 0..100_000 {
        let (next, items): (String, Vec<String>) =
            q(con, &[cmd, key, cursor.as_str(), "COUNT", "10"]).await;
        all.extend(items);
        if next == "0" {
            return all;
        }
        cursor = next;
    }
    panic!("{cmd} {key} never returned cursor 0");
}

// ---------------------------------------------------------------------------------------
// Keys split by slot: MGET, DEL, EXISTS, UNLINK, TOUCH
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn mget_across_every_master_answers_in_request_order_with_nil_for_missing_keys() {
    let proxy = proxy_for_shared().await;
    let keys: Vec<_> = spread_keys("se:mget:", 34).into_iter().take(100).collect();
    assert_eq!(distinct_owners(&keys), 3, "the keys cover every master");
    let exists = |i: usize| i % 4 != 3; // coprime with 3: every master has both kinds
    for (i, (k, owner)) in keys.iter().enumerate() {
        if exists(i) {
            ok(on_node(*owner, &["SET", k, &format!("value-{i}")]), k);
        }
    }

    // All 100 keys, with an existing key repeated (in the middle and at the end) and a
    // missing one repeated.
    let mut order: Vec<usize> = (0..100).collect();
    order.insert(50, 0);
    order.push(3);
    order.push(0);
    let mut args = vec!["MGET"];
    args.extend(order.iter().map(|&i| keys[i].0.as_str()));
    let expected: Vec<Option<String>> = order
        .iter()
        .map(|&i| exists(i).then(|| format!("value-{i}")))
        .collect();

    let reply = raw(proxy.local_addr(), &args).await;
    assert_eq!(show(&reply), show(&bulk_array(&expected)));
}

#[tokio::test]
async fn del_across_every_master_counts_exactly_the_existing_keys() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let keys: Vec<_> = spread_keys("se:del:", 34).into_iter().take(100).collect();
    assert_eq!(distinct_owners(&keys), 3);
    let mut existing = 0;
    for (i, (k, owner)) in keys.iter().enumerate() {
        if i % 4 != 3 {
            ok(on_node(*owner, &["SET", k, "x"]), k);
            existing += 1;
        }
    }
    assert_eq!(existing, 75);

    // A repeated key is deleted once, as on a single Redis.
    let mut args = vec!["DEL"];
    args.extend(keys.iter().map(|(k, _)| k.as_str()));
    args.push(keys[0].0.as_str());
    let n: i64 = q(&mut con, &args).await;
    assert_eq!(n, existing);
    for (k, owner) in &keys {
        assert_eq!(
            on_node(*owner, &["EXISTS", k]),
            Reply::Int(0),
            "{k} deleted"
        );
    }
    let again: i64 = q(&mut con, &args).await;
    assert_eq!(again, 0, "nothing left to delete");
}

#[tokio::test]
async fn exists_counts_a_repeated_key_each_time_within_and_across_slots() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let keys: Vec<_> = spread_keys("se:exists:", 4).into_iter().collect();
    assert_eq!(distinct_owners(&keys), 3);
    let k: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    for (key, owner) in &keys[..8] {
        ok(on_node(*owner, &["SET", key, "x"]), key);
    }

    // One slot, forwarded as it is: Redis counts `EXISTS k k` as 2.
    let n: i64 = q(&mut con, &["EXISTS", k[0], k[0]]).await;
    assert_eq!(n, 2);
    let n: i64 = q(&mut con, &["EXISTS", k[9], k[9]]).await;
    assert_eq!(n, 0);

    // Across slots and masters: every occurrence of an existing key counts.
    let args = [
        "EXISTS", k[0], k[1], k[0], k[2], k[9], k[3], k[1], k[10], k[0], k[7], k[11],
    ];
    let expected = args[1..].iter().filter(|a| k[..8].contains(a)).count() as i64;
    assert_eq!(expected, 8);
    let n: i64 = q(&mut con, &args).await;
    assert_eq!(n, expected);
    assert_eq!(
        show(&raw(proxy.local_addr(), &args).await),
        show(&int_reply(expected))
    );
}

#[tokio::test]
async fn unlink_across_every_master_counts_exactly_the_existing_keys() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let keys: Vec<_> = spread_keys("se:unlink:", 10).into_iter().collect();
    assert_eq!(distinct_owners(&keys), 3);
    for (k, owner) in keys.iter().step_by(2) {
        ok(on_node(*owner, &["SET", k, "x"]), k);
    }
    let mut args = vec!["UNLINK"];
    args.extend(keys.iter().map(|(k, _)| k.as_str()));
    args.push(keys[0].0.as_str()); // repeated: unlinked once
    let n: i64 = q(&mut con, &args).await;
    assert_eq!(n, 15);
    for (k, owner) in &keys {
        assert_eq!(
            on_node(*owner, &["EXISTS", k]),
            Reply::Int(0),
            "{k} unlinked"
        );
    }
}

#[tokio::test]
async fn touch_across_every_master_counts_existing_keys_each_time_named() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let keys: Vec<_> = spread_keys("se:touch:", 10).into_iter().collect();
    assert_eq!(distinct_owners(&keys), 3);
    for (k, owner) in keys.iter().step_by(3) {
        ok(on_node(*owner, &["SET", k, "x"]), k);
    }
    // 30 keys, 10 exist (indexes 0, 3, ..., 27); key 0 named twice more, key 1 (missing)
    // once more. TOUCH counts every argument that names an existing key, like EXISTS.
    let mut args = vec!["TOUCH"];
    args.extend(keys.iter().map(|(k, _)| k.as_str()));
    args.extend([keys[0].0.as_str(), keys[1].0.as_str(), keys[0].0.as_str()]);
    let n: i64 = q(&mut con, &args).await;
    assert_eq!(n, 12);
    // ...and touches nothing into existence.
    assert_eq!(on_node(keys[1].1, &["EXISTS", &keys[1].0]), Reply::Int(0));
}

#[tokio::test]
async fn pipelined_split_commands_answer_in_order_and_see_each_other_s_writes() {
    let proxy = proxy_for_shared().await;
    let keys = spread_keys("se:pipe-split:", 2);
    let k: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let (a, b, c, d, e, f) = (k[0], k[1], k[2], k[3], k[4], k[5]);
    let requests: Vec<Vec<&str>> = vec![
        vec!["MSET", a, "1", b, "2", c, "3"],
        vec!["MGET", a, b, c, d],
        vec!["SET", d, "4"],
        vec!["EXISTS", a, b, c, d, e],
        vec!["DEL", a, c, e],
        vec!["MGET", a, b, c, d],
        vec!["MSET", a, "5", e, "6", f, "7"],
        vec!["GET", f],
        vec!["UNLINK", a, b, d, e, f],
        vec!["MGET", a, b, c, d, e, f],
    ];
    let expected: Vec<Vec<u8>> = vec![
        b"+OK\r\n".to_vec(),
        bulk_array(&[Some("1".into()), Some("2".into()), Some("3".into()), None]),
        b"+OK\r\n".to_vec(),
        int_reply(4),
        int_reply(2),
        bulk_array(&[None, Some("2".into()), None, Some("4".into())]),
        b"+OK\r\n".to_vec(),
        b"$1\r\n7\r\n".to_vec(),
        int_reply(5),
        bulk_array(&[None, None, None, None, None, None]),
    ];
    // All sent in one write, before any reply is read.
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    let batch: Vec<u8> = requests.iter().flat_map(|r| encode_command(r)).collect();
    conn.send(&batch).await;
    for (req, want) in requests.iter().zip(&expected) {
        let got = conn.read_reply().await;
        assert_eq!(show(&got), show(want), "{req:?}");
    }
}

// ---------------------------------------------------------------------------------------
// MSET / MSETNX
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn mset_across_every_master_sets_every_key_on_its_owner() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let keys: Vec<_> = spread_keys("se:mset:", 34).into_iter().take(100).collect();
    assert_eq!(distinct_owners(&keys), 3);
    let values: Vec<String> = (0..keys.len()).map(|i| format!("v{i}")).collect();
    let mut args = vec!["MSET"];
    for ((k, _), v) in keys.iter().zip(&values) {
        args.extend([k.as_str(), v.as_str()]);
    }
    // A key set twice in one MSET keeps the last value, as on a single Redis.
    args.extend([keys[1].0.as_str(), "last-wins"]);
    let reply = raw(proxy.local_addr(), &args).await;
    assert_eq!(show(&reply), "+OK\\r\\n");

    for (i, (k, owner)) in keys.iter().enumerate() {
        let want = if i == 1 {
            "last-wins"
        } else {
            values[i].as_str()
        };
        assert_eq!(
            on_node(*owner, &["GET", k]),
            Reply::Bulk(Some(want.as_bytes().to_vec())),
            "{k} read directly from its owner {owner}"
        );
    }
    // And respgate's own MGET agrees.
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(|(k, _)| k.as_str()));
    let got: Vec<Option<String>> = q(&mut con, &mget).await;
    assert_eq!(got[1].as_deref(), Some("last-wins"));
    assert_eq!(got[2].as_deref(), Some("v2"));
    assert_eq!(got.len(), 100);
}

#[tokio::test]
async fn mset_across_slots_with_a_key_missing_its_value_is_a_wrong_arity_error() {
    let proxy = proxy_for_shared().await;
    let (a, b) = ("se:mset-arity:{a}", "se:mset-arity:{b}");
    assert_ne!(key_slot(a.as_bytes()), key_slot(b.as_bytes()));
    let mut c = RawConn::connect(proxy.local_addr()).await;
    // What a standalone Redis answers (msetGenericCommand's arity check).
    c.send(&encode_command(&["MSET", a, "1", b])).await;
    let reply = c.try_read_reply().await;
    assert_eq!(
        reply.as_deref().map(show),
        Some(show(
            b"-ERR wrong number of arguments for 'mset' command\r\n"
        ))
    );
    // The connection is still usable and nothing was written.
    assert_eq!(show(&c.command(&["PING"]).await), "+PONG\\r\\n");
    assert_eq!(on_owner(a, &["EXISTS", a]), Reply::Int(0));
}

#[tokio::test]
async fn msetnx_across_slots_is_refused_with_crossslot_and_sets_nothing() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let keys: Vec<_> = spread_keys("se:msetnx-x:", 2).into_iter().collect();
    let mut args = vec!["MSETNX"];
    for (k, _) in &keys {
        args.extend([k.as_str(), "1"]);
    }
    let err = call::<Value>(&mut con, &build(&args), LIMIT)
        .await
        .expect_err("MSETNX across slots must fail");
    assert!(err.starts_with("CROSSSLOT"), "{err}");
    for (k, owner) in &keys {
        assert_eq!(on_node(*owner, &["EXISTS", k]), Reply::Int(0), "{k}");
    }
}

#[tokio::test]
async fn msetnx_within_one_hash_tag_sets_all_or_nothing() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (a, b, c) = (
        "se:msetnx:{tag}:a",
        "se:msetnx:{tag}:b",
        "se:msetnx:{tag}:c",
    );
    let n: i64 = q(&mut con, &["MSETNX", a, "1", b, "2"]).await;
    assert_eq!(n, 1);
    assert_eq!(on_owner(a, &["GET", a]), Reply::Bulk(Some(b"1".to_vec())));
    assert_eq!(on_owner(b, &["GET", b]), Reply::Bulk(Some(b"2".to_vec())));
    // b exists: nothing is set, not even c.
    let n: i64 = q(&mut con, &["MSETNX", b, "new", c, "3"]).await;
    assert_eq!(n, 0);
    assert_eq!(on_owner(b, &["GET", b]), Reply::Bulk(Some(b"2".to_vec())));
    assert_eq!(on_owner(c, &["EXISTS", c]), Reply::Int(0));
}

// ---------------------------------------------------------------------------------------
// What cannot be split
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cross_slot_commands_that_cannot_be_split_get_crossslot_and_change_nothing() {
    let proxy = proxy_for_shared().await;
    let (a, b) = ("se:nosplit:{a}", "se:nosplit:{b}");
    let (sa, sb) = ("se:nosplit:{a}set", "se:nosplit:{b}set");
    let (la, lb) = ("se:nosplit:{a}list", "se:nosplit:{b}list");
    assert_ne!(key_slot(a.as_bytes()), key_slot(b.as_bytes()));
    ok(on_owner(a, &["SET", a, "1"]), a);
    assert_eq!(on_owner(sa, &["SADD", sa, "m"]), Reply::Int(1));
    assert_eq!(on_owner(sb, &["SADD", sb, "n"]), Reply::Int(1));
    assert_eq!(on_owner(la, &["RPUSH", la, "e"]), Reply::Int(1));

    let mut c = RawConn::connect(proxy.local_addr()).await;
    for cmd in [
        vec!["SUNION", sa, sb],
        vec!["SINTER", sa, sb],
        vec!["SDIFF", sa, sb],
        vec!["SUNIONSTORE", "se:nosplit:{c}dst", sa, sb],
        vec!["SMOVE", sa, sb, "m"],
        vec!["RENAME", a, b],
        vec!["RENAMENX", a, b],
        vec!["COPY", a, b],
        vec!["LMOVE", la, lb, "LEFT", "RIGHT"],
        vec!["RPOPLPUSH", la, lb],
        vec!["BITOP", "OR", a, b],
        vec!["PFCOUNT", a, b],
        vec!["ZUNIONSTORE", "se:nosplit:{a}z", "2", sa, sb],
    ] {
        let reply = c.command(&cmd).await;
        assert_eq!(show(&reply), show(CROSSSLOT), "{cmd:?}");
    }
    // Nothing moved.
    assert_eq!(on_owner(a, &["GET", a]), Reply::Bulk(Some(b"1".to_vec())));
    assert_eq!(on_owner(b, &["EXISTS", b]), Reply::Int(0));
    assert_eq!(on_owner(sa, &["SCARD", sa]), Reply::Int(1));
    assert_eq!(on_owner(la, &["LLEN", la]), Reply::Int(1));
    assert_eq!(on_owner(lb, &["EXISTS", lb]), Reply::Int(0));
}

// ---------------------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn script_load_reaches_every_master_so_evalsha_runs_on_any_key() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let script = "return {KEYS[1], redis.call('incr', KEYS[1])} -- se:evalsha";
    let sha: String = q(&mut con, &["SCRIPT", "LOAD", script]).await;
    assert_eq!(sha.len(), 40, "{sha}");
    for m in shared_masters() {
        assert_eq!(
            on_node(m, &["SCRIPT", "EXISTS", &sha]),
            Reply::Array(vec![Reply::Int(1)]),
            "the script is loaded on master {m}"
        );
    }
    let keys = spread_keys("se:evalsha:", 2);
    assert_eq!(distinct_owners(&keys), 3);
    for (k, owner) in &keys {
        let r: Value = q(&mut con, &["EVALSHA", &sha, "1", k]).await;
        assert_eq!(
            r,
            Value::Array(vec![
                Value::BulkString(k.as_bytes().to_vec()),
                Value::Int(1)
            ]),
            "{k}"
        );
        assert_eq!(
            on_node(*owner, &["GET", k]),
            Reply::Bulk(Some(b"1".to_vec()))
        );
    }
}

#[tokio::test]
async fn script_exists_reports_1_for_a_loaded_script_and_0_for_an_unknown_sha() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let sha: String = q(&mut con, &["SCRIPT", "LOAD", "return 'se:script-exists'"]).await;
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let reply = raw(
        proxy.local_addr(),
        &["SCRIPT", "EXISTS", &sha, unknown, &sha],
    )
    .await;
    assert_eq!(show(&reply), show(b"*3\r\n:1\r\n:0\r\n:1\r\n"));
}

#[tokio::test]
async fn script_exists_reports_0_for_a_script_only_some_masters_have() {
    let proxy = proxy_for_shared().await;
    let masters = shared_masters();
    // Loaded directly on one node only: EVALSHA would fail for keys elsewhere.
    let partial = on_node(masters[1], &["SCRIPT", "LOAD", "return 'se:partial'"]);
    let sha = partial.as_str().unwrap().to_string();
    let reply = raw(proxy.local_addr(), &["SCRIPT", "EXISTS", &sha]).await;
    assert_eq!(show(&reply), show(b"*1\r\n:0\r\n"));
}

#[tokio::test]
async fn script_flush_removes_the_script_from_every_master() {
    // SCRIPT FLUSH empties every script cache: not on the shared cluster.
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    let sha: String = q(&mut con, &["SCRIPT", "LOAD", "return KEYS[1] -- se:flush"]).await;
    let keys = quiet.with(|c| keys_on_every_master(c, "se:script-flush:", 1));
    for (k, _) in &keys {
        let r: String = q(&mut con, &["EVALSHA", &sha, "1", k]).await;
        assert_eq!(&r, k);
    }

    let reply = raw(proxy.local_addr(), &["SCRIPT", "FLUSH"]).await;
    assert_eq!(show(&reply), "+OK\\r\\n");
    for (k, owner) in &keys {
        let reply = raw(proxy.local_addr(), &["EVALSHA", &sha, "1", k]).await;
        assert_eq!(
            show(&reply),
            show(b"-NOSCRIPT No matching script. Please use EVAL.\r\n"),
            "{k} on {owner}"
        );
        assert_eq!(
            quiet.command(*owner, &["SCRIPT", "EXISTS", &sha]),
            Reply::Array(vec![Reply::Int(0)])
        );
    }
    let reply = raw(proxy.local_addr(), &["SCRIPT", "EXISTS", &sha]).await;
    assert_eq!(show(&reply), show(b"*1\r\n:0\r\n"));
}

// ---------------------------------------------------------------------------------------
// INFO
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn info_reports_a_standalone_server_with_a_proxy_and_a_keyspace_section() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    ok(on_owner("se:info:k", &["SET", "se:info:k", "x"]), "seed");
    let info: String = q(&mut con, &["INFO"]).await;
    assert_eq!(info_field(&info, "cluster_enabled"), Some("0"), "{info}");
    assert!(!info.contains("cluster_enabled:1"), "{info}");
    let heads = sections(&info);
    for s in [
        "# Server",
        "# Clients",
        "# Cluster",
        "# Keyspace",
        "# Proxy",
    ] {
        assert!(heads.contains(&s), "no {s} in {heads:?}");
    }
    assert_eq!(
        heads.iter().filter(|h| **h == "# Keyspace").count(),
        1,
        "{heads:?}"
    );
    assert_eq!(info_field(&info, "proxy"), Some("respgate"), "{info}");
    assert_eq!(info_field(&info, "cluster_masters"), Some("3"), "{info}");
    assert!(db0(&info).0 >= 1, "db0 counts keys: {info}");
    // Each line is `field:value`, a `# Section` header, or the blank line between
    // sections: what INFO parsers expect.
    for line in info.split("\r\n") {
        assert!(
            line.is_empty() || line.starts_with("# ") || line.contains(':'),
            "odd INFO line {line:?}"
        );
    }
    assert!(info.ends_with("\r\n"), "{info:?}");
}

#[tokio::test]
async fn info_keyspace_alone_has_no_proxy_section() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    ok(
        on_owner("se:info-ks:k", &["SET", "se:info-ks:k", "x"]),
        "seed",
    );
    let info: String = q(&mut con, &["INFO", "keyspace"]).await;
    assert_eq!(sections(&info), vec!["# Keyspace"], "{info}");
    assert!(!info.contains("proxy:"), "{info}");
    assert!(info_field(&info, "db0").is_some(), "{info}");
}

#[tokio::test]
async fn info_server_reports_the_backend_redis_version() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let node = on_node(shared_masters()[0], &["INFO", "server"]);
    let node_version = info_field(node.as_str().unwrap(), "redis_version")
        .unwrap()
        .to_string();
    let info: String = q(&mut con, &["INFO", "server"]).await;
    assert_eq!(sections(&info), vec!["# Server"], "{info}");
    assert_eq!(
        info_field(&info, "redis_version"),
        Some(node_version.as_str())
    );
}

#[tokio::test]
async fn info_keyspace_counts_the_keys_and_expires_of_every_master() {
    let quiet = quiet_cluster().await;
    quiet.flush();
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;

    // Nothing anywhere: the section is there, with no db line (as on an empty Redis).
    let info: String = q(&mut con, &["INFO", "keyspace"]).await;
    assert_eq!(show(info.as_bytes()), show(b"# Keyspace\r\n"));

    let mut pipe = redis::pipe();
    for i in 0..3000 {
        let k = format!("se:info-sum:{i}");
        if i % 10 == 0 {
            pipe.cmd("SET")
                .arg(&k)
                .arg("x")
                .arg("EX")
                .arg(100_000)
                .ignore();
        } else {
            pipe.cmd("SET").arg(&k).arg("x").ignore();
        }
    }
    pipe.query_async::<()>(&mut con).await.unwrap();

    // The quiet cluster is idle: the masters' own figures cannot move meanwhile.
    let mut sum = (0, 0);
    let mut nonempty = 0;
    for m in quiet.masters() {
        let r = quiet.command(m, &["INFO", "keyspace"]);
        let (k, e) = db0(r.as_str().unwrap());
        sum = (sum.0 + k, sum.1 + e);
        nonempty += usize::from(k > 0);
    }
    assert_eq!(nonempty, 3, "the keys are on every master");
    assert_eq!(sum, (3000, 300));

    let info: String = q(&mut con, &["INFO"]).await;
    assert_eq!(db0(&info), sum, "{info}");
    let info: String = q(&mut con, &["INFO", "keyspace"]).await;
    assert_eq!(db0(&info), sum, "{info}");
}

// ---------------------------------------------------------------------------------------
// The whole keyspace: SCAN, KEYS, DBSIZE, RANDOMKEY, FLUSHALL (quiet cluster)
// ---------------------------------------------------------------------------------------

/// What [`load_keyspace`] wrote.
struct Keyspace {
    /// 20,000 strings `se:ks:{t<tag>}:<i>`, tags 0..200, i 0..100.
    strings: Vec<String>,
    /// 500 hashes `se:ks:h:<i>`, spread over every master.
    hashes: Vec<String>,
}

impl Keyspace {
    fn all(&self) -> HashSet<String> {
        self.strings.iter().chain(&self.hashes).cloned().collect()
    }
}

fn string_key(tag: usize, i: usize) -> String {
    format!("se:ks:{{t{tag}}}:{i}")
}

/// Empties the quiet cluster and writes 20,000 strings (pipelined MSETs, one per hash
/// tag) and 500 hashes through respgate; checks on the nodes that all arrived and that
/// every master holds some.
async fn load_keyspace(quiet: &QuietCluster, con: &mut MultiplexedConnection) -> Keyspace {
    quiet.flush();
    let mut strings = Vec::with_capacity(20_000);
    let mut pipe = redis::pipe();
    for tag in 0..200 {
        let mut mset = redis::cmd("MSET");
        for i in 0..100 {
            let k = string_key(tag, i);
            mset.arg(&k).arg(i);
            strings.push(k);
        }
        pipe.add_command(mset).ignore();
    }
    let hashes: Vec<String> = (0..500).map(|i| format!("se:ks:h:{i}")).collect();
    for h in &hashes {
        pipe.cmd("HSET").arg(h).arg("f").arg("v").ignore();
    }
    timed(LIMIT, pipe.query_async::<()>(con))
        .await
        .expect("loading the keyspace");
    let per_master = quiet.dbsize_per_master();
    assert_eq!(
        per_master.iter().map(|(_, n)| n).sum::<i64>(),
        20_500,
        "{per_master:?}"
    );
    assert!(per_master.iter().all(|(_, n)| *n > 0), "{per_master:?}");
    Keyspace { strings, hashes }
}

#[tokio::test]
async fn scan_returns_every_key_of_every_master_whatever_the_count() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    let ks = load_keyspace(&quiet, &mut con).await;
    let all = ks.all();
    for count in ["10", "100", "1000"] {
        let (seen, calls) = scan_all(&mut con, &["COUNT", count]).await;
        let missing: Vec<_> = all.difference(&seen).take(5).collect();
        let extra: Vec<_> = seen.difference(&all).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "SCAN COUNT {count}: {} of {} keys seen; missing e.g. {missing:?}, extra {extra:?}",
            seen.len(),
            all.len()
        );
        assert!(
            calls > 1,
            "COUNT {count}: one call cannot return 20,500 keys"
        );
    }
}

#[tokio::test]
async fn a_scan_cursor_can_be_continued_through_another_respgate() {
    // Clients behind a load balancer may reconnect to another instance mid-iteration.
    let quiet = quiet_cluster().await;
    let first = quiet.proxy().await;
    let second = quiet.proxy().await;
    let mut cons = [
        client(first.local_addr()).await,
        client(second.local_addr()).await,
    ];
    let ks = load_keyspace(&quiet, &mut cons[0]).await;
    let mut cursor = "0".to_string();
    let mut seen = HashSet::new();
    let mut calls = 0;
    loop {
        // Each call on the other instance than the one that made the cursor.
        let (next, keys): (String, Vec<String>) =
            q(&mut cons[calls % 2], &["SCAN", &cursor, "COUNT", "500"]).await;
        calls += 1;
        seen.extend(keys);
        if next == "0" {
            break;
        }
        assert!(calls < 100_000, "SCAN never returned cursor 0");
        cursor = next;
    }
    assert!(calls > 2, "the iteration crossed instances more than once");
    let all = ks.all();
    assert_eq!(seen.len(), all.len());
    assert_eq!(seen, all);
}

#[tokio::test]
async fn scan_match_returns_exactly_the_matching_keys() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    let ks = load_keyspace(&quiet, &mut con).await;

    // Tags 10..=19: 1,000 keys in 10 slots.
    let expected: HashSet<String> = (10..20)
        .flat_map(|t| (0..100).map(move |i| string_key(t, i)))
        .collect();
    let (seen, _) = scan_all(&mut con, &["MATCH", "se:ks:{t1?}:*", "COUNT", "100"]).await;
    assert_eq!(seen.len(), expected.len());
    assert_eq!(seen, expected);

    // Index 70..=79 under every tag (not the hashes `se:ks:h:7?`): 2,000 keys spread
    // over every master.
    let expected: HashSet<String> = ks
        .strings
        .iter()
        .filter(|k| {
            let i: usize = k.rsplit(':').next().unwrap().parse().unwrap();
            (70..80).contains(&i)
        })
        .cloned()
        .collect();
    assert_eq!(expected.len(), 2000);
    let (seen, _) = scan_all(&mut con, &["MATCH", "se:ks:{*}:7?", "COUNT", "1000"]).await;
    assert_eq!(seen.len(), expected.len());
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn scan_type_returns_exactly_the_keys_of_that_type() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    let ks = load_keyspace(&quiet, &mut con).await;
    let (seen, _) = scan_all(&mut con, &["TYPE", "hash", "COUNT", "100"]).await;
    let hashes: HashSet<String> = ks.hashes.iter().cloned().collect();
    assert_eq!(seen, hashes);
    let (seen, _) = scan_all(&mut con, &["COUNT", "1000", "TYPE", "string"]).await;
    assert_eq!(seen.len(), 20_000);
    assert_eq!(seen, ks.strings.iter().cloned().collect::<HashSet<_>>());
}

#[tokio::test]
async fn scan_with_an_invalid_cursor_is_an_error() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let mut node = RawConn::connect(shared_masters()[0]).await;
    for cursor in ["abc", "1x", " 1", "18446744073709551616"] {
        let reply = c.command(&["SCAN", cursor]).await;
        assert_eq!(show(&reply), show(b"-ERR invalid cursor\r\n"), "{cursor:?}");
        // Exactly what a Redis node says.
        assert_eq!(show(&reply), show(&node.command(&["SCAN", cursor]).await));
    }
    // The connection goes on.
    let reply = c.command(&["SCAN", "0", "COUNT", "1"]).await;
    assert!(reply.starts_with(b"*2\r\n"), "{}", show(&reply));
}

#[tokio::test]
async fn dbsize_counts_the_keys_of_every_master() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    load_keyspace(&quiet, &mut con).await;
    let n: i64 = q(&mut con, &["DBSIZE"]).await;
    assert_eq!(n, 20_500);
    let direct: i64 = quiet.dbsize_per_master().iter().map(|(_, n)| n).sum();
    assert_eq!(n, direct);
    quiet.flush();
    assert_eq!(
        show(&raw(proxy.local_addr(), &["DBSIZE"]).await),
        ":0\\r\\n"
    );
}

#[tokio::test]
async fn keys_returns_the_union_of_every_master_s_matching_keys() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    let ks = load_keyspace(&quiet, &mut con).await;

    for pattern in ["se:ks:{t1?}:*", "se:ks:h:*", "*"] {
        let mut got: Vec<String> = q(&mut con, &["KEYS", pattern]).await;
        got.sort();
        let mut union = Vec::new();
        for m in quiet.masters() {
            let Reply::Array(items) = quiet.command(m, &["KEYS", pattern]) else {
                panic!("KEYS on {m} is not an array");
            };
            union.extend(items.iter().map(|r| r.as_str().unwrap().to_string()));
        }
        union.sort();
        assert_eq!(got.len(), union.len(), "KEYS {pattern}: no duplicates");
        assert_eq!(got, union, "KEYS {pattern}");
    }
    let all: Vec<String> = q(&mut con, &["KEYS", "*"]).await;
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), ks.all());
    let none: Vec<String> = q(&mut con, &["KEYS", "se:nothing:*"]).await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn randomkey_returns_an_existing_key() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    let ks = load_keyspace(&quiet, &mut con).await;
    let all = ks.all();
    for _ in 0..20 {
        let k: Option<String> = q(&mut con, &["RANDOMKEY"]).await;
        let k = k.expect("RANDOMKEY on a non-empty keyspace is not nil");
        assert!(all.contains(&k), "{k} is not a key");
    }
}

#[tokio::test]
async fn randomkey_finds_the_only_key_whatever_master_holds_it() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    let keys = quiet.with(|c| keys_on_every_master(c, "se:randomkey-one:", 1));
    for (k, owner) in &keys {
        quiet.flush();
        ok(quiet.command(*owner, &["SET", k, "x"]), k);
        let got: Option<String> = q(&mut con, &["RANDOMKEY"]).await;
        assert_eq!(got.as_deref(), Some(k.as_str()), "only key, on {owner}");
    }
}

#[tokio::test]
async fn flushall_empties_every_master() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    load_keyspace(&quiet, &mut con).await;

    let reply = raw(proxy.local_addr(), &["FLUSHALL"]).await;
    assert_eq!(show(&reply), "+OK\\r\\n");
    for (m, n) in quiet.dbsize_per_master() {
        assert_eq!(n, 0, "master {m} after FLUSHALL");
    }
    let n: i64 = q(&mut con, &["DBSIZE"]).await;
    assert_eq!(n, 0);
    let reply = raw(proxy.local_addr(), &["RANDOMKEY"]).await;
    assert_eq!(show(&reply), "$-1\\r\\n");
    let (seen, _) = scan_all(&mut con, &["COUNT", "100"]).await;
    assert!(seen.is_empty(), "{seen:?}");
    let keys: Vec<String> = q(&mut con, &["KEYS", "*"]).await;
    assert!(keys.is_empty());
}

#[tokio::test]
async fn flushdb_empties_every_master() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    let keys = quiet.with(|c| keys_on_every_master(c, "se:flushdb:", 5));
    quiet.flush();
    for (k, owner) in &keys {
        ok(quiet.command(*owner, &["SET", k, "x"]), k);
    }
    let reply = raw(proxy.local_addr(), &["FLUSHDB"]).await;
    assert_eq!(show(&reply), "+OK\\r\\n");
    for (m, n) in quiet.dbsize_per_master() {
        assert_eq!(n, 0, "master {m} after FLUSHDB");
    }
    let n: i64 = q(&mut con, &["DBSIZE"]).await;
    assert_eq!(n, 0);
}

// ---------------------------------------------------------------------------------------
// CONFIG SET
// ---------------------------------------------------------------------------------------

/// `CONFIG GET param` asked directly of `node`.
fn config_of(quiet: &QuietCluster, node: SocketAddr, param: &str) -> String {
    match quiet.command(node, &["CONFIG", "GET", param]) {
        Reply::Array(kv) if kv.len() == 2 => kv[1].as_str().unwrap().to_string(),
        other => panic!("{node}: CONFIG GET {param} gave {other:?}"),
    }
}

/// `param` on every node of the quiet cluster (masters and replicas), asked directly.
fn config_everywhere(quiet: &QuietCluster, param: &str) -> Vec<(SocketAddr, String)> {
    quiet
        .seeds()
        .into_iter()
        .map(|n| (n, config_of(quiet, n, param)))
        .collect()
}

fn all_equal(values: &[(SocketAddr, String)], want: &str, what: &str) {
    for (node, v) in values {
        assert_eq!(v, want, "{what}: node {node}");
    }
}

/// Puts the configuration the CONFIG SET tests change back on every node (directly),
/// whatever way the test ends, so the other tests of the quiet cluster see defaults.
struct RestoreConfig<'a> {
    quiet: &'a QuietCluster,
    values: Vec<(SocketAddr, Vec<(&'static str, String)>)>,
    /// The node whose `default` user lost CONFIG SET, if any.
    acl: Option<SocketAddr>,
}

impl<'a> RestoreConfig<'a> {
    fn new(quiet: &'a QuietCluster, params: &[&'static str]) -> RestoreConfig<'a> {
        let values = quiet
            .seeds()
            .into_iter()
            .map(|n| {
                (
                    n,
                    params
                        .iter()
                        .map(|p| (*p, config_of(quiet, n, p)))
                        .collect(),
                )
            })
            .collect();
        RestoreConfig {
            quiet,
            values,
            acl: None,
        }
    }
}

impl Drop for RestoreConfig<'_> {
    fn drop(&mut self) {
        if let Some(node) = self.acl {
            let _ = self
                .quiet
                .with(|c| c.command(node, &["ACL", "SETUSER", "default", "+config|set"]));
        }
        for (node, params) in &self.values {
            for (p, v) in params {
                let _ = self
                    .quiet
                    .with(|c| c.command(*node, &["CONFIG", "SET", p, v]));
            }
        }
    }
}

#[tokio::test]
async fn config_set_is_applied_on_every_node() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let mut con = client(proxy.local_addr()).await;
    let _restore = RestoreConfig::new(&quiet, &["slowlog-max-len"]);
    assert_eq!(quiet.seeds().len(), 6, "3 masters and 3 replicas");
    let before = config_everywhere(&quiet, "slowlog-max-len");
    let target = if before.iter().any(|(_, v)| v == "200") {
        "201"
    } else {
        "200"
    };

    let reply = raw(
        proxy.local_addr(),
        &["CONFIG", "SET", "slowlog-max-len", target],
    )
    .await;
    assert_eq!(show(&reply), "+OK\\r\\n");
    all_equal(
        &config_everywhere(&quiet, "slowlog-max-len"),
        target,
        "after CONFIG SET",
    );
    let got: Vec<String> = q(&mut con, &["CONFIG", "GET", "slowlog-max-len"]).await;
    assert_eq!(got, vec!["slowlog-max-len".to_string(), target.to_string()]);

    // A value every node rejects: the node's error, as a single Redis gives it.
    let reply = raw(
        proxy.local_addr(),
        &["CONFIG", "SET", "slowlog-max-len", "not-a-number"],
    )
    .await;
    assert!(reply.starts_with(b"-ERR "), "{}", show(&reply));
    all_equal(
        &config_everywhere(&quiet, "slowlog-max-len"),
        target,
        "unchanged",
    );

    // Pipelined behind CONFIG SET, a CONFIG GET sees its effect.
    let mut conn = RawConn::connect(proxy.local_addr()).await;
    conn.send(&encode_pipeline(&[
        &["CONFIG", "SET", "slowlog-max-len", "150"],
        &["CONFIG", "GET", "slowlog-max-len"],
        &["PING"],
    ]))
    .await;
    let replies = conn.read_replies(3).await;
    assert_eq!(show(&replies[0]), "+OK\\r\\n");
    assert_eq!(
        show(&replies[1]),
        show(b"*2\r\n$15\r\nslowlog-max-len\r\n$3\r\n150\r\n")
    );
    assert_eq!(show(&replies[2]), "+PONG\\r\\n");
}

/// One valid CONFIG SET of two parameters.
const SET_BOTH: [&str; 6] = [
    "CONFIG",
    "SET",
    "maxmemory-policy",
    "allkeys-lru",
    "maxmemory",
    "100mb",
];

#[tokio::test]
async fn config_set_changes_every_node_or_none() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let addr = proxy.local_addr();
    let mut restore = RestoreConfig::new(&quiet, &["maxmemory-policy", "maxmemory"]);
    let nodes = quiet.seeds();
    assert_eq!(nodes.len(), 6, "3 masters and 3 replicas");
    all_equal(
        &config_everywhere(&quiet, "maxmemory-policy"),
        "noeviction",
        "default",
    );
    all_equal(&config_everywhere(&quiet, "maxmemory"), "0", "default");

    // Valid: every node, replicas included.
    let reply = raw(addr, &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]).await;
    assert_eq!(show(&reply), "+OK\\r\\n");
    all_equal(
        &config_everywhere(&quiet, "maxmemory-policy"),
        "allkeys-lru",
        "set",
    );
    let reply = raw(addr, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]).await;
    assert_eq!(show(&reply), "+OK\\r\\n");
    all_equal(
        &config_everywhere(&quiet, "maxmemory-policy"),
        "noeviction",
        "set back",
    );

    // One valid and one invalid parameter: every node refuses both (Redis applies a
    // CONFIG SET whole or not at all); the client gets the node's own error.
    let half_bad = [
        "CONFIG",
        "SET",
        "maxmemory-policy",
        "allkeys-lru",
        "maxmemory",
        "notanumber",
    ];
    let direct = raw(nodes[0], &half_bad).await;
    assert!(
        direct.starts_with(b"-ERR CONFIG SET failed"),
        "{}",
        show(&direct)
    );
    let reply = raw(addr, &half_bad).await;
    assert_eq!(show(&reply), show(&direct));
    all_equal(
        &config_everywhere(&quiet, "maxmemory-policy"),
        "noeviction",
        "after the refused SET",
    );
    all_equal(
        &config_everywhere(&quiet, "maxmemory"),
        "0",
        "after the refused SET",
    );

    // One node (a replica) refuses what the others accept: those are rolled back.
    let refusing = *nodes
        .iter()
        .find(|n| !quiet.masters().contains(n))
        .expect("a replica");
    restore.acl = Some(refusing);
    ok(
        quiet.command(refusing, &["ACL", "SETUSER", "default", "-config|set"]),
        "ACL SETUSER",
    );
    let reply = raw(addr, &SET_BOTH).await;
    assert_eq!(
        show(&reply),
        show(b"-NOPERM this user has no permissions to run the 'config|set' command\r\n")
    );
    all_equal(
        &config_everywhere(&quiet, "maxmemory-policy"),
        "noeviction",
        "rolled back",
    );
    all_equal(&config_everywhere(&quiet, "maxmemory"), "0", "rolled back");
    ok(
        quiet.command(refusing, &["ACL", "SETUSER", "default", "+config|set"]),
        "ACL SETUSER",
    );
    restore.acl = None;

    // With every node willing again, both parameters reach every node.
    let reply = raw(addr, &SET_BOTH).await;
    assert_eq!(show(&reply), "+OK\\r\\n");
    all_equal(
        &config_everywhere(&quiet, "maxmemory-policy"),
        "allkeys-lru",
        "set",
    );
    all_equal(&config_everywhere(&quiet, "maxmemory"), "104857600", "set");
    let reply = raw(
        addr,
        &[
            "CONFIG",
            "SET",
            "maxmemory-policy",
            "noeviction",
            "maxmemory",
            "0",
        ],
    )
    .await;
    assert_eq!(show(&reply), "+OK\\r\\n");
    all_equal(
        &config_everywhere(&quiet, "maxmemory-policy"),
        "noeviction",
        "restored",
    );
    all_equal(&config_everywhere(&quiet, "maxmemory"), "0", "restored");
}

// ---------------------------------------------------------------------------------------
// Merged replies match a single Redis's, whatever the keys hold
// ---------------------------------------------------------------------------------------

/// One key of each type per master: `(key, owner, type)`.
fn seed_every_type(prefix: &str) -> Vec<(String, SocketAddr, &'static str)> {
    let keys = spread_keys(prefix, 5);
    let types = ["string", "list", "hash", "set", "zset"];
    let mut out = Vec::new();
    for (n, (k, owner)) in keys.into_iter().enumerate() {
        let t = types[n / 3 % types.len()];
        let r = match t {
            "string" => on_node(owner, &["SET", &k, "s"]),
            "list" => on_node(owner, &["RPUSH", &k, "a", "b"]),
            "hash" => on_node(owner, &["HSET", &k, "f", "v"]),
            "set" => on_node(owner, &["SADD", &k, "m"]),
            _ => on_node(owner, &["ZADD", &k, "1", "m"]),
        };
        assert!(!matches!(r, Reply::Error(_)), "{k}: {r:?}");
        out.push((k, owner, t));
    }
    out
}

#[tokio::test]
async fn del_across_slots_deletes_keys_of_every_type() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let keys = seed_every_type("se:del-types:");
    assert_eq!(keys.len(), 15);
    let mut args = vec!["DEL"];
    args.extend(keys.iter().map(|(k, _, _)| k.as_str()));
    args.push("se:del-types:missing");
    let n: i64 = q(&mut con, &args).await;
    assert_eq!(n, 15);
    for (k, owner, t) in &keys {
        assert_eq!(on_node(*owner, &["EXISTS", k]), Reply::Int(0), "{k} ({t})");
    }
}

#[tokio::test]
async fn mget_across_slots_answers_nil_for_keys_that_are_not_strings() {
    let proxy = proxy_for_shared().await;
    let keys = seed_every_type("se:mget-types:");
    // What a single Redis says for keys of one slot: a value for the string, nil for
    // the rest, no WRONGTYPE.
    let tagged = ["se:mget-types:{one}s", "se:mget-types:{one}l"];
    ok(
        on_owner(tagged[0], &["SET", tagged[0], "s"]),
        "tagged string",
    );
    assert_eq!(
        on_owner(tagged[1], &["RPUSH", tagged[1], "a"]),
        Reply::Int(1)
    );
    let node_reply = RawConn::connect(shared_owner_of(tagged[0]))
        .await
        .command(&["MGET", tagged[0], tagged[1]])
        .await;
    assert_eq!(
        show(&node_reply),
        show(&bulk_array(&[Some("s".into()), None]))
    );

    let mut args = vec!["MGET"];
    args.extend(keys.iter().map(|(k, _, _)| k.as_str()));
    let expected: Vec<Option<String>> = keys
        .iter()
        .map(|(_, _, t)| (*t == "string").then(|| "s".to_string()))
        .collect();
    let reply = raw(proxy.local_addr(), &args).await;
    assert_eq!(show(&reply), show(&bulk_array(&expected)));
}

/// Fills `key` with 1,000 elements directly on its owner, then checks that a full
/// `cmd` iteration through respgate returns them all (with their values/scores), sent
/// straight to the key's owner (no MOVED meanwhile).
async fn scan_of_a_big_key(cmd: &str, key: &str, fill: &[&str], to_map: bool) {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let mut args: Vec<String> = fill.iter().map(|s| s.to_string()).collect();
    args.insert(1, key.to_string());
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..1000 {
        let (member, value) = (format!("m{i}"), format!("{i}"));
        match cmd {
            "HSCAN" => args.extend([member.clone(), value.clone()]),
            "ZSCAN" => args.extend([value.clone(), member.clone()]),
            _ => args.push(member.clone()),
        }
        expected.insert(member, value);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(on_owner(key, &args), Reply::Int(1000), "{cmd} seed");

    let moved_before = moved_on_shared_masters();
    let items = scan_key(&mut con, cmd, key).await;
    assert_eq!(
        moved_on_shared_masters(),
        moved_before,
        "a node answered MOVED: {cmd} did not go to {key}'s owner"
    );
    if to_map {
        assert_eq!(items.len() % 2, 0);
        let got: HashMap<String, String> = items
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        assert_eq!(got.len(), 1000, "{cmd}: every element");
        for (m, v) in &expected {
            assert_eq!(got.get(m), Some(v), "{cmd} {m}");
        }
    } else {
        let got: HashSet<String> = items.into_iter().collect();
        assert_eq!(got, expected.keys().cloned().collect::<HashSet<_>>());
    }
}

#[tokio::test]
async fn hscan_iterates_a_whole_hash_on_its_owner() {
    scan_of_a_big_key("HSCAN", "se:hscan:h", &["HSET"], true).await;
}

#[tokio::test]
async fn sscan_iterates_a_whole_set_on_its_owner() {
    scan_of_a_big_key("SSCAN", "se:sscan:s", &["SADD"], false).await;
}

#[tokio::test]
async fn zscan_iterates_a_whole_sorted_set_on_its_owner() {
    scan_of_a_big_key("ZSCAN", "se:zscan:z", &["ZADD"], true).await;
}

/// What one endpoint in front of a cluster cannot honour gets a precise error naming why.
#[tokio::test]
async fn commands_a_single_endpoint_cannot_honour_say_why() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    for (args, want) in [
        (&["SELECT", "1"][..], "-ERR DB index is out of range\r\n"),
        (
            &["SWAPDB", "0", "1"][..],
            "-ERR respgate: SWAPDB is not allowed: a Redis Cluster has only database 0\r\n",
        ),
        (
            &["MOVE", "k", "1"][..],
            "-ERR respgate: MOVE is not allowed: a Redis Cluster has only database 0\r\n",
        ),
        (
            &["DEBUG", "SLEEP", "0"][..],
            "-ERR respgate: DEBUG is not allowed through the proxy; run it on a node\r\n",
        ),
    ] {
        assert_eq!(
            String::from_utf8_lossy(&raw(addr, args).await),
            want,
            "{args:?}"
        );
    }
    let tracking = raw(addr, &["CLIENT", "TRACKING", "on"]).await;
    assert!(
        tracking.starts_with(b"-ERR respgate: CLIENT TRACKING is not supported: client-side caching needs invalidation messages"),
        "{}",
        String::from_utf8_lossy(&tracking)
    );
}
