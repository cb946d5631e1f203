//! Pipelining through respgate: a client that sends many requests without waiting gets
//! every reply, in request order, even though the requests go to different masters that
//! answer at their own pace; and replies never cross from one client to another.
//!
//! Each client runs a deterministic script of mixed commands over its own keys and knows
//! the exact reply every command must get (a model of the data it wrote), so a missing,
//! duplicated, reordered or misdelivered reply fails the test at the first wrong reply.

mod support;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Enough for the largest script here on a busy 2-core machine; only prevents hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Commands to send in one go and the exact reply each must get.
struct Script {
    requests: Vec<u8>,
    commands: Vec<String>,
    expected: Vec<Vec<u8>>,
}

fn bulk(v: &str) -> Vec<u8> {
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

const NULL: &[u8] = b"$-1\r\n";
const OK: &[u8] = b"+OK\r\n";

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// `n` mixed commands (SET, GET, INCR, DEL, LPUSH, LPOP, HSET, HGET) over `keys` keys per
/// type, all named `<owner>:...`; every value written is `<owner>:<sequence>`, so a reply
/// that reaches the wrong client or the wrong request cannot match.
fn mixed_script(owner: &str, n: usize, keys: usize, seed: u64) -> Script {
    let mut rng = Rng(seed | 1);
    let mut strings: HashMap<usize, String> = HashMap::new();
    let mut counters: HashMap<usize, i64> = HashMap::new();
    let mut lists: HashMap<usize, VecDeque<String>> = HashMap::new();
    let mut hashes: HashMap<(usize, usize), String> = HashMap::new();
    let mut script = Script {
        requests: Vec::with_capacity(n * 48),
        commands: Vec::with_capacity(n),
        expected: Vec::with_capacity(n),
    };
    for seq in 0..n {
        let k = rng.below(keys);
        let value = format!("{owner}:{seq}");
        let (args, reply): (Vec<String>, Vec<u8>) = match rng.below(8) {
            0 => {
                strings.insert(k, value.clone());
                (
                    vec!["SET".into(), format!("{owner}:s:{k}"), value],
                    OK.to_vec(),
                )
            }
            1 => (
                vec!["GET".into(), format!("{owner}:s:{k}")],
                strings.get(&k).map_or(NULL.to_vec(), |v| bulk(v)),
            ),
            2 => {
                let c = counters.entry(k).or_insert(0);
                *c += 1;
                (vec!["INCR".into(), format!("{owner}:c:{k}")], int(*c))
            }
            3 => (
                vec!["DEL".into(), format!("{owner}:s:{k}")],
                int(strings.remove(&k).is_some() as i64),
            ),
            4 => {
                let l = lists.entry(k).or_default();
                l.push_front(value.clone());
                (
                    vec!["LPUSH".into(), format!("{owner}:l:{k}"), value],
                    int(l.len() as i64),
                )
            }
            5 => (
                vec!["LPOP".into(), format!("{owner}:l:{k}")],
                lists
                    .get_mut(&k)
                    .and_then(|l| l.pop_front())
                    .map_or(NULL.to_vec(), |v| bulk(&v)),
            ),
            6 => {
                let f = rng.below(4);
                let new = hashes.insert((k, f), value.clone()).is_none();
                (
                    vec![
                        "HSET".into(),
                        format!("{owner}:h:{k}"),
                        format!("f{f}"),
                        value,
                    ],
                    int(new as i64),
                )
            }
            _ => {
                let f = rng.below(4);
                (
                    vec!["HGET".into(), format!("{owner}:h:{k}"), format!("f{f}")],
                    hashes.get(&(k, f)).map_or(NULL.to_vec(), |v| bulk(v)),
                )
            }
        };
        script.requests.extend_from_slice(&encode_command(&args));
        script.commands.push(args.join(" "));
        script.expected.push(reply);
    }
    script
}

/// Sends the whole script on one connection while reading the replies concurrently, and
/// checks each reply against its request's expected reply, in order.
async fn run_pipelined(addr: SocketAddr, script: Script) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let requests = script.requests;
    let writer = tokio::spawn(async move {
        wr.write_all(&requests).await.expect("write requests");
        wr // keep the write half open until every reply is read
    });

    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut pos = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut next = 0;
    while next < script.expected.len() {
        while let Some(len) = frame_len(&buf[pos..]) {
            let got = &buf[pos..pos + len];
            let want = &script.expected[next];
            assert!(
                got == want.as_slice(),
                "reply #{next} to `{}`: got {:?}, expected {:?}",
                script.commands[next],
                show(got),
                show(want)
            );
            pos += len;
            next += 1;
            if next == script.expected.len() {
                break;
            }
        }
        if next == script.expected.len() {
            break;
        }
        if pos > 0 {
            buf.drain(..pos);
            pos = 0;
        }
        let n = rd.read(&mut chunk).await.expect("read replies");
        assert!(
            n > 0,
            "connection closed after {next} of {} replies",
            script.expected.len()
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(pos, buf.len(), "extra bytes after the last reply");
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn one_client_pipelining_50000_mixed_commands_gets_every_reply_in_order() {
    let proxy = proxy_for_shared().await;
    let script = mixed_script("pipe1", 50_000, 500, 0x5eed);
    // The keys cover every master, so replies really come from several nodes.
    let owners = shared_slot_owners();
    let masters: std::collections::HashSet<_> = (0..500)
        .map(|k| owners[respgate::cluster::key_slot(format!("pipe1:s:{k}").as_bytes()) as usize])
        .collect();
    assert_eq!(masters.len(), 3);

    tokio::time::timeout(SCRIPT_TIMEOUT, run_pipelined(proxy.local_addr(), script))
        .await
        .expect("pipelined script did not finish in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_pipelining_clients_each_get_only_their_own_replies() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let clients: Vec<_> = (0..200u64)
        .map(|c| {
            let script = mixed_script(&format!("conc{c}"), 2_000, 40, 0xc0ffee + c);
            tokio::spawn(run_pipelined(addr, script))
        })
        .collect();
    tokio::time::timeout(SCRIPT_TIMEOUT, async {
        for (c, task) in clients.into_iter().enumerate() {
            if let Err(e) = task.await {
                std::panic::resume_unwind(match e.try_into_panic() {
                    Ok(p) => p,
                    Err(e) => Box::new(format!("client {c}: {e}")),
                });
            }
        }
    })
    .await
    .expect("concurrent clients did not finish in time");
}

#[tokio::test]
async fn replies_stay_in_order_when_early_requests_go_to_a_slower_node() {
    // A slow script on one master must not let replies from the other masters overtake it.
    let proxy = proxy_for_shared().await;
    let slow_key = "order:slow";
    let slow_owner = shared_owner_of(slow_key);
    let fast_keys: Vec<String> = (0..200)
        .map(|i| format!("order:fast:{i}"))
        .filter(|k| shared_owner_of(k) != slow_owner)
        .take(50)
        .collect();
    let sleep_200ms = "local t = redis.call('TIME') \
        local start = t[1] * 1000000 + t[2] \
        repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= 200000 \
        return 'slow done'";

    let mut script = Script {
        requests: encode_command(&["EVAL", sleep_200ms, "1", slow_key]),
        commands: vec!["EVAL <sleep 200 ms>".into()],
        expected: vec![bulk("slow done")],
    };
    for (i, k) in fast_keys.iter().enumerate() {
        script
            .requests
            .extend_from_slice(&encode_command(&["SET", k, &i.to_string()]));
        script.commands.push(format!("SET {k} {i}"));
        script.expected.push(OK.to_vec());
        script
            .requests
            .extend_from_slice(&encode_command(&["GET", k]));
        script.commands.push(format!("GET {k}"));
        script.expected.push(bulk(&i.to_string()));
    }
    tokio::time::timeout(SCRIPT_TIMEOUT, run_pipelined(proxy.local_addr(), script))
        .await
        .expect("script did not finish in time");
}

#[tokio::test]
async fn large_and_binary_values_are_relayed_intact_in_a_pipeline() {
    // Values larger than respgate's read and output chunks, holding every byte value
    // (CR, LF, NUL, '$', '*'), from keys on every master.
    let proxy = proxy_for_shared().await;
    let mut script = Script {
        requests: Vec::new(),
        commands: Vec::new(),
        expected: Vec::new(),
    };
    let sizes = [
        0usize,
        1,
        255,
        16 * 1024 + 3,
        256 * 1024 + 1,
        1024 * 1024 + 7,
    ];
    for round in 0..3 {
        for (i, &size) in sizes.iter().enumerate() {
            let key = format!("bigval:{round}:{i}");
            let value: Vec<u8> = (0..size)
                .map(|b| ((b * 7 + i + round) % 256) as u8)
                .collect();
            script
                .requests
                .extend(encode_command(&[b"SET".as_slice(), key.as_bytes(), &value]));
            script.commands.push(format!("SET {key} <{size} bytes>"));
            script.expected.push(OK.to_vec());
            script
                .requests
                .extend(encode_command(&[b"GET".as_slice(), key.as_bytes()]));
            script.commands.push(format!("GET {key}"));
            let mut reply = format!("${size}\r\n").into_bytes();
            reply.extend_from_slice(&value);
            reply.extend_from_slice(b"\r\n");
            script.expected.push(reply);
        }
    }
    let owners: std::collections::HashSet<_> = (0..3)
        .flat_map(|round| (0..sizes.len()).map(move |i| format!("bigval:{round}:{i}")))
        .map(|k| shared_owner_of(&k))
        .collect();
    assert_eq!(owners.len(), 3, "the keys should cover every master");
    tokio::time::timeout(SCRIPT_TIMEOUT, run_pipelined(proxy.local_addr(), script))
        .await
        .expect("script did not finish in time");
}

#[tokio::test]
async fn a_client_that_closes_its_sending_side_still_gets_every_reply() {
    // `printf 'SET ...\r\nGET ...\r\n' | nc host port` style: requests, then EOF.
    let proxy = proxy_for_shared().await;
    let script = mixed_script("halfclose", 2_000, 50, 0x4a1f);
    let mut stream = tokio::net::TcpStream::connect(proxy.local_addr())
        .await
        .unwrap();
    stream.write_all(&script.requests).await.unwrap();
    stream.shutdown().await.unwrap();

    let mut received = Vec::new();
    tokio::time::timeout(SCRIPT_TIMEOUT, stream.read_to_end(&mut received))
        .await
        .expect("respgate did not close after the last reply")
        .expect("read replies");
    let mut pos = 0;
    for (i, want) in script.expected.iter().enumerate() {
        let len = frame_len(&received[pos..])
            .unwrap_or_else(|| panic!("only {i} of {} replies", script.expected.len()));
        assert_eq!(
            show(&received[pos..pos + len]),
            show(want),
            "reply #{i} to `{}`",
            script.commands[i]
        );
        pos += len;
    }
    assert_eq!(pos, received.len(), "extra bytes after the last reply");
}
