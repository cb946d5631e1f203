//! The command key-spec interpreter (`commands::keys`, through `CommandInfo::keys`) on
//! random argument vectors for every command of Redis 7.0's table: never a panic, every
//! key index within the request. And a sample compared with what a real redis-server
//! 7.0 answers to `COMMAND GETKEYS` for the same arguments.

use super::config;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use respgate::commands::{CommandTable, Lookup};
use respgate::protocol::OwnedArgs;
use std::io::{Read, Write};
use std::sync::OnceLock;

#[path = "../support/standalone.rs"]
mod standalone;

fn table() -> &'static CommandTable {
    static T: OnceLock<CommandTable> = OnceLock::new();
    T.get_or_init(|| {
        CommandTable::from_command_reply(include_bytes!("../fixtures/command-7.0.resp"))
            .expect("fixture loads")
    })
}

/// Every command as a client names it: `GET`, and `CONFIG GET` for subcommands.
fn names() -> &'static [Vec<String>] {
    static N: OnceLock<Vec<Vec<String>>> = OnceLock::new();
    N.get_or_init(|| {
        let mut out = Vec::new();
        for c in table().all() {
            match c.name.split_once('|') {
                Some((top, sub)) => out.push(vec![top.to_string(), sub.to_string()]),
                None => out.push(vec![c.name.clone()]),
            }
        }
        out.sort();
        out
    })
}

/// Arguments that steer key specs (keywords, counts, edge numbers) and plain ones.
fn argument() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "STREAMS", "streams", "GET", "SET", "BY", "STORE", "KEYS", "LIMIT", "WITHSCORES",
            "BLOCK", "COUNT", "GROUP", "AUTH", "AUTH2", "COPY", "REPLACE", "INCRBY",
            "OVERFLOW", "u8", "$", ">", "*", "", "0", "1", "2", "3", "-1", "-2", "100",
            "2147483648", "9223372036854775807", "-9223372036854775808",
            "99999999999999999999", "+1", "01", " 1",
        ]).prop_map(String::from),
        2 => "[a-z]{1,3}",
        1 => "[0-9-]{1,4}",
    ]
}

fn request() -> impl Strategy<Value = Vec<String>> {
    (
        0..names().len(),
        any::<bool>(),
        prop::collection::vec(argument(), 0..9),
    )
        .prop_map(|(i, upper, rest)| {
            let mut args: Vec<String> = names()[i]
                .iter()
                .map(|n| if upper { n.to_uppercase() } else { n.clone() })
                .collect();
            args.extend(rest);
            args
        })
}

/// respgate's keys for `args` (`None` when it does not resolve or its keys cannot be
/// known), as the key bytes.
fn our_keys(args: &[String]) -> Option<Result<Vec<Vec<u8>>, ()>> {
    let owned = OwnedArgs::new(args);
    let Lookup::Found(cmd) = table().lookup(owned.args()) else {
        return None;
    };
    let mut out = Vec::new();
    match cmd.keys(owned.args(), &mut out) {
        Ok(()) => {
            for k in &out {
                assert!(
                    k.index >= 1 && (k.index as usize) < args.len(),
                    "{args:?}: key index {} out of bounds",
                    k.index
                );
            }
            // Sharded channels are hashed like keys but are none (COMMAND GETKEYS
            // leaves them out): compared as Redis lists keys.
            Some(Ok(out
                .iter()
                .filter(|k| !k.flags.contains(respgate::commands::KeyFlags::NOT_KEY))
                .map(|k| k.key(owned.args()).to_vec())
                .collect()))
        }
        Err(respgate::commands::KeysError::Invalid) => Some(Err(())),
        Err(respgate::commands::KeysError::Incomplete) => None,
    }
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn keys_are_always_within_the_request(args in request()) {
        let _ = our_keys(&args);
    }
}

/// A number to C's atoi but not to Redis's strict string2ll.
fn atoi_only(a: &str) -> bool {
    respgate::protocol::scan::parse_int(a.as_bytes()).is_none()
        && a.trim_start()
            .trim_start_matches(['+', '-'])
            .starts_with(|c: char| c.is_ascii_digit())
}

/// One command on a plain socket: the reply's bytes.
fn ask(conn: &mut std::net::TcpStream, args: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    conn.write_all(&out).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(len)) = respgate::protocol::scan::scan_reply(&buf) {
            assert_eq!(len, buf.len());
            return buf;
        }
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "redis-server closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn keys_agree_with_a_real_redis_command_getkeys() {
    let redis = standalone::Standalone::start();
    let conn = std::net::TcpStream::connect(redis.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut runner = TestRunner::new(config(600));
    let conn = std::cell::RefCell::new(conn);
    let compared = std::cell::Cell::new(0);
    runner
        .run(&request(), |args| {
            let Some(ours) = our_keys(&args) else {
                return Ok(());
            };
            let mut getkeys = vec!["COMMAND".to_string(), "GETKEYS".to_string()];
            getkeys.extend(args.iter().cloned());
            let reply = ask(&mut conn.borrow_mut(), &getkeys);
            compared.set(compared.get() + 1);
            match reply.first() {
                // Redis found keys: respgate must find the same, in the same order.
                // (`*0` is also Redis's answer to invalid arguments of a command whose
                // keys are optional, EVAL's: either verdict is fine then.)
                // Redis's getkeys_procs (EVAL's, ZUNIONSTORE's...) read numkeys with
                // atoi, so `+1` or `01` name keys to COMMAND GETKEYS though the command
                // itself refuses that numkeys: respgate refusing them is right.
                Some(b'*') if ours.is_err() && args.iter().any(|a| atoi_only(a)) => {}
                Some(b'*') if reply != b"*0\r\n" || ours.is_ok() => {
                    let items = respgate::protocol::value::array_items(&reply).unwrap();
                    let theirs: Vec<Vec<u8>> = items
                        .iter()
                        .map(|i| respgate::protocol::value::bulk_payload(i).unwrap().to_vec())
                        .collect();
                    prop_assert_eq!(ours, Ok(theirs), "{:?}", args);
                }
                // Redis refused (no keys, invalid arguments): respgate finds none.
                Some(b'-' | b'*') => prop_assert!(
                    matches!(&ours, Ok(k) if k.is_empty()) || ours.is_err(),
                    "{:?}: redis said {}, respgate found {:?}",
                    args,
                    String::from_utf8_lossy(&reply),
                    ours
                ),
                _ => panic!("{}", String::from_utf8_lossy(&reply)),
            }
            Ok(())
        })
        .unwrap();
    let compared = compared.get();
    assert!(compared > 50, "only {compared} requests resolved");
}
