//! What one run measured: latency histograms per command kind and overall, errors, and
//! completions over time.
//!
//! Latencies go into `hdrhistogram`s in nanoseconds (1 ns .. 60 s, 3 significant digits:
//! the percentiles are within 0.1% of the true value). Each load thread records into its
//! own [`Stats`], merged once at the end: nothing is shared while the load runs except a
//! completion counter for the progress bar.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency a histogram holds; longer ones are recorded as this.
const MAX_NS: u64 = 60_000_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("valid histogram bounds")
}

pub struct Stats {
    pub kinds: Vec<Histogram<u64>>,
    pub all: Histogram<u64>,
    /// Error replies by their first word (`MOVED`, `ERR`, ...).
    pub errors: BTreeMap<String, u64>,
    pub kind_errors: Vec<u64>,
    /// Replies completed per time bucket since the start.
    pub timeline: Vec<u64>,
    pub bucket: Duration,
    pub sent: u64,
    pub done: u64,
    /// Time of the last reply since the start.
    pub last_done: Duration,
    /// Open loop: how late the tool itself sent a request after its intended time (a
    /// large value means the load tool, not the target, was the bottleneck).
    pub max_send_lag: Duration,
}

impl Stats {
    pub fn new(kinds: usize, bucket: Duration) -> Stats {
        Stats {
            kinds: (0..kinds).map(|_| histogram()).collect(),
            all: histogram(),
            errors: BTreeMap::new(),
            kind_errors: vec![0; kinds],
            timeline: Vec::new(),
            bucket,
            sent: 0,
            done: 0,
            last_done: Duration::ZERO,
            max_send_lag: Duration::ZERO,
        }
    }

    /// One reply of `kind`, `latency` after its send (or intended send) time, arriving
    /// `at` after the start of the run.
    pub fn record(&mut self, kind: usize, latency: Duration, at: Duration) {
        let ns = (latency.as_nanos() as u64).clamp(1, MAX_NS);
        self.kinds[kind].saturating_record(ns);
        self.all.saturating_record(ns);
        self.done += 1;
        self.last_done = self.last_done.max(at);
        let b = (at.as_nanos() / self.bucket.as_nanos().max(1)) as usize;
        if self.timeline.len() <= b {
            self.timeline.resize(b + 1, 0);
        }
        self.timeline[b] += 1;
    }

    pub fn error(&mut self, kind: usize, reply: &[u8]) {
        let word = reply[1..]
            .split(|&b| b == b' ' || b == b'\r')
            .next()
            .unwrap_or_default();
        let word = String::from_utf8_lossy(word).into_owned();
        *self.errors.entry(word).or_default() += 1;
        self.kind_errors[kind] += 1;
    }

    pub fn merge(&mut self, other: Stats) {
        for (a, b) in self.kinds.iter_mut().zip(&other.kinds) {
            a.add(b).expect("same bounds");
        }
        self.all.add(&other.all).expect("same bounds");
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (a, b) in self.kind_errors.iter_mut().zip(&other.kind_errors) {
            *a += b;
        }
        if self.timeline.len() < other.timeline.len() {
            self.timeline.resize(other.timeline.len(), 0);
        }
        for (a, b) in self.timeline.iter_mut().zip(&other.timeline) {
            *a += b;
        }
        self.sent += other.sent;
        self.done += other.done;
        self.last_done = self.last_done.max(other.last_done);
        self.max_send_lag = self.max_send_lag.max(other.max_send_lag);
    }
}

/// The percentiles the tool reports, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// Points of the percentile curve for the picture: (percentile, latency in us) at
/// percentiles 0, 50, 75, 87.5, ... (halving the distance to 100 each step) up to the
/// largest recorded value.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let mut q = 0.0f64;
    let limit = 1.0 - 1.0 / h.len() as f64;
    while q < limit && out.len() < 40 {
        out.push((q * 100.0, h.value_at_quantile(q) as f64 / 1000.0));
        q = 1.0 - (1.0 - q) / 2.0;
    }
    out.push((100.0 * limit.max(0.0), h.max() as f64 / 1000.0));
    out
}

/// The median of some numbers (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut s = Stats::new(2, Duration::from_millis(100));
        // 1..=1000 us, one each: p50 = 500 us, p99 = 990 us, max = 1000 us.
        for i in 1..=1000u64 {
            s.record(
                (i % 2) as usize,
                Duration::from_micros(i),
                Duration::from_millis(i),
            );
        }
        let p = Percentiles::of(&s.all);
        assert_eq!(p.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(close(p.p50, 500.0), "{p:?}");
        assert!(close(p.p90, 900.0), "{p:?}");
        assert!(close(p.p99, 990.0), "{p:?}");
        assert!(close(p.p999, 999.0), "{p:?}");
        assert!(close(p.max, 1000.0), "{p:?}");
        assert!(close(p.mean, 500.5), "{p:?}");
        assert_eq!(Percentiles::of(&s.kinds[0]).count, 500);
        // 1000 replies over 1 s in 100 ms buckets: 100 per bucket (the first holds 1..=99
        // and the 11th the reply at exactly 1000 ms).
        assert_eq!(s.timeline.len(), 11);
        assert_eq!(s.timeline[5], 100);
        assert_eq!(s.timeline.iter().sum::<u64>(), 1000);
    }

    #[test]
    fn a_stall_shows_in_the_tail_not_the_median() {
        let mut h = histogram();
        // 0.2% of the requests waited 1 s: invisible at p99, the whole of p99.9.
        for _ in 0..9980 {
            h.record(100_000).unwrap();
        }
        for _ in 0..20 {
            h.record(1_000_000_000).unwrap();
        }
        let p = Percentiles::of(&h);
        assert!((p.p50 - 100.0).abs() < 0.1);
        assert!((p.p99 - 100.0).abs() < 0.1);
        assert!((p.p999 - 1_000_000.0).abs() / 1_000_000.0 < 0.001, "{p:?}");
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new(1, Duration::from_secs(1));
        let mut b = Stats::new(1, Duration::from_secs(1));
        a.record(0, Duration::from_micros(10), Duration::from_millis(10));
        b.record(0, Duration::from_micros(30), Duration::from_millis(2500));
        b.error(0, b"-MOVED 12 127.0.0.1:1\r\n");
        b.error(0, b"-ERR x\r\n");
        a.merge(b);
        assert_eq!(a.done, 2);
        assert_eq!(a.timeline, vec![1, 0, 1]);
        assert_eq!(a.errors.get("MOVED"), Some(&1));
        assert_eq!(a.errors.get("ERR"), Some(&1));
        assert_eq!(a.kind_errors, vec![2]);
        assert_eq!(a.last_done, Duration::from_millis(2500));
    }

    #[test]
    fn median_and_curve() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let mut h = histogram();
        for i in 1..=10_000u64 {
            h.record(i * 1000).unwrap();
        }
        let c = curve(&h);
        assert_eq!(c[0].0, 0.0);
        assert!(
            c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{c:?}"
        );
        assert!((c.last().unwrap().1 - 10_000.0).abs() < 10.0);
    }
}
