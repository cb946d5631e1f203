//! Key extraction tests: hand-checked cases, and every case of
//! `tests/fixtures/getkeys-7.0.txt` (what redis-server 7.0.15's `COMMAND GETKEYSANDFLAGS`
//! answers) replayed through [`CommandInfo::keys`].

use super::keys::parse_i64;
use super::tests::table;
use super::*;
use crate::protocol::OwnedArgs;

const GETKEYS_7_0: &str = include_str!("../../tests/fixtures/getkeys-7.0.txt");

const RO_ACCESS: KeyFlags = KeyFlags(KeyFlags::RO.0 | KeyFlags::ACCESS.0);
const OW_UPDATE: KeyFlags = KeyFlags(KeyFlags::OW.0 | KeyFlags::UPDATE.0);
const RW_ACCESS_DELETE: KeyFlags =
    KeyFlags(KeyFlags::RW.0 | KeyFlags::ACCESS.0 | KeyFlags::DELETE.0);
const RW_ACCESS_UPDATE: KeyFlags =
    KeyFlags(KeyFlags::RW.0 | KeyFlags::ACCESS.0 | KeyFlags::UPDATE.0);

type Keys = Result<Vec<(usize, KeyFlags)>, KeysError>;

/// Looks `args` up (it must resolve) and extracts its keys.
fn keys(args: &[&str]) -> Keys {
    let owned = OwnedArgs::new(args);
    let cmd = match table().lookup(owned.args()) {
        Lookup::Found(c) => c,
        other => panic!("{args:?} did not resolve: {other:?}"),
    };
    let args = owned.args();
    let mut out = Vec::new();
    cmd.keys(args, &mut out)?;
    Ok(out.iter().map(|k| (k.index as usize, k.flags)).collect())
}

fn at(idx: &[usize], flags: KeyFlags) -> Keys {
    Ok(idx.iter().map(|&i| (i, flags)).collect())
}

#[test]
fn simple_commands() {
    assert_eq!(keys(&["GET", "k"]), at(&[1], RO_ACCESS));
    assert_eq!(keys(&["SET", "k", "v", "EX", "10"]), at(&[1], OW_UPDATE));
    assert_eq!(keys(&["SET", "k", "v", "get"]), at(&[1], RW_ACCESS_UPDATE));
    assert_eq!(
        keys(&["MSET", "k1", "v1", "k2", "v2"]),
        at(&[1, 3], OW_UPDATE)
    );
    let rm = KeyFlags::RM | KeyFlags::DELETE;
    assert_eq!(keys(&["DEL", "a", "b", "c"]), at(&[1, 2, 3], rm));
    assert_eq!(keys(&["PING"]), Ok(vec![]));
    assert_eq!(keys(&["PING", "hello"]), Ok(vec![]));
    assert!(table().get(b"ping").unwrap().has_no_keys());
}

#[test]
fn copy_and_lmove_keep_per_key_flags() {
    assert_eq!(
        keys(&["COPY", "src", "dst"]),
        Ok(vec![(1, RO_ACCESS), (2, OW_UPDATE)])
    );
    let got = keys(&["COPY", "src", "dst"]).unwrap();
    assert!(got[0].1.is_read_only() && !got[0].1.is_write());
    assert!(got[1].1.is_write() && !got[1].1.is_read_only());
    assert_eq!(
        keys(&["LMOVE", "a", "b", "LEFT", "RIGHT"]),
        Ok(vec![
            (1, RW_ACCESS_DELETE),
            (2, KeyFlags::RW | KeyFlags::INSERT)
        ])
    );
    assert_eq!(
        keys(&["BITOP", "AND", "d", "a", "b"]),
        Ok(vec![(2, OW_UPDATE), (3, RO_ACCESS), (4, RO_ACCESS)])
    );
}

#[test]
fn streams_keyword_specs() {
    assert_eq!(
        keys(&["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"]),
        at(&[4, 5], RO_ACCESS)
    );
    assert_eq!(
        keys(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "0"]),
        at(&[5], RO_ACCESS)
    );
    assert_eq!(keys(&["XINFO", "STREAM", "s"]), at(&[2], RO_ACCESS));
    // No STREAMS keyword: the spec finds nothing, and the request is left to the server.
    assert_eq!(keys(&["XREAD", "COUNT", "2", "s", "0"]), Ok(vec![]));
    // STREAMS with nothing after it.
    assert_eq!(
        keys(&["XREAD", "COUNT", "STREAMS", "STREAMS"]),
        Err(KeysError::Invalid)
    );
}

