//! The Prometheus recorder behind `GET /metrics`, installed once per process.
//!
//! respgate records through the `metrics` facade everywhere; without a recorder every
//! call is a no-op, which is what a proxy without `[admin]` keeps. With `[admin]`,
//! [`install`] puts a `metrics-exporter-prometheus` recorder in place before the cluster
//! is created, so the per-command handles, registered on each command's first use
//! (`CommandInfo::metrics`), record into it.
//!
//! The facade's recorder is process-global and set once: a second proxy in the same
//! process (the integration tests start several) gets the handle of the first, so all of
//! them render the same registry. If some other recorder was installed first (an
//! embedding program's), the handle renders an empty registry and a warning says why.
//!
//! Durations (`*_seconds` histograms, e.g. `respgate_command_duration_seconds`) are true
//! Prometheus histograms with fixed buckets from 50 µs to 1 s: a GET through a proxy on
//! the same network takes 100-500 µs, a slow command or a failover retry tens to
//! hundreds of ms, and fixed buckets aggregate across respgate instances
//! (`histogram_quantile` over `sum by (le)`), which summaries cannot. Recording a sample
//! is an atomic push into a bucket queue; [`upkeep`] drains the queues between scrapes
//! so an unscraped proxy does not grow.
//!
//! **Stale series expire.** The `metrics` facade cannot delete a series, so without help
//! a node removed from the cluster, or a node's old role, would be exported forever (and
//! keep alerts firing). The recorder is built with an idle timeout on **gauges only**
//! ([`idle_after`]: three periods of the slowest periodic writer, at least
//! [`IDLE_FLOOR`]): a gauge
//! not *written* for that long (setting the same value counts as a write; being read by
//! a scrape does not) is dropped at the next render. Every gauge respgate exports is
//! rewritten periodically, so only dead ones go: the collector re-sets every node of the
//! topology each round (and `redis_up 0` for a departed node for an hour), the replica
//! tracker re-sets the lag of every replica each poll, and respgate's own gauges are set
//! from their atomics at every scrape (`sample`). Counters and histograms are never
//! expired: a counter that stays flat is not stale, and a per-command handle the command
//! table holds would be detached from the registry if it were.

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;
use std::sync::OnceLock;
use std::time::Duration;

/// Upper bounds of the duration buckets, in seconds (50 µs .. 1 s; slower lands in
/// `+Inf`).
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The shortest idle timeout of a gauge: well above a scrape's period (the scrape-time
/// gauges are written at each scrape).
pub const IDLE_FLOOR: Duration = Duration::from_secs(60);

/// How long a gauge may go unwritten before it is dropped: three periods of the slowest
/// periodic writer among `writers` (the cluster collector's
/// `admin.cluster_metrics_interval_secs`, the replica lag poll's
/// `replica_reads.poll_interval_ms`), at least [`IDLE_FLOOR`].
pub fn idle_after(writers: &[Duration]) -> Duration {
    let slowest = writers.iter().copied().max().unwrap_or_default();
    (slowest * 3).max(IDLE_FLOOR)
}

/// The recorder: duration buckets, and gauges expiring after `idle`.
fn build(idle: Duration) -> PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
        .expect("the duration buckets are not empty")
        .idle_timeout(MetricKindMask::GAUGE, Some(idle))
        .build_recorder()
}

/// The process's recorder handle, installing the recorder on the first call (gauges
/// expire after `idle`; later calls reuse the first recorder, whatever they pass).
pub fn install(idle: Duration) -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = build(idle);
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => tracing::debug!("Prometheus metrics recorder installed"),
                Err(e) => tracing::warn!(
                    error = %e,
                    "another metrics recorder is installed: /metrics will be empty"
                ),
            }
            handle
        })
        .clone()
}

/// Drains histogram samples into their buckets every [`UPKEEP_INTERVAL`], forever
/// (aborted with the admin listener).
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_timeout_is_three_rounds_at_least_the_floor() {
        assert_eq!(idle_after(&[Duration::from_secs(1)]), IDLE_FLOOR);
        assert_eq!(
            idle_after(&[Duration::from_secs(60)]),
            Duration::from_secs(180)
        );
        // A replica lag poll slower than the collector sets it.
        assert_eq!(
            idle_after(&[Duration::from_secs(15), Duration::from_secs(90)]),
            Duration::from_secs(270)
        );
    }

    /// A gauge nobody rewrites disappears after the timeout; one rewritten with the same
    /// value stays; a counter that stays flat stays.
    #[test]
    fn unwritten_gauges_expire_and_counters_do_not() {
        let recorder = build(Duration::from_millis(300));
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::gauge!("redis_up", "addr" => "gone:1").set(1.0);
            metrics::gauge!("redis_up", "addr" => "kept:1").set(1.0);
            metrics::counter!("respgate_flat_total").increment(1);
        });
        assert!(handle.render().contains("addr=\"gone:1\""));
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            metrics::with_local_recorder(&recorder, || {
                metrics::gauge!("redis_up", "addr" => "kept:1").set(1.0);
            });
        }
        let text = handle.render();
        assert!(!text.contains("addr=\"gone:1\""), "{text}");
        assert!(text.contains("redis_up{addr=\"kept:1\"} 1"), "{text}");
        assert!(text.contains("respgate_flat_total 1"), "{text}");
    }
}
