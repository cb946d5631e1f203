//! Routing through respgate to a real Redis Cluster: keys reach the master that owns their
//! slot, multi-key commands are confined to one slot, key-spec routing finds the keys of
//! commands with unusual key positions, and the connection commands respgate answers
//! itself match what a standalone Redis says.
//!
//! Key-spec tests also check that no node answered `-MOVED` meanwhile: respgate follows
//! MOVED transparently, so a misrouted command would still "work" and only the nodes'
//! `errorstat_MOVED` counters reveal it.

mod support;

use devcluster::Reply;
use redis::Value;
use respgate::cluster::key_slot;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use support::*;
use tokio::sync::RwLock;

/// Tests that count MOVED replies hold it shared; a test that provokes MOVED on purpose
/// holds it exclusively.
static MOVED_COUNTERS: RwLock<()> = RwLock::const_new(());

/// `-MOVED` replies sent so far by all masters of the shared cluster.
fn moved_replies_on_masters() -> u64 {
    with_shared_cluster(|c| {
        c.masters()
            .into_iter()
            .map(|m| {
                let info = c.command(m, &["INFO", "errorstats"]).unwrap();
                let info = info.as_str().unwrap().to_string();
                info.lines()
                    .find_map(|l| l.strip_prefix("errorstat_MOVED:count="))
                    .map_or(0, |n| n.trim().parse::<u64>().unwrap())
            })
            .sum()
    })
}

/// Runs `f` and asserts that no master answered `-MOVED` meanwhile: every request was
/// sent straight to the node that owns its slot.
async fn without_redirects<T>(f: impl Future<Output = T>) -> T {
    let _shared = MOVED_COUNTERS.read().await;
    let before = moved_replies_on_masters();
    let out = f.await;
    let after = moved_replies_on_masters();
    assert_eq!(
        after, before,
        "a node answered MOVED: respgate sent a request to a node that does not own its slot"
    );
    out
}

async fn query(con: &mut redis::aio::MultiplexedConnection, args: &[&[u8]]) -> Value {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async::<Value>(con)
        .await
        .unwrap_or_else(|e| panic!("{:?} failed: {e}", show(&args.concat())))
}

/// Sends a command through a raw connection and returns the reply bytes.
async fn raw(addr: SocketAddr, args: &[&str]) -> Vec<u8> {
    RawConn::connect(addr).await.command(args).await
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// `GET key` asked directly of the master that owns the key's slot.
fn direct_get(key: &str) -> Reply {
    let owner = shared_owner_of(key);
    with_shared_cluster(|c| c.command(owner, &["GET", key]).unwrap())
}

/// What the node that owns `key` answers to `args` (sent directly, bypassing respgate).
fn direct(key: &str, args: &[&str]) -> Reply {
    let owner = shared_owner_of(key);
    with_shared_cluster(|c| c.command(owner, args).unwrap())
}

const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";

// ---------------------------------------------------------------------------------------
// Placement
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn ten_thousand_keys_land_on_the_master_owning_their_slot() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let keys: Vec<String> = (0..10_000).map(|i| format!("place:{i}")).collect();

    let mut pipe = redis::pipe();
    for (i, k) in keys.iter().enumerate() {
        pipe.set(k, format!("value-{i}")).ignore();
    }
    pipe.query_async::<()>(&mut con).await.unwrap();

    let owners = shared_slot_owners();
    let mut by_owner: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        by_owner
            .entry(owners[key_slot(k.as_bytes()) as usize])
            .or_default()
            .push(i);
    }
    let masters = with_shared_cluster(|c| c.masters());
    assert_eq!(
        by_owner.len(),
        masters.len(),
        "10,000 keys should spread over every master"
    );

    for (owner, indexes) in &by_owner {
        // A plain connection to one node: it answers only for the slots it owns.
        let mut node = client(*owner).await;
        let mut pipe = redis::pipe();
        for &i in indexes {
            pipe.get(&keys[i]);
        }
        let values: Vec<Option<String>> = pipe.query_async(&mut node).await.unwrap();
        for (&i, v) in indexes.iter().zip(values) {
            assert_eq!(
                v.as_deref(),
                Some(format!("value-{i}").as_str()),
                "{} read directly from its slot owner {owner}",
                keys[i]
            );
        }
    }

    // The check above is meaningful: a node that does not own the slot redirects.
    let _exclusive = MOVED_COUNTERS.write().await;
    let key = &keys[0];
    let owner = owners[key_slot(key.as_bytes()) as usize];
    let other = masters.iter().copied().find(|&m| m != owner).unwrap();
    let moved_before = moved_replies_on_masters();
    match with_shared_cluster(|c| c.command(other, &["GET", key]).unwrap()) {
        Reply::Error(e) => assert!(e.starts_with("MOVED "), "{e}"),
        r => panic!("non-owner {other} answered {r:?} for {key}"),
    }
    // ...and the counter `without_redirects` relies on sees it.
    assert_eq!(moved_replies_on_masters(), moved_before + 1);
}

