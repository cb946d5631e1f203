//! CPU time of processes, from `/proc/PID/stat` (utime and stime, fields 14 and 15, in
//! clock ticks), and finding the process that listens on a port (`/proc/net/tcp{,6}` gives
//! the listening socket's inode, `/proc/*/fd` the process holding it).
//!
//! A run's CPU per request is (after - before) of a group of processes divided by the
//! requests of that run. A tick is 1/`CLK_TCK` s (10 ms on most Linux systems): runs of a
//! few seconds give a few hundred ticks per busy core, enough for two digits.

use std::fs;
use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ticks {
    pub utime: u64,
    pub stime: u64,
}

impl Ticks {
    pub fn minus(self, before: Ticks) -> Ticks {
        Ticks {
            utime: self.utime.saturating_sub(before.utime),
            stime: self.stime.saturating_sub(before.stime),
        }
    }
}

pub fn clk_tck() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime and stime from the text of `/proc/PID/stat` (the command name may hold spaces
/// and parentheses, so the fields are counted from the last `)`).
pub fn parse_stat(text: &str) -> Option<Ticks> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field n is f[n - 3].
    Some(Ticks {
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
    })
}

/// The process's CPU so far; `None` once it is gone.
pub fn ticks(pid: u32) -> Option<Ticks> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn sum(pids: &[u32]) -> Ticks {
    pids.iter()
        .filter_map(|p| ticks(*p))
        .fold(Ticks::default(), |a, t| Ticks {
            utime: a.utime + t.utime,
            stime: a.stime + t.stime,
        })
}

/// Inodes of sockets listening on `port` in a `/proc/net/tcp` style table.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let Some((_, p)) = f[1].rsplit_once(':') else {
            continue;
        };
        if u16::from_str_radix(p, 16).ok() == Some(port) {
            if let Ok(inode) = f[9].parse() {
                out.push(inode);
            }
        }
    }
    out
}

/// The pid of the process listening on `port` (loopback or any address), if visible.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for t in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = fs::read_to_string(t) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if holds_any(&entry.path().join("fd"), &wanted) {
            return Some(pid);
        }
    }
    None
}

fn holds_any(fd_dir: &Path, wanted: &[String]) -> bool {
    let Ok(fds) = fs::read_dir(fd_dir) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .map(|l| wanted.iter().any(|w| l.as_os_str() == w.as_str()))
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_strange_name() {
        let line = "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 3 4 20 0 2 0 1 1 1";
        assert_eq!(
            parse_stat(line),
            Some(Ticks {
                utime: 250,
                stime: 75
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert!(ticks(std::process::id()).is_some());
    }

    #[test]
    fn finds_a_listener_of_this_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port), Some(std::process::id()));
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0";
        assert_eq!(listening_inodes(table, 8080), vec![4242]);
        assert!(listening_inodes(table, 8081).is_empty());
    }
}
