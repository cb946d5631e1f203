//! The command policy against a real cluster's `COMMAND` reply: every command and
//! subcommand the nodes list is classified, every explicit row names a command that
//! exists (no typo rows), and the notable commands keep their classes.

mod support;

use respgate::commands::policy::{
    self, Block, Channels, Class, Layout, Local, MergeKind, Multi, RefuseReason, Tx, ACL_CHECKS,
    CLASSES, IMMEDIATE_IN_MULTI, IN_SUBSCRIBED_MODE, NOT_IN_MULTI,
};
use respgate::commands::CommandTable;
use support::{with_shared_cluster, RawConn};

/// Rows for commands of later Redis versions than the test cluster's 7.0.
const NEWER: &[&str] = &["waitaof"];

async fn cluster_table() -> CommandTable {
    let node = with_shared_cluster(|c| c.masters())[0];
    let raw = RawConn::connect(node).await.command(&["COMMAND"]).await;
    CommandTable::from_command_reply(&raw).expect("the node's COMMAND reply loads")
}

#[tokio::test]
async fn every_command_of_the_cluster_is_classified() {
    let table = cluster_table().await;
    let mut seen = 0;
    for info in table.all() {
        let row = table.policy(info);
        // The row is the explicit one where its gate holds, else the derived class.
        let want = policy::resolve(info, policy::explicit(&info.name), policy::derived(info));
        assert_eq!(row.class, want, "{}", info.name);
        if let Class::Transaction(tx) = row.class {
            assert_ne!(
                tx,
                Tx::Other,
                "{}: an unknown transaction command",
                info.name
            );
        }
        seen += 1;
    }
    assert_eq!(seen, table.id_count());
    assert!(seen > 300, "only {seen} commands");
}

#[tokio::test]
async fn every_explicit_row_names_a_command_of_the_cluster() {
    let table = cluster_table().await;
    let exists = |n: &str| match n.strip_suffix("|*") {
        Some(family) => table
            .get(family.as_bytes())
            .is_some_and(|c| c.is_container()),
        None => table.get(n.as_bytes()).is_some(),
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
    // And each explicit class takes effect on this server (its gate holds).
    for (name, class) in CLASSES {
        let Some(info) = table.get(name.as_bytes()) else {
            continue;
        };
        assert_eq!(table.policy(info).class, *class, "{name}");
    }
}

#[tokio::test]
async fn notable_commands_keep_their_class() {
    let table = cluster_table().await;
    let class = |name: &str| table.policy(table.get(name.as_bytes()).unwrap()).class;
    let row = |name: &str| table.policy(table.get(name.as_bytes()).unwrap());
    assert_eq!(class("get"), Class::Keyed);
    assert_eq!(class("set"), Class::Keyed);
    assert_eq!(class("evalsha"), Class::Keyed);
    assert_eq!(class("hscan"), Class::KeyScan);
    assert_eq!(
        class("mget"),
        Class::SplitBySlot {
            layout: Layout::Keys,
            merge: MergeKind::ByPosition
        }
    );
    assert_eq!(
        class("mset"),
        Class::SplitBySlot {
            layout: Layout::Pairs,
            merge: MergeKind::AllOk
        }
    );
    assert_eq!(
        class("del"),
        Class::SplitBySlot {
            layout: Layout::Keys,
            merge: MergeKind::Sum
        }
    );
    assert_eq!(class("msetnx"), Class::AllOrNothing);
    assert_eq!(class("blpop"), Class::Blocking(Block::Always));
    assert_eq!(class("xreadgroup"), Class::Blocking(Block::WithBlockOption));
    assert_eq!(class("time"), Class::Keyless);
    assert_eq!(class("ping"), Class::Local(Local::Ping));
    assert_eq!(class("client|list"), Class::Local(Local::Client));
    assert_eq!(class("scan"), Class::Local(Local::Scan));
    assert_eq!(class("keys"), Class::Local(Local::Keys));
    assert_eq!(class("dbsize"), Class::FanOut(MergeKind::Sum));
    assert_eq!(class("script|load"), Class::FanOut(MergeKind::First));
    assert_eq!(
        class("cluster|info"),
        Class::Refused(RefuseReason::ClusterDisabled)
    );
    assert_eq!(class("move"), Class::Refused(RefuseReason::SingleDatabase));
    assert_eq!(class("shutdown"), Class::Refused(RefuseReason::NodeOnly));
    assert_eq!(class("exec"), Class::Transaction(Tx::Exec));
    assert_eq!(class("ssubscribe"), Class::Subscribe(Channels::Shard));
    assert_eq!(class("punsubscribe"), Class::Unsubscribe(Channels::Pattern));
    assert_eq!(class("spublish"), Class::Local(Local::SPublish));
    assert_eq!(
        class("pubsub|shardnumsub"),
        Class::Local(Local::NumSub(Channels::Shard))
    );
    assert_eq!(row("get").multi, Multi::Queue);
    assert_eq!(row("select").multi, Multi::SelectZero);
    assert_eq!(row("reset").multi, Multi::Immediate);
    assert_eq!(row("keys").multi, Multi::Refuse);
    assert_eq!(row("function|list").multi, Multi::Refuse);
    assert!(row("unsubscribe").subscribed && row("quit").subscribed);
    assert!(!row("publish").subscribed);
}
