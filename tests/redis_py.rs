//! redis-py, the most common Python client, works through respgate unchanged.
//!
//! Runs tests/clients/redis_py_session.py (a service's typical usage) with Debian's
//! python3-redis (RESP2), and tests/clients/redis_py_resp3.py with redis-py >= 5 over
//! RESP3 (`protocol=3`), which scripts/setup-test.sh installs into target/pydeps. A missing
//! redis-py is a failure, never a skip.

mod support;

use std::net::SocketAddr;

const PYTHON: &str = "/usr/bin/python3";

/// Where scripts/setup-test.sh installs redis-py >= 5 (Debian's python3-redis is 4.x).
fn pydeps() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/target/pydeps").to_string()
}

/// Runs `script` against respgate at `addr` with `pythonpath` (if any); fails the test
/// with the script's output unless it exits 0.
async fn run_script(script: &str, addr: SocketAddr, prefix: &str, pythonpath: Option<&str>) {
    let script = format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new(PYTHON);
    cmd.args([
        script.as_str(),
        &addr.ip().to_string(),
        &addr.port().to_string(),
        prefix,
    ]);
    if let Some(path) = pythonpath {
        cmd.env("PYTHONPATH", path);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("the redis-py script finishes within 120 s")
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_py_works_unchanged() {
    let probe = std::process::Command::new(PYTHON)
        .args(["-c", "import redis"])
        .status()
        .expect("python3 runs");
    assert!(
        probe.success(),
        "redis-py missing: apt-get install -y python3-redis (scripts/setup-test.sh does it)"
    );
    let proxy = support::proxy_for_shared().await;
    run_script("redis_py_session.py", proxy.local_addr(), "pytest:", None).await;
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_py_5_over_resp3_gets_typed_replies_and_push_messages() {
    let path = pydeps();
    let probe = std::process::Command::new(PYTHON)
        .env("PYTHONPATH", &path)
        .args([
            "-c",
            "import sys, redis; print(redis.__version__); sys.exit(int(redis.__version__.split('.')[0]) < 5)",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        probe.status.success(),
        "redis-py >= 5 (RESP3) missing from {path} (found: {}{}): run scripts/setup-test.sh, \
         which installs it with `python3 -m pip install --target target/pydeps 'redis>=5,<6'`",
        String::from_utf8_lossy(&probe.stdout).trim(),
        String::from_utf8_lossy(&probe.stderr).trim(),
    );
    let proxy = support::proxy_for_shared().await;
    run_script(
        "redis_py_resp3.py",
        proxy.local_addr(),
        "pyresp3:",
        Some(&path),
    )
    .await;
    proxy.shutdown().await;
}
