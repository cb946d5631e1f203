//! KEYS served by SCAN (a guard rule's `rewrite = "scan"`): no node runs KEYS, so none
//! blocks its event loop walking its whole keyspace at once.
//!
//! A task walks each master's keyspace with `SCAN cursor MATCH pattern COUNT 1000` on
//! the client's own links until the cursor comes back to 0, and answers with the union
//! (an array, as KEYS). Past `max_keys_reply` keys it stops and answers an error
//! instead, so respgate's memory stays bounded whatever the keyspace. Keys the client's
//! user may not read are left out, as for KEYS.
//!
//! **Cost.** The same as KEYS for the nodes in total (every key of every master is
//! visited once), but in steps of `COUNT 1000`: each node's event loop is held about a
//! millisecond per step instead of the whole walk at once, so other tenants' commands
//! run between the steps. A walk holds one of its user's keyspace walks in flight
//! (`guards.max_keyspace_walks_per_user`) until it is done.

use crate::acl::{User, READ};
use crate::cluster::keyspace::{self, scan_step};
use crate::cluster::Cluster;
use crate::guards::in_flight::WalkHold;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply::{put_array_header, put_bulk};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Starts KEYS `pattern` as SCANs; the reply arrives on the receiver.
pub fn start(
    cluster: Arc<Cluster>,
    client_id: u64,
    pattern: Bytes,
    max: usize,
    (filter, hide_internal): (Option<Arc<User>>, bool),
    hold: WalkHold,
) -> oneshot::Receiver<Bytes> {
    crate::workers::spawn_answer(async move {
        let answer = run(
            &cluster,
            client_id,
            &pattern,
            max,
            (filter.as_deref(), hide_internal),
        )
        .await;
        drop(hold); // the walk's place, held until it is done
        answer
    })
}

async fn run(
    cluster: &Cluster,
    client_id: u64,
    pattern: &[u8],
    max: usize,
    (filter, hide_internal): (Option<&User>, bool),
) -> Bytes {
    let Some(masters) = keyspace::masters(cluster) else {
        return Refusal::NoNodeKnown.reply();
    };
    let mut keys: Vec<Bytes> = Vec::new();
    let mut bytes = 0usize;
    for node in masters {
        let mut cursor = Bytes::from_static(b"0");
        loop {
            let step = scan_step(&node, client_id, &cursor, Some(pattern), b"1000");
            let (next, batch) = match step.await {
                Ok(step) => step,
                Err(e) => return e.reply("KEYS", &node),
            };
            for k in batch {
                if filter.is_some_and(|u| !u.acl.key_allowed(&k, READ))
                    || (hide_internal && super::cross_slot::internal::is_internal(&k))
                {
                    continue;
                }
                if keys.len() >= max {
                    metrics::counter!("respgate_safe_keys_overflow_total").increment(1);
                    return Refusal::TooManyKeys(max).reply();
                }
                bytes += k.len();
                keys.push(k);
            }
            if &next[..] == b"0" {
                break;
            }
            cursor = next;
        }
    }
    let mut out = BytesMut::with_capacity(bytes + keys.len() * 16 + 16);
    put_array_header(&mut out, keys.len());
    for k in &keys {
        put_bulk(&mut out, k);
    }
    out.freeze()
}
