//! redis-py, the most common Python client, works through respgate unchanged.
//!
//! Runs tests/clients/redis_py_session.py (a service's typical usage) with Debian's
//! python3-redis, which scripts/setup.sh installs. Missing redis-py is a failure.

mod support;

#[tokio::test(flavor = "multi_thread")]
async fn redis_py_works_unchanged() {
    let python = "/usr/bin/python3";
    let probe = std::process::Command::new(python)
        .args(["-c", "import redis"])
        .status()
        .expect("python3 runs");
    assert!(
        probe.success(),
        "redis-py missing: apt-get install -y python3-redis (scripts/setup.sh does it)"
    );
    let proxy = support::proxy_for_shared().await;
    let addr = proxy.local_addr();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/redis_py_session.py"
    );
    let out = tokio::process::Command::new(python)
        .args([
            script,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            "pytest:",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "redis-py session failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    proxy.shutdown().await;
}
