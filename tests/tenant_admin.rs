//! Tenant isolation for what no single tenant owns: function libraries, other users'
//! connections, node secrets, the audit log, and RANDOMKEY over a tenant's own keys.
//!
//! Every test runs the users of `config/production.example.toml` (auth-service,
//! inventory-service, order-service, search-service, ops) with known passwords and the
//! guards' safe defaults with `admins = ["ops"]`, in front of real redis-server
//! clusters.

mod support;

use respgate::config::{GuardAction, GuardsConfig};
use support::shop::{cmd, login};
use support::*;

fn denied(what: &str) -> String {
    format!("-ERR respgate: {what} is denied by rule 'dangerous-admin-only' (ask an admin)\r\n")
}

/// The payload of a bulk string reply.
fn bulk(reply: &[u8]) -> Vec<u8> {
    let start = reply.iter().position(|&b| b == b'\n').expect("a bulk") + 1;
    assert_eq!(reply[0], b'$', "{}", show(reply));
    reply[start..reply.len() - 2].to_vec()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

// ---- 1. function libraries have no owner: only admins ship them ----

fn library(name: &str, body: &str) -> String {
    format!(
        "#!lua name={name}\nredis.register_function('{name}_f', function() return '{body}' end)"
    )
}

/// Whether every master of the shared cluster has library `name` whose function answers
/// `body`.
fn library_on_every_master(name: &str, body: &str) -> bool {
    let masters = with_shared_cluster(|c| c.masters());
    masters.into_iter().all(|m| {
        let r = on_node(m, &["FCALL", &format!("{name}_f"), "0"]);
        r.as_str() == Some(body)
    })
}

#[tokio::test]
async fn only_admins_load_delete_restore_or_flush_function_libraries() {
    let proxy = start_proxy(shop::config(&shared_cluster_seeds())).await;
    let addr = proxy.local_addr();
    let mut ops = login(addr, "ops").await;
    let lib = "tenant_orders";
    assert_eq!(
        cmd(
            &mut ops,
            &["FUNCTION", "LOAD", "REPLACE", &library(lib, "v1")]
        )
        .await,
        format!("${}\r\n{lib}\r\n", lib.len())
    );
    assert!(library_on_every_master(lib, "v1"));
    let dump = bulk(&ops.command(&["FUNCTION", "DUMP"]).await);

    // A team with @scripting (and @write) may call the library, not change it.
    let mut inventory = login(addr, "inventory-service").await;
    assert_eq!(
        cmd(&mut inventory, &["FCALL", "tenant_orders_f", "0"]).await,
        "$2\r\nv1\r\n"
    );
    let evil = library(lib, "hijacked");
    let other = library("tenant_inventory", "mine");
    let attempts: Vec<(Vec<&[u8]>, &str)> = vec![
        (
            vec![b"FUNCTION", b"DELETE", lib.as_bytes()],
            "FUNCTION DELETE",
        ),
        (
            vec![b"FUNCTION", b"LOAD", b"REPLACE", evil.as_bytes()],
            "FUNCTION LOAD",
        ),
        (
            vec![b"FUNCTION", b"LOAD", other.as_bytes()],
            "FUNCTION LOAD",
        ),
        (
            vec![b"FUNCTION", b"RESTORE", &dump, b"FLUSH"],
            "FUNCTION RESTORE FLUSH (counts as FUNCTION FLUSH)",
        ),
        (
            vec![b"FUNCTION", b"RESTORE", &dump, b"REPLACE"],
            "FUNCTION RESTORE REPLACE (counts as FUNCTION FLUSH)",
        ),
        (vec![b"FUNCTION", b"RESTORE", &dump], "FUNCTION RESTORE"),
        (vec![b"FUNCTION", b"FLUSH"], "FUNCTION FLUSH"),
        (vec![b"FUNCTION", b"FLUSH", b"ASYNC"], "FUNCTION FLUSH"),
    ];
    for (args, what) in &attempts {
        assert_eq!(
            cmd(&mut inventory, args).await,
            denied(what),
            "{:?}",
            String::from_utf8_lossy(args[1])
        );
    }
    // The same for every non-admin team.
    for user in ["auth-service", "order-service"] {
        let mut c = login(addr, user).await;
        assert_eq!(
            cmd(&mut c, &["FUNCTION", "DELETE", lib]).await,
            denied("FUNCTION DELETE"),
            "{user}"
        );
    }
    assert!(library_on_every_master(lib, "v1"));
    // The admin ships and removes it (the deploy step).
    assert_eq!(cmd(&mut ops, &["FUNCTION", "DELETE", lib]).await, "+OK\r\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn function_restore_with_flush_or_replace_counts_as_function_flush() {
    // Only a rule about FUNCTION FLUSH: RESTORE's FLUSH and REPLACE fall under it,
    // RESTORE's APPEND does not.
    let mut c = shop::config(&shared_cluster_seeds());
    c.guards = GuardsConfig {
        safe_defaults: false,
        rules: vec![respgate::config::GuardRuleConfig::new(
            "no-function-flush",
            &["function|flush"],
            GuardAction::Deny,
        )],
        ..GuardsConfig::file_default()
    };
    let proxy = start_proxy(c).await;
    let mut inventory = login(proxy.local_addr(), "inventory-service").await;
    let rule = |what: &str| {
        format!("-ERR respgate: {what} is denied by rule 'no-function-flush' (ask an admin)\r\n")
    };
    for policy in ["FLUSH", "flush", "REPLACE"] {
        let args: [&[u8]; 4] = [b"FUNCTION", b"RESTORE", b"not-a-dump", policy.as_bytes()];
        assert_eq!(
            cmd(&mut inventory, &args).await,
            rule(&format!(
                "FUNCTION RESTORE {} (counts as FUNCTION FLUSH)",
                policy.to_uppercase()
            ))
        );
    }
    // APPEND reaches the node, which refuses the bad payload itself.
    let append = cmd(
        &mut inventory,
        &["FUNCTION", "RESTORE", "not-a-dump", "APPEND"],
    )
    .await;
    assert!(
        append.starts_with("-ERR") && !append.contains("respgate"),
        "{append}"
    );
    proxy.shutdown().await;
}

// ---- 2. +@connection stays within the caller's own user ----

async fn client_id(c: &mut RawConn) -> String {
    cmd(c, &["CLIENT", "ID"])
        .await
        .trim_start_matches(':')
        .trim_end()
        .to_string()
}

/// The CLIENT LIST lines a connection gets.
async fn client_list(c: &mut RawConn) -> Vec<String> {
    let text = String::from_utf8_lossy(&bulk(&c.command(&["CLIENT", "LIST"]).await)).into_owned();
    text.lines().map(str::to_string).collect()
}

async fn alive(c: &mut RawConn) -> bool {
    cmd(c, &["PING"]).await == "+PONG\r\n"
}

#[tokio::test]
async fn client_list_and_kill_see_only_the_callers_own_users_connections() {
    let proxy = start_proxy(shop::config(&shared_cluster_seeds())).await;
    let addr = proxy.local_addr();
    let mut ops = login(addr, "ops").await;
    assert_eq!(
        cmd(&mut ops, &["CLIENT", "SETNAME", "ops-console"]).await,
        "+OK\r\n"
    );
    let ops_id = client_id(&mut ops).await;
    let ops_addr = ops.stream.local_addr().unwrap().to_string();
    let mut search = login(addr, "search-service").await;
    let mut search2 = login(addr, "search-service").await;
    let mut inventory = login(addr, "inventory-service").await;

    // CLIENT LIST: a tenant sees its own connections, the admin sees all.
    let lines = client_list(&mut search).await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| field(l, "user") == Some("search-service")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains("ops-console")));
    let everyone = client_list(&mut ops).await;
    for user in ["ops", "search-service", "inventory-service"] {
        assert!(
            everyone.iter().any(|l| field(l, "user") == Some(user)),
            "{user}: {everyone:#?}"
        );
    }
    assert_eq!(
        cmd(&mut search, &["CLIENT", "LIST", "ID", &ops_id]).await,
        "$0\r\n\r\n"
    );

    // CLIENT KILL in every form: another user's connection is "no such client".
    assert_eq!(
        cmd(&mut search, &["CLIENT", "KILL", "USER", "ops"]).await,
        ":0\r\n"
    );
    assert_eq!(
        cmd(&mut search, &["CLIENT", "KILL", "ID", &ops_id]).await,
        ":0\r\n"
    );
    assert_eq!(
        cmd(&mut search, &["CLIENT", "KILL", &ops_addr]).await,
        "-ERR No such client\r\n"
    );
    assert_eq!(
        cmd(&mut search, &["CLIENT", "KILL", "ADDR", &ops_addr]).await,
        ":0\r\n"
    );
    assert_eq!(
        cmd(
            &mut search,
            &["CLIENT", "KILL", "ID", &ops_id, "USER", "ops", "SKIPME", "no"]
        )
        .await,
        ":0\r\n"
    );
    assert_eq!(
        cmd(&mut search, &["CLIENT", "UNBLOCK", &ops_id]).await,
        ":0\r\n"
    );
    assert!(alive(&mut ops).await);
    // LADDR matches every connection of this listener: only search-service's other one
    // is killed (SKIPME yes spares the caller).
    assert_eq!(
        cmd(&mut search, &["CLIENT", "KILL", "LADDR", &addr.to_string()]).await,
        ":1\r\n"
    );
    search2.expect_closed().await;
    assert!(alive(&mut ops).await);
    assert!(alive(&mut inventory).await);
    assert!(alive(&mut search).await);

    // The admin acts on anyone.
    assert_eq!(
        cmd(&mut ops, &["CLIENT", "KILL", "USER", "inventory-service"]).await,
        ":1\r\n"
    );
    inventory.expect_closed().await;
    let search_addr = search.stream.local_addr().unwrap().to_string();
    assert_eq!(
        cmd(&mut ops, &["CLIENT", "KILL", &search_addr]).await,
        "+OK\r\n"
    );
    search.expect_closed().await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn node_wide_client_controls_are_admin_only() {
    let proxy = start_proxy(shop::config(&shared_cluster_seeds())).await;
    let addr = proxy.local_addr();
    let mut search = login(addr, "search-service").await;
    for (args, what) in [
        (&["CLIENT", "PAUSE", "2000", "WRITE"][..], "CLIENT PAUSE"),
        (&["CLIENT", "PAUSE", "2000"], "CLIENT PAUSE"),
        (&["CLIENT", "UNPAUSE"], "CLIENT UNPAUSE"),
        (&["CLIENT", "NO-EVICT", "on"], "CLIENT NO-EVICT"),
    ] {
        assert_eq!(cmd(&mut search, args).await, denied(what));
    }
    // Nothing was paused: a write goes through at once.
    let started = std::time::Instant::now();
    assert_eq!(
        cmd(
            &mut search,
            &["SET", "cache:search:tenant-pause", "v", "EX", "60"]
        )
        .await,
        "+OK\r\n"
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(1000));
    let mut ops = login(addr, "ops").await;
    assert_eq!(cmd(&mut ops, &["CLIENT", "UNPAUSE"]).await, "+OK\r\n");
    assert_eq!(
        cmd(&mut ops, &["CLIENT", "NO-EVICT", "on"]).await,
        "+OK\r\n"
    );
    proxy.shutdown().await;
}

// ---- 3. CONFIG GET never hands out a node secret ----

const REQUIREPASS: &str = "Np-requirepass-7f3Kq";
const MASTERAUTH: &str = "Np-masterauth-2Lw9x";
const MASTERUSER: &str = "Np-masteruser-5Vb1c";
const KEY_PASS: &str = "Np-tls-key-pass-8Hj4m";
const CLIENT_KEY_PASS: &str = "Np-tls-client-key-pass-3Zr6t";

#[tokio::test]
async fn config_get_redacts_node_secrets_for_everyone_in_resp2_and_resp3() {
    use devcluster::{DevCluster, DevClusterOptions};
    // A private cluster whose nodes hold every kind of secret (no replicas: nothing
    // replicates with these made-up master credentials); requirepass is set last, once
    // the cluster is formed, and respgate logs in to the nodes with it.
    let secrets = [
        ("masterauth", MASTERAUTH),
        ("masteruser", MASTERUSER),
        ("tls-key-file-pass", KEY_PASS),
        ("tls-client-key-file-pass", CLIENT_KEY_PASS),
    ];
    let cluster = tokio::task::spawn_blocking(move || {
        let c = DevCluster::start(DevClusterOptions {
            masters: 3,
            replicas_per_master: 0,
            extra_config: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..DevClusterOptions::default()
        })
        .expect("private cluster starts");
        for node in c.seeds() {
            node_ok(&c, node, &["CONFIG", "SET", "requirepass", REQUIREPASS]);
        }
        c
    })
    .await
    .unwrap();
    let mut config = shop::config(&cluster.seeds());
    config.cluster.password = Some(REQUIREPASS.into());
    let proxy = start_proxy(config).await;
    let addr = proxy.local_addr();
    let all_secrets = [
        REQUIREPASS,
        MASTERAUTH,
        MASTERUSER,
        KEY_PASS,
        CLIENT_KEY_PASS,
    ];
    let requests: Vec<Vec<&str>> = vec![
        vec!["CONFIG", "GET", "requirepass"],
        vec!["CONFIG", "GET", "REQUIREPASS"],
        vec!["CONFIG", "GET", "masterauth"],
        vec!["CONFIG", "GET", "masteruser"],
        vec!["CONFIG", "GET", "tls-key-file-pass"],
        vec!["CONFIG", "GET", "tls-client-key-file-pass"],
        vec!["CONFIG", "GET", "*"],
        vec!["CONFIG", "GET", "*pass*"],
        vec!["CONFIG", "GET", "*auth*"],
        vec!["CONFIG", "GET", "master*"],
        vec![
            "CONFIG",
            "GET",
            "maxmemory",
            "requirepass",
            "port",
            "masterauth",
        ],
        vec!["CONFIG", "GET", "tls-*", "*user*"],
    ];
    for resp3 in [false, true] {
        let mut ops = RawConn::connect(addr).await;
        let hello = ops
            .command(&[
                "HELLO",
                if resp3 { "3" } else { "2" },
                "AUTH",
                "ops",
                "ops-pw",
            ])
            .await;
        assert!(matches!(hello[0], b'%' | b'*'), "{}", show(&hello));
        for request in &requests {
            let got = ops.command(request).await;
            let text = show(&got);
            assert!(
                matches!(got[0], b'*' | b'%'),
                "{request:?} resp3={resp3}: {text}"
            );
            for secret in all_secrets {
                assert!(
                    !text.contains(secret),
                    "{request:?} resp3={resp3} leaks {secret}: {text}"
                );
            }
        }
        // Each secret's name is still there, with the redacted value.
        let got = show(&ops.command(&["CONFIG", "GET", "requirepass"]).await);
        let header = if resp3 { "%1" } else { "*2" };
        assert_eq!(
            got,
            format!("{header}\\r\\n$11\\r\\nrequirepass\\r\\n$10\\r\\n<redacted>\\r\\n")
        );
        let got = show(&ops.command(&["CONFIG", "GET", "*pass*"]).await);
        for name in [
            "requirepass",
            "tls-key-file-pass",
            "tls-client-key-file-pass",
        ] {
            assert!(
                got.contains(&format!("{name}\\r\\n$10\\r\\n<redacted>")),
                "{got}"
            );
        }
        // Other parameters pass unchanged.
        assert_eq!(
            show(&ops.command(&["CONFIG", "GET", "maxmemory-policy"]).await),
            format!("{header}\\r\\n$16\\r\\nmaxmemory-policy\\r\\n$10\\r\\nnoeviction\\r\\n")
        );
    }
    proxy.shutdown().await;
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

// ---- 5. RANDOMKEY finds a restricted user's keys among many others ----

#[tokio::test]
async fn randomkey_returns_one_of_a_restricted_users_readable_keys() {
    let quiet = quiet_cluster().await;
    quiet.flush();
    let proxy = start_proxy(shop::config(&quiet.seeds())).await;
    let addr = proxy.local_addr();
    let mut ops = login(addr, "ops").await;
    // 60,000 keys search-service may not read (1,000 per MSET, one hash tag each, the
    // tags spread over the masters), and its own 200.
    for batch in 0..60 {
        let mut args = vec!["MSET".to_string()];
        for i in 0..1000 {
            args.push(format!("{{rk{batch}}}:other:{i}"));
            args.push("x".into());
        }
        assert_eq!(cmd(&mut ops, &args).await, "+OK\r\n");
    }
    let mut args = vec!["MSET".to_string()];
    for i in 0..200 {
        args.push(format!("cache:search:rk:{i}"));
        args.push("v".into());
    }
    assert_eq!(cmd(&mut ops, &args).await, "+OK\r\n");
    assert_eq!(cmd(&mut ops, &["DBSIZE"]).await, ":60200\r\n");

    let mut search = login(addr, "search-service").await;
    let mut seen = std::collections::HashSet::new();
    for attempt in 0..6 {
        let got = search.command(&["RANDOMKEY"]).await;
        assert_eq!(got[0], b'$', "try {attempt}: {}", show(&got));
        let key = String::from_utf8(bulk(&got)).unwrap();
        assert!(key.starts_with("cache:search:rk:"), "try {attempt}: {key}");
        seen.insert(key);
    }
    assert!(seen.len() > 1, "always the same key: {seen:?}");
    // A user with no readable key gets nil, in RESP2 and RESP3.
    let mut orders = login(addr, "order-service").await;
    assert_eq!(cmd(&mut orders, &["RANDOMKEY"]).await, "$-1\r\n");
    let hello = orders.command(&["HELLO", "3"]).await;
    assert_eq!(hello[0], b'%');
    assert_eq!(cmd(&mut orders, &["RANDOMKEY"]).await, "_\r\n");
    // An unrestricted user still gets any key.
    assert_eq!(cmd(&mut ops, &["RANDOMKEY"]).await.as_bytes()[0], b'$');
    proxy.shutdown().await;
    quiet.flush();
}

// ---- 4. the audit log: escaped, complete ----

/// Everything logged under `respgate::audit` by this test binary, as the binary's
/// formatter writes it (without colours). Installed once, as the global subscriber, so
/// the worker threads' sessions log into it too.
fn audit_log() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("respgate::audit=info"))
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        log
    })
    .clone()
}

