//! SCRIPT KILL and FUNCTION KILL through respgate (issue 15, observation 1): a runaway
//! script no longer holds its shard until failover.
//!
//! One scenario, run against respgate in front of the quiet 3+3 cluster and against a
//! standalone redis-server: no script (NOTBUSY), an endless EVAL killed from another
//! connection, an endless FCALL refused by SCRIPT KILL (BUSY) and killed by FUNCTION
//! KILL, and the shard serving again after each. Each reply is pinned to Redis 7.0's
//! text and must be byte-identical on both (the differential stream).

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::standalone::Standalone;
use support::{quiet_cluster, show, QuietCluster, RawConn};

const NOTBUSY: &str = "-NOTBUSY No scripts in execution right now.\r\n";

/// Puts `busy-reply-threshold` back and stops any script left running (a failed run)
/// on every node, directly, whatever way the test ends.
struct Cleanup<'a>(&'a QuietCluster);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for node in self.0.seeds() {
            let _ = self.0.with(|c| c.command(node, &["SCRIPT", "KILL"]));
            let _ = self.0.with(|c| c.command(node, &["FUNCTION", "KILL"]));
            let _ = self
                .0
                .with(|c| c.command(node, &["CONFIG", "SET", "busy-reply-threshold", "5000"]));
            let _ = self.0.with(|c| c.command(node, &["FUNCTION", "FLUSH"]));
        }
    }
}

