//! A write that reaches a demoted master (issue 15, observation 7).
//!
//! After `CLUSTER FAILOVER` the old master is a replica. Keyed writes sent to it get
//! MOVED and follow; a keyless write (FLUSHDB, sent to every master by a slot of each
//! shard) gets `-READONLY You can't write against a read only replica.` until respgate's
//! topology names the new master, which the periodic refresh alone took seconds to do.
//! respgate now treats READONLY from a node as "not run, refresh and route again"
//! (`cluster/redirect.rs`), within the retry deadline. The periodic refresh is pushed
//! far out here so the topology is certainly stale when the writes come.
//!
//! Runs against a private 3+3 cluster of real redis-server processes.

mod support;

use devcluster::{DevCluster, DevClusterOptions, Reply};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{show, RawConn};

fn node_int(cluster: &DevCluster, node: SocketAddr, args: &[&str]) -> i64 {
    match cluster.command(node, args) {
        Ok(Reply::Int(n)) => n,
        Ok(Reply::Bulk(Some(b))) => String::from_utf8_lossy(&b).parse().unwrap(),
        Ok(Reply::Bulk(None)) => 0,
        other => panic!("{args:?} on {node}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_after_a_failover_never_get_readonly() {
    let cluster = DevCluster::start(DevClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    let mut config = support::test_config(&cluster.seeds());
    config.cluster.retry_deadline_ms = 10_000;
    // Only replies make respgate look at the topology again.
    config.cluster.refresh_interval_ms = 600_000;
    let proxy = support::start_proxy(config).await;
    let victim = cluster.masters()[1];
    let replica = cluster.replicas_of(victim)[0];
    let keys: Vec<String> = support::keys_on_every_master(&cluster, "ro:", 2)
        .into_iter()
        .filter(|(_, m)| *m == victim)
        .map(|(k, _)| k)
        .collect();
    let (seeded, counter) = (&keys[0], &keys[1]);
    let mut c = RawConn::connect(proxy.local_addr()).await;
    assert_eq!(c.command(&["SET", seeded, "v"]).await, b"+OK\r\n");

    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while node_int(&cluster, replica, &["DBSIZE"]) < 1 {
            assert!(Instant::now() < deadline, "{replica} never got {seeded}");
            std::thread::sleep(Duration::from_millis(5));
        }
        support::node_ok(&cluster, replica, &["CLUSTER", "FAILOVER"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while support::role(&cluster, replica) != "master"
            || support::role(&cluster, victim) != "slave"
        {
            assert!(Instant::now() < deadline, "{replica} was never promoted");
            std::thread::sleep(Duration::from_millis(5));
        }
    });

    // The first write after the promotion: a keyless one, to every master, the
    // demoted one included. It runs on the new master instead.
    let reply = c.command(&["FLUSHDB"]).await;
    assert_eq!(
        reply,
        b"+OK\r\n",
        "FLUSHDB after the failover: {}",
        show(&reply)
    );
    let left = tokio::task::block_in_place(|| node_int(&cluster, replica, &["DBSIZE"]));
    assert_eq!(left, 0, "FLUSHDB reached the new master {replica}");

    // Writes of that shard: all OK, each applied exactly once, on the new master.
    let incr = support::encode_command(&["INCR", counter]);
    let n = 50;
    c.send(&incr.repeat(n)).await;
    let replies = c.read_replies(n).await;
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(
            r,
            format!(":{}\r\n", i + 1).as_bytes(),
            "INCR {i}: {}",
            show(r)
        );
    }
    let count = tokio::task::block_in_place(|| node_int(&cluster, replica, &["GET", counter]));
    assert_eq!(
        count, n as i64,
        "INCR counted exactly once each on {replica}"
    );
    proxy.shutdown().await;
}
