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

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
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

/// The process's recorder handle, installing the recorder on the first call.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), DURATION_BUCKETS)
                .expect("the duration buckets are not empty")
                .build_recorder();
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