#[test]
fn keynum_specs() {
    assert_eq!(
        keys(&["ZUNIONSTORE", "dst", "2", "a", "b", "WEIGHTS", "1", "2"]),
        Ok(vec![(1, OW_UPDATE), (3, RO_ACCESS), (4, RO_ACCESS)])
    );
    assert_eq!(
        keys(&["EVAL", "return 1", "2", "k1", "k2", "a1"]),
        at(&[3, 4], RW_ACCESS_UPDATE)
    );
    assert_eq!(keys(&["EVAL", "return 1", "0"]), Ok(vec![]));
    assert_eq!(keys(&["EVAL", "return 1", "0", "arg"]), Ok(vec![]));
    assert_eq!(
        keys(&["EVALSHA", "sha", "1", "k"]),
        at(&[3], RW_ACCESS_UPDATE)
    );
    assert_eq!(keys(&["EVAL_RO", "s", "1", "k"]), at(&[3], RO_ACCESS));
    assert_eq!(keys(&["FCALL", "f", "1", "k"]), at(&[3], RW_ACCESS_UPDATE));
    assert_eq!(
        keys(&["LMPOP", "2", "a", "b", "LEFT"]),
        at(&[2, 3], RW_ACCESS_DELETE)
    );
    assert_eq!(
        keys(&["BLMPOP", "0", "2", "a", "b", "LEFT"]),
        at(&[3, 4], RW_ACCESS_DELETE)
    );
    assert_eq!(
        keys(&["ZMPOP", "1", "a", "MIN"]),
        at(&[2], RW_ACCESS_DELETE)
    );
}

#[test]
fn bad_numkeys_is_invalid() {
    for bad in [
        "x",
        "",
        "-1",
        "01",
        "+1",
        " 1",
        "1.0",
        "99999999999999999999",
    ] {
        assert_eq!(
            keys(&["EVAL", "s", bad, "k"]),
            Err(KeysError::Invalid),
            "{bad:?}"
        );
    }
    assert_eq!(
        keys(&["EVAL", "s", "3", "k1", "k2"]),
        Err(KeysError::Invalid)
    );
    assert_eq!(
        keys(&["EVAL", "s", "9223372036854775807", "k"]),
        Err(KeysError::Invalid)
    );
    assert_eq!(keys(&["LMPOP", "x", "a", "LEFT"]), Err(KeysError::Invalid));
    // Zero keys is only fine for no_mandatory_keys commands (EVAL, FCALL).
    assert_eq!(
        keys(&["ZUNIONSTORE", "dst", "0", "a"]),
        Err(KeysError::Invalid)
    );
    assert_eq!(
        keys(&["ZUNIONSTORE", "dst", "3", "a", "b"]),
        Err(KeysError::Invalid)
    );
}

#[test]
fn hand_written_rules() {
    assert_eq!(
        keys(&["SORT", "k", "BY", "w", "GET", "g", "LIMIT", "0", "1", "STORE", "dst"]),
        Ok(vec![(1, RO_ACCESS), (10, OW_UPDATE)])
    );
    assert_eq!(keys(&["SORT", "k"]), at(&[1], RO_ACCESS));
    assert_eq!(
        keys(&["sort", "k", "store", "d1", "STORE", "d2"]),
        Ok(vec![(1, RO_ACCESS), (5, OW_UPDATE)])
    );
    // GEORADIUS: the last STORE/STOREDIST is the one the command writes.
    let geo = ["GEORADIUS", "src", "13", "38", "200", "km"];
    let with = |extra: &[&'static str]| [&geo[..], extra].concat();
    assert_eq!(
        keys(&with(&["STORE", "d1", "STOREDIST", "d2"])),
        Ok(vec![(1, RO_ACCESS), (9, OW_UPDATE)])
    );
    assert_eq!(
        keys(&with(&["STORE", "d1"])),
        Ok(vec![(1, RO_ACCESS), (7, OW_UPDATE)])
    );
    assert_eq!(keys(&with(&["WITHDIST"])), at(&[1], RO_ACCESS));
    assert_eq!(
        keys(&[
            "GEORADIUSBYMEMBER",
            "src",
            "m",
            "5",
            "km",
            "STORE",
            "a",
            "STORE",
            "b"
        ]),
        Ok(vec![(1, RO_ACCESS), (8, OW_UPDATE)])
    );
    assert_eq!(keys(&["SORT_RO", "k"]), at(&[1], RO_ACCESS));
    assert_eq!(keys(&["SORT_RO", "k", "STORE", "x"]), at(&[1], RO_ACCESS));
    assert_eq!(
        keys(&["MIGRATE", "h", "p", "k", "0", "100"]),
        at(&[3], RW_ACCESS_DELETE)
    );
    assert_eq!(
        keys(&["MIGRATE", "h", "p", "", "0", "100", "KEYS", "a", "b"]),
        at(&[7, 8], RW_ACCESS_DELETE)
    );
    assert_eq!(
        keys(&["MIGRATE", "h", "p", "k", "0", "100", "KEYS", "a"]),
        Err(KeysError::Invalid)
    );
    assert_eq!(
        keys(&["BITFIELD", "k", "GET", "u8", "0"]),
        at(&[1], RO_ACCESS)
    );
    assert_eq!(
        keys(&["BITFIELD", "k", "INCRBY", "u8", "0", "1"]),
        at(&[1], RW_ACCESS_UPDATE)
    );
}

#[test]
fn container_and_store_option_commands() {
    assert_eq!(keys(&["OBJECT", "ENCODING", "k"]), at(&[2], KeyFlags::RO));
    assert_eq!(keys(&["MEMORY", "USAGE", "k"]), at(&[2], KeyFlags::RO));
    assert_eq!(keys(&["OBJECT", "HELP"]), Ok(vec![]));
    assert_eq!(
        keys(&["GEORADIUS", "k", "1", "2", "3", "km", "STORE", "dst"]),
        Ok(vec![(1, RO_ACCESS), (7, OW_UPDATE)])
    );
    assert_eq!(
        keys(&["GEORADIUSBYMEMBER", "k", "m", "3", "km", "STOREDIST", "d"]),
        Ok(vec![(1, RO_ACCESS), (6, OW_UPDATE)])
    );
}

#[test]
fn shard_channels_are_reported_as_not_keys() {
    assert_eq!(keys(&["SPUBLISH", "ch", "m"]), at(&[1], KeyFlags::NOT_KEY));
    assert_eq!(
        keys(&["SSUBSCRIBE", "a", "b"]),
        at(&[1, 2], KeyFlags::NOT_KEY)
    );
    assert_eq!(keys(&["PUBLISH", "ch", "m"]), Ok(vec![]));
}

#[test]
fn keys_never_panics_on_short_requests() {
    // keys() is defined for any argument count, not only ones lookup accepted.
    let mut out = vec![KeyRef {
        index: 9,
        flags: KeyFlags::RO,
    }];
    for cmd in table()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(&c.subcommands))
    {
        for argc in 0..4 {
            let mut args = vec![cmd.name.as_str(); argc.max(1)];
            args.truncate(argc);
            let owned = OwnedArgs::new(&args);
            let _ = cmd.keys(owned.args(), &mut out);
            assert!(
                out.iter().all(|k| (k.index as usize) < argc),
                "{}",
                cmd.name
            );
        }
    }
}

