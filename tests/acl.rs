//! Authentication and per-key-prefix ACLs through respgate, against a real cluster:
//! every refusal path with Redis's exact error, filtered KEYS / SCAN, reload of users on
//! a live connection, and the brute-force lockout.

mod support;

use respgate::acl::hash_password;
use respgate::config::{AuthConfig, AuthMode, Config, UserConfig};
use std::net::SocketAddr;
use support::*;

const NOAUTH: &str = "-NOAUTH Authentication required.\r\n";
const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
const NOPERM_KEYS: &str =
    "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";
const NOPERM_CHANNELS: &str =
    "-NOPERM this user has no permissions to access one of the channels used as arguments\r\n";

fn user(name: &str, rules: &str) -> UserConfig {
    UserConfig {
        max_dedicated_connections: None,
        cross_slot: None,
        name: name.into(),
        rules: format!(
            "{rules} #{}",
            hash_password(format!("{name}-pw").as_bytes())
        ),
    }
}

/// The shop's users, as in config/production.example.toml, plus test-only ones.
fn shop_users() -> Vec<UserConfig> {
    vec![
        user(
            "auth-service",
            "on ~refresh:* ~rl:* ~session:* +@all -@dangerous",
        ),
        user(
            "inventory-service",
            "on ~lock:product:* +@read +@write +@scripting +@connection +@transaction -@dangerous",
        ),
        user("order-service", "on ~saga:* &orders.* +@all -@dangerous"),
        user(
            "search-service",
            "on ~cache:search:* +@read +@connection +set +setex +expire +del",
        ),
        user(
            "reader",
            "on %R~ro:* ~rw:* +@all -@dangerous +flushdb +sort",
        ),
        user("ops", "on ~* &* +@all"),
        user("retired", "off ~* +@all"),
    ]
}

fn shop_auth(users: Vec<UserConfig>, max_failures: u32) -> AuthConfig {
    AuthConfig {
        mode: Some(AuthMode::Users),
        max_failures,
        failure_window_secs: 60,
        lockout_secs: 60,
        // Above max_failures: one user's failures lock that user, not its neighbours.
        max_unknown_user_failures: max_failures.saturating_mul(10),
        lockout_max_entries: 100_000,
        login_timeout_secs: 10,
        users,
    }
}

fn shop_config() -> Config {
    let mut c = test_config(&shared_cluster_seeds());
    c.auth = shop_auth(shop_users(), 1000);
    c
}

async fn login(addr: SocketAddr, user: &str) -> RawConn {
    let mut c = RawConn::connect(addr).await;
    let pw = format!("{user}-pw");
    assert_eq!(cmd(&mut c, &["AUTH", user, &pw]).await, "+OK\r\n");
    c
}

async fn cmd(c: &mut RawConn, args: &[&str]) -> String {
    String::from_utf8_lossy(&c.command(args).await).into_owned()
}

