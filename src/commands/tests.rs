//! Loading, lookup and error-reply tests against the real `COMMAND` reply of
//! redis-server 7.0.15 (`tests/fixtures/command-7.0.resp`, see `capture.py` there).

use std::sync::OnceLock;

use super::*;
use crate::protocol::OwnedArgs;

pub(super) const COMMAND_7_0: &[u8] = include_bytes!("../../tests/fixtures/command-7.0.resp");

pub(super) fn table() -> &'static CommandTable {
    static T: OnceLock<CommandTable> = OnceLock::new();
    T.get_or_init(|| CommandTable::from_command_reply(COMMAND_7_0).expect("fixture loads"))
}

fn lookup_name(args: &[&str]) -> Result<String, String> {
    let owned = OwnedArgs::new(args);
    match table().lookup(owned.args()) {
        Lookup::Found(c) => Ok(c.name.clone()),
        Lookup::Unknown => Err("unknown".into()),
        Lookup::UnknownSubcommand(c) => Err(format!("unknown subcommand of {}", c.name)),
        Lookup::WrongArity(c) => Err(format!("arity {}", c.name)),
    }
}

fn reply_for(args: &[&[u8]]) -> Vec<u8> {
    let owned = OwnedArgs::new(args);
    let args = owned.args();
    table()
        .lookup(args)
        .error_reply(args)
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

#[test]
fn loads_the_whole_redis_7_0_table() {
    let t = table();
    assert_eq!(t.len(), 240);
    let subs: usize = t.iter().map(|c| c.subcommands.len()).sum();
    assert!(subs > 100, "{subs} subcommands");
    let get = t.get(b"get").unwrap();
    assert_eq!(get.name, "get");
    assert_eq!(get.arity, 2);
    assert!(get.is_readonly() && !get.is_write() && get.has_flag(cmd_flags::FAST));
    assert_eq!(
        get.acl_category_names().collect::<Vec<_>>(),
        ["read", "string", "fast"]
    );
    assert!(get.in_acl_category(b"@read") && !get.in_acl_category(b"write"));
    assert_eq!((get.first_key, get.last_key, get.step), (1, 1, 1));
    assert_eq!(get.key_specs.len(), 1);
    assert_eq!(get.key_specs[0].begin_search, BeginSearch::Index(1));
    assert_eq!(get.key_specs[0].flags, KeyFlags::RO | KeyFlags::ACCESS);

    let blpop = t.get(b"BLPOP").unwrap();
    assert!(blpop.is_blocking() && blpop.is_write());
    let xread = t.get(b"xread").unwrap();
    assert!(xread.has_movable_keys());
    assert_eq!(
        xread.key_specs[0].begin_search,
        BeginSearch::Keyword {
            keyword: (*b"STREAMS").into(),
            startfrom: 1
        }
    );
    assert!(t.get(b"flushall").unwrap().is_write());
    assert!(t.get(b"save").unwrap().is_no_multi());
    assert!(t.get(b"multi").unwrap().has_flag(cmd_flags::ALLOW_BUSY));
    assert!(t.get(b"auth").unwrap().has_flag(cmd_flags::NO_AUTH));
    assert!(t.get(b"config").unwrap().is_container());
    let eval = t.get(b"eval").unwrap();
    assert!(eval.has_flag(cmd_flags::NO_MANDATORY_KEYS | cmd_flags::NOSCRIPT));
    assert!(t.get(b"subscribe").unwrap().is_pubsub());
    assert!(t.get(b"shutdown").unwrap().is_admin());
}

#[test]
fn parses_tips_into_policies() {
    let t = table();
    let keys = t.get(b"keys").unwrap();
    assert_eq!(keys.tips.request_policy, RequestPolicy::AllShards);
    assert!(keys.tips.nondeterministic_output_order);
    let dbsize = t.get(b"dbsize").unwrap();
    assert_eq!(dbsize.tips.response_policy, ResponsePolicy::AggSum);
    assert!(t.get(b"get").unwrap().tips.raw.is_empty());
    assert_eq!(
        t.get(b"get").unwrap().tips.request_policy,
        RequestPolicy::Default
    );
}

#[test]
fn get_is_case_insensitive_and_finds_subcommands() {
    let t = table();
    assert_eq!(t.get(b"GeT").unwrap().name, "get");
    assert_eq!(t.get(b"OBJECT|Encoding").unwrap().name, "object|encoding");
    assert_eq!(
        t.get(b"cluster|count-failure-reports").unwrap().name,
        "cluster|count-failure-reports"
    );
    assert!(t.get(b"nosuchcommand").is_none());
    assert!(t.get(b"").is_none());
    assert!(t.get(&[b'g'; 300]).is_none());
    assert!(t.get(b"get\0").is_none());
    let object = t.get(b"object").unwrap();
    assert_eq!(t.subcommand(object, b"FREQ").unwrap().name, "object|freq");
    assert!(t.subcommand(object, b"nope").is_none());
}

#[test]
fn lookup_resolves_commands_subcommands_and_arity() {
    assert_eq!(lookup_name(&["get", "k"]), Ok("get".into()));
    assert_eq!(
        lookup_name(&["OBJECT", "ENCODING", "k"]),
        Ok("object|encoding".into())
    );
    assert_eq!(
        lookup_name(&["xinfo", "stream", "s"]),
        Ok("xinfo|stream".into())
    );
    assert_eq!(
        lookup_name(&["memory", "usage", "k"]),
        Ok("memory|usage".into())
    );
    assert_eq!(lookup_name(&["ping"]), Ok("ping".into()));
    assert_eq!(lookup_name(&["ping", "x"]), Ok("ping".into()));
    assert_eq!(lookup_name(&["get"]), Err("arity get".into()));
    assert_eq!(lookup_name(&["get", "a", "b"]), Err("arity get".into()));
    assert_eq!(lookup_name(&["set", "k"]), Err("arity set".into()));
    assert_eq!(lookup_name(&["object"]), Err("arity object".into()));
    assert_eq!(
        lookup_name(&["object", "encoding"]),
        Err("arity object|encoding".into())
    );
    assert_eq!(
        lookup_name(&["object", "nope", "k"]),
        Err("unknown subcommand of object".into())
    );
    assert_eq!(lookup_name(&["nosuch", "k"]), Err("unknown".into()));
    assert_eq!(
        lookup_name(&["object|encoding", "k"]),
        Err("unknown".into())
    );
    assert!(matches!(
        table().lookup(OwnedArgs::new(Vec::<&[u8]>::new()).args()),
        Lookup::Unknown
    ));
    let t = table();
    assert!(t.get(b"get").unwrap().arity_ok(2));
    assert!(!t.get(b"get").unwrap().arity_ok(3));
    assert!(t.get(b"mset").unwrap().arity_ok(5) && !t.get(b"mset").unwrap().arity_ok(2));
}

// Expected bytes below were captured from redis-server 7.0.15 (raw socket).
#[test]
fn unknown_command_reply_matches_redis() {
    let r = |a: &[&[u8]]| String::from_utf8(reply_for(a)).unwrap();
    assert_eq!(
        r(&[b"foo", b"a", b"b", b"c"]),
        "-ERR unknown command 'foo', with args beginning with: 'a' 'b' 'c' \r\n"
    );
    assert_eq!(
        r(&[b"FOO"]),
        "-ERR unknown command 'FOO', with args beginning with: \r\n"
    );
    assert_eq!(
        r(&[b"foo", b""]),
        "-ERR unknown command 'foo', with args beginning with: '' \r\n"
    );
    // 128-byte budget for the whole argument list, quotes and spaces included.
    let (a100, b100) = ("a".repeat(100), "b".repeat(100));
    assert_eq!(
        r(&[b"foo", a100.as_bytes(), b100.as_bytes(), b"c"]),
        format!(
            "-ERR unknown command 'foo', with args beginning with: '{a100}' '{}' \r\n",
            "b".repeat(25)
        )
    );
    let x200 = "x".repeat(200);
    assert_eq!(
        r(&[b"foo", x200.as_bytes()]),
        format!(
            "-ERR unknown command 'foo', with args beginning with: '{}' \r\n",
            "x".repeat(128)
        )
    );
    let a126 = "a".repeat(126);
    assert_eq!(
        r(&[b"foo", a126.as_bytes(), b"b", b"c"]),
        format!("-ERR unknown command 'foo', with args beginning with: '{a126}' \r\n")
    );
    // Name cut to 128; CR/LF become spaces; NUL ends an argument.
    assert_eq!(
        r(&[x200.as_bytes(), b"a"]),
        format!(
            "-ERR unknown command '{}', with args beginning with: 'a' \r\n",
            "x".repeat(128)
        )
    );
    assert_eq!(
        r(&[b"foo", b"a\r\nb", b"c\0d"]),
        "-ERR unknown command 'foo', with args beginning with: 'a  b' 'c' \r\n"
    );
    assert_eq!(
        r(&[b"f\r\noo\0x", b"a"]),
        "-ERR unknown command 'f  oo', with args beginning with: 'a' \r\n"
    );
    // Non-UTF-8 bytes pass through untouched.
    assert_eq!(
        reply_for(&[b"\xff", b"\xfe"]),
        b"-ERR unknown command '\xff', with args beginning with: '\xfe' \r\n"
    );
}

#[test]
fn unknown_subcommand_and_arity_replies_match_redis() {
    let r = |a: &[&[u8]]| String::from_utf8(reply_for(a)).unwrap();
    assert_eq!(
        r(&[b"object", b"encodingx", b"k"]),
        "-ERR unknown subcommand 'encodingx'. Try OBJECT HELP.\r\n"
    );
    assert_eq!(
        r(&[b"Object", b"x"]),
        "-ERR unknown subcommand 'x'. Try OBJECT HELP.\r\n"
    );
    let e200 = "e".repeat(200);
    assert_eq!(
        r(&[b"object", e200.as_bytes()]),
        format!(
            "-ERR unknown subcommand '{}'. Try OBJECT HELP.\r\n",
            "e".repeat(128)
        )
    );
    assert_eq!(
        r(&[b"object", b"enc\r\nx"]),
        "-ERR unknown subcommand 'enc  x'. Try OBJECT HELP.\r\n"
    );
    assert_eq!(
        r(&[b"object", b"a\0b"]),
        "-ERR unknown subcommand 'a'. Try OBJECT HELP.\r\n"
    );
    assert_eq!(
        r(&[b"obJect"]),
        "-ERR wrong number of arguments for 'object' command\r\n"
    );
    assert_eq!(
        r(&[b"OBJECT", b"ENCODING"]),
        "-ERR wrong number of arguments for 'object|encoding' command\r\n"
    );
    assert_eq!(
        r(&[b"Get", b"a", b"b"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        r(&[b"xinfo", b"stream"]),
        "-ERR wrong number of arguments for 'xinfo|stream' command\r\n"
    );
    assert_eq!(r(&[b"get", b"k"]), "");
}

#[test]
fn loading_rejects_garbage_with_a_clear_error() {
    let e = CommandTable::from_command_reply(b"this is not RESP\r\n").unwrap_err();
    assert!(matches!(e, CommandTableError::Decode(_)), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("COMMAND reply is not valid RESP2"),
        "{e}"
    );

    let e = CommandTable::from_command_reply(b"").unwrap_err();
    assert_eq!(e, CommandTableError::Truncated);
    let e = CommandTable::from_command_reply(&COMMAND_7_0[..COMMAND_7_0.len() / 2]).unwrap_err();
    assert_eq!(e, CommandTableError::Truncated);

    let mut extra = COMMAND_7_0.to_vec();
    extra.extend_from_slice(b"+OK\r\n");
    let e = CommandTable::from_command_reply(&extra).unwrap_err();
    assert_eq!(e, CommandTableError::TrailingBytes(5));

    let e = CommandTable::from_command_reply(b"-NOAUTH Authentication required.\r\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "COMMAND failed on the server: NOAUTH Authentication required."
    );
    assert_eq!(
        CommandTable::from_command_reply(b"*0\r\n").unwrap_err(),
        CommandTableError::Empty
    );
    assert!(matches!(
        CommandTable::from_command_reply(b":1\r\n").unwrap_err(),
        CommandTableError::Malformed { .. }
    ));
    // A Redis 6 style entry (7 fields, no key specs).
    let e = CommandTable::from_command_reply(
        b"*1\r\n*7\r\n$3\r\nget\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n*0\r\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("Redis >= 7.0"), "{e}");
}

#[test]
fn loading_rejects_duplicates_and_tolerates_unknown_vocabulary() {
    let entry = |name: &str| {
        format!(
            "*10\r\n${}\r\n{name}\r\n:2\r\n*2\r\n+readonly\r\n+shiny_new_flag\r\n:1\r\n:1\r\n:1\r\n\
             *2\r\n+@read\r\n+@future\r\n*1\r\n+some_new_tip\r\n*0\r\n*0\r\n",
            name.len()
        )
    };
    let two = format!("*2\r\n{}{}", entry("foo"), entry("FOO"));
    assert_eq!(
        CommandTable::from_command_reply(two.as_bytes()).unwrap_err(),
        CommandTableError::Duplicate("foo".into())
    );
    let one = format!("*1\r\n{}", entry("Foo"));
    let t = CommandTable::from_command_reply(one.as_bytes()).unwrap();
    let foo = t.get(b"foo").unwrap();
    assert_eq!(foo.name, "foo");
    assert_eq!(foo.flags, cmd_flags::READONLY);
    assert_eq!(foo.acl_category_names().collect::<Vec<_>>(), ["read"]);
    assert_eq!(foo.tips.raw, ["some_new_tip"]);
    assert!(foo.has_no_keys());
}

#[test]
fn long_names_resolve_without_the_stack_buffer() {
    let name = format!("x{}", "y".repeat(80));
    let sub = format!("{name}|{}", "z".repeat(10));
    let reply = format!(
        "*1\r\n*10\r\n${}\r\n{name}\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n\
         *1\r\n*10\r\n${}\r\n{sub}\r\n:2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n*0\r\n*0\r\n",
        name.len(),
        sub.len()
    );
    let t = CommandTable::from_command_reply(reply.as_bytes()).unwrap();
    assert_eq!(t.get(name.to_uppercase().as_bytes()).unwrap().name, name);
    assert_eq!(t.get(sub.as_bytes()).unwrap().name, sub);
    let upper = name.to_uppercase();
    let owned = OwnedArgs::new([upper.as_str(), "ZZZZZZZZZZ"]);
    match t.lookup(owned.args()) {
        Lookup::Found(c) => assert_eq!(c.name, sub),
        other => panic!("{other:?}"),
    }
    let owned = OwnedArgs::new([upper.as_str(), "zz"]);
    assert!(matches!(
        t.lookup(owned.args()),
        Lookup::UnknownSubcommand(_)
    ));
}

/// Rough hot-path timing: `cargo test --release --lib commands::tests::hot_path -- --ignored
/// --nocapture`. Prints, asserts nothing about time.
#[test]
#[ignore]
fn hot_path_lookup_and_keys_timing() {
    let t = table();
    let owned = OwnedArgs::new(["GET", "some:key"]);
    let mut out = Vec::with_capacity(8);
    let n = 10_000_000u32;
    let start = std::time::Instant::now();
    let mut found = 0usize;
    for _ in 0..n {
        let args = std::hint::black_box(owned.args());
        if let Lookup::Found(c) = t.lookup(args) {
            c.keys(args, &mut out).unwrap();
            found += out.len();
        }
    }
    let per = start.elapsed() / n;
    assert_eq!(found, n as usize);
    println!("lookup + keys for GET k: {per:?} per request");
}
