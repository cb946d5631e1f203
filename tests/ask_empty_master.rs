//! A slot migrated to a master that owns no slot yet (a node just added to the cluster,
//! the first step of every scale-out) (issue 13, finding 10): the requests the source
//! ASKs to it are served there, over respgate's pooled links to it, not over a fresh
//! connection (connect, AUTH, drop) per request.

mod support;

use devcluster::{DevCluster, DevClusterOptions, Reply};
use respgate::cluster::key_slot;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// `total_connections_received` in the node's INFO stats.
fn connections_received(cluster: &DevCluster, node: SocketAddr) -> u64 {
    let Ok(Reply::Bulk(Some(info))) = cluster.command(node, &["INFO", "stats"]) else {
        panic!("INFO stats on {node}");
    };
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total_connections_received on {node}"))
}

/// Turns `replica` into a master that owns no slot, as a freshly added node is:
/// `CLUSTER RESET SOFT` (a replica becomes an empty master and forgets the cluster) and a
/// MEET back in; waits until every node sees it as a master.
fn make_empty_master(cluster: &DevCluster, replica: SocketAddr, via: SocketAddr) {
    support::node_ok(cluster, replica, &["CLUSTER", "RESET", "SOFT"]);
    support::node_ok(
        cluster,
        replica,
        &[
            "CLUSTER",
            "MEET",
            &via.ip().to_string(),
            &via.port().to_string(),
        ],
    );
    let start = Instant::now();
    while !cluster.masters().contains(&replica)
        || cluster.seeds().iter().any(|n| {
            let Ok(Reply::Bulk(Some(nodes))) = cluster.command(*n, &["CLUSTER", "NODES"]) else {
                return true;
            };
            let text = String::from_utf8_lossy(&nodes).into_owned();
            !text.lines().any(|l| {
                l.contains(&format!("{replica}@")) && l.contains("master") && !l.contains("fail")
            }) || text.lines().count() != cluster.seeds().len()
        })
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{replica} never joined as an empty master"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster
        .wait_for_state_ok(Duration::from_secs(30))
        .expect("cluster ok with the empty master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asked_requests_to_an_empty_master_reuse_connections() {
    const REQUESTS: usize = 200;
    let cluster = DevCluster::start(DevClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    let tag = "{ask-empty}";
    let slot = key_slot(tag.as_bytes());
    let source = cluster.master_for_slot(slot);
    let other = support::another_master(&cluster, source);
    let target = cluster.replicas_of(other)[0];
    tokio::task::block_in_place(|| make_empty_master(&cluster, target, source));

    let proxy = support::start_proxy(support::test_config(&cluster.seeds())).await;
    let mut c = support::RawConn::connect(proxy.local_addr()).await;
    // Warm: respgate's links to the source are open.
    assert_eq!(
        c.command(&["SET", &format!("{tag}:warm"), "x"]).await,
        b"+OK\r\n"
    );

    tokio::task::block_in_place(|| support::slot_move_begin(&cluster, slot, source, target));
    let before = tokio::task::block_in_place(|| connections_received(&cluster, target));
    // Keys the source does not hold: it ASKs every one of them to the target.
    for i in 0..REQUESTS {
        let k = format!("{tag}:new:{i}");
        assert_eq!(
            c.command(&["SET", &k, &format!("v{i}")]).await,
            b"+OK\r\n",
            "SET {k} during the migration"
        );
        let want = format!("${}\r\nv{i}\r\n", format!("v{i}").len());
        assert_eq!(c.command(&["GET", &k]).await, want.as_bytes(), "GET {k}");
    }
    let after = tokio::task::block_in_place(|| connections_received(&cluster, target));
    let asked = tokio::task::block_in_place(|| {
        let Ok(Reply::Bulk(Some(info))) = cluster.command(target, &["INFO", "commandstats"]) else {
            panic!("INFO commandstats");
        };
        String::from_utf8_lossy(&info)
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_asking:calls="))
            .and_then(|r| r.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    });
    eprintln!(
        "{} requests ASKed to the empty master, {asked} ASKING calls there, {} new connections",
        REQUESTS * 2,
        after - before
    );
    assert!(
        asked >= REQUESTS as u64,
        "the requests were ASKed to {target}"
    );
    // Our own INFO connection counts once per call at most; respgate's pooled links a
    // few more (one per worker and kind).
    assert!(
        after - before <= 8,
        "{} connections for {} ASKed requests",
        after - before,
        REQUESTS * 2
    );
    // The data really is on the target.
    let on_target = tokio::task::block_in_place(|| {
        cluster.command(target, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()])
    });
    assert!(
        matches!(on_target, Ok(Reply::Int(n)) if n == REQUESTS as i64),
        "{on_target:?}"
    );
}
