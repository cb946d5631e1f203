//! Failovers seen between two topologies: a replica promoted to a shard's master.
//!
//! A failed master leaves the layout before its replica is promoted (`CLUSTER SHARDS`
//! drops failed nodes, so the shard is missing meanwhile), so comparing each layout with
//! the one before would miss the promotion. Instead the last role seen of every address
//! is remembered, including addresses no longer in the layout: a node that serves a
//! shard as master now and was last seen as a replica was promoted, whether by the
//! cluster's automatic failover or a `CLUSTER FAILOVER`. A slot migration moves slots
//! between masters and counts nothing; a new master never seen before counts nothing.

use crate::cluster::ShardLayout;
use std::collections::HashMap;

/// A node's role as respgate last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

impl Role {
    /// The `role` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}

/// The last role seen of every address, across layouts.
#[derive(Debug, Default)]
pub struct Roles {
    last: HashMap<String, Role>,
}

impl Roles {
    /// Records `layout` and returns how many of its shard masters were last seen as
    /// replicas (promotions since the layout before).
    pub fn observe(&mut self, layout: &ShardLayout) -> u64 {
        let mut promoted = 0;
        for shard in &layout.shards {
            if self.last.get(&shard.master) == Some(&Role::Replica) {
                promoted += 1;
            }
        }
        for shard in &layout.shards {
            self.last.insert(shard.master.clone(), Role::Master);
            for r in &shard.replicas {
                self.last.insert(r.clone(), Role::Replica);
            }
        }
        for spare in &layout.spare {
            self.last.insert(spare.clone(), Role::Master);
        }
        promoted
    }

    /// The role `addr` was last seen in.
    #[cfg(test)]
    pub fn last(&self, addr: &str) -> Option<Role> {
        self.last.get(addr).copied()
    }

    /// Forgets `addr` (a node gone from the cluster for good).
    pub fn forget(&mut self, addr: &str) {
        self.last.remove(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::topology::ShardSpec;

    fn layout(shards: &[(u16, u16, &str, &[&str])]) -> ShardLayout {
        ShardLayout {
            shards: shards
                .iter()
                .map(|(a, b, m, r)| ShardSpec {
                    slots: vec![(*a, *b)],
                    master: m.to_string(),
                    replicas: r.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            spare: Vec::new(),
        }
    }

    #[test]
    fn a_promotion_counts_even_when_the_shard_was_missing_in_between() {
        let mut roles = Roles::default();
        let before = layout(&[(0, 8191, "a:1", &["b:1"]), (8192, 16383, "c:1", &["d:1"])]);
        assert_eq!(roles.observe(&before), 0, "the first layout is no failover");
        assert_eq!(roles.observe(&before), 0);
        // a failed: its shard leaves the layout, then b is promoted.
        assert_eq!(roles.observe(&layout(&[(8192, 16383, "c:1", &["d:1"])])), 0);
        let after = layout(&[(0, 8191, "b:1", &[]), (8192, 16383, "c:1", &["d:1"])]);
        assert_eq!(roles.observe(&after), 1);
        assert_eq!(roles.observe(&after), 0, "counted once");
        // a comes back as b's replica, then a manual failover gives the shard back.
        assert_eq!(
            roles.observe(&layout(&[
                (0, 8191, "b:1", &["a:1"]),
                (8192, 16383, "c:1", &["d:1"])
            ])),
            0
        );
        assert_eq!(
            roles.observe(&layout(&[
                (0, 8191, "a:1", &["b:1"]),
                (8192, 16383, "c:1", &["d:1"])
            ])),
            1
        );
        assert_eq!(roles.last("b:1"), Some(Role::Replica));
    }

    #[test]
    fn slot_migrations_and_new_masters_are_no_failover() {
        let mut roles = Roles::default();
        roles.observe(&layout(&[(0, 16383, "a:1", &["b:1"])]));
        assert_eq!(
            roles.observe(&layout(&[
                (0, 100, "e:1", &[]),
                (101, 16383, "a:1", &["b:1"])
            ])),
            0
        );
        assert_eq!(
            roles.observe(&layout(&[
                (0, 200, "e:1", &[]),
                (201, 16383, "a:1", &["b:1"])
            ])),
            0
        );
    }
}
