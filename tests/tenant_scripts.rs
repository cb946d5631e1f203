//! Tenant isolation on the paths respgate cannot see into: scripts and functions run on
//! the nodes as a mirror of the caller's own rules, and no reply (a script's error
//! text above all) can steer routing or draw respgate's node credentials elsewhere.
//! Users as in config/production.example.toml, against the shared 3+3 cluster.

mod support;

use respgate::config::Config;
use std::time::Duration;
use support::shop::{cmd, login};
use support::standalone::Standalone;
use support::*;

fn shop_config() -> Config {
    shop::config(&shared_cluster_seeds())
}

/// An ACL refusal as Redis words it, for a command (`-NOPERM ... no permissions ...`)
/// or inside a script (`... The user executing the script can't ...`).
fn acl_refusal(r: &str) -> bool {
    r.starts_with('-')
        && (r.contains("no permissions") || r.contains("user executing the script can't"))
}

fn node_get(key: &str) -> Option<String> {
    on_owner(key, &["GET", key]).as_str().map(String::from)
}

/// A key under `prefix{tag}` whose slot is `key`'s (so a script declaring it lands on
/// the node that holds `key`).
fn same_slot_key(prefix: &str, key: &str) -> String {
    let slot = respgate::cluster::key_slot(key.as_bytes());
    (0..)
        .map(|i| format!("{prefix}{{{i}}}"))
        .find(|k| respgate::cluster::key_slot(k.as_bytes()) == slot)
        .unwrap()
}

#[tokio::test]
async fn a_script_cannot_read_another_tenants_key() {
    let proxy = start_proxy(shop_config()).await;
    on_owner("session:alice", &["SET", "session:alice", "token-of-alice"]);
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    let r = cmd(
        &mut inv,
        &["EVAL", "return redis.call('GET','session:alice')", "0"],
    )
    .await;
    assert!(!r.contains("token-of-alice"), "{r}");
    assert!(acl_refusal(&r), "{r}");
    // Its own keys stay reachable from a script.
    let own = same_slot_key("lock:product:", "session:alice");
    let r = cmd(
        &mut inv,
        &[
            "EVAL",
            "redis.call('SET',KEYS[1],'1'); return redis.call('GET',KEYS[1])",
            "1",
            &own,
        ],
    )
    .await;
    assert_eq!(r, "$1\r\n1\r\n");
}

#[tokio::test]
async fn a_script_cannot_list_every_key() {
    let proxy = start_proxy(shop_config()).await;
    on_owner("session:bob", &["SET", "session:bob", "x"]);
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    let r = cmd(&mut inv, &["EVAL", "return redis.call('KEYS','*')", "0"]).await;
    assert!(acl_refusal(&r), "{r}");
    let r = cmd(&mut inv, &["EVAL", "return redis.call('SCAN','0')", "0"]).await;
    assert!(acl_refusal(&r), "{r}");
}

#[tokio::test]
async fn a_function_cannot_read_an_undeclared_tenants_key() {
    let proxy = start_proxy(shop_config()).await;
    on_owner("session:carol", &["SET", "session:carol", "token-of-carol"]);
    let mut ops = login(proxy.local_addr(), "ops").await;
    let lib = "#!lua name=tenantlib\nredis.register_function('tenant_get', function(keys, args) return redis.call('GET', keys[2]) end)";
    let masters = shared_slot_owners();
    for m in &masters {
        on_node(*m, &["FUNCTION", "LOAD", "REPLACE", lib]);
    }
    drop(ops.command(&["PING"]).await);
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    let own = same_slot_key("lock:product:", "session:carol");
    let r = cmd(
        &mut inv,
        &["FCALL", "tenant_get", "2", &own, "session:carol"],
    )
    .await;
    // respgate's own check refuses the declared key; a function reading it without
    // declaring it meets the node's check.
    assert!(!r.contains("token-of-carol"), "{r}");
    assert!(acl_refusal(&r), "{r}");
    let lib2 = "#!lua name=tenantlib2\nredis.register_function('tenant_get2', function(keys, args) return redis.call('GET', args[1]) end)";
    for m in &masters {
        on_node(*m, &["FUNCTION", "LOAD", "REPLACE", lib2]);
    }
    let r = cmd(
        &mut inv,
        &["FCALL", "tenant_get2", "1", &own, "session:carol"],
    )
    .await;
    assert!(!r.contains("token-of-carol"), "{r}");
    assert!(acl_refusal(&r), "{r}");
}

#[tokio::test]
async fn a_script_cannot_publish_without_channel_rights() {
    let proxy = start_proxy(shop_config()).await;
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    let r = cmd(
        &mut inv,
        &["EVAL", "return redis.call('PUBLISH','anychan','x')", "0"],
    )
    .await;
    assert!(acl_refusal(&r), "{r}");
}

