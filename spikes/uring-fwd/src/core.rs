//! The I/O-free forwarding core, one per thread, shared by both drivers (io_uring and
//! epoll) so that a comparison of the two measures the I/O mechanism alone.
//!
//! Per client: complete requests are framed out of its input buffer, routed by hash slot
//! to this thread's connection to the slot's master, and copied into that connection's
//! output buffer (all requests queued before the driver's next write go out in one
//! write). Per backend connection: replies are framed in FIFO order and copied into the
//! client's output buffer in request order; a reply that arrives before an earlier one
//! of the same client (pipelines spread over masters) waits in the client's queue.

use crate::resp::{self, Malformed};
use slab::Slab;
use std::collections::VecDeque;

const CRC16: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

/// Redis Cluster's hash slot of a key (hash tags honoured).
pub fn slot(key: &[u8]) -> u16 {
    let key = match key.iter().position(|&c| c == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&c| c == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    CRC16.checksum(key) & 16383
}

/// One entry of a client's reply queue, in request order.
enum Pending {
    Waiting,
    /// Arrived ahead of an earlier reply (copied: the only allocation per request, and
    /// only for out-of-order replies).
    Ready(Vec<u8>),
}

#[derive(Default)]
pub struct Client {
    pub inbuf: Vec<u8>,
    /// Replies ready to write, in request order.
    pub out: Vec<u8>,
    queue: VecDeque<Pending>,
    head_seq: u64,
    pub closed: bool,
    marked: bool,
    // Driver-owned I/O state (the io_uring driver; the epoll driver ignores these).
    pub fd: i32,
    pub sending: Vec<u8>,
    pub sent: usize,
    pub send_inflight: bool,
    pub recv_inflight: bool,
}

impl Client {
    /// Nothing owed to this client and nothing the driver still holds: it can go.
    pub fn finished(&self) -> bool {
        self.closed && self.queue.is_empty() && !self.send_inflight && !self.recv_inflight
    }
}

#[derive(Default)]
pub struct Backend {
    pub out: Vec<u8>,
    pub inbuf: Vec<u8>,
    /// (client, its sequence number) per request written or queued, in order.
    fifo: VecDeque<(usize, u64)>,
    marked: bool,
    pub fd: i32,
    pub sending: Vec<u8>,
    pub sent: usize,
    pub send_inflight: bool,
}

pub struct Core {
    pub clients: Slab<Client>,
    pub backends: Vec<Backend>,
    slot_to_backend: Vec<u8>,
    /// Backends with output queued since the driver last looked.
    pub dirty_backends: Vec<usize>,
    /// Clients with replies queued since the driver last looked.
    pub dirty_clients: Vec<usize>,
    /// Counters: requests, backend writes, client writes, loop turns / wake passes
    /// (published for `--stats`, see [`crate::stats`]).
    pub stats: [u64; 4],
}

pub const REQUESTS: usize = 0;
pub const BACKEND_WRITES: usize = 1;
pub const CLIENT_WRITES: usize = 2;
pub const TURNS: usize = 3;

impl Core {
    pub fn new(slot_to_backend: Vec<u8>, backends: usize) -> Self {
        Core {
            clients: Slab::with_capacity(1024),
            backends: (0..backends)
                .map(|_| Backend {
                    out: Vec::with_capacity(64 * 1024),
                    inbuf: Vec::with_capacity(64 * 1024),
                    ..Default::default()
                })
                .collect(),
            slot_to_backend,
            dirty_backends: Vec::new(),
            dirty_clients: Vec::new(),
            stats: [0; 4],
        }
    }

    pub fn add_client(&mut self, fd: i32) -> usize {
        self.clients.insert(Client {
            inbuf: Vec::with_capacity(16 * 1024),
            out: Vec::with_capacity(16 * 1024),
            fd,
            ..Default::default()
        })
    }

    /// Frames and routes every complete request in the client's input buffer.
    pub fn client_input(&mut self, cid: usize) -> Result<(), Malformed> {
        let client = &mut self.clients[cid];
        let buf = &client.inbuf;
        let mut pos = 0;
        while let Some(req) = resp::scan_request(&buf[pos..])? {
            let frame = &buf[pos..pos + req.len];
            let b = match req.key {
                Some((s, e)) => self.slot_to_backend[slot(&frame[s..e]) as usize] as usize,
                None => 0,
            };
            let backend = &mut self.backends[b];
            backend.out.extend_from_slice(frame);
            backend
                .fifo
                .push_back((cid, client.head_seq + client.queue.len() as u64));
            client.queue.push_back(Pending::Waiting);
            if !backend.marked {
                backend.marked = true;
                self.dirty_backends.push(b);
            }
            pos += req.len;
            self.stats[REQUESTS] += 1;
        }
        client.inbuf.drain(..pos);
        Ok(())
    }

    /// Frames every complete reply in the backend's input buffer and hands each to its
    /// client, in that client's request order.
    pub fn backend_input(&mut self, b: usize) -> Result<(), Malformed> {
        let backend = &mut self.backends[b];
        let mut pos = 0;
        while let Some(len) = resp::scan_reply(&backend.inbuf[pos..])? {
            let reply = &backend.inbuf[pos..pos + len];
            let (cid, seq) = backend.fifo.pop_front().ok_or(Malformed)?;
            let client = &mut self.clients[cid];
            let idx = (seq - client.head_seq) as usize;
            if idx == 0 {
                client.queue.pop_front();
                client.head_seq += 1;
                if !client.closed {
                    client.out.extend_from_slice(reply);
                }
                while let Some(Pending::Ready(_)) = client.queue.front() {
                    if let Some(Pending::Ready(r)) = client.queue.pop_front() {
                        if !client.closed {
                            client.out.extend_from_slice(&r);
                        }
                    }
                    client.head_seq += 1;
                }
                if !client.marked {
                    client.marked = true;
                    self.dirty_clients.push(cid);
                }
            } else {
                client.queue[idx] = Pending::Ready(reply.to_vec());
            }
            pos += len;
        }
        backend.inbuf.drain(..pos);
        Ok(())
    }

    /// Clears the dirty marks of the listed backends / clients (the driver calls these
    /// after taking the lists).
    pub fn unmark_backend(&mut self, b: usize) {
        self.backends[b].marked = false;
    }
    pub fn unmark_client(&mut self, cid: usize) {
        if let Some(c) = self.clients.get_mut(cid) {
            c.marked = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"123456789"), 0x31C3 & 16383);
    }

    #[test]
    fn replies_in_request_order_across_backends() {
        // Two backends: even slots to 0, odd to 1 (whatever the keys give).
        let map: Vec<u8> = (0..16384).map(|s| (s % 2) as u8).collect();
        let mut core = Core::new(map, 2);
        let cid = core.add_client(-1);
        let (a, b) = (b"a", b"b");
        let (sa, sb) = (slot(a) % 2, slot(b) % 2);
        assert_ne!(sa, sb, "test keys must go to different backends");
        core.clients[cid].inbuf.extend_from_slice(
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n*2\r\n$3\r\nGET",
        );
        core.client_input(cid).unwrap();
        assert_eq!(core.clients[cid].inbuf, b"*2\r\n$3\r\nGET");
        // b's backend answers first: held back until a's reply comes.
        core.backends[sb as usize]
            .inbuf
            .extend_from_slice(b"$2\r\nvb\r\n");
        core.backend_input(sb as usize).unwrap();
        assert!(core.clients[cid].out.is_empty());
        core.backends[sa as usize]
            .inbuf
            .extend_from_slice(b"$2\r\nva\r\n");
        core.backend_input(sa as usize).unwrap();
        assert_eq!(core.clients[cid].out, b"$2\r\nva\r\n$2\r\nvb\r\n");
    }
}