#[tokio::test]
async fn keys_with_the_same_hash_tag_land_on_the_same_node() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (a, b) = ("tag:{user1}:a", "tag:{user1}:b");
    assert_eq!(key_slot(a.as_bytes()), key_slot(b"user1"));
    assert_eq!(key_slot(b.as_bytes()), key_slot(b"user1"));

    without_redirects(async {
        query(&mut con, &[b"SET", a.as_bytes(), b"1"]).await;
        query(&mut con, &[b"SET", b.as_bytes(), b"2"]).await;
    })
    .await;

    assert_eq!(shared_owner_of(a), shared_owner_of(b));
    assert_eq!(direct_get(a), Reply::Bulk(Some(b"1".to_vec())));
    assert_eq!(direct_get(b), Reply::Bulk(Some(b"2".to_vec())));
}

#[tokio::test]
async fn multi_key_commands_work_within_one_hash_tag() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (a, b) = ("mk:{user1}:a", "mk:{user1}:b");

    without_redirects(async {
        let set = query(&mut con, &[b"MSET", a.as_bytes(), b"x", b.as_bytes(), b"y"]).await;
        assert_eq!(set, Value::Okay);
        let got = query(&mut con, &[b"MGET", a.as_bytes(), b.as_bytes()]).await;
        assert_eq!(got, Value::Array(vec![bulk("x"), bulk("y")]));
        let n = query(&mut con, &[b"EXISTS", a.as_bytes(), b.as_bytes()]).await;
        assert_eq!(n, Value::Int(2));
        let n = query(&mut con, &[b"DEL", a.as_bytes(), b.as_bytes()]).await;
        assert_eq!(n, Value::Int(2));
    })
    .await;
    assert_eq!(direct_get(a), Reply::Bulk(None));
}

#[tokio::test]
async fn unsplittable_multi_key_commands_across_slots_get_crossslot_and_change_nothing() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let (a, b) = ("xs:{alpha}", "xs:{beta}");
    assert_ne!(key_slot(a.as_bytes()), key_slot(b.as_bytes()));

    let mut c = RawConn::connect(addr).await;
    // (MSET, MGET, DEL, EXISTS, ... are split by slot: tests/single_endpoint.rs.)
    for cmd in [
        vec!["SUNIONSTORE", a, b],
        vec!["RENAME", a, b],
        vec!["SMOVE", a, b, "m"],
    ] {
        let reply = c.command(&cmd).await;
        assert_eq!(show(&reply), show(CROSSSLOT), "{cmd:?}");
    }
    // The same text a cluster node gives.
    let node_reply = RawConn::connect(shared_owner_of(a))
        .await
        .command(&["SUNIONSTORE", a, b])
        .await;
    assert_eq!(show(&node_reply), show(CROSSSLOT));
    assert_eq!(direct_get(a), Reply::Bulk(None));
    assert_eq!(direct_get(b), Reply::Bulk(None));
}

