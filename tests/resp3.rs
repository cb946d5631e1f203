//! RESP3: HELLO 3 switches a client to RESP3, replies keep their RESP3 types, and
//! pub/sub messages arrive as pushes.

mod support;

use support::{show, RawConn};

#[tokio::test]
async fn hello_3_gives_typed_replies_like_redis() {
    let proxy = support::proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let hello = show(&c.command(&["HELLO", "3"]).await);
    assert!(
        hello.starts_with("%7\\r\\n$6\\r\\nserver\\r\\n$5\\r\\nredis\\r\\n"),
        "{hello}"
    );
    assert!(hello.contains("$5\\r\\nproto\\r\\n:3\\r\\n"), "{hello}");
    assert!(
        hello.contains("$4\\r\\nmode\\r\\n$10\\r\\nstandalone\\r\\n"),
        "{hello}"
    );

    c.command(&["DEL", "r3:{h}", "r3:{s}", "r3:{z}"]).await;
    c.command(&["HSET", "r3:{h}", "f", "v"]).await;
    assert_eq!(
        show(&c.command(&["HGETALL", "r3:{h}"]).await),
        "%1\\r\\n$1\\r\\nf\\r\\n$1\\r\\nv\\r\\n"
    );
    c.command(&["SADD", "r3:{s}", "a"]).await;
    assert_eq!(
        show(&c.command(&["SMEMBERS", "r3:{s}"]).await),
        "~1\\r\\n$1\\r\\na\\r\\n"
    );
    c.command(&["ZADD", "r3:{z}", "1.5", "m"]).await;
    assert_eq!(
        show(&c.command(&["ZSCORE", "r3:{z}", "m"]).await),
        ",1.5\\r\\n"
    );
    assert_eq!(show(&c.command(&["GET", "r3:nokey"]).await), "_\\r\\n");

    // HELLO 2 goes back to RESP2.
    let hello2 = show(&c.command(&["HELLO", "2"]).await);
    assert!(hello2.starts_with("*14\\r\\n"), "{hello2}");
    assert_eq!(
        show(&c.command(&["HGETALL", "r3:{h}"]).await),
        "*2\\r\\n$1\\r\\nf\\r\\n$1\\r\\nv\\r\\n"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn resp3_subscribers_get_pushes_and_may_run_commands() {
    let proxy = support::proxy_for_shared().await;
    let addr = proxy.local_addr();
    let mut sub = RawConn::connect(addr).await;
    sub.command(&["HELLO", "3"]).await;
    assert_eq!(
        show(&sub.command(&["SUBSCRIBE", "r3:chan"]).await),
        ">3\\r\\n$9\\r\\nsubscribe\\r\\n$7\\r\\nr3:chan\\r\\n:1\\r\\n"
    );
    // Unlike RESP2, a RESP3 client may run ordinary commands while subscribed.
    assert_eq!(show(&sub.command(&["PING"]).await), "+PONG\\r\\n");
    let mut publisher = RawConn::connect(addr).await;
    publisher.command(&["PUBLISH", "r3:chan", "hello"]).await;
    assert_eq!(
        show(&sub.read_reply().await),
        ">3\\r\\n$7\\r\\nmessage\\r\\n$7\\r\\nr3:chan\\r\\n$5\\r\\nhello\\r\\n"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_redis_crate_works_over_resp3() {
    let proxy = support::proxy_for_shared().await;
    let client =
        redis::Client::open(format!("redis://{}/?protocol=resp3", proxy.local_addr())).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg("r3:crate")
        .arg("f")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let map: redis::Value = redis::cmd("HGETALL")
        .arg("r3:crate")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        matches!(map, redis::Value::Map(ref m) if m.len() == 1),
        "{map:?}"
    );
    let score: redis::Value = redis::cmd("ZSCORE")
        .arg("r3:nozset")
        .arg("m")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(score, redis::Value::Nil);
    proxy.shutdown().await;
}