#[tokio::test]
async fn a_script_cannot_flush_the_cluster() {
    let proxy = start_proxy(shop_config()).await;
    on_owner("flushprobe:{a}", &["SET", "flushprobe:{a}", "still-here"]);
    let mut auth = login(proxy.local_addr(), "auth-service").await;
    for tag in ["a", "b", "c"] {
        let key = format!("refresh:{{{tag}}}");
        let r = cmd(
            &mut auth,
            &["EVAL", "return redis.call('flushall')", "1", &key],
        )
        .await;
        assert!(r.starts_with('-'), "{r}");
    }
    assert_eq!(node_get("flushprobe:{a}").as_deref(), Some("still-here"));
    // Even an admin's script may not: inside a script respgate cannot rate-limit it.
    let mut ops = login(proxy.local_addr(), "ops").await;
    let r = cmd(
        &mut ops,
        &["EVAL", "return redis.call('flushall')", "1", "refresh:{a}"],
    )
    .await;
    assert!(acl_refusal(&r), "{r}");
    assert_eq!(node_get("flushprobe:{a}").as_deref(), Some("still-here"));
}

#[tokio::test]
async fn scripts_in_transactions_run_as_the_caller_too() {
    let proxy = start_proxy(shop_config()).await;
    on_owner("session:dave", &["SET", "session:dave", "token-of-dave"]);
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    assert_eq!(cmd(&mut inv, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(
        cmd(
            &mut inv,
            &["EVAL", "return redis.call('GET','session:dave')", "0"]
        )
        .await,
        "+QUEUED\r\n"
    );
    let r = cmd(&mut inv, &["EXEC"]).await;
    assert!(
        !r.contains("token-of-dave") && r.contains("user executing the script can't"),
        "{r}"
    );
    // WATCH pins a connection of the client's own; it runs as the caller too.
    let own = same_slot_key("lock:product:", "session:dave");
    assert_eq!(cmd(&mut inv, &["WATCH", &own]).await, "+OK\r\n");
    assert_eq!(cmd(&mut inv, &["MULTI"]).await, "+OK\r\n");
    assert_eq!(
        cmd(
            &mut inv,
            &["EVAL", "return redis.call('GET','session:dave')", "1", &own]
        )
        .await,
        "+QUEUED\r\n"
    );
    let r = cmd(&mut inv, &["EXEC"]).await;
    assert!(
        !r.contains("token-of-dave") && r.contains("user executing the script can't"),
        "{r}"
    );
}

/// A listener standing for an address a forged redirection names: it must never see a
/// connection (respgate would send its node credentials there).
async fn trap() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

async fn untouched(trap: &tokio::net::TcpListener) {
    let r = tokio::time::timeout(Duration::from_millis(500), trap.accept()).await;
    assert!(
        r.is_err(),
        "respgate connected to an address only a reply named"
    );
}

#[tokio::test]
async fn a_scripts_moved_or_ask_reaches_the_client_untouched_and_draws_no_connection() {
    let proxy = start_proxy(shop_config()).await;
    let (l, addr) = trap().await;
    let mut ops = login(proxy.local_addr(), "ops").await;
    for kind in ["MOVED", "ASK"] {
        let text = format!("{kind} 0 {addr}");
        let script = format!("return redis.error_reply('{text}')");
        let r = cmd(&mut ops, &["EVAL", &script, "0"]).await;
        assert_eq!(r, format!("-{text}\r\n"));
        // Declared key in slot 0 too.
        let r = cmd(&mut ops, &["EVAL", &script, "1", "{3560}"]).await;
        assert_eq!(r, format!("-{text}\r\n"));
    }
    untouched(&l).await;
    // The slot map was not patched: slot 0 is still served.
    assert_eq!(cmd(&mut ops, &["SET", "{3560}", "v"]).await, "+OK\r\n");
}

#[tokio::test]
async fn a_scripts_retryable_error_does_not_run_it_again() {
    let proxy = start_proxy(shop_config()).await;
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    for (i, err) in ["TRYAGAIN fake", "CLUSTERDOWN fake"].iter().enumerate() {
        let key = format!("lock:product:{{retry{i}}}");
        let script = format!("redis.call('INCR',KEYS[1]); return redis.error_reply('{err}')");
        let r = cmd(&mut inv, &["EVAL", &script, "1", &key]).await;
        assert_eq!(r, format!("-{err}\r\n"));
        assert_eq!(
            node_get(&key).as_deref(),
            Some("1"),
            "the script ran more than once"
        );
    }
}

#[tokio::test]
async fn a_scripts_moved_to_another_known_node_does_not_run_it_again() {
    let proxy = start_proxy(shop_config()).await;
    let key = "lock:product:{moved}";
    let slot = respgate::cluster::key_slot(key.as_bytes());
    let other = shared_slot_owners()
        .into_iter()
        .find(|m| *m != shared_owner_of(key))
        .unwrap();
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    let text = format!("MOVED {slot} {other}");
    let script = format!("redis.call('INCR',KEYS[1]); return redis.error_reply('{text}')");
    let r = cmd(&mut inv, &["EVAL", &script, "1", key]).await;
    assert_eq!(r, format!("-{text}\r\n"));
    assert_eq!(
        node_get(key).as_deref(),
        Some("1"),
        "the script ran more than once"
    );
}

#[tokio::test]
async fn a_refused_identity_fails_the_call_and_never_runs_it_as_respgate() {
    // respgate's node user may not manage ACL users: scripts fail, they do not run.
    let owners = shared_slot_owners();
    let nodes = with_shared_cluster(|c| c.seeds());
    for n in &nodes {
        on_node(
            *n,
            &[
                "ACL",
                "SETUSER",
                "noacl",
                "on",
                ">noacl-pw",
                "~*",
                "&*",
                "+@all",
                "-acl",
            ],
        );
    }
    let mut config = shop_config();
    config.cluster.username = Some("noacl".into());
    config.cluster.password = Some("noacl-pw".into());
    let proxy = start_proxy(config).await;
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    let key = "lock:product:{refused}";
    let r = cmd(
        &mut inv,
        &["EVAL", "return redis.call('INCR',KEYS[1])", "1", key],
    )
    .await;
    assert!(
        r.starts_with("-ERR respgate:") && r.contains("refused"),
        "{r}"
    );
    assert_eq!(node_get(key), None, "the script ran as respgate");
    // Plain commands are unaffected.
    assert_eq!(cmd(&mut inv, &["SET", key, "1"]).await, "+OK\r\n");
    drop(owners);
}

#[tokio::test]
async fn a_reload_changes_what_a_script_may_reach() {
    let proxy = start_proxy(shop_config()).await;
    on_owner("saga:{r1}", &["SET", "saga:{r1}", "s1"]);
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    let r = cmd(
        &mut inv,
        &["EVAL", "return redis.call('GET',KEYS[1])", "1", "saga:{r1}"],
    )
    .await;
    assert!(
        r.starts_with("-NOPERM"),
        "respgate refuses the declared key: {r}"
    );
    let own = same_slot_key("lock:product:", "saga:{r1}");
    let r = cmd(
        &mut inv,
        &["EVAL", "return redis.call('GET','saga:{r1}')", "1", &own],
    )
    .await;
    assert!(acl_refusal(&r), "{r}");
    let mut config = shop_config();
    for u in &mut config.auth.users {
        if u.name == "inventory-service" {
            *u = shop::user(
                "inventory-service",
                "on ~lock:product:* ~saga:* +@read +@write +@scripting +@connection -@dangerous",
            );
        }
    }
    proxy.reload(&config).expect("reload");
    let own = same_slot_key("lock:product:", "saga:{r1}");
    let r = cmd(
        &mut inv,
        &["EVAL", "return redis.call('GET','saga:{r1}')", "1", &own],
    )
    .await;
    assert_eq!(r, "$2\r\ns1\r\n");
}

#[tokio::test]
async fn allowlist_mode_runs_only_listed_scripts_for_restricted_users() {
    use sha1::Digest;
    let body = "return redis.call('GET',KEYS[1])";
    let sha: String = sha1::Sha1::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut config = shop_config();
    config.scripts.isolation = respgate::config::ScriptIsolation::Allowlist;
    config.scripts.allowed_sha1 = vec![sha.clone()];
    let proxy = start_proxy(config).await;
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    let key = "lock:product:{allow}";
    assert_eq!(cmd(&mut inv, &["SET", key, "v"]).await, "+OK\r\n");
    assert_eq!(
        cmd(&mut inv, &["EVAL", body, "1", key]).await,
        "$1\r\nv\r\n"
    );
    assert_eq!(
        cmd(&mut inv, &["EVALSHA", &sha, "1", key]).await,
        "$1\r\nv\r\n"
    );
    let r = cmd(&mut inv, &["EVAL", "return 1", "0"]).await;
    assert!(
        r.starts_with("-NOPERM respgate: script ") && r.contains("allowed_sha1"),
        "{r}"
    );
    let r = cmd(&mut inv, &["FCALL", "tenant_get", "1", key]).await;
    assert!(r.starts_with("-NOPERM respgate: functions"), "{r}");
    // An unrestricted user runs any script.
    let mut ops = login(proxy.local_addr(), "ops").await;
    assert_eq!(cmd(&mut ops, &["EVAL", "return 1", "0"]).await, ":1\r\n");
}

/// The same stream of commands, scripts included, for a restricted user through
/// respgate and on a standalone Redis where that user was created with the same rules:
/// the same refusals.
#[tokio::test]
async fn restricted_users_get_the_refusals_redis_gives() {
    let standalone = Standalone::start();
    let proxy = start_proxy(shop_config()).await;
    for (name, rules) in shop::USERS.iter().filter(|(n, _)| *n != "ops") {
        let pw = format!("{name}-pw");
        let mut direct = RawConn::connect(standalone.addr).await;
        let mut setuser = vec!["ACL", "SETUSER", name, "reset", "on"];
        let password = format!(">{pw}");
        setuser.push(&password);
        setuser.extend(rules.split(' '));
        assert_eq!(cmd(&mut direct, &setuser).await, "+OK\r\n");
        assert_eq!(cmd(&mut direct, &["AUTH", name, &pw]).await, "+OK\r\n");
        let mut via = login(proxy.local_addr(), name).await;
        let k = "lock:product:{diff}";
        let stream: Vec<Vec<&str>> = vec![
            vec!["SET", k, "1"],
            vec!["GET", "session:{diff}"],
            vec!["SET", "session:{diff}", "x", "EX", "100"],
            vec!["GET", "cache:search:{diff}"],
            vec!["EVAL", "return redis.call('GET','session:{diff}')", "0"],
            vec!["EVAL", "return redis.call('SET','session:{diff}','x')", "0"],
            vec!["EVAL", "return redis.call('GET',KEYS[1])", "1", k],
            vec![
                "EVAL",
                "return redis.call('GET',KEYS[1])",
                "1",
                "session:{diff}",
            ],
            vec![
                "EVAL",
                "return redis.call('GET',KEYS[1])",
                "1",
                "saga:{diff}",
            ],
            vec!["EVAL", "return redis.call('PUBLISH','chan','x')", "0"],
            vec!["EVAL", "return redis.call('FLUSHALL')", "0"],
            vec!["EVAL", "return redis.call('KEYS','*')", "0"],
            vec!["EVAL", "return redis.pcall('GET','session:{diff}')", "0"],
            vec!["EVALSHA", "0000000000000000000000000000000000000000", "0"],
            vec!["FCALL", "nosuchfunction", "0"],
            vec!["FLUSHALL"],
            vec!["CONFIG", "GET", "maxmemory"],
            vec!["PUBLISH", "chan", "x"],
            vec!["HSET", "saga:{diff}", "f", "v"],
        ];
        for args in &stream {
            let (a, b) = (cmd(&mut via, args).await, cmd(&mut direct, args).await);
            assert_eq!(
                acl_refusal(&a),
                acl_refusal(&b),
                "{name} {args:?}: via respgate {a:?}, direct {b:?}"
            );
            if acl_refusal(&b) {
                assert_eq!(a, b, "{name} {args:?}");
            }
        }
    }
}

#[tokio::test]
async fn script_debug_and_asking_never_reach_a_shared_node_link() {
    // Both change the state of the node connection they arrive on, which other clients
    // share: SCRIPT DEBUG would put the next EVAL on that link into the Lua debugger.
    let proxy = start_proxy(shop_config()).await;
    let mut auth = login(proxy.local_addr(), "auth-service").await;
    for mode in ["YES", "SYNC", "NO"] {
        let r = cmd(&mut auth, &["SCRIPT", "DEBUG", mode]).await;
        assert!(
            r.starts_with("-ERR respgate: SCRIPT DEBUG is not supported"),
            "{r}"
        );
    }
    assert_eq!(
        cmd(&mut auth, &["ASKING"]).await,
        "-ERR This instance has cluster support disabled\r\n"
    );
    assert_eq!(cmd(&mut auth, &["MULTI"]).await, "+OK\r\n");
    let r = cmd(&mut auth, &["SCRIPT", "DEBUG", "SYNC"]).await;
    assert!(r.starts_with("-ERR"), "{r}");
    assert_eq!(cmd(&mut auth, &["DISCARD"]).await, "+OK\r\n");
}

#[tokio::test]
async fn a_script_cannot_list_keys_by_slot() {
    // CLUSTER GETKEYSINSLOT is `@slow` only: `-@dangerous` does not remove it, and a
    // script of auth-service could list every tenant's key names slot by slot.
    let proxy = start_proxy(shop_config()).await;
    on_owner("saga:{slotleak}", &["SET", "saga:{slotleak}", "x"]);
    let slot = respgate::cluster::key_slot(b"saga:{slotleak}").to_string();
    let own = same_slot_key("session:", "saga:{slotleak}");
    let mut auth = login(proxy.local_addr(), "auth-service").await;
    let script = "return redis.call('CLUSTER','GETKEYSINSLOT',tonumber(ARGV[1]),10)";
    let r = cmd(&mut auth, &["EVAL", script, "1", &own, &slot]).await;
    assert!(!r.contains("saga:{slotleak}"), "{r}");
    assert!(acl_refusal(&r), "{r}");
}