#[test]
fn every_spec_of_redis_7_0_is_understood() {
    for cmd in table()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(&c.subcommands))
    {
        let incomplete = cmd.key_specs.iter().any(KeySpec::is_incomplete);
        let ruled = ["sort", "sort_ro", "migrate"].contains(&cmd.name.as_str());
        assert_eq!(incomplete, ruled, "{}", cmd.name);
    }
}

#[test]
fn string2ll_rules() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"-12"), Some(-12));
    assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    for bad in [
        &b""[..],
        b"-",
        b"-0",
        b"00",
        b"+1",
        b"1a",
        b"9223372036854775808",
    ] {
        assert_eq!(parse_i64(bad), None, "{bad:?}");
    }
}

fn flags_from_names(names: &str) -> KeyFlags {
    names
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| KeyFlags::from_name(n.as_bytes()).unwrap_or_else(|| panic!("flag {n}")))
        .fold(KeyFlags::default(), |a, b| a | b)
}

/// Replays every captured `COMMAND GETKEYSANDFLAGS` answer. Redis answers through its
/// fallback getkeys procs when a spec fails; respgate reports those requests `Invalid`
/// instead (the backend then answers them), so where Redis's answer came from a proc
/// (flags empty, or no keys) `Invalid` is accepted too.
#[test]
fn matches_redis_getkeysandflags() {
    let mut checked = 0;
    for line in GETKEYS_7_0.lines().filter(|l| !l.starts_with('#')) {
        let (args, expected) = line.split_once("\t=>\t").expect("fixture line");
        let args: Vec<&str> = args.split('\t').collect();
        let got = keys(&args).map(|ks| {
            ks.into_iter()
                .filter(|(_, f)| !f.contains(KeyFlags::NOT_KEY))
                .collect::<Vec<_>>()
        });
        let ctx = format!("{args:?} => {expected}: got {got:?}");
        if let Some(list) = expected.strip_prefix("keys ") {
            let want: Vec<(usize, KeyFlags)> = list
                .split(' ')
                .map(|k| {
                    let (i, f) = k.split_once(':').unwrap();
                    (i.parse().unwrap(), flags_from_names(f))
                })
                .collect();
            if want.iter().all(|(_, f)| *f == KeyFlags::default()) {
                let idx: Vec<usize> = want.iter().map(|k| k.0).collect();
                match &got {
                    Ok(g) => assert_eq!(g.iter().map(|k| k.0).collect::<Vec<_>>(), idx, "{ctx}"),
                    Err(e) => assert_eq!(*e, KeysError::Invalid, "{ctx}"),
                }
            } else {
                assert_eq!(got, Ok(want), "{ctx}");
            }
        } else if expected == "empty" {
            assert!(
                matches!(&got, Ok(v) if v.is_empty()) || got == Err(KeysError::Invalid),
                "{ctx}"
            );
        } else if expected.starts_with("error ERR Invalid arguments") {
            assert_eq!(got, Err(KeysError::Invalid), "{ctx}");
        } else {
            assert!(expected.starts_with("error "), "{ctx}");
            assert_eq!(got, Ok(vec![]), "{ctx}");
        }
        checked += 1;
    }
    assert!(checked > 90, "{checked} cases");
}