#[tokio::test]
async fn before_auth_only_auth_hello_and_quit_work() {
    let proxy = start_proxy(shop_config()).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(cmd(&mut c, &["GET", "session:1"]).await, NOAUTH);
    assert_eq!(cmd(&mut c, &["PING"]).await, NOAUTH);
    assert_eq!(cmd(&mut c, &["CLIENT", "LIST"]).await, NOAUTH);
    // Unknown commands are unknown first, as in Redis.
    assert!(cmd(&mut c, &["NOSUCH"])
        .await
        .starts_with("-ERR unknown command"));
    assert_eq!(
        cmd(&mut c, &["HELLO", "3"]).await,
        "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"
    );
    // A password alone is for the `default` user, which does not exist here.
    assert_eq!(cmd(&mut c, &["AUTH", "nopass-user"]).await,
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n");
    assert_eq!(cmd(&mut c, &["AUTH", "ops", "wrong"]).await, WRONGPASS);
    assert_eq!(cmd(&mut c, &["AUTH", "nobody", "x"]).await, WRONGPASS);
    // A disabled user is refused with the same answer, even with its password.
    assert_eq!(
        cmd(&mut c, &["AUTH", "retired", "retired-pw"]).await,
        WRONGPASS
    );
    assert_eq!(
        cmd(&mut c, &["AUTH", "a", "b", "c"]).await,
        "-ERR syntax error\r\n"
    );
    assert_eq!(cmd(&mut c, &["GET", "x"]).await, NOAUTH);
    assert_eq!(cmd(&mut c, &["AUTH", "ops", "ops-pw"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut c, &["ACL", "WHOAMI"]).await, "$3\r\nops\r\n");
    assert_eq!(cmd(&mut c, &["PING"]).await, "+PONG\r\n");
    let info = cmd(&mut c, &["CLIENT", "INFO"]).await;
    assert!(info.contains(" user=ops "), "{info}");
    // A failed AUTH keeps the identity the connection had.
    assert_eq!(cmd(&mut c, &["AUTH", "ops", "wrong"]).await, WRONGPASS);
    assert_eq!(cmd(&mut c, &["ACL", "WHOAMI"]).await, "$3\r\nops\r\n");
    // RESET logs out.
    assert_eq!(cmd(&mut c, &["RESET"]).await, "+RESET\r\n");
    assert_eq!(cmd(&mut c, &["GET", "x"]).await, NOAUTH);
    assert_eq!(cmd(&mut c, &["QUIT"]).await, "+OK\r\n");
}

#[tokio::test]
async fn hello_auth_authenticates_and_switches_protocol() {
    let proxy = start_proxy(shop_config()).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(
        cmd(&mut c, &["HELLO", "3", "AUTH", "ops", "nope"]).await,
        WRONGPASS
    );
    let hello = cmd(
        &mut c,
        &["HELLO", "3", "AUTH", "ops", "ops-pw", "SETNAME", "o1"],
    )
    .await;
    assert!(hello.starts_with("%7\r\n"), "{hello}");
    assert_eq!(cmd(&mut c, &["ACL", "WHOAMI"]).await, "$3\r\nops\r\n");
    assert_eq!(cmd(&mut c, &["CLIENT", "GETNAME"]).await, "$2\r\no1\r\n");

    // The redis crate, with credentials in the URL (AUTH user pass on connect).
    let addr = proxy.local_addr();
    let client =
        redis::Client::open(format!("redis://auth-service:auth-service-pw@{addr}/")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("session:acl:1")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let v: String = redis::cmd("GET")
        .arg("session:acl:1")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "v");
    let e = redis::cmd("GET")
        .arg("saga:acl:1")
        .query_async::<Option<String>>(&mut conn)
        .await
        .unwrap_err();
    assert!(error_text(&e).contains("NOPERM"), "{e:?}");
    let bad = redis::Client::open(format!("redis://auth-service:wrong@{addr}/")).unwrap();
    assert!(bad.get_multiplexed_async_connection().await.is_err());
}

#[tokio::test]
async fn every_refusal_path_says_noperm() {
    let proxy = start_proxy(shop_config()).await;
    let addr = proxy.local_addr();
    let mut auth = login(addr, "auth-service").await;
    // Own prefixes work.
    assert_eq!(cmd(&mut auth, &["SET", "session:42", "u"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut auth, &["GET", "session:42"]).await, "$1\r\nu\r\n");
    // A read of a foreign prefix.
    assert_eq!(cmd(&mut auth, &["GET", "saga:1"]).await, NOPERM_KEYS);
    // One foreign key inside multi-key commands (split across slots or not).
    assert_eq!(
        cmd(&mut auth, &["MGET", "session:42", "saga:1"]).await,
        NOPERM_KEYS
    );
    assert_eq!(
        cmd(&mut auth, &["MSET", "session:43", "a", "saga:1", "b"]).await,
        NOPERM_KEYS
    );
    assert_eq!(
        cmd(&mut auth, &["DEL", "rl:1", "session:43", "lock:product:1"]).await,
        NOPERM_KEYS
    );
    assert_eq!(
        cmd(
            &mut auth,
            &["EVAL", "return 1", "2", "session:{x}", "saga:{x}"]
        )
        .await,
        NOPERM_KEYS
    );
    // Nothing was written by the refused MSET.
    assert_eq!(cmd(&mut auth, &["EXISTS", "session:43"]).await, ":0\r\n");
    // A blocked category.
    assert_eq!(
        cmd(&mut auth, &["FLUSHALL"]).await,
        "-NOPERM this user has no permissions to run the 'flushall' command\r\n"
    );
    assert_eq!(
        cmd(&mut auth, &["CONFIG", "SET", "maxmemory", "1"]).await,
        "-NOPERM this user has no permissions to run the 'config|set' command\r\n"
    );
    assert_eq!(
        cmd(&mut auth, &["KEYS", "*"]).await,
        "-NOPERM this user has no permissions to run the 'keys' command\r\n"
    );
    // A foreign channel (auth-service has no & pattern: Redis 7's resetchannels default).
    assert_eq!(
        cmd(&mut auth, &["PUBLISH", "orders.new", "x"]).await,
        NOPERM_CHANNELS
    );
    assert_eq!(
        cmd(&mut auth, &["SUBSCRIBE", "orders.new"]).await,
        NOPERM_CHANNELS
    );
    // Inside MULTI, a refused command aborts the transaction.
    assert_eq!(cmd(&mut auth, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut auth, &["SET", "saga:1", "x"]).await, NOPERM_KEYS);
    assert_eq!(
        cmd(&mut auth, &["EXEC"]).await,
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );

    // A write under %R~: reads pass, writes do not; COPY needs read on the source and
    // write on the destination.
    let mut reader = login(addr, "reader").await;
    on_owner("ro:{c}1", &["SET", "ro:{c}1", "v"]);
    assert_eq!(cmd(&mut reader, &["GET", "ro:{c}1"]).await, "$1\r\nv\r\n");
    assert_eq!(
        cmd(&mut reader, &["SET", "ro:{c}1", "w"]).await,
        NOPERM_KEYS
    );
    assert_eq!(
        cmd(&mut reader, &["APPEND", "ro:{c}1", "w"]).await,
        NOPERM_KEYS
    );
    assert_eq!(
        cmd(&mut reader, &["COPY", "ro:{c}1", "rw:{c}1", "REPLACE"]).await,
        ":1\r\n"
    );
    assert_eq!(
        cmd(&mut reader, &["COPY", "rw:{c}1", "ro:{c}2"]).await,
        NOPERM_KEYS
    );
    assert_eq!(cmd(&mut reader, &["EXISTS", "ro:{c}1"]).await, ":1\r\n");
    assert_eq!(cmd(&mut reader, &["FLUSHDB"]).await, NOPERM_KEYS);
    // SORT options that read keys by pattern need access to all keys, as in Redis.
    assert_eq!(
        cmd(&mut reader, &["SORT", "rw:l", "BY", "ro:*"]).await,
        "-ERR BY option of SORT denied due to insufficient ACL permissions.\r\n"
    );
    assert_eq!(
        cmd(&mut reader, &["SORT", "rw:l", "GET", "#"]).await,
        "-ERR GET option of SORT denied due to insufficient ACL permissions.\r\n"
    );
    assert_eq!(
        cmd(&mut reader, &["SORT", "rw:l", "BY", "nosort"]).await,
        "*0\r\n"
    );

    // Channels under & patterns.
    let mut orders = login(addr, "order-service").await;
    assert_eq!(
        cmd(&mut orders, &["PUBLISH", "orders.new", "x"]).await,
        ":0\r\n"
    );
    assert_eq!(
        cmd(&mut orders, &["PUBLISH", "payments", "x"]).await,
        NOPERM_CHANNELS
    );
    assert_eq!(
        cmd(&mut orders, &["PSUBSCRIBE", "orders.n*"]).await,
        NOPERM_CHANNELS
    );

    // The inventory lock: SET NX EX, then compare-and-delete in EVAL.
    let mut inv = login(addr, "inventory-service").await;
    assert_eq!(
        cmd(
            &mut inv,
            &["SET", "lock:product:7", "owner-1", "NX", "EX", "30"]
        )
        .await,
        "+OK\r\n"
    );
    let release = "if redis.call('get',KEYS[1]) == ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end";
    assert_eq!(
        cmd(
            &mut inv,
            &["EVAL", release, "1", "lock:product:7", "owner-1"]
        )
        .await,
        ":1\r\n"
    );
    assert_eq!(
        cmd(&mut inv, &["EVAL", release, "1", "session:7", "x"]).await,
        NOPERM_KEYS
    );
    assert_eq!(
        cmd(&mut inv, &["FLUSHALL"]).await,
        "-NOPERM this user has no permissions to run the 'flushall' command\r\n"
    );

    // The admin's view: users listed, passwords redacted.
    let mut ops = login(addr, "ops").await;
    let list = cmd(&mut ops, &["ACL", "LIST"]).await;
    assert!(
        list.contains("user search-service on #<redacted> ~cache:search:*"),
        "{list}"
    );
    assert!(
        !list.contains(&hash_password(b"search-service-pw")),
        "{list}"
    );
    let getuser = cmd(&mut ops, &["ACL", "GETUSER", "reader"]).await;
    assert!(getuser.contains("%R~ro:* ~rw:*"), "{getuser}");
    assert!(getuser.contains("<redacted>"), "{getuser}");
    assert_eq!(
        cmd(&mut auth, &["ACL", "LIST"]).await,
        "-NOPERM this user has no permissions to run the 'acl|list' command\r\n"
    );
    assert_eq!(
        cmd(&mut auth, &["ACL", "WHOAMI"]).await,
        "$12\r\nauth-service\r\n"
    );
    // ACL LOG, as in Redis: the refusals, newest first, with reason, object and user.
    let log = cmd(&mut ops, &["ACL", "LOG"]).await;
    for part in [
        "$6\r\nreason\r\n$3\r\nkey\r\n$7\r\ncontext\r\n$8\r\ntoplevel\r\n$6\r\nobject\r\n$6\r\nsaga:1\r\n$8\r\nusername\r\n$12\r\nauth-service\r\n",
        "$6\r\nreason\r\n$7\r\nchannel\r\n",
        "$6\r\nobject\r\n$8\r\nflushall\r\n",
        "$7\r\ncontext\r\n$5\r\nmulti\r\n",
        "$6\r\nobject\r\n$8\r\nacl|list\r\n",
    ] {
        assert!(log.contains(part), "{part:?} in {log}");
    }
    assert!(log.starts_with('*'), "{log}");
    let one = cmd(&mut ops, &["ACL", "LOG", "1"]).await;
    assert!(one.starts_with("*1\r\n*14\r\n$5\r\ncount\r\n"), "{one}");
    assert_eq!(cmd(&mut ops, &["ACL", "LOG", "RESET"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut ops, &["ACL", "LOG"]).await, "*0\r\n");
    let _ = cmd(&mut ops, &["DEL", "session:42", "rw:{c}1", "ro:{c}1"]).await;
}

#[tokio::test]
async fn keys_and_scan_show_only_the_users_keys() {
    let proxy = start_proxy(shop_config()).await;
    let addr = proxy.local_addr();
    let mut ops = login(addr, "ops").await;
    let mut mine = Vec::new();
    for i in 0..60 {
        let k = format!("cache:search:kscan:{i}");
        assert_eq!(cmd(&mut ops, &["SET", &k, "r"]).await, "+OK\r\n");
        mine.push(k);
        for other in ["session:kscan:", "saga:kscan:", "lock:product:kscan:"] {
            assert_eq!(
                cmd(&mut ops, &["SET", &format!("{other}{i}"), "x"]).await,
                "+OK\r\n"
            );
        }
    }
    mine.sort();
    let addr_s = addr.to_string();
    let client = redis::Client::open(format!(
        "redis://search-service:search-service-pw@{addr_s}/"
    ))
    .unwrap();
    let mut search = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut search)
        .await
        .unwrap();
    keys.retain(|k| k.contains("kscan"));
    keys.sort();
    assert_eq!(keys, mine);
    let all: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut search)
        .await
        .unwrap();
    assert!(
        all.iter().all(|k| k.starts_with("cache:search:")),
        "{all:?}"
    );
    // A full SCAN (small COUNT: many batches, some emptied by the filter).
    let mut cursor = 0u64;
    let mut seen = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(10)
            .query_async(&mut search)
            .await
            .unwrap();
        seen.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert!(
        seen.iter().all(|k| k.starts_with("cache:search:")),
        "{seen:?}"
    );
    let mut seen: Vec<String> = seen.into_iter().filter(|k| k.contains("kscan")).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, mine);
    // RANDOMKEY: never a foreign key.
    for _ in 0..20 {
        let k: Option<String> = redis::cmd("RANDOMKEY")
            .query_async(&mut search)
            .await
            .unwrap();
        if let Some(k) = k {
            assert!(k.starts_with("cache:search:"), "{k}");
        }
    }
    // search-service is read-mostly: it may fill its cache, nothing else.
    let e = redis::cmd("SET")
        .arg("session:kscan:0")
        .arg("x")
        .query_async::<()>(&mut search)
        .await
        .unwrap_err();
    assert!(error_text(&e).contains("NOPERM"));
    let e = redis::cmd("LPUSH")
        .arg("cache:search:l")
        .arg("x")
        .query_async::<()>(&mut search)
        .await
        .unwrap_err();
    assert!(error_text(&e).contains("NOPERM"));
    for i in 0..60 {
        for p in [
            "cache:search:kscan:",
            "session:kscan:",
            "saga:kscan:",
            "lock:product:kscan:",
        ] {
            let _ = cmd(&mut ops, &["DEL", &format!("{p}{i}")]).await;
        }
    }
}

#[tokio::test]
async fn reload_applies_to_live_connections_and_bad_files_change_nothing() {
    let proxy = start_proxy(shop_config()).await;
    let mut c = login(proxy.local_addr(), "auth-service").await;
    assert_eq!(cmd(&mut c, &["SET", "rl:1.2.3.4:1", "1"]).await, "+OK\r\n");
    // Remove rl:* from auth-service.
    let mut users = shop_users();
    users[0] = user("auth-service", "on ~refresh:* ~session:* +@all -@dangerous");
    let mut cfg = shop_config();
    cfg.auth = shop_auth(users, 1000);
    proxy.reload(&cfg).unwrap();
    assert_eq!(cmd(&mut c, &["GET", "rl:1.2.3.4:1"]).await, NOPERM_KEYS);
    // Still connected, still authenticated, its other prefixes still work.
    assert_eq!(cmd(&mut c, &["SET", "session:r1", "1"]).await, "+OK\r\n");
    assert_eq!(
        cmd(&mut c, &["ACL", "WHOAMI"]).await,
        "$12\r\nauth-service\r\n"
    );
    // A file that does not load changes nothing.
    let mut broken = shop_config();
    broken.auth = shop_auth(vec![user("auth-service", "on ~* +@nosuchcategory")], 1000);
    let e = proxy.reload(&broken).unwrap_err();
    assert!(
        e.contains("unknown command category 'nosuchcategory'"),
        "{e}"
    );
    assert_eq!(cmd(&mut c, &["GET", "rl:1.2.3.4:1"]).await, NOPERM_KEYS);
    assert_eq!(cmd(&mut c, &["GET", "session:r1"]).await, "$1\r\n1\r\n");
    // Disabling the user logs its connections out.
    let mut users = shop_users();
    users[0] = user("auth-service", "off ~refresh:* +@all");
    cfg.auth = shop_auth(users, 1000);
    proxy.reload(&cfg).unwrap();
    assert_eq!(cmd(&mut c, &["GET", "session:r1"]).await, NOAUTH);
    let mut ops = login(proxy.local_addr(), "ops").await;
    let _ = cmd(&mut ops, &["DEL", "rl:1.2.3.4:1", "session:r1"]).await;
}

/// A connection from 127.0.0.2 (loopback too): another client address.
async fn connect_from(ip: &str, addr: SocketAddr) -> RawConn {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    RawConn::from_stream(socket.connect(addr).await.unwrap())
}

const LOCKED_USER: &str =
    "-ERR respgate: too many failed authentication attempts for this user from 127.0.0.1 (auth.max_failures); retry in ";

/// Five wrong passwords of one service behind an address lock that service out from
/// that address, and nobody else: the other services behind the same address (a NAT, a
/// node running several of them) keep logging in.
#[tokio::test]
async fn failures_lock_out_that_user_at_that_address_only() {
    let mut cfg = test_config(&shared_cluster_seeds());
    cfg.auth = shop_auth(shop_users(), 5);
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let mut attacker = RawConn::connect(addr).await;
    for _ in 0..5 {
        assert_eq!(
            cmd(&mut attacker, &["AUTH", "ops", "guess"]).await,
            WRONGPASS
        );
    }
    // ops is locked from 127.0.0.1: even its right password is refused, naming the limit.
    let refused = cmd(&mut attacker, &["AUTH", "ops", "ops-pw"]).await;
    assert!(refused.starts_with(LOCKED_USER), "{refused}");
    let mut again = RawConn::connect(addr).await;
    let hello = cmd(&mut again, &["HELLO", "3", "AUTH", "ops", "ops-pw"]).await;
    assert!(hello.starts_with(LOCKED_USER), "{hello}");
    // Another user from the same address logs in (on the attacker's own connection too).
    let mut neighbour = RawConn::connect(addr).await;
    assert_eq!(
        cmd(
            &mut neighbour,
            &["AUTH", "order-service", "order-service-pw"]
        )
        .await,
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut neighbour, &["PING"]).await, "+PONG\r\n");
    assert_eq!(
        cmd(&mut attacker, &["AUTH", "reader", "reader-pw"]).await,
        "+OK\r\n"
    );
    // ops from another address is unaffected.
    let mut other = connect_from("127.0.0.2", addr).await;
    assert_eq!(cmd(&mut other, &["AUTH", "ops", "ops-pw"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut other, &["PING"]).await, "+PONG\r\n");
}

/// HELLO AUTH is counted like AUTH: guessing through it locks the same way.
#[tokio::test]
async fn hello_auth_failures_count_towards_the_lockout() {
    let mut cfg = test_config(&shared_cluster_seeds());
    cfg.auth = shop_auth(shop_users(), 3);
    let proxy = start_proxy(cfg).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    for _ in 0..3 {
        assert_eq!(
            cmd(&mut c, &["HELLO", "3", "AUTH", "ops", "guess"]).await,
            WRONGPASS
        );
    }
    let refused = cmd(&mut c, &["AUTH", "ops", "ops-pw"]).await;
    assert!(refused.starts_with(LOCKED_USER), "{refused}");
}

/// One address trying many user names that do not exist: each name alone stays under
/// `max_failures`, but the address as a whole hits `max_unknown_user_failures` and is
/// refused, for every user, until the lockout ends. Other addresses are unaffected.
#[tokio::test]
async fn spraying_unknown_user_names_locks_the_address() {
    let mut cfg = test_config(&shared_cluster_seeds());
    cfg.auth = shop_auth(shop_users(), 5);
    cfg.auth.max_unknown_user_failures = 8;
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let mut sprayer = RawConn::connect(addr).await;
    for i in 0..8 {
        let name = format!("guess-{i}");
        assert_eq!(
            cmd(&mut sprayer, &["AUTH", &name, "password1"]).await,
            WRONGPASS,
            "{name}"
        );
    }
    let refused = cmd(&mut sprayer, &["AUTH", "guess-8", "password1"]).await;
    assert!(
        refused.starts_with(
            "-ERR respgate: too many failed authentication attempts from 127.0.0.1 (auth.max_unknown_user_failures); retry in "
        ),
        "{refused}"
    );
    // The whole address: a real user with its right password too.
    let mut c = RawConn::connect(addr).await;
    let ops = cmd(&mut c, &["AUTH", "ops", "ops-pw"]).await;
    assert!(ops.contains("(auth.max_unknown_user_failures)"), "{ops}");
    let mut other = connect_from("127.0.0.2", addr).await;
    assert_eq!(cmd(&mut other, &["AUTH", "ops", "ops-pw"]).await, "+OK\r\n");
}

#[tokio::test]
async fn auth_none_is_explicit_and_open() {
    // The in-code default (tests, `respgate dev`) runs open; a file must say so.
    let proxy = proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(cmd(&mut c, &["ACL", "WHOAMI"]).await, "$7\r\ndefault\r\n");
    assert_eq!(
        cmd(&mut c, &["AUTH", "default", "anything"]).await,
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut c, &["AUTH", "someone", "x"]).await, WRONGPASS);
    let e = respgate::loader::parse(
        "[cluster]\nseeds = [\"127.0.0.1:7000\"]\n",
        std::path::Path::new("f.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("f.toml: auth.mode: choose mode = \"users\""),
        "{e}"
    );
}

