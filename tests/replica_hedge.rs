//! Hedged replica reads (issue 13, finding 9), against a real cluster with replicas: a
//! replica SIGSTOPped with reads in flight on it. Without hedging those reads waited the
//! whole `request_timeout_ms` (5 s) before the master answered them; with it the master
//! answers them after `hedge_after_ms`, in the client's order, and the stopped replica is
//! then left alone until it answers again. A read with a write behind it in the same
//! pipeline is never hedged (the master's copy would see the write).

mod support;

use devcluster::{DevCluster, DevClusterOptions, Reply};
use respgate::config::{Config, ReadPolicyKind, ReadRuleConfig};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

/// Well under the 5 s request timeout, generous for a loaded machine.
const ANSWERED_WITHIN: Duration = Duration::from_millis(2500);

fn hedge_config(cluster: &DevCluster) -> Config {
    let mut c = test_config(&cluster.seeds());
    c.cluster.request_timeout_ms = 5000;
    c.replica_reads.poll_interval_ms = 50;
    c.replica_reads.recover_ms = 2000;
    c.replica_reads.hedge_after_ms = 100;
    // A bound so loose that the lag tracker alone keeps the stopped replica eligible for
    // the whole test: only hedging can answer its reads in time.
    c.replica_reads.rules = vec![ReadRuleConfig {
        pattern: "cache:*".into(),
        policy: ReadPolicyKind::PreferReplica,
        max_lag_ms: 60_000,
        max_lag_bytes: 1 << 30,
    }];
    c
}

/// `calls=` of `cmdstat_get` in the node's INFO commandstats.
fn get_calls(cluster: &DevCluster, node: SocketAddr) -> u64 {
    let Ok(Reply::Bulk(Some(info))) = cluster.command(node, &["INFO", "commandstats"]) else {
        panic!("INFO commandstats on {node}");
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

fn bulk(v: &str) -> Vec<u8> {
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

async fn info_field(c: &mut RawConn, field: &str) -> String {
    let info = String::from_utf8_lossy(&c.command(&["INFO", "proxy"]).await).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
        .trim()
        .to_string()
}

async fn hedged(c: &mut RawConn) -> u64 {
    info_field(c, "replica_reads_hedged:")
        .await
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_on_a_stopped_replica_are_answered_by_the_master_long_before_the_timeout() {
    let cluster = tokio::task::block_in_place(|| {
        // The cluster itself must not flag the stopped replica as failed during the test
        // (a refreshed topology would drop it): hedging is what is tested.
        DevCluster::start(DevClusterOptions {
            node_timeout_ms: 15_000,
            ..DevClusterOptions::default()
        })
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"))
    });
    let proxy = start_proxy(hedge_config(&cluster)).await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let keys: Vec<String> = (0..10).map(|i| format!("cache:{{hedge}}:{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(c.command(&["SET", k, &format!("v{i}")]).await, b"+OK\r\n");
    }
    let master = cluster.master_for_slot(respgate::cluster::key_slot(keys[0].as_bytes()));
    let replica = cluster.replicas_of(master)[0];

    // The replica serves this shard's reads (once its lag is known and recover_ms passed).
    let start = Instant::now();
    loop {
        let before = tokio::task::block_in_place(|| get_calls(&cluster, replica));
        for _ in 0..20 {
            assert_eq!(c.command(&["GET", &keys[0]]).await, bulk("v0"));
        }
        let after = tokio::task::block_in_place(|| get_calls(&cluster, replica));
        if after >= before + 20 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the replica never served reads"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        hedged(&mut c).await,
        0,
        "a healthy replica needs no hedging"
    );

    tokio::task::block_in_place(|| cluster.pause_node(replica));

    // A pipeline of reads, all sent to the stopped replica: every one answered by the
    // master, in order, with its own value.
    let asked = Instant::now();
    let gets: Vec<Vec<&str>> = keys.iter().map(|k| vec!["GET", k.as_str()]).collect();
    let gets: Vec<&[&str]> = gets.iter().map(|g| g.as_slice()).collect();
    c.send(&encode_pipeline(&gets)).await;
    let replies = c.read_replies(keys.len()).await;
    let took = asked.elapsed();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply, &bulk(&format!("v{i}")), "reply {i} of the pipeline");
    }
    assert!(
        took < ANSWERED_WITHIN,
        "the pipelined reads took {took:?} (request_timeout_ms is 5000)"
    );
    let after_pipeline = hedged(&mut c).await;
    assert!(after_pipeline >= 1, "the reads were hedged");

    // The stopped replica is now out of service: reads go to the master at once, and
    // are not hedged one by one.
    for (i, k) in keys.iter().enumerate() {
        let asked = Instant::now();
        assert_eq!(c.command(&["GET", k]).await, bulk(&format!("v{i}")));
        let took = asked.elapsed();
        assert!(took < ANSWERED_WITHIN, "read {i} took {took:?}");
    }
    let after_sequential = hedged(&mut c).await;
    assert!(
        after_sequential <= after_pipeline + 2,
        "reads kept being hedged ({after_pipeline} -> {after_sequential}): the stopped replica was not avoided"
    );
    let info = String::from_utf8_lossy(&c.command(&["INFO", "proxy"]).await).into_owned();
    let line = info
        .lines()
        .find(|l| l.contains(&format!("addr={replica},")))
        .unwrap_or_else(|| panic!("no line for {replica} in {info}"));
    assert!(line.ends_with("eligible=0"), "{line}");

    // A fresh client's read too.
    let mut fresh = RawConn::connect(proxy.local_addr()).await;
    let asked = Instant::now();
    assert_eq!(fresh.command(&["GET", &keys[3]]).await, bulk("v3"));
    assert!(asked.elapsed() < ANSWERED_WITHIN);

    tokio::task::block_in_place(|| cluster.resume_node(replica));
    // Back in service once it answers the lag polls again for recover_ms.
    let start = Instant::now();
    loop {
        let before = tokio::task::block_in_place(|| get_calls(&cluster, replica));
        for _ in 0..20 {
            assert_eq!(c.command(&["GET", &keys[1]]).await, bulk("v1"));
        }
        let after = tokio::task::block_in_place(|| get_calls(&cluster, replica));
        if after >= before + 20 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the replica never served reads again after SIGCONT"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A read followed by a write of the same key, the replica slow: the read is not
    // hedged, because its copy would reach the master after the write and see it (the
    // GET answered nil). The replica answers it once it resumes. (Its value is not
    // asserted: once resumed, the replica may apply the replicated DEL before serving
    // the GET, which is replication's order, not respgate's; the hedge count is.)
    let before = hedged(&mut c).await;
    tokio::task::block_in_place(|| cluster.pause_node(replica));
    c.send(&encode_pipeline(&[&["GET", &keys[2]], &["DEL", &keys[2]]]))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    tokio::task::block_in_place(|| cluster.resume_node(replica));
    let replies = c.read_replies(2).await;
    assert_eq!(replies[1], b":1\r\n".to_vec(), "the DEL");
    assert_eq!(
        hedged(&mut c).await,
        before,
        "a read with a write behind it was hedged: its copy could see the write"
    );
}