// ---------------------------------------------------------------------------------------
// Key-spec routing: commands whose keys are not simply the first argument
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn xadd_and_xread_route_by_their_stream_keys() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (s1, s2) = ("{ks-stream}s1", "{ks-stream}s2");

    without_redirects(async {
        let id1 = query(&mut con, &[b"XADD", s1.as_bytes(), b"*", b"f", b"v1"]).await;
        let id2 = query(&mut con, &[b"XADD", s2.as_bytes(), b"*", b"f", b"v2"]).await;
        let one = query(
            &mut con,
            &[b"XREAD", b"COUNT", b"1", b"STREAMS", s1.as_bytes(), b"0"],
        )
        .await;
        let entry = |s: &str, id: &Value, v: &str| {
            Value::Array(vec![
                bulk(s),
                Value::Array(vec![Value::Array(vec![
                    id.clone(),
                    Value::Array(vec![bulk("f"), bulk(v)]),
                ])]),
            ])
        };
        assert_eq!(one, Value::Array(vec![entry(s1, &id1, "v1")]));
        let both = query(
            &mut con,
            &[
                b"XREAD",
                b"COUNT",
                b"1",
                b"STREAMS",
                s1.as_bytes(),
                s2.as_bytes(),
                b"0",
                b"0",
            ],
        )
        .await;
        assert_eq!(
            both,
            Value::Array(vec![entry(s1, &id1, "v1"), entry(s2, &id2, "v2")])
        );
    })
    .await;

    let reply = raw(
        proxy.local_addr(),
        &["XREAD", "COUNT", "1", "STREAMS", s1, "{other}s", "0", "0"],
    )
    .await;
    assert_eq!(show(&reply), show(CROSSSLOT));
}

#[tokio::test]
async fn zunionstore_routes_by_destination_and_sources() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (dst, a, b) = ("{ks-zu}dst", "{ks-zu}a", "{ks-zu}b");

    without_redirects(async {
        query(&mut con, &[b"ZADD", a.as_bytes(), b"1", b"x", b"2", b"y"]).await;
        query(&mut con, &[b"ZADD", b.as_bytes(), b"3", b"y", b"4", b"z"]).await;
        let n = query(
            &mut con,
            &[
                b"ZUNIONSTORE",
                dst.as_bytes(),
                b"2",
                a.as_bytes(),
                b.as_bytes(),
            ],
        )
        .await;
        assert_eq!(n, Value::Int(3));
        let r = query(
            &mut con,
            &[b"ZRANGE", dst.as_bytes(), b"0", b"-1", b"WITHSCORES"],
        )
        .await;
        assert_eq!(
            r,
            Value::Array(["x", "1", "z", "4", "y", "5"].map(bulk).to_vec())
        );
    })
    .await;
    assert_eq!(direct(dst, &["ZCARD", dst]), Reply::Int(3));

    let reply = raw(
        proxy.local_addr(),
        &["ZUNIONSTORE", "{elsewhere}dst", "2", a, b],
    )
    .await;
    assert_eq!(show(&reply), show(CROSSSLOT));
}

#[tokio::test]
async fn eval_with_one_key_runs_on_the_key_owner() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let key = "ks-eval1:k";
    without_redirects(async {
        let r = query(
            &mut con,
            &[
                b"EVAL",
                b"return redis.call('set', KEYS[1], ARGV[1])",
                b"1",
                key.as_bytes(),
                b"v1",
            ],
        )
        .await;
        assert_eq!(r, Value::Okay);
    })
    .await;
    assert_eq!(direct_get(key), Reply::Bulk(Some(b"v1".to_vec())));
}

#[tokio::test]
async fn eval_with_two_keys_of_one_hash_tag_runs_on_their_owner() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (k1, k2) = ("{ks-eval2}k1", "{ks-eval2}k2");
    let script = b"redis.call('set', KEYS[1], ARGV[1]); redis.call('set', KEYS[2], ARGV[2]); \
                   return {redis.call('get', KEYS[1]), redis.call('get', KEYS[2])}";
    without_redirects(async {
        let r = query(
            &mut con,
            &[
                b"EVAL",
                script,
                b"2",
                k1.as_bytes(),
                k2.as_bytes(),
                b"a",
                b"b",
            ],
        )
        .await;
        assert_eq!(r, Value::Array(vec![bulk("a"), bulk("b")]));
    })
    .await;
    assert_eq!(direct_get(k2), Reply::Bulk(Some(b"b".to_vec())));
}

