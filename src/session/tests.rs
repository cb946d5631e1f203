//! The request pipeline driven without a socket: requests pushed into the queue (or
//! framed from bytes put in the read buffer), replies resolved in any order through
//! their real reply channels, and the output buffer checked. A cluster that has not
//! been discovered yet stands in for the backends: nothing is sent anywhere, and a
//! request re-sent to it fails the way a real one would (`no node has answered
//! discovery yet`).

use super::dedicated::Pin;
use super::hedge::Hedge;
use super::pending::{HeadEvent, Lane, Pending, Remote};
use super::{Bounds, ClientMeta, Session, SessionContext};
use crate::cluster::Cluster;
use crate::config::{AuthConfig, ClusterConfig, GuardsConfig, ScriptsConfig};
use crate::protocol::scan::RequestLimits;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn context(retry_deadline: Duration) -> Arc<SessionContext> {
    let cluster = Cluster::new(ClusterConfig::default());
    let security = Arc::new(crate::acl::Security::new(&AuthConfig::default()).unwrap());
    let guards = Arc::new(crate::guards::Guards::new(&GuardsConfig::default(), &[]).unwrap());
    let scripts = Arc::new(crate::scripts::Scripts::new(
        &ScriptsConfig::default(),
        security.clone(),
        guards.clone(),
        None,
    ));
    Arc::new(SessionContext {
        cluster: cluster.clone(),
        bounds: Bounds {
            limits: RequestLimits {
                max_bulk: 512 << 20,
                max_request: 512 << 20,
                pre_auth: false,
            },
            output_limits: crate::budget::OutputLimits {
                replies: 64 << 20,
                messages: 64 << 20,
            },
            max_pending: 1024,
            max_transaction: 1 << 20,
            max_client_name: 256,
            idle_timeout: None,
            stall_timeout: Duration::from_secs(30),
            retry_deadline,
            max_redirects: 5,
            pubsub_queue: 1000,
        },
        client_buffers: crate::budget::ClientBuffers::new(1 << 30),
        clients: Default::default(),
        dedicated: super::DedicatedQuota::new(10, 10),
        pubsub: crate::pubsub::PubSubHub::start(cluster),
        registry: Default::default(),
        security,
        read_policy: None,
        guards,
        scripts,
        cross_slot: Default::default(),
        pause: Default::default(),
    })
}

fn session(retry_deadline: Duration) -> Session {
    let addr = "127.0.0.1:1".parse().unwrap();
    let meta = ClientMeta {
        id: 1,
        peer: addr,
        local: addr,
        connected_at: Instant::now(),
        tls: false,
        cert_identity: None,
        client_cert: false,
    };
    Session::new(meta, context(retry_deadline)).0
}

/// A request forwarded for `slot`, whose reply the test sends through the returned
/// sender.
fn remote(slot: u16) -> (Remote, crate::backend::reply::ReplyTx) {
    let (tx, rx) = crate::backend::reply::channel();
    let r = Remote {
        rx,
        request: Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        slot: Some(slot),
        redirects: 0,
        retries: 0,
        started: Instant::now(),
        retry_at: None,
        latency: metrics::Histogram::noop(),
        replies: 1,
        dedicated: None,
        replica: None,
        hedge: Hedge::Off,
        bound: None,
        hidden: 0,
        ryw_master: None,
        run_as: None,
        script: None,
        part_of: None,
        _charge: None,
    };
    (r, tx)
}

fn answer(tx: crate::backend::reply::ReplyTx, reply: &'static [u8]) {
    let _ = tx.send(Ok(Bytes::from_static(reply)));
}

#[tokio::test]
async fn replies_leave_in_request_order_whichever_answers_first() {
    let mut s = session(Duration::from_secs(1));
    let mut senders = Vec::new();
    for slot in 0..3 {
        let (r, tx) = remote(slot);
        s.pipe.pending.push_back(Pending::Remote(r));
        senders.push(tx);
    }
    s.pipe
        .pending
        .push_back(Pending::Ready(Bytes::from_static(b"+local\r\n")));
    let (third, second, first) = (
        senders.pop().unwrap(),
        senders.pop().unwrap(),
        senders.pop().unwrap(),
    );
    answer(third, b"$1\r\nc\r\n");
    s.drain_ready_heads();
    assert!(
        s.io.out.is_empty(),
        "the third reply waits for the first two"
    );
    answer(first, b"$1\r\na\r\n");
    s.drain_ready_heads();
    assert_eq!(&s.io.out[..], b"$1\r\na\r\n");
    answer(second, b"$1\r\nb\r\n");
    s.drain_ready_heads();
    assert_eq!(
        &s.io.out[..],
        b"$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n+local\r\n"
    );
    assert!(s.pipe.pending.is_empty());
    // Their links let go: the answered requests' reply slots serve the next ones.
    assert_eq!(s.slots.len(), 3);
}

