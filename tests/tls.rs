//! TLS: the client-facing listener (redis-cli, the `redis` crate, openssl, raw TCP
//! against it; client certificates; certificate reload) and TLS to the Redis nodes (a
//! TLS-only dev cluster behind respgate). Certificates are made here with rcgen.

mod support;

use devcluster::{DevCluster, DevClusterOptions, DevTls};
use respgate::config::{ClientAuth, Config, TlsConfig, UpstreamTlsConfig};
use respgate::server::Proxy;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::pki::{CertFiles, Pki};
use support::*;

const LIMIT: Duration = Duration::from_secs(10);

fn tls_section(server: &CertFiles, client_auth: ClientAuth, client_ca: Option<&Path>) -> TlsConfig {
    TlsConfig {
        listen: "127.0.0.1:0".into(),
        cert: server.cert.clone(),
        key: server.key.clone(),
        client_auth,
        client_ca: client_ca.map(Path::to_path_buf),
        cert_user: Default::default(),
        handshake_timeout_ms: 5000,
        max_handshakes_in_flight: respgate::config::default_max_handshakes_in_flight(),
    }
}

/// respgate in front of the shared (plain) cluster, with a TLS listener too.
async fn tls_proxy(tls: TlsConfig) -> Proxy {
    let mut config = test_config(&shared_cluster_seeds());
    config.tls = Some(tls);
    start_proxy(config).await
}