#[tokio::test]
async fn eval_without_keys_runs_on_some_master() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    without_redirects(async {
        let r = query(&mut con, &[b"EVAL", b"return ARGV[1]", b"0", b"hello"]).await;
        assert_eq!(r, bulk("hello"));
        let r = query(&mut con, &[b"EVAL", b"return 1 + 2", b"0"]).await;
        assert_eq!(r, Value::Int(3));
    })
    .await;
}

#[tokio::test]
async fn eval_with_keys_in_different_slots_gets_crossslot() {
    let proxy = proxy_for_shared().await;
    let reply = raw(
        proxy.local_addr(),
        &["EVAL", "return 1", "2", "{ks-eval3}a", "{ks-eval3-other}b"],
    )
    .await;
    assert_eq!(show(&reply), show(CROSSSLOT));
}

#[tokio::test]
async fn sort_by_nosort_store_routes_by_source_and_destination() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (list, dst) = ("{ks-sort}list", "{ks-sort}dst");
    without_redirects(async {
        query(&mut con, &[b"RPUSH", list.as_bytes(), b"3", b"1", b"2"]).await;
        let n = query(
            &mut con,
            &[
                b"SORT",
                list.as_bytes(),
                b"BY",
                b"nosort",
                b"STORE",
                dst.as_bytes(),
            ],
        )
        .await;
        assert_eq!(n, Value::Int(3));
        let r = query(&mut con, &[b"LRANGE", dst.as_bytes(), b"0", b"-1"]).await;
        assert_eq!(r, Value::Array(["3", "1", "2"].map(bulk).to_vec()));
    })
    .await;
    assert_eq!(direct(dst, &["LLEN", dst]), Reply::Int(3));

    let reply = raw(
        proxy.local_addr(),
        &["SORT", list, "BY", "nosort", "STORE", "{ks-sort-other}dst"],
    )
    .await;
    assert_eq!(show(&reply), show(CROSSSLOT));
}

#[tokio::test]
async fn georadius_store_routes_by_source_and_destination() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (pts, dst) = ("{ks-geo}pts", "{ks-geo}dst");
    without_redirects(async {
        let n = query(
            &mut con,
            &[
                b"GEOADD",
                pts.as_bytes(),
                b"13.361389",
                b"38.115556",
                b"Palermo",
                b"15.087269",
                b"37.502669",
                b"Catania",
            ],
        )
        .await;
        assert_eq!(n, Value::Int(2));
        let n = query(
            &mut con,
            &[
                b"GEORADIUS",
                pts.as_bytes(),
                b"15",
                b"37",
                b"200",
                b"km",
                b"ASC",
                b"STORE",
                dst.as_bytes(),
            ],
        )
        .await;
        assert_eq!(n, Value::Int(2));
        let r = query(&mut con, &[b"ZRANGE", dst.as_bytes(), b"0", b"-1"]).await;
        assert_eq!(r, Value::Array(["Palermo", "Catania"].map(bulk).to_vec()));
    })
    .await;
    assert_eq!(direct(dst, &["ZCARD", dst]), Reply::Int(2));

    let reply = raw(
        proxy.local_addr(),
        &[
            "GEORADIUS",
            pts,
            "15",
            "37",
            "200",
            "km",
            "STORE",
            "{ks-geo-other}dst",
        ],
    )
    .await;
    assert_eq!(show(&reply), show(CROSSSLOT));
}

#[tokio::test]
async fn object_encoding_routes_by_its_key() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (int_key, str_key) = ("ks-object:int", "ks-object:str");
    without_redirects(async {
        query(&mut con, &[b"SET", int_key.as_bytes(), b"12345"]).await;
        query(&mut con, &[b"SET", str_key.as_bytes(), b"hello"]).await;
        let r = query(&mut con, &[b"OBJECT", b"ENCODING", int_key.as_bytes()]).await;
        assert_eq!(r, bulk("int"));
        let r = query(&mut con, &[b"OBJECT", b"ENCODING", str_key.as_bytes()]).await;
        assert_eq!(r, bulk("embstr"));
    })
    .await;
}