#[tokio::test]
async fn a_muted_reply_keeps_its_place_and_is_dropped() {
    let mut s = session(Duration::from_secs(1));
    let (muted, muted_tx) = remote(1);
    let (shown, shown_tx) = remote(2);
    s.pipe.pending.push_back(Pending::MuteNext);
    s.pipe.pending.push_back(Pending::Remote(muted));
    s.pipe.pending.push_back(Pending::Remote(shown));
    answer(shown_tx, b"+shown\r\n");
    s.drain_ready_heads();
    assert!(s.io.out.is_empty());
    answer(muted_tx, b"+muted\r\n");
    s.drain_ready_heads();
    assert_eq!(&s.io.out[..], b"+shown\r\n");
}

#[tokio::test]
async fn a_redirect_at_the_head_holds_every_later_reply() {
    let deadline = Duration::from_secs(2);
    let mut s = session(deadline);
    let (mut head, head_tx) = remote(3000);
    // Arrived long enough ago that its retries run out within a few backoffs.
    head.started = Instant::now() - deadline + Duration::from_millis(60);
    let (next, next_tx) = remote(1);
    s.pipe.pending.push_back(Pending::Remote(head));
    s.pipe.pending.push_back(Pending::Remote(next));
    answer(next_tx, b"+next\r\n");
    // A node respgate does not know yet: the head waits for a newer topology.
    answer(head_tx, b"-MOVED 3000 127.0.0.1:7000\r\n");
    s.drain_ready_heads();
    assert!(s.io.out.is_empty(), "nothing passes the redirected head");
    let Some(Pending::Remote(r)) = s.pipe.pending.front() else {
        panic!("the head stays queued");
    };
    assert!(r.retry_at.is_some() && r.retries == 1);
    // Its backoffs come due: re-sent each time, to a cluster still not discovered.
    for _ in 0..8 {
        let waiting =
            matches!(s.pipe.pending.front(), Some(Pending::Remote(r)) if r.retry_at.is_some());
        if !waiting {
            break;
        }
        s.on_head_event(HeadEvent::RetryDue(0));
        s.drain_ready_heads();
    }
    assert_eq!(
        &s.io.out[..],
        &b"-CLUSTERDOWN respgate: no node has answered discovery yet\r\n+next\r\n"[..],
        "the head's final error first, then the later reply"
    );
    assert!(s.pipe.pending.is_empty());
}

#[tokio::test]
async fn requests_framed_from_the_read_buffer_answer_in_order() {
    let mut s = session(Duration::from_secs(1));
    // Inline, then multibulk; QUIT closes, so the request after it is never read.
    s.io.rbuf
        .extend_from_slice(b"PING\r\n*1\r\n$4\r\nQUIT\r\n*1\r\n$4\r\nPING\r\n");
    s.parse_requests();
    s.drain_ready_heads();
    assert_eq!(&s.io.out[..], &b"+PONG\r\n+OK\r\n"[..]);
    assert!(s.io.closing && !s.io.linger);
    assert_eq!(&s.io.rbuf[..], b"*1\r\n$4\r\nPING\r\n");
}

/// Before any node has answered (no command table), PING is answered here: a health
/// check sees the proxy alive. Everything else is refused with CLUSTERDOWN.
#[tokio::test]
async fn ping_is_answered_before_any_node_is_reached() {
    let mut s = session(Duration::from_secs(1));
    s.io.rbuf
        .extend_from_slice(b"PING\r\nPING hi\r\nPING a b\r\nGET k\r\n");
    s.parse_requests();
    s.drain_ready_heads();
    let down = "-CLUSTERDOWN The cluster is down (respgate has not reached any node yet)\r\n";
    assert_eq!(
        String::from_utf8_lossy(&s.io.out),
        format!("+PONG\r\n$2\r\nhi\r\n{down}{down}")
    );
}

#[tokio::test]
async fn a_protocol_error_answers_and_closes_lingering() {
    let mut s = session(Duration::from_secs(1));
    s.io.rbuf.extend_from_slice(b"*x\r\n*1\r\n$4\r\nPING\r\n");
    s.parse_requests();
    s.drain_ready_heads();
    assert!(s.io.out.starts_with(b"-ERR Protocol error"));
    assert!(s.io.closing && s.io.linger && s.io.rbuf.is_empty());
}

#[tokio::test]
async fn a_request_on_another_connection_waits_for_those_in_flight() {
    let mut s = session(Duration::from_secs(1));
    let (mut blocking, _tx) = remote(1);
    blocking.dedicated = Some(Pin::Blocking);
    s.pipe.pending.push_back(Pending::Remote(blocking));
    s.pipe.identity_used = true; // lanes are checked once a second lane was used
    assert!(s.must_hold((Lane::Shared, 0)));
    assert!(!s.must_hold((Lane::Own, 0)));
    s.pipe.pending.clear();
    assert!(!s.must_hold((Lane::Shared, 0)));
}