/// Runs redis-cli; returns whether it exited 0 and its stdout + stderr.
async fn redis_cli(args: &[&str]) -> (bool, String) {
    let out = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new("redis-cli")
            .args(args)
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("redis-cli hung")
    .expect("redis-cli runs (apt-get install redis-tools)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn cli_tls_args<'a>(addr: &'a str, ca: &'a str) -> Vec<&'a str> {
    let (host, port) = addr.rsplit_once(':').unwrap();
    vec!["--tls", "--cacert", ca, "-h", host, "-p", port]
}

/// A `redis` crate client over TLS trusting `ca_pem`, optionally with a client cert.
async fn tls_client(
    addr: SocketAddr,
    ca_pem: Vec<u8>,
    client: Option<&CertFiles>,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client_tls = client.map(|c| redis::ClientTlsConfig {
        client_cert: std::fs::read(&c.cert).unwrap(),
        client_key: std::fs::read(&c.key).unwrap(),
    });
    let c = redis::Client::build_with_tls(
        format!("rediss://{addr}/"),
        redis::TlsCertificates {
            client_tls,
            root_cert: Some(ca_pem),
        },
    )?;
    tokio::time::timeout(LIMIT, c.get_multiplexed_async_connection())
        .await
        .unwrap_or_else(|_| panic!("TLS connect to {addr} hung"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_over_tls_ping_set_get() {
    let pki = Pki::new("cli");
    let proxy = tls_proxy(tls_section(&pki.server("server"), ClientAuth::None, None)).await;
    let addr = proxy.tls_addr().expect("TLS listener").to_string();
    let ca = pki.ca.to_str().unwrap().to_string();
    let base = cli_tls_args(&addr, &ca);
    let run = |extra: &[&str]| {
        let mut args = base.clone();
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    for (cmd, want) in [
        (vec!["PING"], "PONG"),
        (vec!["SET", "tls:cli:k", "over-tls"], "OK"),
        (vec!["GET", "tls:cli:k"], "over-tls"),
    ] {
        let args = run(&cmd);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out) = redis_cli(&args).await;
        assert!(ok && out.trim() == want, "redis-cli {cmd:?}: {out}");
    }
    // The plain listener still serves the same data.
    let mut plain = client(proxy.local_addr()).await;
    let v: String = call(&mut plain, redis::cmd("GET").arg("tls:cli:k"), LIMIT)
        .await
        .unwrap();
    assert_eq!(v, "over-tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_required_accepts_only_certificates_of_the_client_ca() {
    let pki = Pki::new("mtls");
    let clients = Pki::new("clients");
    let stranger = Pki::new("stranger");
    let proxy = tls_proxy(tls_section(
        &pki.server("server"),
        ClientAuth::Required,
        Some(&clients.ca),
    ))
    .await;
    let addr = proxy.tls_addr().unwrap().to_string();
    let ca = pki.ca.to_str().unwrap().to_string();
    let good = clients.issue("alice", "alice", &["alice.example"]);
    let bad = stranger.issue("mallory", "mallory", &[]);

    let mut args = cli_tls_args(&addr, &ca);
    let (cert, key) = (good.cert.to_str().unwrap(), good.key.to_str().unwrap());
    args.extend(["--cert", cert, "--key", key, "PING"]);
    let (ok, out) = redis_cli(&args).await;
    assert!(
        ok && out.trim() == "PONG",
        "with a client certificate: {out}"
    );

    let mut args = cli_tls_args(&addr, &ca);
    args.push("PING");
    let (_, out) = redis_cli(&args).await;
    assert!(!out.contains("PONG"), "without a client certificate: {out}");

    let mut args = cli_tls_args(&addr, &ca);
    let (cert, key) = (bad.cert.to_str().unwrap(), bad.key.to_str().unwrap());
    args.extend(["--cert", cert, "--key", key, "PING"]);
    let (_, out) = redis_cli(&args).await;
    assert!(
        !out.contains("PONG"),
        "with another CA's certificate: {out}"
    );

    // The redis crate with and without its client certificate.
    let tls_addr = proxy.tls_addr().unwrap();
    let mut con = tls_client(tls_addr, pki.ca_pem(), Some(&good))
        .await
        .expect("connects with a client certificate");
    let pong: String = call(&mut con, &redis::cmd("PING"), LIMIT).await.unwrap();
    assert_eq!(pong, "PONG");
    let refused = match tls_client(tls_addr, pki.ca_pem(), None).await {
        Err(e) => Err(e.to_string()),
        Ok(mut con) => call::<String>(&mut con, &redis::cmd("PING"), LIMIT).await,
    };
    assert!(refused.is_err(), "without a certificate: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_optional_lets_clients_without_certificates_in() {
    let pki = Pki::new("optional");
    let proxy = tls_proxy(tls_section(
        &pki.server("server"),
        ClientAuth::Optional,
        Some(&pki.ca),
    ))
    .await;
    let addr = proxy.tls_addr().unwrap();
    let alice = pki.issue("alice", "alice", &[]);
    for cert in [None, Some(&alice)] {
        let mut con = tls_client(addr, pki.ca_pem(), cert).await.unwrap();
        let pong: String = call(&mut con, &redis::cmd("PING"), LIMIT).await.unwrap();
        assert_eq!(pong, "PONG", "client certificate {cert:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_over_tls_routes_across_slots() {
    let pki = Pki::new("crate");
    let proxy = tls_proxy(tls_section(&pki.server("server"), ClientAuth::None, None)).await;
    let mut con = tls_client(proxy.tls_addr().unwrap(), pki.ca_pem(), None)
        .await
        .unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("tls:crate:{i}")).collect();
    for k in &keys {
        let _: () = call(&mut con, redis::cmd("SET").arg(k).arg(k), LIMIT)
            .await
            .unwrap();
    }
    let got: Vec<String> = call(&mut con, redis::cmd("MGET").arg(&keys), LIMIT)
        .await
        .unwrap();
    assert_eq!(got, keys);
    // A large value: several TLS records each way.
    let big = "x".repeat(1 << 20);
    let _: () = call(
        &mut con,
        redis::cmd("SET").arg("tls:crate:big").arg(&big),
        LIMIT,
    )
    .await
    .unwrap();
    let back: String = call(&mut con, redis::cmd("GET").arg("tls:crate:big"), LIMIT)
        .await
        .unwrap();
    assert!(back == big, "1 MiB value came back changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_on_the_tls_port_gets_no_reply_and_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new("plain");
    let proxy = tls_proxy(tls_section(&pki.server("server"), ClientAuth::None, None)).await;
    let mut s = tokio::net::TcpStream::connect(proxy.tls_addr().unwrap())
        .await
        .unwrap();
    s.write_all(b"PING\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let closed = loop {
        match tokio::time::timeout(LIMIT, s.read(&mut buf)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    assert!(closed, "the connection stayed open");
    assert!(
        !got.starts_with(b"+") && !got.starts_with(b"-") && !got.windows(4).any(|w| w == b"PONG"),
        "a Redis reply on the TLS port: {:?}",
        show(&got)
    );
    // The proxy is fine afterwards.
    let mut con = tls_client(proxy.tls_addr().unwrap(), pki.ca_pem(), None)
        .await
        .unwrap();
    let pong: String = call(&mut con, &redis::cmd("PING"), LIMIT).await.unwrap();
    assert_eq!(pong, "PONG");
}

/// `openssl s_client` forced to one protocol version: (handshake done, output).
async fn s_client(addr: SocketAddr, ca: &Path, version: &str) -> (bool, String) {
    let out = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string(), version])
            .args(["-CAfile", ca.to_str().unwrap()])
            // Let the client itself offer TLS 1.0/1.1 (OpenSSL 3 refuses them at the
            // default security level): the refusal must come from respgate.
            .args(["-cipher", "DEFAULT@SECLEVEL=0"])
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("openssl hung")
    .expect("openssl runs (apt-get install openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let done = text.contains("Verify return code: 0 (ok)") && !text.contains("Cipher is (NONE)");
    (done, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_1_2_and_1_3_are_accepted() {
    let pki = Pki::new("versions");
    let proxy = tls_proxy(tls_section(&pki.server("server"), ClientAuth::None, None)).await;
    let addr = proxy.tls_addr().unwrap();
    for old in ["-tls1", "-tls1_1"] {
        let (done, out) = s_client(addr, &pki.ca, old).await;
        assert!(!done, "{old} handshake succeeded:\n{out}");
        // rustls answers an old ClientHello with a protocol_version or handshake_failure
        // alert (which one depends on what else the hello offers).
        assert!(
            out.contains("alert protocol version") || out.contains("alert handshake failure"),
            "{old}: not refused by an alert from respgate:\n{out}"
        );
    }
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (done, out) = s_client(addr, &pki.ca, flag).await;
        assert!(done && out.contains(name), "{flag} refused:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_certificate_serves_new_connections_and_keeps_old_ones() {
    let old_ca = Pki::new("old");
    let new_ca = Pki::new("new");
    let proxy = tls_proxy(tls_section(
        &old_ca.server("server"),
        ClientAuth::None,
        None,
    ))
    .await;
    let addr = proxy.tls_addr().unwrap();
    let mut before = tls_client(addr, old_ca.ca_pem(), None).await.unwrap();
    let _: () = call(
        &mut before,
        redis::cmd("SET").arg("tls:reload").arg("1"),
        LIMIT,
    )
    .await
    .unwrap();

    // A broken reload changes nothing and says what is wrong.
    let mut broken = tls_section(&new_ca.server("server"), ClientAuth::None, None);
    broken.cert = new_ca.dir.path().join("missing.pem");
    let e = proxy.reload_tls(&broken).unwrap_err();
    assert!(
        e.starts_with("tls.cert: ") && e.contains("missing.pem"),
        "{e}"
    );
    assert!(tls_client(addr, old_ca.ca_pem(), None).await.is_ok());

    proxy
        .reload_tls(&tls_section(
            &new_ca.server("server"),
            ClientAuth::None,
            None,
        ))
        .unwrap();
    // New connections see the new certificate: only its CA is trusted now.
    let old_trust = match tls_client(addr, old_ca.ca_pem(), None).await {
        Ok(mut c) => call::<String>(&mut c, &redis::cmd("PING"), LIMIT).await,
        Err(e) => Err(e.to_string()),
    };
    assert!(old_trust.is_err(), "old CA still accepted: {old_trust:?}");
    let mut after = tls_client(addr, new_ca.ca_pem(), None).await.unwrap();
    let v: String = call(&mut after, redis::cmd("GET").arg("tls:reload"), LIMIT)
        .await
        .unwrap();
    assert_eq!(v, "1");
    // The connection made before the reload still works.
    let v: i64 = call(&mut before, redis::cmd("INCR").arg("tls:reload"), LIMIT)
        .await
        .unwrap();
    assert_eq!(v, 2);

    // A proxy without a TLS listener cannot gain one by reload.
    let plain = proxy_for_shared().await;
    assert!(plain.tls_addr().is_none());
    let e = plain
        .reload_tls(&tls_section(&new_ca.server("x"), ClientAuth::None, None))
        .unwrap_err();
    assert!(e.contains("no TLS listener"), "{e}");
}

/// Over `max_clients`, a TLS client is closed before any handshake: a flood of refused
/// connections costs no key exchange, no signature, no TLS state (it used to get a full
/// handshake each, in its own task, to be told the limit over TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_clients_a_tls_client_is_closed_without_a_handshake() {
    let pki = Pki::new("limits");
    let mut config = test_config(&shared_cluster_seeds());
    config.server.max_clients = 1;
    let mut tls = tls_section(&pki.server("server"), ClientAuth::None, None);
    tls.handshake_timeout_ms = 60_000;
    config.tls = Some(tls);
    let proxy = start_proxy(config).await;
    let addr = proxy.tls_addr().unwrap();
    // A client that never handshakes holds the only place...
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... so the next one's handshake fails: closed at once, no ServerHello.
    let refused = tokio::time::timeout(LIMIT, RawTls::try_connect(addr, &pki))
        .await
        .expect("the refused client was neither closed nor served");
    assert!(
        refused.is_err(),
        "the client over max_clients got a TLS session"
    );
    // The place is given back when the silent client leaves.
    drop(silent);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut c = loop {
        match RawTls::try_connect(addr, &pki).await {
            Ok(c) => break c,
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.send(b"PING\r\n").await;
    assert_eq!(show(&c.read_some().await), "+PONG\\r\\n");
}

/// `tls.max_handshakes_in_flight`: a handshake past its ClientHello holds a permit, and
/// the next waits for it; a client that connects and sends nothing holds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_in_flight_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new("inflight");
    let mut config = test_config(&shared_cluster_seeds());
    let mut tls = tls_section(&pki.server("server"), ClientAuth::None, None);
    tls.handshake_timeout_ms = 60_000;
    tls.max_handshakes_in_flight = 1;
    config.tls = Some(tls);
    let proxy = start_proxy(config).await;
    let addr = proxy.tls_addr().unwrap();
    // Silent connections hold no permit: a real client still gets through.
    let _silent: Vec<_> = futures_connect(addr, 3).await;
    tokio::time::timeout(LIMIT, RawTls::try_connect(addr, &pki))
        .await
        .expect("silent connections held up the handshake")
        .expect("handshake beside silent connections");
    // A client that sends its ClientHello and then stalls holds the only permit (the
    // server's reply shows it got past the ClientHello).
    let mut conn = rustls::ClientConnection::new(
        std::sync::Arc::new(client_config(&pki)),
        rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled.write_all(&hello).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(LIMIT, stalled.read(&mut buf))
        .await
        .expect("no ServerHello")
        .unwrap();
    assert!(n > 0, "closed instead of a ServerHello");
    // The next handshake waits...
    let waiting = tokio::spawn({
        let pki_ca = pki.ca.clone();
        async move { RawTls::try_connect_ca(addr, &pki_ca).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a second handshake ran beside the first with max_handshakes_in_flight = 1"
    );
    // ... until the stalled one goes away.
    drop(stalled);
    tokio::time::timeout(LIMIT, waiting)
        .await
        .expect("the waiting handshake never got its permit")
        .unwrap()
        .expect("the waiting handshake completes");
}

/// `n` TCP connections that never send anything.
async fn futures_connect(addr: SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    out
}

/// A rustls client configuration trusting `ca` (a PEM file).
fn client_config_ca(ca: &Path) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth()
}

fn client_config(pki: &Pki) -> rustls::ClientConfig {
    client_config_ca(&pki.ca)
}

/// Certificates for a TLS-only dev cluster and respgate's side of it.
struct ClusterPki {
    pki: Pki,
    nodes: CertFiles,
    proxy_client: CertFiles,
}

fn cluster_pki() -> ClusterPki {
    let pki = Pki::new("cluster");
    let nodes = pki.issue("node", "redis-node", &["127.0.0.1", "localhost"]);
    let proxy_client = pki.issue("respgate-client", "respgate", &[]);
    ClusterPki {
        pki,
        nodes,
        proxy_client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respgate_serves_a_tls_only_cluster_over_a_tls_only_listener() {
    let certs = cluster_pki();
    let dev_tls = DevTls {
        cert: certs.nodes.cert.clone(),
        key: certs.nodes.key.clone(),
        ca: certs.pki.ca.clone(),
    };
    let cluster = tokio::task::spawn_blocking(move || {
        DevCluster::start(DevClusterOptions {
            tls: Some(dev_tls),
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("TLS dev cluster: {e}"));
    // Nothing answers in plain text: the nodes speak TLS only.
    let seed = cluster.seeds()[0];
    let plain = raw_exchange(seed, b"PING\r\n", Duration::from_millis(500)).await;
    assert!(!plain.starts_with(b"+PONG"), "plain PING answered");

    let mut config: Config = test_config(&cluster.seeds());
    config.server.listen = String::new();
    config.tls = Some(tls_section(
        &certs.pki.server("front"),
        ClientAuth::None,
        None,
    ));
    config.cluster.tls = Some(UpstreamTlsConfig {
        enabled: true,
        ca: Some(certs.pki.ca.clone()),
        cert: Some(certs.proxy_client.cert.clone()),
        key: Some(certs.proxy_client.key.clone()),
        server_name: None,
    });
    let proxy = start_proxy(config).await;
    assert_eq!(proxy.plain_addr(), None);
    let addr = proxy.tls_addr().unwrap();
    assert_eq!(proxy.local_addr(), addr);

    let mut con = tls_client(addr, certs.pki.ca_pem(), None).await.unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("tlsc:{i}")).collect();
    let mut owners = std::collections::HashSet::new();
    for k in &keys {
        owners.insert(cluster.master_for_slot(respgate::cluster::key_slot(k.as_bytes())));
        let _: () = call(
            &mut con,
            redis::cmd("SET").arg(k).arg(format!("v-{k}")),
            LIMIT,
        )
        .await
        .unwrap();
    }
    assert_eq!(owners.len(), 3, "keys should cover every master");
    for k in &keys[..3] {
        let v: String = call(&mut con, redis::cmd("GET").arg(k), LIMIT)
            .await
            .unwrap();
        assert_eq!(v, format!("v-{k}"));
    }
    let mut with_missing = keys.clone();
    with_missing.push("tlsc:none".into());
    let got: Vec<Option<String>> = call(&mut con, redis::cmd("MGET").arg(&with_missing), LIMIT)
        .await
        .unwrap();
    let want: Vec<Option<String>> = keys
        .iter()
        .map(|k| Some(format!("v-{k}")))
        .chain([None])
        .collect();
    assert_eq!(got, want);

    // A blocking command runs on a dedicated TLS link.
    let mut other = tls_client(addr, certs.pki.ca_pem(), None).await.unwrap();
    let blocked = tokio::spawn(async move {
        call::<(String, String)>(
            &mut other,
            redis::cmd("BLPOP").arg("tlsc:list").arg(5),
            LIMIT,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: i64 = call(
        &mut con,
        redis::cmd("RPUSH").arg("tlsc:list").arg("item"),
        LIMIT,
    )
    .await
    .unwrap();
    assert_eq!(
        blocked.await.unwrap().unwrap(),
        ("tlsc:list".to_string(), "item".to_string())
    );

    // Pub/sub: the hub's backend subscription is a TLS connection too.
    let mut sub = RawTls::connect(addr, &certs.pki).await;
    sub.send(&encode_command(&["SUBSCRIBE", "tlsc:chan"])).await;
    let confirm = sub.read_some().await;
    assert!(show(&confirm).contains("subscribe"), "{}", show(&confirm));
    // (PUBLISH counts the receivers on its own node only: not asserted.)
    let _: i64 = call(
        &mut con,
        redis::cmd("PUBLISH").arg("tlsc:chan").arg("hello"),
        LIMIT,
    )
    .await
    .unwrap();
    let msg = sub.read_some().await;
    assert!(show(&msg).contains("hello"), "{}", show(&msg));
    drop(cluster);
}

/// A raw RESP connection over TLS, for pub/sub.
struct RawTls {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl RawTls {
    async fn connect(addr: SocketAddr, pki: &Pki) -> RawTls {
        RawTls::try_connect(addr, pki).await.unwrap()
    }

    async fn try_connect(addr: SocketAddr, pki: &Pki) -> std::io::Result<RawTls> {
        RawTls::try_connect_ca(addr, &pki.ca).await
    }

    async fn try_connect_ca(addr: SocketAddr, ca: &Path) -> std::io::Result<RawTls> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config_ca(ca)))
            .connect(name, tcp)
            .await?;
        Ok(RawTls { stream })
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    async fn read_some(&mut self) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(LIMIT, self.stream.read(&mut buf))
            .await
            .expect("no data within the limit")
            .unwrap();
        buf.truncate(n);
        buf
    }
}

/// A verified client certificate logs the connection in as the user its CN names:
/// that user's ACL applies without AUTH; without a certificate the client must AUTH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_authenticates_as_its_user() {
    use respgate::config::{AuthConfig, AuthMode, UserConfig};
    let pki = Pki::new("certuser");
    let clients = Pki::new("certuser-clients");
    let mut config = test_config(&shared_cluster_seeds());
    config.tls = Some(tls_section(
        &pki.server("server"),
        ClientAuth::Optional,
        Some(&clients.ca),
    ));
    config.auth = AuthConfig {
        mode: Some(AuthMode::Users),
        users: vec![UserConfig {
            max_dedicated_connections: None,
            cross_slot: None,
            name: "inventory-service".into(),
            rules: format!(
                "on #{} ~lock:product:* +@all -@dangerous",
                respgate::acl::hash_password(b"inv-pw")
            ),
        }],
        ..AuthConfig::default()
    };
    let proxy = start_proxy(config).await;
    let addr = proxy.tls_addr().unwrap();
    let inventory = clients.issue("inventory", "inventory-service", &[]);
    let mut con = tls_client(addr, pki.ca_pem(), Some(&inventory))
        .await
        .expect("connects with its certificate");
    let who: String = call(&mut con, redis::cmd("ACL").arg("WHOAMI"), LIMIT)
        .await
        .unwrap();
    assert_eq!(who, "inventory-service");
    let ok: String = call(
        &mut con,
        redis::cmd("SET")
            .arg("lock:product:cert")
            .arg("me")
            .arg("EX")
            .arg(10),
        LIMIT,
    )
    .await
    .unwrap();
    assert_eq!(ok, "OK");
    let denied = call::<Option<String>>(&mut con, redis::cmd("GET").arg("session:cert"), LIMIT)
        .await
        .unwrap_err();
    assert!(denied.contains("NOPERM"), "{denied:?}");
    // A certificate naming no configured user, or none at all: AUTH first.
    let nobody = clients.issue("nobody", "nobody", &[]);
    for cert in [Some(&nobody), None] {
        let mut con = tls_client(addr, pki.ca_pem(), cert).await.unwrap();
        let e = call::<String>(&mut con, &redis::cmd("PING"), LIMIT)
            .await
            .unwrap_err();
        assert!(e.contains("NOAUTH"), "{e:?}");
    }
}

/// A TLS client closed for not reading (over `server.max_pending_reply_bytes`) must not
/// keep its session: the goodbye flush waits for a peer that never reads, so it is
/// bounded, and what the session held (its `max_clients` place here) comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_closed_for_not_reading_gives_its_place_back() {
    let pki = Pki::new("goodbye");
    let mut config = test_config(&shared_cluster_seeds());
    config.server.max_clients = 1;
    config.server.max_pending_reply_bytes = 4 << 20;
    config.tls = Some(tls_section(&pki.server("server"), ClientAuth::None, None));
    // Large enough to fill the loopback socket's buffers (several MiB) and the TLS
    // writer's, so the goodbye flush has nowhere to go.
    let value = vec![b'v'; 1 << 20];
    let proxy = start_proxy(config).await;
    let addr = proxy.tls_addr().unwrap();
    let mut slow = RawTls::connect(addr, &pki).await;
    slow.send(&encode_command(&[&b"SET"[..], b"tls:goodbye:v", &value]))
        .await;
    assert_eq!(show(&slow.read_some().await), "+OK\\r\\n");
    // 100 GETs of 1 MiB, never read: closed once it holds twice 4 MiB.
    let gets = encode_pipeline(&vec![&["GET", "tls:goodbye:v"][..]; 100]);
    slow.send(&gets).await;
    // The only place comes back although the slow client still never reads.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = RawTls::try_connect(addr, &pki).await {
            c.send(b"PING\r\n").await;
            if show(&c.read_some().await) == "+PONG\\r\\n" {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed TLS client still holds the only max_clients place"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(slow);
}
