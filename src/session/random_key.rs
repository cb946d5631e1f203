//! RANDOMKEY through respgate: one key drawn as one Redis holding the whole keyspace
//! would draw it, each key about equally likely, nil only when there is none.
//!
//! **Any user.** Each master's RANDOMKEY is uniform over that master's keys, so respgate
//! asks every master's DBSIZE (at once, on the client's own links), draws a master with
//! probability proportional to its key count, and answers that master's RANDOMKEY. A
//! master that answers nil meanwhile (its keys were deleted or expired in between) drops
//! out of the draw, which is made again; nil when every master counted 0. Two round
//! trips instead of one: RANDOMKEY is no hot-path command, and taking "the first
//! non-empty master" made 200 calls over keys on 3 masters return one master's keys.
//!
//! **A user limited to key patterns.** A node's RANDOMKEY picks among all its keys;
//! filtering that answer leaves a
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

/// Starts RANDOMKEY for a user who may read every key: a master drawn by key count.
pub fn start_weighted(
    cluster: Arc<Cluster>,
    client_id: u64,
    resp3: bool,
) -> oneshot::Receiver<Bytes> {
    crate::workers::spawn_answer(async move { weighted(&cluster, client_id, resp3).await })
}

async fn weighted(cluster: &Cluster, client_id: u64, resp3: bool) -> Bytes {
    let Some(masters) = keyspace::masters(cluster) else {
        return Refusal::NoNodeKnown.reply();
    };
    let dbsize = reply::command([&b"DBSIZE"[..]]);
    let answers = keyspace::ask_all(&masters, client_id, false, &dbsize).await;
    let mut counts = Vec::with_capacity(masters.len());
    for (node, answer) in masters.iter().zip(answers) {
        let answer = match answer {
            Ok(a) => a,
            Err(why) => return link_failed(node, why),
        };
        match crate::protocol::value::integer(&answer) {
            Some(n) => counts.push(n.max(0) as u64),
            None if answer.first() == Some(&b'-') => return answer,
            None => return Refusal::Unmergeable.reply(),
        }
    }
    loop {
        let u: f64 = rand::rng().random();
        let Some(i) = draw(&counts, u) else { break };
        let node = &masters[i];
        let answer = match node
            .ask(client_id, resp3, reply::command([&b"RANDOMKEY"[..]]))
            .await
        {
            Ok(a) => a,
            Err(why) => return link_failed(node, why),
        };
        if !crate::protocol::value::is_null(&answer) {
            return answer; // a key, or the node's error
        }
        counts[i] = 0;
    }
    Bytes::from_static(if resp3 { b"_\r\n" } else { b"$-1\r\n" })
}

/// The index drawn with probability proportional to `counts[i]`, for `u` uniform in
/// [0, 1); None when every count is 0.
fn draw(counts: &[u64], u: f64) -> Option<usize> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let mut target = ((u * total as f64) as u64).min(total - 1);
    for (i, &n) in counts.iter().enumerate() {
        if target < n {
            return Some(i);
        }
        target -= n;
    }
    None
}

fn link_failed(node: &crate::backend::Node, why: String) -> Bytes {
    keyspace::ScanError::Link(why).reply("RANDOMKEY", node)
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
    fn a_master_is_drawn_by_its_key_count() {
        assert_eq!(draw(&[0, 0, 0], 0.5), None);
        assert_eq!(draw(&[0, 3, 0], 0.0), Some(1));
        assert_eq!(draw(&[0, 3, 0], 0.999), Some(1));
        // 1, 2 and 7 keys: [0, 0.1) the first, [0.1, 0.3) the second, the rest the third.
        assert_eq!(draw(&[1, 2, 7], 0.05), Some(0));
        assert_eq!(draw(&[1, 2, 7], 0.15), Some(1));
        assert_eq!(draw(&[1, 2, 7], 0.29), Some(1));
        assert_eq!(draw(&[1, 2, 7], 0.31), Some(2));
        assert_eq!(draw(&[1, 2, 7], 0.999_999), Some(2));
    }

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
