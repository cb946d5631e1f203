//! The cluster's slot map, from `CLUSTER SLOTS` of a seed node: which master serves each
//! of the 16384 slots, and every node's address (replicas too, for their CPU).
//!
//! Asked once before the runs and again by a client after a `MOVED` reply (the request
//! that got it is counted as an error, never re-sent: a load tool must not hide a
//! redirect, and a retry would be a second request). An `ASK` (one key of a slot being
//! migrated) is counted the same way; it changes no map, so it triggers no refresh.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::{self, Value};
use crate::slot::SLOTS;

pub const UNASSIGNED: u16 = u16::MAX;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SlotMap {
    /// Masters, in order of first appearance; `slot_node` indexes this.
    pub masters: Vec<SocketAddr>,
    /// Masters and replicas.
    pub all_nodes: Vec<SocketAddr>,
    pub slot_node: Vec<u16>,
}

impl SlotMap {
    /// The index of the master serving `slot` (the first master when unassigned: it
    /// answers with the redirect or CLUSTERDOWN, which is then counted).
    pub fn node_of(&self, slot: u16) -> usize {
        match self.slot_node[slot as usize] {
            UNASSIGNED => 0,
            n => n as usize,
        }
    }

    /// Builds the map from a `CLUSTER SLOTS` reply; an empty host means the seed's.
    pub fn from_reply(v: &Value, seed: SocketAddr) -> Result<SlotMap, String> {
        let Value::Array(Some(ranges)) = v else {
            return Err(format!("CLUSTER SLOTS answered {v:?}"));
        };
        let mut map = SlotMap {
            masters: Vec::new(),
            all_nodes: Vec::new(),
            slot_node: vec![UNASSIGNED; SLOTS as usize],
        };
        for r in ranges {
            let Value::Array(Some(items)) = r else {
                return Err(format!("bad range {r:?}"));
            };
            let (Some(Value::Int(lo)), Some(Value::Int(hi))) = (items.first(), items.get(1)) else {
                return Err(format!("bad range {r:?}"));
            };
            let mut nodes = Vec::new();
            for n in &items[2..] {
                nodes.push(node_addr(n, seed.ip())?);
            }
            let Some(master) = nodes.first().copied() else {
                return Err(format!("range without a master {r:?}"));
            };
            let idx = match map.masters.iter().position(|m| *m == master) {
                Some(i) => i,
                None => {
                    map.masters.push(master);
                    map.masters.len() - 1
                }
            };
            for s in *lo..=*hi {
                map.slot_node[s as usize] = idx as u16;
            }
            for n in nodes {
                if !map.all_nodes.contains(&n) {
                    map.all_nodes.push(n);
                }
            }
        }
        if map.masters.is_empty() {
            return Err("CLUSTER SLOTS: no slot is served".into());
        }
        Ok(map)
    }
}

fn node_addr(v: &Value, seed_ip: IpAddr) -> Result<SocketAddr, String> {
    let Value::Array(Some(f)) = v else {
        return Err(format!("bad node {v:?}"));
    };
    let (Some(Value::Bulk(Some(host))), Some(Value::Int(port))) = (f.first(), f.get(1)) else {
        return Err(format!("bad node {v:?}"));
    };
    let ip = if host.is_empty() || host == b"?" {
        seed_ip
    } else {
        std::str::from_utf8(host)
            .ok()
            .and_then(|h| h.parse().ok())
            .ok_or_else(|| {
                format!(
                    "node host {:?} is not an IP address",
                    String::from_utf8_lossy(host)
                )
            })?
    };
    Ok(SocketAddr::new(ip, *port as u16))
}

/// One request on a fresh connection (with AUTH first when given), with a time limit.
pub async fn request(
    addr: SocketAddr,
    auth: Option<&(String, String)>,
    args: &[&[u8]],
) -> Result<Value, String> {
    let go = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut out = Vec::new();
        if let Some((u, p)) = auth {
            resp::command(&mut out, &[b"AUTH", u.as_bytes(), p.as_bytes()]);
        }
        resp::command(&mut out, args);
        s.write_all(&out)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut buf = Vec::new();
        let mut replies = Vec::new();
        let want = if auth.is_some() { 2 } else { 1 };
        while replies.len() < want {
            while let Some((v, used)) = resp::parse(&buf).map_err(|e| e.to_string())? {
                buf.drain(..used);
                replies.push(v);
            }
            if replies.len() >= want {
                break;
            }
            if s.read_buf(&mut buf)
                .await
                .map_err(|e| format!("{addr}: {e}"))?
                == 0
            {
                return Err(format!("{addr}: connection closed"));
            }
        }
        if let Some(Value::Error(e)) = replies.first().filter(|_| auth.is_some()) {
            return Err(format!("{addr}: AUTH: {e}"));
        }
        Ok(replies.pop().expect("one reply"))
    };
    tokio::time::timeout(TIMEOUT, go)
        .await
        .map_err(|_| format!("{addr}: no reply within {TIMEOUT:?}"))?
}

