//! CONFIG SET of the parameters respgate manages (issue 15, observation 2): refused, so
//! `CONFIG SET requirepass x` no longer locks respgate out of every node.
//!
//! Against respgate in front of the quiet 3+3 cluster (default config: no guards):
//! `requirepass`, `port` (any case) and a multi-parameter request naming one managed
//! parameter are refused as a whole, every node keeps its values, respgate still reaches
//! every master; a harmless parameter is still set everywhere. The differential stream:
//! the CONFIG SET requests respgate passes on answer as a standalone redis-server does.

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use support::standalone::Standalone;
use support::{keys_on_every_master, quiet_cluster, same, show, QuietCluster, RawConn};

/// Puts `requirepass` and `maxmemory-policy` back on every node, directly, whatever way
/// the test ends (a failed run may have set a password: AUTH with it first).
struct Restore<'a>(&'a QuietCluster);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        for node in self.0.seeds() {
            if let Ok(mut s) = std::net::TcpStream::connect(node) {
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let _ = s.write_all(&support::encode_pipeline(&[
                    &["AUTH", "x"],
                    &["CONFIG", "SET", "requirepass", ""],
                    &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
                ]));
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
            }
        }
    }
}

fn config_of(quiet: &QuietCluster, node: SocketAddr, param: &str) -> String {
    match quiet.command(node, &["CONFIG", "GET", param]) {
        devcluster::Reply::Array(kv) if kv.len() == 2 => kv[1].as_str().unwrap().to_string(),
        other => panic!("{node}: CONFIG GET {param} gave {other:?}"),
    }
}

fn managed(parameter: &str, why: &str) -> String {
    show(
        format!("-ERR respgate: CONFIG SET {parameter} is managed by respgate ({why})\r\n")
            .as_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_parameters_are_refused_and_respgate_keeps_the_nodes() {
    let quiet = quiet_cluster().await;
    let _restore = Restore(&quiet);
    let proxy = quiet.proxy().await;
    let mut con = RawConn::connect(proxy.local_addr()).await;
    let cut_off = "it would cut respgate off from the cluster nodes";

    let refused = [
        (
            vec!["CONFIG", "SET", "requirepass", "x"],
            managed("requirepass", cut_off),
        ),
        (
            vec!["CONFIG", "SET", "RequirePass", "x"],
            managed("RequirePass", cut_off),
        ),
        (
            vec!["CONFIG", "SET", "Port", "7999"],
            managed("Port", "it changes how respgate reaches the cluster nodes"),
        ),
        (
            vec![
                "CONFIG",
                "SET",
                "maxmemory-policy",
                "allkeys-lru",
                "requirepass",
                "x",
            ],
            managed("requirepass", cut_off),
        ),
        (
            vec!["CONFIG", "SET", "cluster-node-timeout", "100"],
            managed(
                "cluster-node-timeout",
                "it changes the cluster respgate routes for",
            ),
        ),
        (
            vec!["CONFIG", "SET", "dir", "/tmp"],
            managed("dir", "it changes where the nodes write their data"),
        ),
    ];
    for (args, want) in &refused {
        assert_eq!(&show(&con.command(args).await), want, "{}", args.join(" "));
    }
    for node in quiet.seeds() {
        assert_eq!(
            config_of(&quiet, node, "requirepass"),
            "",
            "{node}: requirepass"
        );
        assert_eq!(
            config_of(&quiet, node, "maxmemory-policy"),
            "noeviction",
            "{node}: a refused request sets nothing"
        );
    }

    // respgate still reaches every master, on new connections too.
    let keys = quiet.with(|c| keys_on_every_master(c, "managed:", 2));
    let fresh = support::start_proxy(support::test_config(&quiet.seeds())).await;
    let mut con2 = RawConn::connect(fresh.local_addr()).await;
    for (key, _) in &keys {
        assert_eq!(
            show(&con2.command(&["SET", key, "v"]).await),
            "+OK\\r\\n",
            "{key}"
        );
        assert_eq!(show(&con.command(&["DEL", key]).await), ":1\\r\\n", "{key}");
    }

    // A harmless parameter is still set on every node.
    assert_eq!(
        show(
            &con.command(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
                .await
        ),
        "+OK\\r\\n"
    );
    for node in quiet.seeds() {
        assert_eq!(
            config_of(&quiet, node, "maxmemory-policy"),
            "allkeys-lru",
            "{node}"
        );
    }
    assert_eq!(
        show(
            &con.command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
                .await
        ),
        "+OK\\r\\n"
    );

    // The differential stream: what respgate passes on answers as one Redis.
    let standalone = Standalone::start();
    let mut direct = RawConn::connect(standalone.addr).await;
    for args in [
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"][..],
        &["CONFIG", "GET", "maxmemory-policy"],
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        &["CONFIG", "SET", "requirepass"],
        &["CONFIG", "SET", "no-such-parameter", "1"],
        &["CONFIG", "SET", "maxmemory-policy", "no-such-policy"],
    ] {
        same(&mut con, &mut direct, args, "CONFIG SET passed on: ").await;
    }
}
