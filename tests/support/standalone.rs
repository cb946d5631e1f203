//! A standalone (non-cluster) redis-server of the cluster's version: the reference that
//! differential tests compare respgate's replies with.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A standalone redis-server on a free loopback port, killed on drop.
pub struct Standalone {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Standalone {
    pub fn start() -> Standalone {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // As the test cluster's nodes are configured.
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/setup.sh installs it)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "standalone redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Standalone {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