#[tokio::test]
async fn lmove_routes_by_source_and_destination() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (src, dst) = ("{ks-lmove}src", "{ks-lmove}dst");
    without_redirects(async {
        query(&mut con, &[b"RPUSH", src.as_bytes(), b"a", b"b", b"c"]).await;
        let r = query(
            &mut con,
            &[b"LMOVE", src.as_bytes(), dst.as_bytes(), b"RIGHT", b"LEFT"],
        )
        .await;
        assert_eq!(r, bulk("c"));
        let r = query(&mut con, &[b"LRANGE", dst.as_bytes(), b"0", b"-1"]).await;
        assert_eq!(r, Value::Array(vec![bulk("c")]));
    })
    .await;
    assert_eq!(direct(src, &["LLEN", src]), Reply::Int(2));

    let reply = raw(
        proxy.local_addr(),
        &["LMOVE", src, "{ks-lmove-other}dst", "RIGHT", "LEFT"],
    )
    .await;
    assert_eq!(show(&reply), show(CROSSSLOT));
}

#[tokio::test]
async fn copy_routes_by_source_and_destination() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (src, dst) = ("{ks-copy}src", "{ks-copy}dst");
    without_redirects(async {
        query(&mut con, &[b"SET", src.as_bytes(), b"v"]).await;
        let r = query(&mut con, &[b"COPY", src.as_bytes(), dst.as_bytes()]).await;
        assert_eq!(r, Value::Int(1));
        let r = query(&mut con, &[b"COPY", src.as_bytes(), dst.as_bytes()]).await;
        assert_eq!(
            r,
            Value::Int(0),
            "COPY without REPLACE keeps an existing key"
        );
    })
    .await;
    assert_eq!(direct_get(dst), Reply::Bulk(Some(b"v".to_vec())));
}

#[tokio::test]
async fn bitop_routes_by_destination_and_sources() {
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let (dst, a, b) = ("{ks-bitop}dst", "{ks-bitop}a", "{ks-bitop}b");
    without_redirects(async {
        query(&mut con, &[b"SET", a.as_bytes(), b"\x0f\xff"]).await;
        query(&mut con, &[b"SET", b.as_bytes(), b"\xf0"]).await;
        let n = query(
            &mut con,
            &[b"BITOP", b"OR", dst.as_bytes(), a.as_bytes(), b.as_bytes()],
        )
        .await;
        assert_eq!(n, Value::Int(2));
        let r = query(&mut con, &[b"GET", dst.as_bytes()]).await;
        assert_eq!(r, Value::BulkString(b"\xff\xff".to_vec()));
    })
    .await;
    assert_eq!(direct_get(dst), Reply::Bulk(Some(b"\xff\xff".to_vec())));
}

#[tokio::test]
async fn inventory_lock_is_released_only_with_its_token() {
    const RELEASE: &[u8] =
        b"if redis.call('get',KEYS[1]) == ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";
    let proxy = proxy_for_shared().await;
    let mut con = client(proxy.local_addr()).await;
    let lock = "lock:product:42";
    without_redirects(async {
        let r = query(
            &mut con,
            &[b"SET", lock.as_bytes(), b"token", b"NX", b"EX", b"30"],
        )
        .await;
        assert_eq!(r, Value::Okay);
        let r = query(
            &mut con,
            &[b"SET", lock.as_bytes(), b"other", b"NX", b"EX", b"30"],
        )
        .await;
        assert_eq!(r, Value::Nil, "a held lock cannot be taken again");

        let r = query(
            &mut con,
            &[b"EVAL", RELEASE, b"1", lock.as_bytes(), b"wrong"],
        )
        .await;
        assert_eq!(r, Value::Int(0), "a wrong token does not release the lock");
        let r = query(&mut con, &[b"GET", lock.as_bytes()]).await;
        assert_eq!(r, bulk("token"));

        let r = query(
            &mut con,
            &[b"EVAL", RELEASE, b"1", lock.as_bytes(), b"token"],
        )
        .await;
        assert_eq!(r, Value::Int(1), "the owner's token releases the lock");
    })
    .await;
    assert_eq!(direct_get(lock), Reply::Bulk(None));
}

