//! RANDOMKEY for a user limited to key patterns: one of the keys it may read, chosen
//! at random, or nil only when it has none.
//!
//! **Why.** A node's RANDOMKEY picks among all its keys; filtering that answer leaves a
//! user whose 200 keys sit among millions with nil nearly every time, which reads as
//! "you have no keys". So respgate looks for the user's keys itself, the way safe KEYS
//! does (`safe_keys`): `SCAN <cursor> [MATCH <the user's one readable pattern>] COUNT
//! 1000` on the client's own links, over the masters in random order, each from a
//! random cursor (a random place in the node's hash table) to the end of its table and
//! then once from the start. The first batch holding readable keys gives the answer (a
//! random one of them). Nil means every master was walked and held none.
//!
//! **Bounds.** At most [`MAX_SCAN_CALLS`] SCANs per RANDOMKEY; past that the client gets
//! an error naming the limit rather than a nil that would claim the user has no keys.
//! Memory: one SCAN batch at a time. The search holds one of its user's keyspace walks
//! in flight (`guards.max_keyspace_walks_per_user`) until it is done.

use crate::acl::{User, READ};
use crate::cluster::keyspace::{self, scan_step};
use crate::cluster::Cluster;
use crate::guards::in_flight::WalkHold;
use crate::protocol::refusal::Refusal;
use crate::protocol::reply;
use bytes::Bytes;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use std::sync::Arc;
use tokio::sync::oneshot;

/// SCAN calls one RANDOMKEY may make before it gives up with an error.
pub const MAX_SCAN_CALLS: usize = 256;

/// Starts RANDOMKEY over `user`'s readable keys; the reply arrives on the receiver.
pub fn start(
    cluster: Arc<Cluster>,
    client_id: u64,
    resp3: bool,
    user: Arc<User>,
    hold: WalkHold,
) -> oneshot::Receiver<Bytes> {
    crate::workers::spawn_answer(async move {
        let answer = run(&cluster, client_id, resp3, &user).await;
        drop(hold); // the walk's place, held until it is done
        answer
    })
}

/// The MATCH pattern for SCAN: the user's only readable pattern, else none (several
/// patterns cannot be one MATCH; the keys are then filtered here).
fn match_pattern(user: &User) -> Option<Vec<u8>> {
    let mut readable = user
        .acl
        .keys
        .iter()
        .filter(|(_, perms)| perms & READ == READ);
    match (readable.next(), readable.next()) {
        (Some((pattern, _)), None) => Some(pattern.glob_text()),
        _ => None,
    }
}

async fn run(cluster: &Cluster, client_id: u64, resp3: bool, user: &User) -> Bytes {
    let null = || Bytes::from_static(if resp3 { b"_\r\n" } else { b"$-1\r\n" });
    if !user.acl.keys.iter().any(|(_, perms)| perms & READ == READ) {
        return null();
    }
    let mut masters: Vec<_> = {
        match keyspace::masters(cluster) {
            Some(m) => m,
            None => return Refusal::NoNodeKnown.reply(),
        }
    };
    masters.shuffle(&mut rand::rng());
    let pattern = match_pattern(user);
    let mut calls = 0;
    for node in masters {
        // From a random place to the end of the table, then the whole table once.
        let start: u64 = rand::rng().random();
        for first in [start.to_string(), "0".to_string()] {
            let mut cursor = Bytes::from(first);
            loop {
                if calls == MAX_SCAN_CALLS {
                    return Refusal::RandomKeyNotFound(MAX_SCAN_CALLS).reply();
                }
                calls += 1;
                let step = scan_step(&node, client_id, &cursor, pattern.as_deref(), b"1000");
                let (next, batch) = match step.await {
                    Ok(step) => step,
                    Err(e) => return e.reply("RANDOMKEY", &node),
                };
                let readable: Vec<&Bytes> = batch
                    .iter()
                    .filter(|k| user.acl.key_allowed(k, READ))
                    .collect();
                if let Some(key) = readable.choose(&mut rand::rng()) {
                    return reply::bulk(key);
                }
                if &next[..] == b"0" {
                    break;
                }
                cursor = next;
            }
        }
    }
    null()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Acl;

    #[test]
    fn one_readable_pattern_is_scans_match_several_are_filtered_here() {
        let user = |rules: &str| User::new("u", Acl::parse(rules).unwrap());
        assert_eq!(
            match_pattern(&user("on ~cache:search:* +@all")),
            Some(b"cache:search:*".to_vec())
        );
        assert_eq!(
            match_pattern(&user("on %R~a:* %W~b:* +@all")),
            Some(b"a:*".to_vec())
        );
        assert_eq!(match_pattern(&user("on ~a:* ~b:* +@all")), None);
        assert_eq!(
            match_pattern(&user("on ~a:[xy]? +@all")),
            Some(b"a:[xy]?".to_vec())
        );
    }
}
