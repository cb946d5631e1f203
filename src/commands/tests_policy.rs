//! The policy against the real `COMMAND` reply of redis-server 7.0.15.

use super::policy::*;
use super::tests::table;
use crate::protocol::OwnedArgs;

/// Rows for commands of later Redis versions (absent from 7.0).
const NEWER: &[&str] = &["waitaof"];

fn class(name: &str) -> Class {
    let t = table();
    t.policy(t.get(name.as_bytes()).unwrap_or_else(|| panic!("{name}")))
        .class
}

fn row(name: &str) -> Row {
    let t = table();
    t.policy(t.get(name.as_bytes()).unwrap())
}

#[test]
fn every_row_names_a_command() {
    let t = table();
    let exists = |n: &str| match n.strip_suffix("|*") {
        Some(family) => t.get(family.as_bytes()).is_some_and(|c| c.is_container()),
        None => t.get(n.as_bytes()).is_some(),
    };
    let names = CLASSES
        .iter()
        .map(|(n, _)| *n)
        .chain(NOT_IN_MULTI.iter().copied())
        .chain(IMMEDIATE_IN_MULTI.iter().copied())
        .chain(IN_SUBSCRIBED_MODE.iter().copied())
        .chain(ACL_CHECKS.iter().map(|(n, _)| *n));
    for name in names {
        assert!(exists(name) || NEWER.contains(&name), "no command {name:?}");
    }
}

#[test]
fn every_explicit_class_takes_effect_on_redis_7_0() {
    let t = table();
    for (name, want) in CLASSES {
        if name.ends_with("|*") || NEWER.contains(name) {
            continue;
        }
        assert_eq!(class(name), *want, "{name}: its gate does not hold");
    }
    // A family row covers the subcommands without their own.
    for info in t.all().filter(|c| c.name.starts_with("client|")) {
        assert_eq!(
            t.policy(info).class,
            Class::Local(Local::Client),
            "{}",
            info.name
        );
    }
    for info in t.all().filter(|c| c.name.starts_with("cluster")) {
        let want = Class::Refused(RefuseReason::ClusterDisabled);
        assert_eq!(t.policy(info).class, want, "{}", info.name);
    }
}

#[test]
fn the_plain_keyed_path_is_what_it_was() {
    // Before the table, respgate answered first (and paid a guard's token first) for
    // blocking, pub/sub and keyless commands and MOVE; everything else took the plain
    // keyed path. Transaction and subscription commands never get there.
    for info in table().all() {
        let c = table().policy(info).class;
        if matches!(
            c,
            Class::Transaction(_) | Class::Subscribe(_) | Class::Unsubscribe(_)
        ) {
            continue;
        }
        let special =
            info.is_blocking() || info.is_pubsub() || info.has_no_keys() || info.name == "move";
        assert_eq!(!c.is_plain_keyed(), special, "{}", info.name);
    }
}

#[test]
fn transaction_class_is_the_category() {
    for info in table().all() {
        let tx = matches!(table().policy(info).class, Class::Transaction(_));
        assert_eq!(tx, info.in_acl_category(b"transaction"), "{}", info.name);
        assert_ne!(table().policy(info).class, Class::Transaction(Tx::Other));
    }
}

#[test]
fn derived_classes() {
    assert_eq!(class("get"), Class::Keyed);
    assert_eq!(class("set"), Class::Keyed);
    assert_eq!(class("eval"), Class::Keyed);
    assert_eq!(class("blpop"), Class::Blocking(Block::Always));
    assert_eq!(class("bzpopmin"), Class::Blocking(Block::Always));
    assert_eq!(class("lastsave"), Class::Keyless);
    assert_eq!(class("command|getkeys"), Class::Keyless);
    assert_eq!(class("pubsub|help"), Class::Keyless);
    assert_eq!(class("multi"), Class::Transaction(Tx::Multi));
}

#[test]
fn notable_rows() {
    assert_eq!(
        class("mget"),
        Class::SplitBySlot {
            layout: Layout::Keys,
            merge: MergeKind::ByPosition
        }
    );
    assert_eq!(class("msetnx"), Class::AllOrNothing);
    assert_eq!(class("xread"), Class::Blocking(Block::WithBlockOption));
    assert_eq!(class("dbsize"), Class::FanOut(MergeKind::Sum));
    assert_eq!(class("move"), Class::Refused(RefuseReason::SingleDatabase));
    assert_eq!(class("subscribe"), Class::Subscribe(Channels::Channel));
    assert_eq!(class("publish"), Class::Local(Local::Publish));
    assert_eq!(row("ping").multi, Multi::Queue);
    assert!(row("ping").subscribed);
    assert!(!row("get").subscribed);
    assert_eq!(row("quit").multi, Multi::Immediate);
    assert_eq!(row("client|setname").multi, Multi::Refuse);
    assert_eq!(row("config|get").multi, Multi::Refuse);
    assert_eq!(row("command|count").multi, Multi::Queue);
    assert_eq!(row("select").multi, Multi::SelectZero);
    assert_eq!(row("flushdb").acl, AclCheck::WritesAllKeys);
    assert_eq!(row("psubscribe").acl, AclCheck::AllPatterns);
    assert_eq!(row("get").acl, AclCheck::Plain);
}

#[test]
fn no_fan_out_merges_by_position() {
    for (name, c) in CLASSES {
        assert_ne!(*c, Class::FanOut(MergeKind::ByPosition), "{name}");
    }
}

#[test]
fn select_queues_only_database_zero() {
    let q = |a: &[&str]| Multi::SelectZero.queueable(OwnedArgs::new(a).args());
    assert!(q(&["SELECT", "0"]));
    assert!(!q(&["SELECT", "1"]));
    assert!(!q(&["SELECT", "x"]));
}

#[test]
fn xread_blocks_only_with_block_before_streams() {
    let b = |a: &[&str]| Block::WithBlockOption.blocks(OwnedArgs::new(a).args());
    assert!(b(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]));
    assert!(!b(&["XREAD", "STREAMS", "block", "0"]));
}

#[test]
fn refusal_texts() {
    assert_eq!(
        RefuseReason::NodeOnly.refusal("shutdown").to_string(),
        "ERR respgate: SHUTDOWN is not allowed through the proxy; run it on a node"
    );
    let Class::Refused(r) = class("function|stats") else {
        panic!()
    };
    assert_eq!(
        r.refusal("function|stats").to_string(),
        "ERR respgate: FUNCTION STATS is not supported yet (it would need every master's running script)"
    );
}
