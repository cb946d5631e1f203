//! CLIENT LIST / INFO / KILL speak about respgate's own clients.

mod support;

use std::time::Duration;
use support::{show, RawConn};

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn bulk_text(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply).into_owned();
    let body = text.split_once("\r\n").map(|(_, b)| b).unwrap_or("");
    body.trim_end_matches("\r\n").to_string()
}

#[tokio::test]
async fn client_list_shows_respgate_clients_with_name_and_last_command() {
    let proxy = support::proxy_for_shared().await;
    let addr = proxy.local_addr();
    let mut a = RawConn::connect(addr).await;
    let mut b = RawConn::connect(addr).await;
    assert_eq!(
        show(&a.command(&["CLIENT", "SETNAME", "inventory"]).await),
        "+OK\\r\\n"
    );
    a.command(&["SET", "cc:k", "v"]).await;
    b.command(&["GET", "cc:k"]).await;
    let list = bulk_text(&b.command(&["CLIENT", "LIST"]).await);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let a_line = lines
        .iter()
        .find(|l| field(l, "name") == Some("inventory"))
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(field(a_line, "cmd"), Some("set"));
    assert_eq!(field(a_line, "laddr"), Some(addr.to_string().as_str()));
    let b_line = lines.iter().find(|l| field(l, "name") == Some("")).unwrap();
    assert_eq!(field(b_line, "cmd"), Some("client|list"));
    // CLIENT INFO is this client's own line; CLIENT LIST ID filters.
    let info = bulk_text(&a.command(&["CLIENT", "INFO"]).await);
    assert_eq!(field(&info, "name"), Some("inventory"));
    let id = field(&info, "id").unwrap().to_string();
    let only = bulk_text(&b.command(&["CLIENT", "LIST", "ID", &id]).await);
    assert_eq!(only.lines().count(), 1);
    assert_eq!(field(&only, "id"), Some(id.as_str()));
    proxy.shutdown().await;
}

#[tokio::test]
async fn client_kill_disconnects_a_blocked_client_and_counts_it() {
    let proxy = support::proxy_for_shared().await;
    let addr = proxy.local_addr();
    let mut blocked = RawConn::connect(addr).await;
    let info = bulk_text(&blocked.command(&["CLIENT", "INFO"]).await);
    let id = field(&info, "id").unwrap().to_string();
    blocked
        .send(&support::encode_command(&["BLPOP", "cc:never", "0"]))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut admin = RawConn::connect(addr).await;
    assert_eq!(
        show(&admin.command(&["CLIENT", "KILL", "ID", "999999"]).await),
        ":0\\r\\n"
    );
    assert_eq!(
        show(&admin.command(&["CLIENT", "KILL", "ID", &id]).await),
        ":1\\r\\n"
    );
    blocked.expect_closed().await;
    // The old form names an address; an unknown one is an error, as in Redis.
    assert_eq!(
        show(&admin.command(&["CLIENT", "KILL", "127.0.0.1:1"]).await),
        "-ERR No such client\\r\\n"
    );
    // SKIPME yes (the default) spares the caller.
    let me = bulk_text(&admin.command(&["CLIENT", "INFO"]).await);
    let my_id = field(&me, "id").unwrap().to_string();
    assert_eq!(
        show(&admin.command(&["CLIENT", "KILL", "ID", &my_id]).await),
        ":0\\r\\n"
    );
    assert_eq!(show(&admin.command(&["PING"]).await), "+PONG\\r\\n");
    proxy.shutdown().await;
}

#[tokio::test]
async fn client_reply_off_on_and_skip_behave_as_in_redis() {
    let proxy = support::proxy_for_shared().await;
    let key = "cc:{reply}r";
    let script = |k: &str| -> Vec<u8> {
        support::encode_pipeline(&[
            &["SET", k, "1"],
            &["CLIENT", "REPLY", "OFF"],
            &["INCR", k],
            &["INCR", k],
            &["CLIENT", "REPLY", "ON"],
            &["GET", k],
            &["CLIENT", "REPLY", "SKIP"],
            &["INCR", k],
            &["GET", k],
        ])
    };
    let mut through = RawConn::connect(proxy.local_addr()).await;
    through.send(&script(key)).await;
    let got: Vec<String> = through
        .read_replies(4)
        .await
        .iter()
        .map(|r| show(r))
        .collect();
    let node_key = "cc:{reply}n";
    let mut direct = RawConn::connect(support::shared_owner_of(node_key)).await;
    direct.send(&script(node_key)).await;
    let want: Vec<String> = direct
        .read_replies(4)
        .await
        .iter()
        .map(|r| show(r))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        got,
        [
            "+OK\\r\\n",
            "+OK\\r\\n",
            "$1\\r\\n3\\r\\n",
            "$1\\r\\n4\\r\\n"
        ]
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn client_info_shows_the_protocol_after_hello() {
    let proxy = support::proxy_for_shared().await;
    let mut c = RawConn::connect(proxy.local_addr()).await;
    let info = bulk_text(&c.command(&["CLIENT", "INFO"]).await);
    assert_eq!(field(info.trim_end(), "resp"), Some("2"), "{info}");
    c.command(&["HELLO", "3"]).await;
    let info = bulk_text(&c.command(&["CLIENT", "INFO"]).await);
    assert_eq!(field(info.trim_end(), "resp"), Some("3"), "{info}");
    c.command(&["RESET"]).await;
    let info = bulk_text(&c.command(&["CLIENT", "INFO"]).await);
    assert_eq!(field(info.trim_end(), "resp"), Some("2"), "{info}");
    proxy.shutdown().await;
}