// ---------------------------------------------------------------------------------------
// Commands respgate answers itself, byte for byte
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn ping_answers_pong_and_echoes_its_argument() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(show(&c.command(&["PING"]).await), "+PONG\\r\\n");
    assert_eq!(
        show(&c.command(&["ping", "hello"]).await),
        "$5\\r\\nhello\\r\\n"
    );
}

#[tokio::test]
async fn echo_returns_its_argument_as_a_bulk_string() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(
        show(&c.command(&["ECHO", "hi there"]).await),
        "$8\\r\\nhi there\\r\\n"
    );
    assert_eq!(show(&c.command(&["ECHO", ""]).await), "$0\\r\\n\\r\\n");
}

#[tokio::test]
async fn select_accepts_database_0_only() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(show(&c.command(&["SELECT", "0"]).await), "+OK\\r\\n");
    assert_eq!(
        show(&c.command(&["SELECT", "1"]).await),
        "-ERR DB index is out of range\\r\\n"
    );
    assert_eq!(
        show(&c.command(&["SELECT", "x"]).await),
        "-ERR value is not an integer or out of range\\r\\n"
    );
    // The connection is still usable.
    assert_eq!(show(&c.command(&["PING"]).await), "+PONG\\r\\n");
}

#[tokio::test]
async fn client_setname_getname_id_and_info_describe_this_connection() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let mut other = RawConn::connect(proxy.local_addr()).await;

    assert_eq!(show(&c.command(&["CLIENT", "GETNAME"]).await), "$-1\\r\\n");
    assert_eq!(
        show(&c.command(&["CLIENT", "SETNAME", "checkout"]).await),
        "+OK\\r\\n"
    );
    assert_eq!(
        show(&c.command(&["CLIENT", "GETNAME"]).await),
        "$8\\r\\ncheckout\\r\\n"
    );
    assert_eq!(
        show(&c.command(&["CLIENT", "SETNAME", "has space"]).await),
        "-ERR Client names cannot contain spaces, newlines or special characters.\\r\\n"
    );
    assert_eq!(
        show(&other.command(&["CLIENT", "GETNAME"]).await),
        "$-1\\r\\n",
        "names are per connection"
    );

    let id_of = |reply: Vec<u8>| -> i64 {
        let text = String::from_utf8(reply).unwrap();
        assert!(text.starts_with(':'), "{text:?}");
        text[1..].trim_end().parse().unwrap()
    };
    let id = id_of(c.command(&["CLIENT", "ID"]).await);
    let other_id = id_of(other.command(&["CLIENT", "ID"]).await);
    assert!(id > 0);
    assert_ne!(id, other_id);

    let info = c.command(&["CLIENT", "INFO"]).await;
    let info = String::from_utf8(info).unwrap();
    let local = c.stream.local_addr().unwrap();
    assert!(info.starts_with('$'), "{info:?}");
    for field in [
        format!("id={id} "),
        format!("addr={local} "),
        "name=checkout ".to_string(),
        "db=0 ".to_string(),
    ] {
        assert!(
            info.contains(&field),
            "CLIENT INFO lacks {field:?}: {info:?}"
        );
    }
}

#[tokio::test]
async fn quit_replies_ok_after_earlier_replies_and_closes() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let mut bytes = encode_command(&["SET", "quit:k", "v"]);
    bytes.extend(encode_command(&["QUIT"]));
    bytes.extend(encode_command(&["SET", "quit:after", "v"]));
    c.send(&bytes).await;
    assert_eq!(show(&c.read_reply().await), "+OK\\r\\n");
    assert_eq!(show(&c.read_reply().await), "+OK\\r\\n");
    c.expect_closed().await;
    assert_eq!(direct_get("quit:k"), Reply::Bulk(Some(b"v".to_vec())));
    assert_eq!(
        direct_get("quit:after"),
        Reply::Bulk(None),
        "nothing after QUIT runs"
    );
}