/// The slot map from `CLUSTER SLOTS`; with `all_nodes`, its node list completed by
/// `CLUSTER NODES`, since `CLUSTER SLOTS` leaves out a replica that has not synchronised
/// yet (needed once, for the nodes' CPU; not for routing).
pub async fn fetch(
    seed: SocketAddr,
    auth: Option<&(String, String)>,
    all_nodes: bool,
) -> Result<SlotMap, String> {
    let v = request(seed, auth, &[b"CLUSTER", b"SLOTS"]).await?;
    if let Value::Error(e) = &v {
        return Err(format!(
            "{seed}: CLUSTER SLOTS: {e} (is it a cluster node?)"
        ));
    }
    let mut map = SlotMap::from_reply(&v, seed)?;
    if !all_nodes {
        return Ok(map);
    }
    if let Ok(Value::Bulk(Some(text))) = request(seed, auth, &[b"CLUSTER", b"NODES"]).await {
        for n in node_lines(&String::from_utf8_lossy(&text), seed.ip()) {
            if !map.all_nodes.contains(&n) {
                map.all_nodes.push(n);
            }
        }
    }
    Ok(map)
}

/// Addresses of the nodes in a `CLUSTER NODES` text that are not failed nor addressless.
pub fn node_lines(text: &str, seed_ip: IpAddr) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (f.get(1), f.get(2)) else {
            continue;
        };
        if flags.contains("fail") || flags.contains("noaddr") || flags.contains("handshake") {
            continue;
        }
        let hostport = addr.split(['@', ',']).next().unwrap_or_default();
        let Some((host, port)) = hostport.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let ip = if host.is_empty() {
            Some(seed_ip)
        } else {
            host.trim_matches(['[', ']']).parse().ok()
        };
        if let Some(ip) = ip {
            out.push(SocketAddr::new(ip, port));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_map_from_cluster_slots() {
        let reply = b"*2\r\n*4\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nid\r\n*3\r\n:8192\r\n:16383\r\n*3\r\n$0\r\n\r\n:7001\r\n$2\r\nid\r\n";
        let (v, _) = resp::parse(reply).unwrap().unwrap();
        let seed: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let m = SlotMap::from_reply(&v, seed).unwrap();
        assert_eq!(m.masters, vec!["127.0.0.1:7000".parse().unwrap(), seed]);
        assert_eq!(m.all_nodes.len(), 3);
        assert_eq!(m.node_of(0), 0);
        assert_eq!(m.node_of(8192), 1);
        assert_eq!(m.node_of(16383), 1);
    }

    #[test]
    fn reads_cluster_nodes_lines() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7003@17003,host slave a1 0 1 1 connected\n\
                    c3 127.0.0.1:7004@17004 slave,fail a1 0 1 1 connected\n\
                    d4 :0@0 master,noaddr - 0 0 0 disconnected\n";
        let nodes = node_lines(text, "127.0.0.1".parse().unwrap());
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:7003".parse().unwrap(),
        ];
        assert_eq!(nodes, want);
    }

    /// Redis 7.0's shape: every node entry has its id and a (here empty) metadata map.
    #[test]
    fn keeps_replicas_of_a_redis_7_reply() {
        let reply = b"*1\r\n*4\r\n:0\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:12983\r\n$2\r\naf\r\n*0\r\n*4\r\n$9\r\n127.0.0.1\r\n:12986\r\n$2\r\n31\r\n*0\r\n";
        let (v, _) = resp::parse(reply).unwrap().unwrap();
        let m = SlotMap::from_reply(&v, "127.0.0.1:12983".parse().unwrap()).unwrap();
        assert_eq!(m.masters.len(), 1);
        assert_eq!(m.all_nodes.len(), 2, "{m:?}");
    }
}
