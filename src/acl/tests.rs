//! Rule parsing and command/key decisions, against the command table of Redis 7.0.15
//! (`tests/fixtures/command-7.0.resp`), compared with what `ACL SETUSER` / `ACL DRYRUN`
//! give on that server.

use super::*;
use crate::commands::{CommandTable, KeyFlags};
use std::sync::OnceLock;

fn table() -> Arc<CommandTable> {
    static T: OnceLock<Arc<CommandTable>> = OnceLock::new();
    T.get_or_init(|| {
        Arc::new(
            CommandTable::from_command_reply(include_bytes!(
                "../../tests/fixtures/command-7.0.resp"
            ))
            .unwrap(),
        )
    })
    .clone()
}

fn user(rules: &str) -> User {
    User::new("u", Acl::parse(rules).unwrap())
}

fn may_run(u: &User, cmd: &str) -> bool {
    let t = table();
    let info = t.get(cmd.as_bytes()).unwrap_or_else(|| panic!("{cmd}"));
    u.commands(&t).1.allowed[info.id as usize]
}

#[test]
fn command_rules_apply_in_order_like_redis() {
    let u = user("on +@all -@dangerous +keys");
    assert!(may_run(&u, "get"));
    assert!(!may_run(&u, "flushall"));
    assert!(may_run(&u, "keys"));
    assert!(!may_run(&u, "config|set"));
    let u = user("on -@all +get +config|get");
    assert!(may_run(&u, "get"));
    assert!(!may_run(&u, "set"));
    assert!(may_run(&u, "config|get"));
    assert!(!may_run(&u, "config|set"));
    let u = user("on +config -config|set");
    assert!(may_run(&u, "config|get"));
    assert!(!may_run(&u, "config|set"));
    let u = user("on +@read");
    assert!(may_run(&u, "get"));
    assert!(may_run(&u, "keys"));
    assert!(!may_run(&u, "set"));
    // Nothing said: nothing allowed.
    assert!(!may_run(&user("on ~*"), "get"));
}

#[test]
fn key_patterns_carry_read_and_write() {
    let u = user("on ~cache:* %R~ro:* %W~wo:* %RW~rw:*");
    let acl = &u.acl;
    assert!(acl.key_allowed(b"cache:1", READ | WRITE));
    assert!(acl.key_allowed(b"ro:1", READ));
    assert!(!acl.key_allowed(b"ro:1", WRITE));
    assert!(acl.key_allowed(b"wo:1", WRITE));
    assert!(!acl.key_allowed(b"wo:1", READ));
    assert!(acl.key_allowed(b"rw:1", READ | WRITE));
    assert!(!acl.key_allowed(b"other", READ));
    // EXISTS-like access (no read, no write) needs only a matching pattern.
    assert!(acl.key_allowed(b"wo:1", 0));
    assert!(!acl.key_allowed(b"other", 0));
    assert!(!acl.writes_all_keys());
    assert!(user("on allkeys").acl.writes_all_keys());
    assert!(user("on %RW~*").acl.allkeys);
    assert!(!user("on %R~*").acl.writes_all_keys());
}

#[test]
fn key_flags_of_copy_need_read_then_write() {
    // COPY src dst: src is RO ACCESS, dst is OW UPDATE (Redis's key specs).
    let t = table();
    let info = t.get(b"copy").unwrap();
    let args = crate::protocol::args::OwnedArgs::new(["COPY", "a", "b"]);
    let mut keys = Vec::new();
    info.keys(args.args(), &mut keys).unwrap();
    assert!(keys[0].flags.contains(KeyFlags::ACCESS));
    assert!(keys[1].flags.contains(KeyFlags::UPDATE));
}

#[test]
fn channels() {
    let u = user("on &news.* &exact");
    assert!(u.acl.channel_allowed(b"news.sport", false));
    assert!(u.acl.channel_allowed(b"exact", false));
    assert!(!u.acl.channel_allowed(b"other", false));
    // PSUBSCRIBE: the pattern itself must be one of the user's.
    assert!(u.acl.channel_allowed(b"news.*", true));
    assert!(!u.acl.channel_allowed(b"news.s*", true));
    assert!(user("on allchannels").acl.channel_allowed(b"x", true));
    assert!(!user("on").acl.channel_allowed(b"x", false));
}

#[test]
fn passwords_are_hashes_compared_whole() {
    let hash = hash_password(b"s3cret");
    assert_eq!(
        hash,
        "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
    );
    let u = user(&format!("on #{hash}"));
    assert!(u.check_password(b"s3cret"));
    assert!(!u.check_password(b"s3cre"));
    assert!(!u.check_password(b""));
    assert!(user("on nopass").check_password(b"anything"));
    assert!(!user("on").check_password(b"anything"));
    let removed = user(&format!("on #{hash} !{hash}"));
    assert!(!removed.check_password(b"s3cret"));
}

#[test]
fn bad_rules_are_explained() {
    let e = |r: &str| Acl::parse(r).unwrap_err();
    assert!(
        e(">plain").contains("plain-text passwords are not stored"),
        "{}",
        e(">plain")
    );
    assert!(e("#abc").contains("64 hex digits"));
    assert!(e("+@nosuch").contains("unknown command category 'nosuch'"));
    assert!(e("%X~a").contains("R, W or RW"));
    assert!(e("(~a +get)").contains("selectors are not supported"));
    assert!(e("bogus").contains("unknown ACL rule"));
}

#[test]
fn describe_redacts_passwords() {
    let hash = hash_password(b"pw");
    let u = user(&format!("on #{hash} ~a:* %R~b:* &ch +@all -@dangerous"));
    let line = u.acl.describe("svc");
    assert_eq!(
        line,
        "user svc on #<redacted> ~a:* %R~b:* resetchannels &ch +@all -@dangerous"
    );
    assert!(!line.contains(&hash));
}

#[test]
fn unrestricted_users_skip_checks() {
    assert!(User::open_default().unrestricted);
    assert!(user("on nopass ~* &* +@all").unrestricted);
    assert!(!user("on nopass ~* &* +@all -flushall").unrestricted);
    assert!(!user("on nopass ~a* &* +@all").unrestricted);
}

#[test]
fn lockout_counts_per_address() {
    let cfg = crate::config::AuthConfig {
        mode: Some(crate::config::AuthMode::Users),
        max_failures: 3,
        failure_window_secs: 60,
        lockout_secs: 60,
        users: vec![crate::config::UserConfig {
            max_dedicated_connections: None,
            name: "svc".into(),
            rules: format!("on #{} ~* +@all", hash_password(b"good")),
        }],
    };
    let s = Security::new(&cfg).unwrap();
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    for _ in 0..3 {
        assert_eq!(
            s.authenticate(a, b"svc", b"bad").unwrap_err(),
            AuthError::WrongPass
        );
    }
    assert!(matches!(
        s.authenticate(a, b"svc", b"good"),
        Err(AuthError::LockedOut(_))
    ));
    assert!(s.authenticate(b, b"svc", b"good").is_ok());
    assert_eq!(
        s.authenticate(b, b"nobody", b"good").unwrap_err(),
        AuthError::WrongPass
    );
}
