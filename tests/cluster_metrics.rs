//! Cluster metrics collected by respgate (`src/cluster/stats`): one round against the
//! shared 3+3 cluster, read back from a debugging recorder.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use respgate::cluster::stats::Collector;
use respgate::cluster::Cluster;
use respgate::config::ClusterConfig;
use std::collections::BTreeMap;
use std::time::Instant;

mod support;

/// `(labels, value)` of every gauge named `name`.
fn gauges(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    name: &str,
) -> Vec<(BTreeMap<String, String>, f64)> {
    snapshot
        .iter()
        .filter(|(k, ..)| k.key().name() == name)
        .filter_map(|(k, _, _, v)| match v {
            DebugValue::Gauge(g) => Some((
                k.key()
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect(),
                g.into_inner(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn one_round_gives_one_series_per_node_and_the_cluster_counts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("first recorder in this test binary");

    let seeds = support::shared_cluster_seeds();
    let cluster = Cluster::new(ClusterConfig {
        seeds: seeds.iter().map(|s| s.to_string()).collect(),
        ..ClusterConfig::default()
    });
    // Replicas join the layout once synced: wait for all six nodes.
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    loop {
        cluster.refresh_once().await.expect("discovery");
        let nodes = cluster.topology().as_ref().map_or(0, |t| t.nodes().count());
        if nodes == 6 || Instant::now() > deadline {
            assert_eq!(nodes, 6, "3 masters and 3 replicas");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut collector = Collector::new(cluster.clone());
    let started = Instant::now();
    let round = collector.collect_once().await;
    let first = started.elapsed();
    let started = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        collector.collect_once().await;
    }
    eprintln!(
        "first round {first:?}, then {:?} per round of {} nodes; largest INFO ALL {} bytes",
        started.elapsed() / rounds,
        round.nodes,
        round.largest_info
    );
    assert_eq!(round.nodes, 6);
    assert_eq!(round.up, 6);
    assert_eq!(round.masters_online, 3);
    assert_eq!(round.slots_covered, 16384);
    assert_eq!(round.failovers, 0);
    assert!(round.largest_info > 1000, "{round:?}");

    let snapshot = snapshotter.snapshot().into_vec();
    let memory = gauges(&snapshot, "redis_memory_used_bytes");
    assert_eq!(memory.len(), 6, "one series per node: {memory:?}");
    assert!(memory.iter().all(|(_, v)| *v > 0.0));
    let roles = |series: &[(BTreeMap<String, String>, f64)], role: &str| {
        series.iter().filter(|(l, _)| l["role"] == role).count()
    };
    assert_eq!(roles(&memory, "master"), 3);
    assert_eq!(roles(&memory, "replica"), 3);
    let addrs: std::collections::BTreeSet<_> =
        memory.iter().map(|(l, _)| l["addr"].clone()).collect();
    assert_eq!(addrs.len(), 6);
    let up = gauges(&snapshot, "redis_up");
    assert_eq!(up.len(), 6);
    assert!(up.iter().all(|(_, v)| *v == 1.0), "{up:?}");
    assert_eq!(
        gauges(&snapshot, "respgate_cluster_masters_online"),
        vec![(BTreeMap::new(), 3.0)]
    );
    assert_eq!(
        gauges(&snapshot, "respgate_cluster_slots_covered"),
        vec![(BTreeMap::new(), 16384.0)]
    );
    assert_eq!(gauges(&snapshot, "redis_slowlog_length").len(), 6);
    // Each master reports its replica, with redis_exporter's labels.
    let lag = gauges(&snapshot, "redis_connected_slave_lag_seconds");
    assert_eq!(lag.len(), 3, "{lag:?}");
    assert!(lag
        .iter()
        .all(|(l, _)| l["role"] == "master" && l.contains_key("slave_port")));
    for name in [
        "redis_memory_max_bytes",
        "redis_evicted_keys_total",
        "redis_connected_clients",
        "redis_blocked_clients",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "redis_commands_processed_total",
        "redis_instantaneous_ops_per_sec",
        "redis_master_repl_offset",
        "redis_cpu_sys_seconds_total",
        "redis_cpu_user_seconds_total",
        "redis_aof_enabled",
        "redis_aof_rewrite_in_progress",
        "redis_aof_last_bgrewrite_status",
        "redis_aof_last_write_status",
        "redis_rdb_last_bgsave_status",
        "redis_rdb_changes_since_last_save",
    ] {
        assert_eq!(gauges(&snapshot, name).len(), 6, "{name}");
    }
}