/// Sends `args` on `runner` and, once the node runs it, `kills` from `killer` (the
/// first is retried until it is not NOTBUSY, as the script may not have started yet).
/// Returns the killers' replies, the runner's reply and how long the kill took.
async fn run_and_kill(
    runner: &mut RawConn,
    killer: &mut RawConn,
    args: &[&str],
    kills: &[&[&str]],
) -> (Vec<String>, String, Duration) {
    runner.send(&support::encode_command(args)).await;
    let started = Instant::now();
    let mut replies = Vec::new();
    for (i, kill) in kills.iter().enumerate() {
        loop {
            let r = show(&killer.command(kill).await);
            if i == 0 && r == show(NOTBUSY.as_bytes()) {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "the script never ran"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            replies.push(r);
            break;
        }
    }
    let took = started.elapsed();
    (replies, show(&runner.read_reply().await), took)
}

/// The scenario against `addr`; the replies in order.
async fn scenario(addr: SocketAddr, tag: &str) -> Vec<String> {
    let mut runner = RawConn::connect(addr).await;
    let mut killer = RawConn::connect(addr).await;
    let key = format!("{{{tag}}}:k");
    let mut out = Vec::new();
    out.push(show(&killer.command(&["SCRIPT", "KILL"]).await));
    out.push(show(&killer.command(&["FUNCTION", "KILL"]).await));

    // An endless EVAL: FUNCTION KILL refuses it, SCRIPT KILL stops it.
    let (kills, eval, took) = run_and_kill(
        &mut runner,
        &mut killer,
        &["EVAL", "while true do end", "1", &key],
        &[&["FUNCTION", "KILL"], &["SCRIPT", "KILL"]],
    )
    .await;
    assert!(took < Duration::from_secs(3), "the kill took {took:?}");
    out.extend(kills);
    out.push(eval);
    out.push(show(&runner.command(&["SET", &key, "v"]).await));
    out.push(show(&killer.command(&["SCRIPT", "KILL"]).await));

    // An endless function: SCRIPT KILL refuses it, FUNCTION KILL stops it.
    let library = format!(
        "#!lua name=spin_{tag}\nredis.register_function('spin_{tag}', function() while true do end end)"
    );
    out.push(show(&runner.command(&["FUNCTION", "LOAD", &library]).await));
    let function = format!("spin_{tag}");
    let (kills, fcall, took) = run_and_kill(
        &mut runner,
        &mut killer,
        &["FCALL", &function, "1", &key],
        &[&["SCRIPT", "KILL"], &["FUNCTION", "KILL"]],
    )
    .await;
    assert!(took < Duration::from_secs(3), "the kill took {took:?}");
    out.extend(kills);
    out.push(fcall);
    out.push(show(&runner.command(&["GET", &key]).await));
    out.push(show(&killer.command(&["FUNCTION", "KILL"]).await));
    out.push(show(&runner.command(&["DEL", &key]).await));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_script_is_killed_as_on_one_redis() {
    let quiet = quiet_cluster().await;
    let _cleanup = Cleanup(&quiet);
    for node in quiet.seeds() {
        quiet.command(node, &["CONFIG", "SET", "busy-reply-threshold", "100"]);
    }
    let standalone = Standalone::start();
    {
        let mut c = RawConn::connect(standalone.addr).await;
        c.command(&["CONFIG", "SET", "busy-reply-threshold", "100"])
            .await;
    }
    let proxy = quiet.proxy().await;

    let via = scenario(proxy.local_addr(), "kill").await;
    let direct = scenario(standalone.addr, "kill").await;
    let ok = show(b"+OK\r\n");
    let notbusy = show(NOTBUSY.as_bytes());
    assert_eq!(via[0], notbusy, "SCRIPT KILL with no script");
    assert_eq!(via[1], notbusy, "FUNCTION KILL with no script");
    assert_eq!(
        via[2],
        show(b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"),
        "FUNCTION KILL during an EVAL"
    );
    assert_eq!(via[3], ok, "SCRIPT KILL during an EVAL");
    assert!(
        via[4].starts_with("-ERR Script killed by user with SCRIPT KILL..."),
        "the killed EVAL's reply: {}",
        via[4]
    );
    assert_eq!(via[5], ok, "the shard serves again");
    assert_eq!(via[6], notbusy, "nothing runs after the kill");
    assert_eq!(
        via[8],
        show(b"-BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.\r\n"),
        "SCRIPT KILL during an FCALL"
    );
    assert_eq!(via[9], ok, "FUNCTION KILL during an FCALL");
    assert!(
        // Redis 7.0 words a killed function's error as a killed script's.
        via[10].starts_with("-ERR Script killed by user with SCRIPT KILL... script: spin_kill"),
        "the killed FCALL's reply: {}",
        via[10]
    );
    assert_eq!(via[12], notbusy, "nothing runs after the kill");
    assert_eq!(via, direct, "respgate vs one Redis");
}

/// Kills sent in a loop from many connections cost the nodes at most one connection
/// each per round, one round per `ROUND_INTERVAL` (100 ms) per command: a tenant with
/// `@scripting` cannot make respgate open thousands of connections a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_in_a_loop_open_at_most_one_round_of_connections_per_interval() {
    let quiet = quiet_cluster().await;
    let proxy = quiet.proxy().await;
    let node = quiet.masters()[0];
    let accepted = || -> u64 {
        let devcluster::Reply::Bulk(Some(info)) = quiet.command(node, &["INFO", "stats"]) else {
            panic!("INFO stats");
        };
        String::from_utf8_lossy(&info)
            .lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    };
    let before = accepted();
    let start = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let addr = proxy.local_addr();
        clients.spawn(async move {
            let mut c = RawConn::connect(addr).await;
            let kills: Vec<u8> = (0..50)
                .flat_map(|_| support::encode_command(&["SCRIPT", "KILL"]))
                .collect();
            c.send(&kills).await;
            for _ in 0..50 {
                assert_eq!(show(&c.read_reply().await), show(NOTBUSY.as_bytes()));
            }
        });
    }
    clients.join_all().await;
    let elapsed = start.elapsed();
    let opened = accepted() - before;
    // 400 kills; one round per 100 ms, plus one at the start and slack for the
    // INFO connections of this test and respgate's own.
    let allowed = elapsed.as_millis() as u64 / 100 + 5;
    assert!(
        opened <= allowed,
        "{opened} connections to {node} for 400 kills in {elapsed:?}"
    );
    proxy.shutdown().await;
}
