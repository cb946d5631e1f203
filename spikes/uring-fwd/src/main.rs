//! uring-fwd: a spike for issue 17, not a product. A minimal forwarding proxy for GET/SET
//! in front of a Redis Cluster, thread-per-core like respgate, with two interchangeable
//! I/O drivers around one core ([`core`]):
//!
//! - `--mode uring`: one io_uring per thread, one `io_uring_enter` per loop turn for all
//!   ready submissions ([`uring`]);
//! - `--mode epoll`: one tokio current-thread runtime per thread, the same tasks respgate
//!   has (client reader/writer, backend reader/writer) ([`epoll`]).
//!
//! Static topology (CLUSTER SLOTS once at start), no MOVED/ASK, no TLS, no auth: the
//! point is the cost of the data path's I/O per request.

mod core;
mod epoll;
mod resp;
mod stats;
mod uring;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

pub struct Topology {
    pub masters: Vec<SocketAddr>,
    pub slot_to_backend: Vec<u8>,
}

fn topology(seed: &str) -> Topology {
    let mut s = TcpStream::connect(seed).expect("connect to the seed");
    s.write_all(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = s.read(&mut chunk).expect("read CLUSTER SLOTS");
        assert!(n > 0, "seed closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if resp::scan_reply(&buf)
            .expect("CLUSTER SLOTS reply")
            .is_some()
        {
            break;
        }
    }
    let (v, _) = resp::parse_value(&buf, 0).expect("CLUSTER SLOTS reply");
    let resp::Value::Array(ranges) = v else {
        panic!("CLUSTER SLOTS: not an array")
    };
    let mut masters: Vec<SocketAddr> = Vec::new();
    let mut slot_to_backend = vec![u8::MAX; 16384];
    for r in ranges {
        let resp::Value::Array(items) = r else {
            panic!("CLUSTER SLOTS: bad range")
        };
        let (resp::Value::Int(lo), resp::Value::Int(hi), resp::Value::Array(m)) =
            (&items[0], &items[1], &items[2])
        else {
            panic!("CLUSTER SLOTS: bad range")
        };
        let (resp::Value::Bulk(host), resp::Value::Int(port)) = (&m[0], &m[1]) else {
            panic!("CLUSTER SLOTS: bad master")
        };
        let addr: SocketAddr = format!("{}:{}", String::from_utf8_lossy(host), port)
            .parse()
            .unwrap();
        let idx = masters.iter().position(|a| *a == addr).unwrap_or_else(|| {
            masters.push(addr);
            masters.len() - 1
        });
        for s in *lo..=*hi {
            slot_to_backend[s as usize] = idx as u8;
        }
    }
    assert!(
        slot_to_backend.iter().all(|&b| b != u8::MAX),
        "not every slot is served"
    );
    Topology {
        masters,
        slot_to_backend,
    }
}

fn main() {
    let mut mode = String::from("uring");
    let mut listen = String::from("127.0.0.1:6400");
    let mut seed = String::new();
    let mut threads = 2usize;
    let mut multishot = false;
    let mut stats_file: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--mode" => mode = val(),
            "--listen" => listen = val(),
            "--seed" => seed = val(),
            "--threads" => threads = val().parse().expect("--threads N"),
            "--recv" => multishot = val() == "multishot",
            "--stats" => stats_file = Some(val()),
            _ => {
                eprintln!("usage: uring-fwd --seed HOST:PORT [--mode uring|epoll] [--listen ADDR] [--threads N] [--recv oneshot|multishot] [--stats FILE]");
                std::process::exit(2);
            }
        }
    }
    assert!(!seed.is_empty(), "--seed HOST:PORT is required");
    let topo = std::sync::Arc::new(topology(&seed));
    let listen: SocketAddr = listen.parse().expect("--listen ADDR");
    eprintln!(
        "uring-fwd: mode {mode} (multishot recv: {multishot}), {threads} thread(s), listening on {listen}, masters {:?}",
        topo.masters
    );
    assert!(
        threads <= stats::MAX_THREADS,
        "at most {} threads",
        stats::MAX_THREADS
    );
    if let Some(path) = stats_file {
        std::thread::spawn(move || stats::write_every_second(&path, threads));
    }
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let topo = topo.clone();
            let mode = mode.clone();
            std::thread::Builder::new()
                .name(format!("fwd-{i}"))
                .spawn(move || match mode.as_str() {
                    "uring" => uring::run(listen, &topo, multishot, i),
                    "epoll" => epoll::run(listen, &topo, i),
                    m => panic!("unknown mode {m}"),
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// A listener with SO_REUSEPORT: each thread has its own and the kernel spreads the
/// clients over them (respgate hands clients round robin from one acceptor instead).
pub fn listener(addr: SocketAddr, nonblocking: bool) -> std::net::TcpListener {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&addr.into()).expect("bind");
    s.listen(1024).unwrap();
    s.set_nonblocking(nonblocking).unwrap();
    s.into()
}

/// One connection of this thread to each master.
pub fn backend_conns(topo: &Topology) -> Vec<TcpStream> {
    topo.masters
        .iter()
        .map(|a| {
            let s = TcpStream::connect(a).expect("connect to a master");
            s.set_nodelay(true).unwrap();
            s
        })
        .collect()
}
