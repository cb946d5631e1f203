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

fn lockout_security(max_failures: u32, max_unknown: u32, max_entries: usize) -> Security {
    let cfg = crate::config::AuthConfig {
        mode: Some(crate::config::AuthMode::Users),
        max_failures,
        failure_window_secs: 60,
        lockout_secs: 60,
        max_unknown_user_failures: max_unknown,
        lockout_max_entries: max_entries,
        login_timeout_secs: 10,
        users: ["svc", "other", "off"]
            .iter()
            .map(|name| crate::config::UserConfig {
                max_dedicated_connections: None,
                cross_slot: None,
                name: name.to_string(),
                rules: format!(
                    "{} #{} ~* +@all",
                    if *name == "off" { "off" } else { "on" },
                    hash_password(b"good")
                ),
            })
            .collect(),
    };
    Security::new(&cfg).unwrap()
}

fn locked(r: Result<Arc<User>, AuthError>) -> Option<&'static str> {
    match r {
        Err(AuthError::LockedOut(l)) => Some(l.option()),
        _ => None,
    }
}

#[test]
fn lockout_counts_per_user_and_address() {
    let s = lockout_security(3, 100, 1000);
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    for _ in 0..3 {
        assert_eq!(
            s.authenticate(a, b"svc", b"bad").unwrap_err(),
            AuthError::WrongPass
        );
    }
    // svc is locked from a, even with its password...
    assert_eq!(
        locked(s.authenticate(a, b"svc", b"good")),
        Some("auth.max_failures")
    );
    // ... but not from b, and other users behind a are not locked at all.
    assert!(s.authenticate(b, b"svc", b"good").is_ok());
    assert!(s.authenticate(a, b"other", b"good").is_ok());
    // A disabled user is counted like any named user.
    for _ in 0..3 {
        assert_eq!(
            s.authenticate(a, b"off", b"good").unwrap_err(),
            AuthError::WrongPass
        );
    }
    assert_eq!(
        locked(s.authenticate(a, b"off", b"good")),
        Some("auth.max_failures")
    );
    // Successful logins leave nothing behind: only the two locks and the address's
    // failure count are tracked.
    assert_eq!(s.lockout.tracked(), 3);
}

#[test]
fn unknown_names_lock_like_users_and_spraying_locks_the_address() {
    let s = lockout_security(3, 10, 1000);
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    // An unknown name is locked after 3 failures like a real one: the answer does not
    // tell whether the name exists.
    for _ in 0..3 {
        assert_eq!(
            s.authenticate(a, b"ghost", b"x").unwrap_err(),
            AuthError::WrongPass
        );
    }
    assert_eq!(
        locked(s.authenticate(a, b"ghost", b"x")),
        Some("auth.max_failures")
    );
    // Spraying other names: 10 unknown-name failures in all lock the whole address,
    // known users and right passwords included.
    for i in 0..7 {
        let name = format!("spray{i}");
        assert_eq!(
            s.authenticate(a, name.as_bytes(), b"x").unwrap_err(),
            AuthError::WrongPass
        );
    }
    assert_eq!(
        locked(s.authenticate(a, b"spray-next", b"x")),
        Some("auth.max_unknown_user_failures")
    );
    assert_eq!(
        locked(s.authenticate(a, b"svc", b"good")),
        Some("auth.max_unknown_user_failures")
    );
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    assert!(s.authenticate(b, b"svc", b"good").is_ok());
}

