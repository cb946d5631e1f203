//! Shard channels through respgate: SSUBSCRIBE / SUNSUBSCRIBE / SPUBLISH as a Redis 7.0
//! cluster node serves them to a client, with one backend subscription per shard channel
//! (on the master of its slot) shared by every respgate client.
//!
//! Replies are compared byte for byte with a real node: the same commands go to the
//! channel's owner directly (a "reference" connection) and through respgate; an SPUBLISH
//! reaches both, since respgate's subscription is on that same node. Backend
//! subscriptions are counted with `PUBSUB SHARDNUMSUB` asked directly of the nodes.

mod support;

use devcluster::{DevCluster, DevClusterOptions};
use respgate::cluster::key_slot;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

const CROSSSLOT: &str = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
/// Anti-hang bound, never a timing assertion.
const EVENTUALLY: Duration = Duration::from_secs(20);

/// A hash tag no other test (nor an earlier run) uses: channels `{tag}...` share a slot.
fn tag(name: &str) -> String {
    format!("{{ssp{}:{name}}}", std::process::id())
}

fn smessage(channel: &str, payload: &str) -> Vec<u8> {
    encode_command(&["smessage", channel, payload])
}

/// `PUBSUB SHARDNUMSUB channel` asked directly of `node`.
async fn shardnumsub(node: SocketAddr, channel: &str) -> i64 {
    let mut conn = RawConn::connect(node).await;
    trailing_int(&conn.command(&["PUBSUB", "SHARDNUMSUB", channel]).await)
}

