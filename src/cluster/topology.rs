//! The slot map: which node serves each of the 16384 slots.
//!
//! A [`Topology`] is immutable once built and published whole through `ArcSwap`, so the
//! hot path reads it without a lock. It is built from a [`ShardLayout`], the plain data
//! parsed from `CLUSTER SHARDS` (or `CLUSTER SLOTS` on older servers).

use super::control::FrameExt;
use super::slot::SLOTS;
use crate::backend::Node;
use redis_protocol::resp2::types::OwnedFrame;
use std::sync::Arc;

/// One shard as the cluster describes it: its slot ranges and its nodes' addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSpec {
    pub slots: Vec<(u16, u16)>,
    pub master: String,
    pub replicas: Vec<String>,
}

/// Every shard that serves slots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardLayout {
    pub shards: Vec<ShardSpec>,
    /// Online masters that serve no slot yet (a node just added, about to receive slots):
    /// the cluster reported them, so a slot migration may ASK requests to them.
    pub spare: Vec<String>,
}

impl ShardLayout {
    /// Parses a `CLUSTER SHARDS` reply (Redis 7). Failed nodes are left out (masters must
    /// be `online`, replicas `online` or `loading`); a shard without an online master is
    /// skipped (its slots stay uncovered); the master of a shard without slots is spare.
    pub fn from_shards(frame: &OwnedFrame) -> Result<ShardLayout, String> {
        let mut shards = Vec::new();
        let mut spare = Vec::new();
        for shard in frame.as_array().ok_or("CLUSTER SHARDS: not an array")? {
            let slots_flat = shard
                .field("slots")
                .and_then(|s| s.as_array())
                .ok_or("CLUSTER SHARDS: shard without slots")?;
            let mut slots = Vec::new();
            for pair in slots_flat.chunks(2) {
                let (Some(a), Some(b)) = (
                    pair.first().and_then(|f| f.as_int()),
                    pair.get(1).and_then(|f| f.as_int()),
                ) else {
                    return Err("CLUSTER SHARDS: bad slot range".into());
                };
                slots.push((slot_num(a)?, slot_num(b)?));
            }
            let mut master = None;
            let mut replicas = Vec::new();
            for node in shard
                .field("nodes")
                .and_then(|n| n.as_array())
                .ok_or("CLUSTER SHARDS: shard without nodes")?
            {
                let health = node.field("health").and_then(|h| h.as_text());
                let Some(addr) = node_addr(node) else {
                    continue;
                };
                // A replica reports `loading` until its replication offset moves (on an
                // idle shard, up to a replication ping period after it synced): it is up,
                // and takes what every node must get (CONFIG SET).
                match (node.field("role").and_then(|r| r.as_text()), health) {
                    (Some("master"), Some("online")) => master = Some(addr),
                    (Some("replica"), Some("online" | "loading")) => replicas.push(addr),
                    _ => {}
                }
            }
            if slots.is_empty() {
                spare.extend(master);
                continue;
            }
            if let Some(master) = master {
                shards.push(ShardSpec {
                    slots,
                    master,
                    replicas,
                });
            }
        }
        Ok(ShardLayout { shards, spare })
    }

    /// Parses a `CLUSTER SLOTS` reply (it names no spare master) (any Redis Cluster version).
    pub fn from_slots(frame: &OwnedFrame) -> Result<ShardLayout, String> {
        let mut shards: Vec<ShardSpec> = Vec::new();
        for range in frame.as_array().ok_or("CLUSTER SLOTS: not an array")? {
            let r = range.as_array().ok_or("CLUSTER SLOTS: bad entry")?;
            if r.len() < 3 {
                return Err("CLUSTER SLOTS: short entry".into());
            }
            let start = slot_num(r[0].as_int().ok_or("CLUSTER SLOTS: bad start")?)?;
            let end = slot_num(r[1].as_int().ok_or("CLUSTER SLOTS: bad end")?)?;
            let addr = |f: &OwnedFrame| -> Option<String> {
                let n = f.as_array()?;
                let host = n.first()?.as_text()?;
                let port = n.get(1)?.as_int()?;
                Some(join_host_port(host, port))
            };
            let master = addr(&r[2]).ok_or("CLUSTER SLOTS: bad master")?;
            let replicas: Vec<String> = r[3..].iter().filter_map(addr).collect();
            match shards.iter_mut().find(|s| s.master == master) {
                Some(s) => s.slots.push((start, end)),
                None => shards.push(ShardSpec {
                    slots: vec![(start, end)],
                    master,
                    replicas,
                }),
            }
        }
        Ok(ShardLayout {
            shards,
            spare: Vec::new(),
        })
    }