/// The audit lines, each checked to be a proper line: no control character inside, and
/// none of them a forgery (those start with the year 2099).
fn audit_lines() -> Vec<String> {
    let log = audit_log();
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    for line in &lines {
        assert!(
            !line.chars().any(|c| c.is_control()),
            "control character in an audit line: {line:?}"
        );
        assert!(!line.starts_with("2099"), "forged audit line: {line:?}");
    }
    lines
}

/// Waits until an audit line contains every one of `parts`; returns it.
async fn audit_line(parts: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(l) = audit_lines()
            .into_iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit line with {parts:?}; have:\n{}",
            audit_lines().join("\n")
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

const FORGED: &str = "2099-01-01T00:00:00.000000Z  INFO respgate::audit: authenticated event=\"auth\" user=\"ops\" addr=10.9.9.9 method=\"password\"";

#[tokio::test]
async fn audit_lines_escape_what_clients_send() {
    audit_log();
    let proxy = start_proxy(shop::config(&shared_cluster_seeds())).await;
    let addr = proxy.local_addr();
    let mut c = RawConn::connect(addr).await;
    let user = format!("fake-{}\n{FORGED}", std::process::id());
    assert_eq!(
        cmd(&mut c, &["AUTH", &user, "x"]).await,
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    let hello_user = "hello\r\n\u{1b}[31mred\u{0}\\\"q\"";
    let got = cmd(&mut c, &["HELLO", "3", "AUTH", hello_user, "x"]).await;
    assert!(got.starts_with("-WRONGPASS"), "{got}");
    // audit_lines() fails on any forged line or raw control character.
    let line = audit_line(&["event=\"auth_failed\"", "fake-"]).await;
    assert!(
        line.contains(&format!(
            "user=\"fake-{}\\n2099-01-01T00:00:00.000000Z  INFO respgate::audit: authenticated event=\\\"auth\\\" user=\\\"ops\\\"",
            std::process::id()
        )),
        "{line}"
    );
    audit_line(&[
        "event=\"auth_failed\"",
        "user=\"hello\\r\\n\\u{1b}[31mred\\0\\\\\\\"q\\\"\"",
    ])
    .await;
    // Logins, ACL and guard refusals carry quoted fields too.
    let mut search = login(addr, "search-service").await;
    audit_line(&[
        "event=\"auth\"",
        "user=\"search-service\"",
        "method=\"password\"",
    ])
    .await;
    assert!(cmd(&mut search, &["GET", "saga:1"])
        .await
        .starts_with("-NOPERM"));
    audit_line(&[
        "event=\"denied\"",
        "user=\"search-service\"",
        "command=\"get\"",
    ])
    .await;
    assert_eq!(
        cmd(&mut search, &["CLIENT", "PAUSE", "10"]).await,
        denied("CLIENT PAUSE")
    );
    audit_line(&[
        "event=\"guard_denied\"",
        "rule=\"dangerous-admin-only\"",
        "user=\"search-service\"",
        "command=\"client|pause\"",
    ])
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_flush_that_passes_is_an_audit_line() {
    audit_log();
    let quiet = quiet_cluster().await;
    let proxy = start_proxy(shop::config(&quiet.seeds())).await;
    let addr = proxy.local_addr();
    let mut search = login(addr, "search-service").await;
    assert!(cmd(&mut search, &["FLUSHALL"]).await.starts_with("-NOPERM"));
    let mut ops = login(addr, "ops").await;
    let from = ops.stream.local_addr().unwrap().ip().to_string();
    assert_eq!(
        cmd(&mut ops, &["SET", "tenant:flush", "v"]).await,
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut ops, &["FLUSHALL", "SYNC"]).await, "+OK\r\n");
    assert_eq!(cmd(&mut ops, &["FLUSHDB"]).await, "+OK\r\n");
    let addr_field = format!("addr={from}");
    audit_line(&[
        "event=\"flush\"",
        "user=\"ops\"",
        &addr_field,
        "command=\"flushall\"",
        "args=\"SYNC\"",
    ])
    .await;
    audit_line(&["event=\"flush\"", "user=\"ops\"", "command=\"flushdb\""]).await;
    // The refused one is an ACL line, not a flush.
    assert!(!audit_lines()
        .iter()
        .any(|l| l.contains("event=\"flush\"") && l.contains("search-service")));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_logins_and_refused_certificates_are_audit_lines() {
    use respgate::config::{ClientAuth, TlsConfig};
    use support::pki::Pki;
    audit_log();
    let server_pki = Pki::new("tenant-server");
    let clients = Pki::new("tenant-clients");
    let stranger = Pki::new("tenant-stranger");
    let server = server_pki.server("server");
    let mut config = shop::config(&shared_cluster_seeds());
    config.tls = Some(TlsConfig {
        listen: "127.0.0.1:0".into(),
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_auth: ClientAuth::Optional,
        client_ca: Some(clients.ca.clone()),
        cert_user: Default::default(),
        handshake_timeout_ms: 5000,
        max_handshakes_in_flight: respgate::config::default_max_handshakes_in_flight(),
    });
    let proxy = start_proxy(config).await;
    let tls_addr = proxy.tls_addr().unwrap();
    let connect = |cert: support::pki::CertFiles| {
        let ca = server_pki.ca_pem();
        async move {
            let c = redis::Client::build_with_tls(
                format!("rediss://{tls_addr}/"),
                redis::TlsCertificates {
                    client_tls: Some(redis::ClientTlsConfig {
                        client_cert: std::fs::read(&cert.cert).unwrap(),
                        client_key: std::fs::read(&cert.key).unwrap(),
                    }),
                    root_cert: Some(ca),
                },
            )?;
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                c.get_multiplexed_async_connection(),
            )
            .await
            .expect("TLS connect hung")
        }
    };
    let limit = std::time::Duration::from_secs(10);
    // A certificate naming a user logs in as it: one audit line.
    let mut con = connect(clients.issue("search", "search-service", &[]))
        .await
        .expect("a client CA certificate connects");
    let got: Option<String> = call(&mut con, redis::cmd("GET").arg("cache:search:x"), limit)
        .await
        .unwrap();
    assert_eq!(got, None);
    let refused = call::<String>(&mut con, redis::cmd("GET").arg("saga:x"), limit).await;
    assert!(refused.unwrap_err().starts_with("NOPERM"));
    audit_line(&[
        "event=\"auth\"",
        "user=\"search-service\"",
        "method=\"certificate\"",
    ])
    .await;
    // Verified, but it names no user (and tries to forge a line): refused, escaped.
    let forged_cn = format!("nobody\n{FORGED}");
    let mut con = connect(clients.issue("nobody", &forged_cn, &[]))
        .await
        .expect("the handshake itself succeeds");
    let got = call::<String>(&mut con, redis::cmd("GET").arg("cache:search:x"), limit).await;
    assert!(got.unwrap_err().starts_with("NOAUTH"));
    let line = audit_line(&["event=\"cert_refused\"", "nobody\\n2099"]).await;
    assert!(line.contains("names no enabled user"), "{line}");
    // A certificate of another CA fails the handshake: refused, with the reason.
    assert!(connect(stranger.issue("intruder", "ops", &[]))
        .await
        .is_err());
    let line = audit_line(&["event=\"cert_refused\"", "identity=None"]).await;
    assert!(line.contains("certificate"), "{line}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn another_teams_library_code_is_for_admins_only() {
    let proxy = start_proxy(shop::config(&shared_cluster_seeds())).await;
    let mut inv = login(proxy.local_addr(), "inventory-service").await;
    assert!(cmd(&mut inv, &["FUNCTION", "LIST"]).await.starts_with('*'));
    let r = cmd(&mut inv, &["FUNCTION", "LIST", "WITHCODE"]).await;
    assert!(
        r.starts_with("-ERR respgate: FUNCTION LIST WITHCODE shows every team's library code"),
        "{r}"
    );
    let r = cmd(
        &mut inv,
        &["FUNCTION", "LIST", "LIBRARYNAME", "x", "withcode"],
    )
    .await;
    assert!(
        r.starts_with("-ERR respgate: FUNCTION LIST WITHCODE"),
        "{r}"
    );
    assert_eq!(
        cmd(&mut inv, &["FUNCTION", "DUMP"]).await,
        denied("FUNCTION DUMP")
    );
    let mut ops = login(proxy.local_addr(), "ops").await;
    assert!(cmd(&mut ops, &["FUNCTION", "LIST", "WITHCODE"])
        .await
        .starts_with('*'));
    assert!(cmd(&mut ops, &["FUNCTION", "DUMP"]).await.starts_with('$'));
}
