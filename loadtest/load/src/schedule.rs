//! The open-loop arrival schedule: when each request is *meant* to be sent.
//!
//! A total rate of R requests per second is spread over N clients: client `i` sends its
//! `k`-th operation at `start + (k*N + i) / R'` where R' is R divided by the workload's
//! mean commands per operation, so the clients' sends interleave evenly and the machine
//! sees a steady R requests per second. Latency is measured from this intended time, not
//! from the moment the request was actually written: if the target (or the tool) stalls,
//! the requests that should have gone out meanwhile are late, and their wait counts.
//! That is what avoids coordinated omission, where a closed-loop tool simply stops
//! asking during a stall and the stall vanishes from the percentiles.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    /// Nanoseconds between two operations of all clients together.
    interval_ns: f64,
    clients: u64,
    client: u64,
    k: u64,
}

impl Schedule {
    /// `ops_per_sec` in total over `clients` clients; this is client `client`.
    pub fn new(start: Instant, ops_per_sec: f64, clients: usize, client: usize) -> Schedule {
        let clients = clients.max(1);
        Schedule {
            start,
            interval_ns: interval_ns(ops_per_sec),
            clients: clients as u64,
            client: client as u64,
            k: 0,
        }
    }

    /// The intended send time of the next operation, as an offset from the start. It is
    /// operation `k * clients + client` of the whole run, whose time [`global_offset`]
    /// gives: the pacer thread uses that to know when to wake the senders.
    pub fn next_offset(&self) -> Duration {
        global_offset(self.interval_ns, self.k * self.clients + self.client)
    }

    pub fn next_due(&self) -> Instant {
        self.start + self.next_offset()
    }

    pub fn advance(&mut self) {
        self.k += 1;
    }
}

/// The intended time of operation `index` of the whole run (all clients together).
pub fn global_offset(interval_ns: f64, index: u64) -> Duration {
    Duration::from_nanos((index as f64 * interval_ns) as u64)
}

/// Nanoseconds between two operations of the whole run.
pub fn interval_ns(ops_per_sec: f64) -> f64 {
    1e9 / ops_per_sec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_interleave_into_an_even_rate() {
        let start = Instant::now();
        let (rate, clients) = (1000.0, 4);
        let mut all = Vec::new();
        for c in 0..clients {
            let mut s = Schedule::new(start, rate, clients, c);
            while s.next_offset() < Duration::from_secs(1) {
                all.push(s.next_offset());
                s.advance();
            }
            assert_eq!(s.k, 250, "client {c}: an equal share");
        }
        all.sort();
        assert_eq!(all.len(), 1000);
        for (i, t) in all.iter().enumerate() {
            let want = Duration::from_millis(i as u64);
            let diff = t.abs_diff(want);
            assert!(
                diff <= Duration::from_nanos(1),
                "send {i} at {t:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn no_drift_over_a_long_run() {
        let mut s = Schedule::new(Instant::now(), 20_000.0, 50, 49);
        for _ in 0..1_200_000 {
            s.advance();
        }
        // 1.2M ops of one client at 400/s = 3000 s, plus its phase (49/50 of 2.5 ms).
        let want = Duration::from_secs(3000) + Duration::from_micros(2450);
        assert!(
            s.next_offset().abs_diff(want) < Duration::from_micros(1),
            "{:?}",
            s.next_offset()
        );
        assert_eq!(s.next_due() - s.start, s.next_offset());
    }
}