    /// Sorts slot ranges and shards by slot, so that equal layouts compare equal and a
    /// shard index names the same shard across refreshes and failovers (SCAN cursors
    /// carry it).
    pub fn normalize(&mut self) {
        for spec in &mut self.shards {
            spec.slots.sort_unstable();
            spec.replicas.sort_unstable();
        }
        self.shards
            .sort_by_key(|s| s.slots.first().map_or(u16::MAX, |r| r.0));
        self.spare.sort_unstable();
    }

    /// Number of slots some shard serves.
    pub fn covered_slots(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| s.slots.iter())
            .map(|(a, b)| (*b as usize + 1).saturating_sub(*a as usize))
            .sum()
    }
}

fn slot_num(v: i64) -> Result<u16, String> {
    if (0..SLOTS as i64).contains(&v) {
        Ok(v as u16)
    } else {
        Err(format!("slot {v} out of range"))
    }
}

fn node_addr(node: &OwnedFrame) -> Option<String> {
    let port = node
        .field("port")
        .or_else(|| node.field("tls-port"))?
        .as_int()?;
    let host = node
        .field("endpoint")
        .and_then(|e| e.as_text())
        .filter(|e| !e.is_empty() && *e != "?")
        .or_else(|| node.field("ip").and_then(|i| i.as_text()))?;
    Some(join_host_port(host, port))
}

/// `host:port`, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Marks a slot no shard serves.
const UNASSIGNED: u16 = u16::MAX;

/// A shard's nodes, as link handles.
pub struct Shard {
    pub master: Arc<Node>,
    pub replicas: Vec<Arc<Node>>,
}

/// The published slot map.
pub struct Topology {
    slot_shard: Box<[u16]>,
    shards: Vec<Shard>,
    /// The spare masters' handles: kept, so requests ASKed to them reuse pooled links.
    spare: Vec<Arc<Node>>,
    layout: ShardLayout,
    /// Which discovery this map comes from (MOVED patches keep their base's).
    generation: u64,
}

impl Topology {
    /// Builds the map, asking `node_for` for the handle of each address.
    pub fn build(mut layout: ShardLayout, mut node_for: impl FnMut(&str) -> Arc<Node>) -> Topology {
        layout.normalize();
        let mut slot_shard = vec![UNASSIGNED; SLOTS].into_boxed_slice();
        let mut shards = Vec::with_capacity(layout.shards.len());
        for (i, spec) in layout.shards.iter().enumerate() {
            for &(a, b) in &spec.slots {
                for s in a..=b {
                    slot_shard[s as usize] = i as u16;
                }
            }
            shards.push(Shard {
                master: node_for(&spec.master),
                replicas: spec.replicas.iter().map(|r| node_for(r)).collect(),
            });
        }
        let spare = layout.spare.iter().map(|a| node_for(a)).collect();
        Topology {
            slot_shard,
            shards,
            spare,
            layout,
            generation: 0,
        }
    }

    /// This map, marked as coming from discovery number `generation`.
    pub fn at_generation(mut self, generation: u64) -> Topology {
        self.generation = generation;
        self
    }

    /// The discovery this map comes from (see [`super::Cluster::apply_moved`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The spare masters: masters without slots.
    pub fn spare(&self) -> &[Arc<Node>] {
        &self.spare
    }

