//! Opening a node connection: TCP or TLS, then the handshake the link's options ask
//! for (AUTH, READONLY, HELLO 3, CLIENT ID, PING, the identity switch), bounded by the
//! request timeout.

use super::framing;
use super::LinkOptions;
use crate::tls::BackendStream;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Connects to `addr` and runs the handshake `opts` asks for (AUTH, READONLY, HELLO 3,
/// CLIENT ID), ending with a PING: the connection counts only once the node answered.
pub(crate) async fn connect(addr: &str, opts: &LinkOptions) -> std::io::Result<BackendStream> {
    if let Some(id) = opts.identity.as_ref().filter(|id| id.is_retired()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("identity {} retired by a reload", id.user),
        ));
    }
    let mut stream =
        crate::tls::connect_node(addr, opts.tls.as_ref(), opts.connect_timeout).await?;
    let mut hello = BytesMut::new();
    let mut expected = 0;
    if let Some(auth) = opts.auth_command() {
        hello.extend_from_slice(&auth);
        expected += 1;
    }
    if opts.readonly {
        hello.extend_from_slice(b"*1\r\n$8\r\nREADONLY\r\n");
        expected += 1;
    }
    if opts.resp3 {
        hello.extend_from_slice(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
        expected += 1;
    }
    // The reply number that answers CLIENT ID, when asked.
    let id_reply = opts.client_id.as_ref().map(|_| {
        hello.extend_from_slice(b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n");
        expected += 1;
        expected - 1
    });
    // The connection only counts once the node has answered: a dying node's listening
    // socket still completes TCP handshakes and then resets them, and a request written
    // on such a connection would be reported Lost (maybe executed) though Redis never
    // read it. Failing here makes it NotSent, which the session retries. A node still
    // loading its data (-LOADING) is refused the same way.
    hello.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    expected += 1;
    // Last, the identity switch (after PING: the identity may not be allowed PING, HELLO
    // or CLIENT). A refusal there is PermissionDenied.
    let mut identity_replies = 0..0;
    if let Some(id) = &opts.identity {
        let first = expected;
        if let Some(setup) = &id.setup {
            hello.extend_from_slice(setup);
            expected += 1;
        }
        hello.extend_from_slice(&crate::protocol::reply::command([
            "AUTH",
            &*id.user,
            id.secret.as_str(),
        ]));
        expected += 1;
        identity_replies = first..expected;
    }
    {
        // A node busy with a slow script answers late but is not down: the handshake gets
        // the request timeout, not the connect timeout.
        tokio::time::timeout(opts.request_timeout, async {
            stream.write_all(&hello).await?;
            stream.flush().await?;
            let mut buf = BytesMut::with_capacity(256);
            let mut seen = 0;
            while seen < expected {
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(std::io::Error::other("closed during handshake"));
                }
                while let Some(len) = framing::handshake_reply(&buf, opts.max_reply_bytes)? {
                    let reply = buf.split_to(len);
                    if reply.first() == Some(&b'-') {
                        let text = String::from_utf8_lossy(&reply[1..len - 2]).into_owned();
                        if identity_replies.contains(&seen) {
                            let user = opts.identity.as_ref().map_or("", |i| &*i.user);
                            return Err(std::io::Error::new(
                                std::io::ErrorKind::PermissionDenied,
                                format!("running as node user {user} refused: {text}"),
                            ));
                        }
                        return Err(std::io::Error::other(format!("handshake refused: {text}")));
                    }
                    if Some(seen) == id_reply {
                        let id = crate::protocol::scan::parse_int(&reply[1..len - 2]);
                        if let (Some(slot), Some(id)) = (&opts.client_id, id) {
                            slot.store(id, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    seen += 1;
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))??;
    }
    Ok(stream)
}
