//! `--stats FILE`: each thread publishes its core's cumulative counters (requests,
//! backend writes, client writes, loop turns) into its own cache line once per loop
//! turn (plain relaxed stores, no contention), and a side thread writes their sums to
//! FILE every second. bench.sh reads it before and after a run to get the coalescing
//! factors (requests per backend write, per client write, per loop turn).

use std::sync::atomic::{AtomicU64, Ordering};

pub const MAX_THREADS: usize = 64;

#[repr(align(64))]
struct Slot([AtomicU64; 4]);

static SLOTS: [Slot; MAX_THREADS] = [const { Slot([const { AtomicU64::new(0) }; 4]) }; MAX_THREADS];

pub fn publish(thread: usize, stats: &[u64; 4]) {
    for (a, v) in SLOTS[thread].0.iter().zip(stats) {
        a.store(*v, Ordering::Relaxed);
    }
}

pub fn write_every_second(path: &str, threads: usize) {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let mut sum = [0u64; 4];
        for slot in &SLOTS[..threads] {
            for (s, a) in sum.iter_mut().zip(&slot.0) {
                *s += a.load(Ordering::Relaxed);
            }
        }
        let line = format!(
            "requests {} backend_writes {} client_writes {} turns {}\n",
            sum[0], sum[1], sum[2], sum[3]
        );
        let tmp = format!("{path}.tmp");
        if std::fs::write(&tmp, line).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}