#[tokio::test]
async fn ssubscribe_spublish_and_sunsubscribe_are_byte_identical_to_redis() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let t = tag("basic");
    let (a, b, key) = (format!("{t}a"), format!("{t}b"), format!("{t}key"));
    let plain = format!("{t}plain");
    let owner = shared_owner_of(&a);
    let mut pair = Pair::new(addr, owner).await;
    let mut publisher = RawConn::connect(addr).await;

    // Not subscribed: SUNSUBSCRIBE answers with a null channel, or each channel, count 0.
    pair.expect(&["SUNSUBSCRIBE"], &confirmation("sunsubscribe", None, 0))
        .await;
    pair.expect(
        &["SUNSUBSCRIBE", &a],
        &confirmation("sunsubscribe", Some(&a), 0),
    )
    .await;

    // Two confirmations for one SSUBSCRIBE, counting up.
    pair.send(&["SSUBSCRIBE", &a, &b]).await;
    let got = pair.read("SSUBSCRIBE a b (1)").await;
    assert_eq!(show(&got), show(&confirmation("ssubscribe", Some(&a), 1)));
    let got = pair.read("SSUBSCRIBE a b (2)").await;
    assert_eq!(show(&got), show(&confirmation("ssubscribe", Some(&b), 2)));

    // SPUBLISH from another respgate client: respgate's subscriber plus the reference
    // connection.
    let reply = publisher.command(&["SPUBLISH", &a, "hello"]).await;
    assert_eq!(show(&reply), ":2\\r\\n");
    let got = pair.read("smessage on a").await;
    assert_eq!(show(&got), show(&smessage(&a, "hello")));

    // A plain SUBSCRIBE counts channels and patterns only, as Redis 7.0 does.
    pair.expect(
        &["SUBSCRIBE", &plain],
        &confirmation("subscribe", Some(&plain), 1),
    )
    .await;
    // Subscribed mode, and PING's pub/sub form.
    pair.send(&["GET", &key]).await;
    let got = pair.read("GET while subscribed").await;
    assert!(
        got.starts_with(b"-ERR Can't execute 'get'"),
        "{}",
        show(&got)
    );
    pair.expect(&["PING"], b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        .await;

    // SUNSUBSCRIBE one: its messages stop, the other's keep coming.
    pair.expect(
        &["SUNSUBSCRIBE", &a],
        &confirmation("sunsubscribe", Some(&a), 1),
    )
    .await;
    publisher.command(&["SPUBLISH", &a, "not for you"]).await;
    publisher.command(&["SPUBLISH", &b, "still yours"]).await;
    let got = pair.read("smessage on b").await;
    assert_eq!(show(&got), show(&smessage(&b, "still yours")));

    // Channels in different slots: CROSSSLOT, for SSUBSCRIBE and SUNSUBSCRIBE alike.
    let elsewhere = (0..)
        .map(|i| format!("other{i}"))
        .find(|c| key_slot(c.as_bytes()) != key_slot(a.as_bytes()))
        .unwrap();
    pair.expect(&["SSUBSCRIBE", &a, &elsewhere], CROSSSLOT.as_bytes())
        .await;
    pair.expect(&["SUNSUBSCRIBE", &b, &elsewhere], CROSSSLOT.as_bytes())
        .await;

    // No plain channel left, but a shard channel: still in subscribed mode.
    pair.expect(
        &["UNSUBSCRIBE"],
        &confirmation("unsubscribe", Some(&plain), 0),
    )
    .await;
    pair.send(&["GET", &key]).await;
    let got = pair.read("GET while shard-subscribed").await;
    assert!(
        got.starts_with(b"-ERR Can't execute 'get'"),
        "{}",
        show(&got)
    );

    // SUNSUBSCRIBE without arguments: every shard channel; then normal commands again.
    pair.expect(
        &["SUNSUBSCRIBE"],
        &confirmation("sunsubscribe", Some(&b), 0),
    )
    .await;
    pair.expect(&["GET", &key], b"$-1\r\n").await;
    pair.expect(&["SUNSUBSCRIBE"], &confirmation("sunsubscribe", None, 0))
        .await;

    // Nothing remains on the backend but the reference connection's nothing.
    wait_for("respgate's subscription to b", 0, || shardnumsub(owner, &b)).await;
    wait_for("respgate's subscription to a", 0, || shardnumsub(owner, &a)).await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_hundred_clients_on_one_shard_channel_share_one_backend_subscription() {
    const CLIENTS: usize = 100;
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let channel = format!("{}ch", tag("hundred"));
    let owner = shared_owner_of(&channel);

    let mut subscribers = subscribe_many(addr, "SSUBSCRIBE", &channel, CLIENTS).await;

    // One subscription on the owner, none anywhere else.
    assert_eq!(shardnumsub(owner, &channel).await, 1, "owner {owner}");
    for node in with_shared_cluster(|c| c.seeds()) {
        if node != owner {
            assert_eq!(shardnumsub(node, &channel).await, 0, "node {node}");
        }
    }
    // Through respgate, the introspection counts respgate's clients.
    let mut c = RawConn::connect(addr).await;
    assert_eq!(
        show(
            &c.command(&["PUBSUB", "SHARDNUMSUB", &channel, "nobody"])
                .await
        ),
        show(&numsub_reply(&[(&channel, CLIENTS as i64), ("nobody", 0)]))
    );
    let pattern = format!("{}*", tag("hundred"));
    assert_eq!(
        show(&c.command(&["PUBSUB", "SHARDCHANNELS", &pattern]).await),
        show(&encode_command(&[&channel]))
    );

    // One SPUBLISH: one receiver on the node, every client gets the message, and the
    // count is the clients', as if they were subscribed on the node themselves.
    assert_eq!(
        show(&c.command(&["SPUBLISH", &channel, "all"]).await),
        format!(":{CLIENTS}\\r\\n")
    );
    for (i, s) in subscribers.iter_mut().enumerate() {
        let got = s.read_reply().await;
        assert_eq!(show(&got), show(&smessage(&channel, "all")), "client {i}");
    }
    // CLIENT LIST shows the shard subscriptions.
    let list = c.command(&["CLIENT", "LIST", "TYPE", "pubsub"]).await;
    let list = String::from_utf8_lossy(&list);
    assert_eq!(list.matches("ssub=1 ").count(), CLIENTS, "{list}");

    drop(subscribers);
    wait_for("respgate's subscription once all left", 0, || {
        shardnumsub(owner, &channel)
    })
    .await;
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_resp3_client_gets_shard_confirmations_and_messages_as_pushes() {
    let proxy = proxy_for_shared().await;
    let addr = proxy.local_addr();
    let channel = format!("{}ch", tag("resp3"));
    let key = format!("{}key", tag("resp3"));
    let owner = shared_owner_of(&channel);
    let mut pair = Pair::new(addr, owner).await;
    for conn in [&mut pair.proxy, &mut pair.node] {
        let hello = conn.command(&["HELLO", "3"]).await;
        assert!(hello.starts_with(b"%7\r\n"), "{}", show(&hello));
    }
    pair.expect(
        &["SSUBSCRIBE", &channel],
        format!(
            ">3\r\n$10\r\nssubscribe\r\n${}\r\n{channel}\r\n:1\r\n",
            channel.len()
        )
        .as_bytes(),
    )
    .await;
    // Any command is allowed while subscribed over RESP3.
    pair.expect(&["GET", &key], b"_\r\n").await;
    let mut publisher = RawConn::connect(addr).await;
    publisher.command(&["SPUBLISH", &channel, "pushed"]).await;
    let got = pair.read("smessage push").await;
    assert_eq!(
        show(&got),
        show(
            format!(
                ">3\r\n$8\r\nsmessage\r\n${}\r\n{channel}\r\n$6\r\npushed\r\n",
                channel.len()
            )
            .as_bytes()
        )
    );
    pair.expect(
        &["SUNSUBSCRIBE"],
        format!(
            ">3\r\n$12\r\nsunsubscribe\r\n${}\r\n{channel}\r\n:0\r\n",
            channel.len()
        )
        .as_bytes(),
    )
    .await;
    proxy.shutdown().await;
}

/// Moves an empty `slot` from `from` to `to` (SETSLOT IMPORTING / MIGRATING, then NODE on
/// the target, the source and the rest, as `redis-cli --cluster reshard` does).
fn move_empty_slot(cluster: &DevCluster, slot: u16, from: SocketAddr, to: SocketAddr) {
    slot_move_begin(cluster, slot, from, to);
    slot_move_end(cluster, slot, from, to, |_| {});
}

/// When the channel's slot moves to another master, the old owner drops its shard
/// subscribers (Redis sends them `sunsubscribe`); respgate subscribes again on the new
/// owner, and its clients keep their subscription without noticing.
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_subscription_follows_its_slot_to_another_master() {
    let cluster = DevCluster::start(DevClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    let proxy = start_proxy(test_config(&cluster.seeds())).await;
    let addr = proxy.local_addr();
    let channel = format!("{}ch", tag("moving"));
    let slot = key_slot(channel.as_bytes());
    let source = cluster.master_for_slot(slot);
    let target = another_master(&cluster, source);
    let numsub = |node: SocketAddr| -> i64 {
        let r = cluster
            .command(node, &["PUBSUB", "SHARDNUMSUB", &channel])
            .unwrap();
        match r {
            devcluster::Reply::Array(items) => items[1].as_int().unwrap(),
            other => panic!("SHARDNUMSUB gave {other:?}"),
        }
    };

    let mut sub = RawConn::connect(addr).await;
    assert_eq!(
        show(&sub.command(&["SSUBSCRIBE", &channel]).await),
        show(&confirmation("ssubscribe", Some(&channel), 1))
    );
    assert_eq!(numsub(source), 1);

    move_empty_slot(&cluster, slot, source, target);

    // Published directly on the new owner, until respgate has subscribed there.
    let deadline = Instant::now() + EVENTUALLY;
    let mut direct = RawConn::connect(target).await;
    loop {
        let reply = direct.command(&["SPUBLISH", &channel, "moved"]).await;
        if trailing_int(&reply) == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "respgate did not subscribe on the new owner {target}: {}",
            show(&reply)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(numsub(source), 0, "old owner {source}");
    // The client saw nothing of the move: its next frame is the message.
    assert_eq!(
        show(&sub.read_reply().await),
        show(&smessage(&channel, "moved"))
    );
    // And SPUBLISH through respgate follows the slot too.
    let mut publisher = RawConn::connect(addr).await;
    assert_eq!(
        show(&publisher.command(&["SPUBLISH", &channel, "again"]).await),
        ":1\\r\\n"
    );
    assert_eq!(
        show(&sub.read_reply().await),
        show(&smessage(&channel, "again"))
    );
    proxy.shutdown().await;
}

/// After a failover (CLUSTER FAILOVER on the owner's replica) the subscriber keeps
/// getting the channel's messages, published on the promoted master. (Redis 7.0 keeps a
/// demoted master's shard subscriptions: it stays in the shard, and a shard's messages
/// reach every node of it.)
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_subscription_survives_a_failover() {
    let cluster = DevCluster::start(DevClusterOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test cluster: {e}"));
    let proxy = start_proxy(test_config(&cluster.seeds())).await;
    let addr = proxy.local_addr();
    let channel = format!("{}ch", tag("failover"));
    let slot = key_slot(channel.as_bytes());
    let old_master = cluster.master_for_slot(slot);
    let replica = cluster.replicas_of(old_master)[0];

    let mut sub = RawConn::connect(addr).await;
    assert_eq!(
        show(&sub.command(&["SSUBSCRIBE", &channel]).await),
        show(&confirmation("ssubscribe", Some(&channel), 1))
    );
    node_ok(&cluster, replica, &["CLUSTER", "FAILOVER"]);
    let deadline = Instant::now() + EVENTUALLY;
    while cluster.master_for_slot(slot) != replica {
        assert!(Instant::now() < deadline, "{replica} not promoted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Published directly on the promoted master until a message arrives.
    let mut direct = RawConn::connect(replica).await;
    let got = loop {
        direct.command(&["SPUBLISH", &channel, "promoted"]).await;
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), sub.read_reply()).await
        {
            break frame;
        }
        assert!(
            Instant::now() < deadline,
            "no message published on the promoted master {replica} reached the subscriber"
        );
    };
    assert_eq!(show(&got), show(&smessage(&channel, "promoted")));
    // Through respgate too.
    let mut publisher = RawConn::connect(addr).await;
    publisher
        .command(&["SPUBLISH", &channel, "via respgate"])
        .await;
    loop {
        let frame = sub.read_reply().await;
        if frame != smessage(&channel, "promoted") {
            assert_eq!(show(&frame), show(&smessage(&channel, "via respgate")));
            break;
        }
    }
    proxy.shutdown().await;
}
