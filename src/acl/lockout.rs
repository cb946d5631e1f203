//! Brute-force protection: failed authentications are counted per client address; past
//! `max_failures` within `failure_window_secs`, the address is refused for
//! `lockout_secs`. Touched only by AUTH / HELLO AUTH, never by ordinary requests, so a
//! mutex is fine here. The map is pruned so a scan from many addresses stays bounded.

use crate::config::AuthConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; beyond it, entries whose window has passed are dropped
/// and, if still full, the oldest are.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Settings {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
}

struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

pub struct Lockout {
    settings: Mutex<Settings>,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl Lockout {
    pub fn new(cfg: &AuthConfig) -> Lockout {
        let l = Lockout {
            settings: Mutex::new(Settings {
                max_failures: 0,
                window: Duration::ZERO,
                lockout: Duration::ZERO,
            }),
            entries: Mutex::new(HashMap::new()),
        };
        l.configure(cfg);
        l
    }

    pub fn configure(&self, cfg: &AuthConfig) {
        *self.settings.lock().unwrap() = Settings {
            max_failures: cfg.max_failures,
            window: Duration::from_secs(cfg.failure_window_secs),
            lockout: Duration::from_secs(cfg.lockout_secs),
        };
    }

    /// How long `addr` is still refused, if it is.
    pub fn locked(&self, addr: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let entries = self.entries.lock().unwrap();
        let until = entries.get(&addr)?.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failure (locking the address out when it has failed too often).
    pub fn failed(&self, addr: IpAddr) {
        let s = *self.settings.lock().unwrap();
        if s.max_failures == 0 {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap();
        if entries.len() >= MAX_TRACKED && !entries.contains_key(&addr) {
            entries.retain(|_, e| {
                now.duration_since(e.window_start) < s.window
                    || e.locked_until.is_some_and(|u| u > now)
            });
            if entries.len() >= MAX_TRACKED {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.window_start)
                    .map(|(a, _)| *a);
                if let Some(a) = oldest {
                    entries.remove(&a);
                }
            }
        }
        let e = entries.entry(addr).or_insert(Entry {
            failures: 0,
            window_start: now,
            locked_until: None,
        });
        if now.duration_since(e.window_start) >= s.window {
            e.failures = 0;
            e.window_start = now;
        }
        e.failures += 1;
        if e.failures >= s.max_failures && e.locked_until.is_none_or(|u| u <= now) {
            e.locked_until = Some(now + s.lockout);
            e.failures = 0;
            e.window_start = now;
        }
    }
}