#[tokio::test]
async fn command_lists_the_same_commands_as_the_masters() {
    let proxy = proxy_for_shared().await;
    // Each redis-server lists its commands, and their subcommands, in its own hash order:
    // compare them as sets.
    use redis_protocol::resp2::types::OwnedFrame;
    fn canonical(entry: &OwnedFrame) -> String {
        let OwnedFrame::Array(fields) = entry else {
            panic!("COMMAND entry is not an array: {entry:?}")
        };
        let mut fields = fields.clone();
        if let Some(OwnedFrame::Array(subs)) = fields.get_mut(9) {
            subs.sort_by_key(canonical);
        }
        format!("{fields:?}")
    }
    let entries = |reply: Vec<u8>| -> Vec<String> {
        let (frame, _) = redis_protocol::resp2::decode::decode(&reply)
            .unwrap()
            .unwrap();
        let OwnedFrame::Array(list) = frame else {
            panic!("COMMAND is not an array: {frame:?}")
        };
        let mut list: Vec<String> = list.iter().map(canonical).collect();
        list.sort();
        list
    };
    let ours = entries(raw(proxy.local_addr(), &["COMMAND"]).await);
    for node in with_shared_cluster(|c| c.masters()) {
        let theirs = entries(raw(node, &["COMMAND"]).await);
        assert_eq!(ours.len(), theirs.len(), "{node}");
        assert!(
            ours == theirs,
            "COMMAND through respgate differs from {node}'s"
        );
    }
}

#[tokio::test]
async fn readonly_and_readwrite_get_a_standalone_redis_error() {
    // Issue 15: as a standalone Redis answers them (issue 2 had them accepted).
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let refused = "-ERR This instance has cluster support disabled\\r\\n";
    assert_eq!(show(&c.command(&["READONLY"]).await), refused);
    assert_eq!(show(&c.command(&["READWRITE"]).await), refused);
}

#[tokio::test]
async fn command_count_equals_the_nodes_count() {
    let proxy = proxy_for_shared().await;
    let node = with_shared_cluster(|c| c.masters()[0]);
    let ours = raw(proxy.local_addr(), &["COMMAND", "COUNT"]).await;
    let theirs = raw(node, &["COMMAND", "COUNT"]).await;
    assert_eq!(show(&ours), show(&theirs));
}

#[tokio::test]
async fn cluster_commands_get_the_standalone_error() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    for cmd in [
        vec!["CLUSTER", "INFO"],
        vec!["CLUSTER", "SLOTS"],
        vec!["cluster", "nodes"],
    ] {
        assert_eq!(
            show(&c.command(&cmd).await),
            "-ERR This instance has cluster support disabled\\r\\n",
            "{cmd:?}"
        );
    }
}

