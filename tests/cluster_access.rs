//! How respgate reaches the cluster: discovery from seeds (any of which may be down),
//! and upstream authentication.

mod support;

use devcluster::{DevCluster, DevClusterOptions, Reply};
use respgate::server::Proxy;
use std::time::Duration;
use support::{show, RawConn};

#[tokio::test]
async fn discovery_skips_seeds_that_are_down() {
    let mut seeds = support::shared_cluster_seeds();
    // A closed loopback port first: refused at once, the next seed answers.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    seeds.insert(0, dead);
    let proxy = support::start_proxy(support::test_config(&seeds)).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(
        show(&c.command(&["SET", "access:seed", "1"]).await),
        "+OK\\r\\n"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn requests_before_discovery_get_clusterdown_not_a_hang() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::start(support::test_config(&[dead])).await.unwrap();
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let reply = show(&c.command(&["GET", "k"]).await);
    assert!(reply.starts_with("-CLUSTERDOWN"), "{reply}");
    proxy.shutdown().await;
}

fn on_every_node(cluster: &DevCluster, args: &[&str]) {
    for node in cluster.seeds() {
        match cluster.command(node, args).unwrap() {
            Reply::Simple(s) if s == "OK" => {}
            other => panic!("{node} {args:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_auth_uses_the_configured_user() {
    let cluster = tokio::task::spawn_blocking(|| {
        let c = DevCluster::start(DevClusterOptions::default()).unwrap();
        on_every_node(
            &c,
            &[
                "ACL", "SETUSER", "gateway", "on", ">s3cret", "~*", "&*", "+@all",
            ],
        );
        c
    })
    .await
    .unwrap();
    let seeds = cluster.seeds();

    // The right credentials work, and every request really runs as `gateway`.
    let mut config = support::test_config(&seeds);
    config.cluster.username = Some("gateway".into());
    config.cluster.password = Some("s3cret".into());
    let proxy = support::start_proxy(config).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    for i in 0..20 {
        let key = format!("auth:{i}");
        assert_eq!(
            show(&c.command(&["SET", key.as_str(), "v"]).await),
            "+OK\\r\\n"
        );
    }
    // respgate's connections to the nodes are logged in as the upstream user (ACL
    // WHOAMI through respgate names the client's own respgate user instead).
    for node in cluster.masters() {
        let Reply::Bulk(Some(list)) = cluster.command(node, &["CLIENT", "LIST"]).unwrap() else {
            panic!("CLIENT LIST on {node}");
        };
        let list = String::from_utf8_lossy(&list).into_owned();
        let proxy_side: Vec<&str> = list
            .lines()
            .filter(|l| !l.contains(" flags=S ") && !l.contains("cmd=client|list"))
            .collect();
        assert!(!proxy_side.is_empty(), "{node}: {list}");
        assert!(
            proxy_side.iter().all(|l| l.contains(" user=gateway ")),
            "{node}: {list}"
        );
    }
    proxy.shutdown().await;

    // With a wrong password, requests fail clearly (and do not hang).
    let mut config = support::test_config(&seeds);
    config.cluster.username = Some("gateway".into());
    config.cluster.password = Some("wrong".into());
    config.cluster.retry_deadline_ms = 300;
    // Discovery itself authenticates, so nothing becomes ready: requests are refused.
    let proxy = Proxy::start(config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let reply = show(&c.command(&["GET", "auth:1"]).await);
    assert!(reply.starts_with("-CLUSTERDOWN"), "{reply}");
    proxy.shutdown().await;
    drop(cluster);
}