    /// Every node the map names: masters, their replicas and the spare masters.
    pub fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.shards
            .iter()
            .flat_map(|s| std::iter::once(&s.master).chain(s.replicas.iter()))
            .chain(self.spare.iter())
    }

    /// The master serving `slot`, if any shard does.
    #[inline]
    pub fn master_for_slot(&self, slot: u16) -> Option<&Arc<Node>> {
        self.shard_for_slot(slot).map(|s| &s.master)
    }

    /// The shard serving `slot`, if any.
    #[inline]
    pub fn shard_for_slot(&self, slot: u16) -> Option<&Shard> {
        let i = *self.slot_shard.get(slot as usize)?;
        self.shards.get(i as usize)
    }

    /// Some master, picked by `hint` so different clients spread over the masters.
    pub fn any_master(&self, hint: u64) -> Option<&Arc<Node>> {
        if self.shards.is_empty() {
            return None;
        }
        Some(&self.shards[(hint % self.shards.len() as u64) as usize].master)
    }

    /// All shards, in slot order.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// A slot served by shard `i` (its first): routing by it reaches that shard's
    /// current master, through failovers, like any keyed request.
    pub fn shard_slot(&self, i: usize) -> Option<u16> {
        self.layout.shards.get(i)?.slots.first().map(|r| r.0)
    }

    /// A one-byte tag of shard `i`'s master address (changes when the shard fails over).
    pub fn shard_tag(&self, i: usize) -> u8 {
        let addr = self.layout.shards.get(i).map_or("", |s| s.master.as_str());
        addr.bytes().fold(0x811c9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x01000193)
        }) as u8
    }

    /// The layout this map was built from.
    pub fn layout(&self) -> &ShardLayout {
        &self.layout
    }

    /// A copy with `slot` served by `addr` (a MOVED redirection), the shard of `addr`
    /// created when it is not known yet.
    pub fn with_moved_slot(
        &self,
        slot: u16,
        addr: &str,
        node_for: impl FnOnce(&str) -> Arc<Node>,
    ) -> Topology {
        let mut layout = self.layout.clone();
        for shard in &mut layout.shards {
            shard.slots = shard
                .slots
                .iter()
                .flat_map(|&(a, b)| {
                    if slot < a || slot > b {
                        vec![(a, b)]
                    } else {
                        let mut parts = Vec::new();
                        if a < slot {
                            parts.push((a, slot - 1));
                        }
                        if slot < b {
                            parts.push((slot + 1, b));
                        }
                        parts
                    }
                })
                .collect();
        }
        let mut shards: Vec<Shard> = self
            .shards
            .iter()
            .map(|s| Shard {
                master: s.master.clone(),
                replicas: s.replicas.clone(),
            })
            .collect();
        let idx = match layout.shards.iter().position(|s| s.master == addr) {
            Some(i) => {
                layout.shards[i].slots.push((slot, slot));
                i
            }
            None => {
                layout.shards.push(ShardSpec {
                    slots: vec![(slot, slot)],
                    master: addr.to_string(),
                    replicas: Vec::new(),
                });
                shards.push(Shard {
                    master: node_for(addr),
                    replicas: Vec::new(),
                });
                shards.len() - 1
            }
        };
        let mut slot_shard = self.slot_shard.clone();
        slot_shard[slot as usize] = idx as u16;
        // A spare master that serves a slot now is a shard's.
        let spare_at = layout.spare.iter().position(|a| a == addr);
        let mut spare = self.spare.clone();
        if let Some(i) = spare_at {
            layout.spare.remove(i);
            spare.remove(i);
        }
        Topology {
            slot_shard,
            shards,
            spare,
            layout,
            generation: self.generation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_protocol::resp2::decode::decode;

    fn frame(raw: &[u8]) -> OwnedFrame {
        decode(raw).unwrap().unwrap().0
    }

    fn bulk(s: &str) -> String {
        format!("${}\r\n{}\r\n", s.len(), s)
    }

    #[test]
    fn parses_cluster_slots() {
        let node =
            |port: u16, id: &str| format!("*3\r\n{}:{port}\r\n{}", bulk("127.0.0.1"), bulk(id));
        let raw = format!(
            "*2\r\n*4\r\n:0\r\n:5460\r\n{}{}*3\r\n:5461\r\n:16383\r\n{}",
            node(7000, "id0"),
            node(7003, "id3"),
            node(7001, "id1")
        );
        let layout = ShardLayout::from_slots(&frame(raw.as_bytes())).unwrap();
        assert_eq!(layout.shards.len(), 2);
        assert_eq!(layout.shards[0].master, "127.0.0.1:7000");
        assert_eq!(
            layout.shards[0].replicas,
            vec!["127.0.0.1:7003".to_string()]
        );
        assert_eq!(layout.covered_slots(), SLOTS);
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        assert_eq!(join_host_port("::1", 7000), "[::1]:7000");
    }
}