#[tokio::test]
async fn unknown_commands_get_the_same_error_as_from_redis() {
    let proxy = proxy_for_shared().await;
    let node = with_shared_cluster(|c| c.masters()[0]);
    let mut ours = RawConn::connect(proxy.local_addr()).await;
    let mut theirs = RawConn::connect(node).await;
    let long = "x".repeat(300);
    for cmd in [
        vec!["FOOBAR"],
        vec!["foobar", "a", "b c"],
        vec!["NOPE", long.as_str(), "more"],
        vec!["OBJECT", "NOSUCHSUB", "k"],
        vec!["CONFIG", "BOGUS"],
    ] {
        assert_eq!(
            show(&ours.command(&cmd).await),
            show(&theirs.command(&cmd).await),
            "{:?}",
            cmd.iter()
                .map(|a| &a[..a.len().min(20)])
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn wrong_arity_gets_the_same_error_as_from_redis() {
    let proxy = proxy_for_shared().await;
    let node = with_shared_cluster(|c| c.masters()[0]);
    let mut ours = RawConn::connect(proxy.local_addr()).await;
    let mut theirs = RawConn::connect(node).await;
    for cmd in [
        vec!["GET"],
        vec!["get", "arity:a", "arity:b"],
        vec!["SET", "arity:a"],
        vec!["HSET", "arity:h", "f"],
        vec!["OBJECT", "ENCODING"],
    ] {
        let reply = ours.command(&cmd).await;
        assert!(
            reply.starts_with(b"-ERR wrong number of arguments"),
            "{}",
            show(&reply)
        );
        assert_eq!(show(&reply), show(&theirs.command(&cmd).await), "{cmd:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Inline commands (what `telnet` and `nc` users type)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn inline_ping_gets_pong() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    c.send(b"PING\r\n").await;
    assert_eq!(show(&c.read_reply().await), "+PONG\\r\\n");
}

#[tokio::test]
async fn inline_set_and_get_are_forwarded() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    c.send(b"SET inl:k v\r\nGET inl:k\r\n").await;
    assert_eq!(show(&c.read_reply().await), "+OK\\r\\n");
    assert_eq!(show(&c.read_reply().await), "$1\\r\\nv\\r\\n");
    assert_eq!(direct_get("inl:k"), Reply::Bulk(Some(b"v".to_vec())));
}

#[tokio::test]
async fn inline_commands_may_end_with_a_bare_newline() {
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    c.send(b"PING\nECHO hi\n").await;
    assert_eq!(show(&c.read_reply().await), "+PONG\\r\\n");
    assert_eq!(show(&c.read_reply().await), "$2\\r\\nhi\\r\\n");
}

/// Sends `SET <key> <value>` inline through respgate and straight to the slot's owner
/// (two keys of one hash tag) and returns what each stored.
async fn inline_set_both_ways(proxy: SocketAddr, tag: &str, value: &str) -> (Reply, Reply) {
    let (via_proxy, direct_key) = (format!("{{{tag}}}proxy"), format!("{{{tag}}}direct"));
    let mut c = RawConn::connect(proxy).await;
    c.send(format!("SET {via_proxy} {value}\r\n").as_bytes())
        .await;
    assert_eq!(show(&c.read_reply().await), "+OK\\r\\n", "{value}");
    let mut n = RawConn::connect(shared_owner_of(&direct_key)).await;
    n.send(format!("SET {direct_key} {value}\r\n").as_bytes())
        .await;
    assert_eq!(show(&n.read_reply().await), "+OK\\r\\n", "{value}");
    (direct_get(&via_proxy), direct_get(&direct_key))
}

#[tokio::test]
async fn inline_quoted_arguments_keep_their_blanks() {
    let proxy = proxy_for_shared().await;
    for value in [r#""a b""#, r#"'single quoted'"#] {
        let (ours, theirs) = inline_set_both_ways(proxy.local_addr(), "inl-quote", value).await;
        assert_eq!(ours, theirs, "{value}");
    }
}

#[tokio::test]
async fn inline_escapes_in_double_quotes_are_unescaped_as_redis_does() {
    let proxy = proxy_for_shared().await;
    let value = r#""tab\there\x41\n""#;
    let (ours, theirs) = inline_set_both_ways(proxy.local_addr(), "inl-escape", value).await;
    assert_eq!(theirs, Reply::Bulk(Some(b"tab\there\x41\n".to_vec())));
    assert_eq!(ours, theirs, "{value}");
}

/// Sends one inline line to respgate and to a node; both must answer the same error and
/// close the connection.
async fn assert_inline_protocol_error_as_redis(proxy: SocketAddr, line: &str, error: &str) {
    let mut theirs = RawConn::connect(shared_owner_of("inl-unbal:k")).await;
    theirs.send(line.as_bytes()).await;
    assert_eq!(show(&theirs.read_reply().await), show(error.as_bytes()));
    let mut ours = RawConn::connect(proxy).await;
    ours.send(line.as_bytes()).await;
    assert_eq!(
        show(&ours.read_reply().await),
        show(error.as_bytes()),
        "{line:?}"
    );
    ours.expect_closed().await;
}

#[tokio::test]
async fn inline_unclosed_quote_gets_the_redis_protocol_error() {
    let proxy = proxy_for_shared().await;
    assert_inline_protocol_error_as_redis(
        proxy.local_addr(),
        "SET inl-unbal:k \"abc\r\n",
        "-ERR Protocol error: unbalanced quotes in request\r\n",
    )
    .await;
}

#[tokio::test]
async fn inline_closing_quote_followed_by_a_character_gets_the_redis_protocol_error() {
    let proxy = proxy_for_shared().await;
    assert_inline_protocol_error_as_redis(
        proxy.local_addr(),
        "SET inl-unbal:k \"a\"b\r\n",
        "-ERR Protocol error: unbalanced quotes in request\r\n",
    )
    .await;
}