/// `auth.login_timeout_secs`: a connection that never logs in is closed (even with
/// `server.idle_timeout_secs = 0`, so silent connections cannot hold every
/// `server.max_clients` place), while an authenticated one stays.
#[tokio::test]
async fn connections_that_never_log_in_are_closed_after_the_login_timeout() {
    let mut cfg = shop_config();
    cfg.auth.login_timeout_secs = 1;
    cfg.server.idle_timeout_secs = 0;
    let proxy = start_proxy(cfg).await;
    let addr = proxy.local_addr();
    let mut logged_in = login(addr, "ops").await;
    let mut silent = RawConn::connect(addr).await;
    // Closed without a reply, well within RAW_TIMEOUT (the bound is generous: 1 s).
    silent.expect_closed().await;
    // Talking without logging in does not count as logging in.
    let mut chatty = RawConn::connect(addr).await;
    chatty.send(b"*1\r\n$4\r\nPING\r\n").await;
    // NOAUTH, unless a very slow machine already hit the timeout; then closed.
    while let Some(reply) = chatty.try_read_reply().await {
        assert_eq!(show(&reply), show(NOAUTH.as_bytes()));
    }
    // Past the timeout, the authenticated connection still works.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(cmd(&mut logged_in, &["PING"]).await, "+PONG\r\n");
}