/// The reviewer's oracle: after 9 sprayed failures (threshold 10), one failure on a
/// candidate name then one more guess. Had only unknown names counted for the address,
/// the lock would come exactly when the candidate is no user. Now it comes either way.
#[test]
fn the_address_lock_does_not_tell_whether_a_name_exists() {
    let probe = |candidate: &[u8]| {
        let s = lockout_security(1000, 10, 1000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..9 {
            let name = format!("rnd{i}");
            assert!(locked(s.authenticate(a, name.as_bytes(), b"x")).is_none());
        }
        let first = locked(s.authenticate(a, candidate, b"x"));
        let then = locked(s.authenticate(a, b"rnd-last", b"x"));
        (first, then)
    };
    let known = probe(b"svc");
    assert_eq!(known, probe(b"ghost"));
    assert_eq!(known, probe(b"off"));
    assert_eq!(known, (None, Some("auth.max_unknown_user_failures")));
}

#[test]
fn wrong_passwords_on_known_users_count_for_the_address_too() {
    let s = lockout_security(1000, 3, 1000);
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    for _ in 0..3 {
        assert_eq!(
            s.authenticate(a, b"svc", b"bad").unwrap_err(),
            AuthError::WrongPass
        );
    }
    assert_eq!(
        locked(s.authenticate(a, b"other", b"good")),
        Some("auth.max_unknown_user_failures")
    );
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    assert!(s.authenticate(b, b"other", b"good").is_ok());
}

#[test]
fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
    let s = lockout_security(1000, 3, 1000);
    // Three addresses of one /64 share the address counter.
    for host in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff:1:2:3",
    ] {
        let a: IpAddr = host.parse().unwrap();
        assert!(locked(s.authenticate(a, b"ghost", b"x")).is_none());
    }
    let same64: IpAddr = "2001:db8:1:2:abcd::9".parse().unwrap();
    assert_eq!(
        locked(s.authenticate(same64, b"svc", b"good")),
        Some("auth.max_unknown_user_failures")
    );
    let next64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert!(s.authenticate(next64, b"svc", b"good").is_ok());
    // The same client over IPv4 and IPv4-mapped IPv6 is one address.
    let v4: IpAddr = "10.9.9.9".parse().unwrap();
    let mapped: IpAddr = "::ffff:10.9.9.9".parse().unwrap();
    for _ in 0..3 {
        assert!(locked(s.authenticate(mapped, b"ghost", b"x")).is_none());
    }
    assert_eq!(
        locked(s.authenticate(v4, b"svc", b"good")),
        Some("auth.max_unknown_user_failures")
    );
    // Many hosts of one /64 fill no more than one address entry (and user entries per
    // name): the table is not flooded.
    let s = lockout_security(1000, 0, 1000);
    for i in 0..500u128 {
        let a = IpAddr::V6(std::net::Ipv6Addr::from(
            0x2001_0db8_0000_0007_0000_0000_0000_0000u128 + i,
        ));
        let _ = s.authenticate(a, b"ghost", b"x");
    }
    assert_eq!(s.lockout.tracked(), 1);
}

#[test]
fn a_huge_lockout_neither_panics_nor_disables_logins() {
    // Config refuses lockout_secs above a day; a Security built without that check
    // (or before it existed: `now + lockout` overflowed and panicked under the mutex,
    // poisoning it for every later AUTH) still works.
    let mut cfg = crate::config::AuthConfig {
        mode: Some(crate::config::AuthMode::Users),
        max_failures: 1,
        failure_window_secs: u64::MAX,
        lockout_secs: u64::MAX,
        ..Default::default()
    };
    cfg.users.push(crate::config::UserConfig {
        max_dedicated_connections: None,
        cross_slot: None,
        name: "svc".into(),
        rules: format!("on #{} ~* +@all", hash_password(b"good")),
    });
    let s = Security::new(&cfg).unwrap();
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    assert_eq!(
        s.authenticate(a, b"svc", b"bad").unwrap_err(),
        AuthError::WrongPass
    );
    assert_eq!(
        locked(s.authenticate(a, b"svc", b"good")),
        Some("auth.max_failures")
    );
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    assert!(s.authenticate(b, b"svc", b"good").is_ok());
}

#[test]
fn lockout_table_stays_bounded_and_keeps_locks_longest() {
    let s = lockout_security(2, 0, 64);
    let locked_addr: IpAddr = "10.0.0.1".parse().unwrap();
    for _ in 0..2 {
        let _ = s.authenticate(locked_addr, b"svc", b"bad");
    }
    // Thousands of names from thousands of addresses, one failure each.
    for i in 0..5000u32 {
        let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        let name = format!("name{i}-{}", "x".repeat(1000));
        let _ = s.authenticate(addr, name.as_bytes(), b"bad");
        assert!(s.lockout.tracked() <= 64, "{}", s.lockout.tracked());
    }
    // The lock outlived the counters pushed out around it.
    assert_eq!(
        locked(s.authenticate(locked_addr, b"svc", b"good")),
        Some("auth.max_failures")
    );
}

#[test]
fn parallel_guesses_get_no_more_than_max_failures() {
    let s = Arc::new(lockout_security(5, 0, 1000));
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let wrong = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for _ in 0..50 {
                    if matches!(s.authenticate(a, b"svc", b"bad"), Err(AuthError::WrongPass)) {
                        wrong.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // Every password actually checked was a counted failure: at most 5 per window.
    assert_eq!(wrong.into_inner(), 5);
}
