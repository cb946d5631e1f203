//! The io_uring driver: one ring per thread, one loop. Each turn makes exactly one
//! `io_uring_enter` (submit everything queued, wait for at least one completion), then
//! handles every completion, then queues one send per backend connection that got
//! requests this turn (all of them coalesced) and one send per client that got replies.
//!
//! Accept is multishot. Receives are either one-shot into each connection's own buffer
//! (re-armed after each completion; they ride along in the same `io_uring_enter`, so
//! re-arming costs no syscall, but each re-arm on an empty socket makes the kernel arm
//! its internal poll again), or, with `--recv multishot`, multishot receives into a
//! ring of provided buffers (one per thread): armed once per connection, the poll stays
//! armed, and the data is copied from the provided buffer into the connection's input
//! buffer (a small copy: requests and replies here are tens of bytes).
//!
//! The ring is set up single-issuer + defer-taskrun, so completions are run in this
//! thread when it waits, not by interrupts.
//! Sockets stay blocking: io_uring tries them non-blocking and arms its internal poll
//! on EAGAIN.

use crate::core::Core;
use crate::Topology;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd};

const ACCEPT: u64 = 0;
const CRECV: u64 = 1;
const CSEND: u64 = 2;
const BRECV: u64 = 3;
const BSEND: u64 = 4;
const CLOSE: u64 = 5;

fn ud(kind: u64, idx: usize) -> u64 {
    (idx as u64) << 3 | kind
}

const CANCEL: u64 = 6;

const RECV_MIN: usize = 4096;
const BUF_GROUP: u16 = 0;
const BUF_COUNT: u16 = 1024;
const BUF_SIZE: usize = 16 * 1024;

/// A ring of provided buffers (io_uring_register_buf_ring): the kernel picks one per
/// multishot receive completion; we hand it back after copying the data out.
struct BufRing {
    ring: *mut types::BufRingEntry,
    tail: u16,
    bufs: Vec<u8>,
}

impl BufRing {
    fn new(ring: &IoUring) -> Self {
        let bytes = BUF_COUNT as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, page aligned as the kernel requires.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap for the buffer ring");
        // SAFETY: the mapping lives as long as the ring (the process).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, BUF_COUNT, BUF_GROUP, 0)
        }
        .expect("io_uring_register_buf_ring");
        let mut br = BufRing {
            ring: ptr.cast(),
            tail: 0,
            bufs: vec![0u8; BUF_COUNT as usize * BUF_SIZE],
        };
        for bid in 0..BUF_COUNT {
            br.give(bid);
        }
        br.publish();
        br
    }

    fn give(&mut self, bid: u16) {
        // SAFETY: the index is masked into the mapping; bufs is never resized.
        unsafe {
            let e = &mut *self.ring.add((self.tail & (BUF_COUNT - 1)) as usize);
            e.set_addr(self.bufs.as_ptr().add(bid as usize * BUF_SIZE) as u64);
            e.set_len(BUF_SIZE as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field overlays the first entry's `resv`; the kernel reads it.
        unsafe {
            let t = types::BufRingEntry::tail(self.ring) as *const std::sync::atomic::AtomicU16;
            (*t).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    fn data(&self, bid: u16, len: usize) -> &[u8] {
        &self.bufs[bid as usize * BUF_SIZE..][..len]
    }
}
const RECV_CHUNK: usize = 16 * 1024;

struct Driver {
    ring: IoUring,
    bufs: Option<BufRing>,
    core: Core,
    listen_fd: i32,
    pending: Vec<squeue::Entry>,
}

impl Driver {
    fn push(&mut self, e: squeue::Entry) {
        self.pending.push(e);
    }

    fn flush_sq(&mut self) {
        let mut sq = self.ring.submission();
        for e in self.pending.drain(..) {
            // SAFETY: every buffer an entry points to belongs to a client or backend
            // that stays in place (its Vec is neither freed nor grown) until the
            // entry's completion is seen.
            while unsafe { sq.push(&e) }.is_err() {
                drop(sq);
                self.ring.submit().expect("io_uring_enter");
                sq = self.ring.submission();
            }
        }
    }

    fn arm_client_recv(&mut self, cid: usize) {
        let c = &mut self.core.clients[cid];
        if self.bufs.is_some() {
            c.recv_inflight = true;
            let e = opcode::RecvMulti::new(types::Fd(c.fd), BUF_GROUP)
                .build()
                .user_data(ud(CRECV, cid));
            self.push(e);
            return;
        }
        if c.inbuf.capacity() - c.inbuf.len() < RECV_MIN {
            c.inbuf.reserve(RECV_CHUNK);
        }
        let spare = c.inbuf.capacity() - c.inbuf.len();
        let ptr = unsafe { c.inbuf.as_mut_ptr().add(c.inbuf.len()) };
        c.recv_inflight = true;
        let e = opcode::Recv::new(types::Fd(c.fd), ptr, spare as u32)
            .build()
            .user_data(ud(CRECV, cid));
        self.push(e);
    }

    fn arm_backend_recv(&mut self, b: usize) {
        let be = &mut self.core.backends[b];
        if self.bufs.is_some() {
            let e = opcode::RecvMulti::new(types::Fd(be.fd), BUF_GROUP)
                .build()
                .user_data(ud(BRECV, b));
            self.push(e);
            return;
        }
        if be.inbuf.capacity() - be.inbuf.len() < RECV_MIN {
            be.inbuf.reserve(4 * RECV_CHUNK);
        }
        let spare = be.inbuf.capacity() - be.inbuf.len();
        let ptr = unsafe { be.inbuf.as_mut_ptr().add(be.inbuf.len()) };
        let e = opcode::Recv::new(types::Fd(be.fd), ptr, spare as u32)
            .build()
            .user_data(ud(BRECV, b));
        self.push(e);
    }

    fn start_client_send(&mut self, cid: usize) {
        let Some(c) = self.core.clients.get_mut(cid) else {
            return;
        };
        if c.send_inflight || c.closed || c.out.is_empty() {
            return;
        }
        std::mem::swap(&mut c.out, &mut c.sending);
        self.core.stats[crate::core::CLIENT_WRITES] += 1;
        let c = &mut self.core.clients[cid];
        c.sent = 0;
        c.send_inflight = true;
        let e = opcode::Send::new(types::Fd(c.fd), c.sending.as_ptr(), c.sending.len() as u32)
            .build()
            .user_data(ud(CSEND, cid));
        self.push(e);
    }

    fn start_backend_send(&mut self, b: usize) {
        let be = &mut self.core.backends[b];
        if be.send_inflight || be.out.is_empty() {
            return;
        }
        std::mem::swap(&mut be.out, &mut be.sending);
        self.core.stats[crate::core::BACKEND_WRITES] += 1;
        let be = &mut self.core.backends[b];
        be.sent = 0;
        be.send_inflight = true;
        let e = opcode::Send::new(
            types::Fd(be.fd),
            be.sending.as_ptr(),
            be.sending.len() as u32,
        )
        .build()
        .user_data(ud(BSEND, b));
        self.push(e);
    }

    fn close_client(&mut self, cid: usize) {
        let c = &mut self.core.clients[cid];
        c.closed = true;
        c.out.clear();
        if c.recv_inflight && self.bufs.is_some() {
            // A multishot receive stays armed until cancelled.
            self.push(
                opcode::AsyncCancel::new(ud(CRECV, cid))
                    .build()
                    .user_data(ud(CANCEL, 0)),
            );
        }
        self.reap(cid);
    }

    /// Closes the socket and frees the slot once nothing refers to the client.
    fn reap(&mut self, cid: usize) {
        if self.core.clients.get(cid).is_some_and(|c| c.finished()) {
            let c = self.core.clients.remove(cid);
            self.push(
                opcode::Close::new(types::Fd(c.fd))
                    .build()
                    .user_data(ud(CLOSE, 0)),
            );
        }
    }

    fn complete(&mut self, user_data: u64, res: i32, flags: u32) {
        let idx = (user_data >> 3) as usize;
        match user_data & 7 {
            ACCEPT => {
                if res >= 0 {
                    set_nodelay(res);
                    let cid = self.core.add_client(res);
                    self.arm_client_recv(cid);
                }
                if !cqueue::more(flags) {
                    self.push(
                        opcode::AcceptMulti::new(types::Fd(self.listen_fd))
                            .build()
                            .user_data(ud(ACCEPT, 0)),
                    );
                }
            }
            CRECV => {
                let more = self.bufs.is_some() && cqueue::more(flags);
                let c = &mut self.core.clients[idx];
                c.recv_inflight = more;
                if res == -libc::ENOBUFS && !c.closed {
                    self.arm_client_recv(idx); // out of provided buffers for a moment
                    return;
                }
                if res <= 0 || c.closed {
                    self.take_buffer(flags, 0, Dest::Client(idx));
                    self.close_client(idx);
                    return;
                }
                if !self.take_buffer(flags, res as usize, Dest::Client(idx)) {
                    let c = &mut self.core.clients[idx];
                    // SAFETY: the kernel wrote `res` bytes into the spare capacity.
                    unsafe { c.inbuf.set_len(c.inbuf.len() + res as usize) };
                }
                if self.core.client_input(idx).is_err() {
                    self.close_client(idx);
                    return;
                }
                if !more {
                    self.arm_client_recv(idx);
                }
            }
            CSEND => {
                let c = &mut self.core.clients[idx];
                if res <= 0 {
                    c.send_inflight = false;
                    c.sending.clear();
                    self.close_client(idx);
                    return;
                }
                c.sent += res as usize;
                if c.sent < c.sending.len() {
                    let rest = &c.sending[c.sent..];
                    let e = opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32)
                        .build()
                        .user_data(ud(CSEND, idx));
                    self.push(e);
                    return;
                }
                c.sending.clear();
                c.send_inflight = false;
                if c.closed {
                    self.reap(idx);
                } else {
                    self.start_client_send(idx);
                }
            }
            BRECV => {
                let more = self.bufs.is_some() && cqueue::more(flags);
                if res == -libc::ENOBUFS {
                    self.arm_backend_recv(idx);
                    return;
                }
                assert!(res > 0, "backend connection {idx} failed or closed: {res}");
                if !self.take_buffer(flags, res as usize, Dest::Backend(idx)) {
                    let be = &mut self.core.backends[idx];
                    unsafe { be.inbuf.set_len(be.inbuf.len() + res as usize) };
                }
                self.core.backend_input(idx).expect("backend reply framing");
                if !more {
                    self.arm_backend_recv(idx);
                }
            }
            BSEND => {
                assert!(res > 0, "backend send failed: {res}");
                let be = &mut self.core.backends[idx];
                be.sent += res as usize;
                if be.sent < be.sending.len() {
                    let rest = &be.sending[be.sent..];
                    let e = opcode::Send::new(types::Fd(be.fd), rest.as_ptr(), rest.len() as u32)
                        .build()
                        .user_data(ud(BSEND, idx));
                    self.push(e);
                    return;
                }
                be.sending.clear();
                be.send_inflight = false;
                self.start_backend_send(idx);
            }
            _ => {}
        }
    }
}

/// Where a receive's data goes.
#[derive(Clone, Copy)]
enum Dest {
    Client(usize),
    Backend(usize),
}

impl Driver {
    /// Multishot mode: copies a completion's data (`len` bytes, 0 for none) out of its
    /// provided buffer into the connection's input buffer and gives the buffer back.
    /// False in one-shot mode: the data is already in the input buffer.
    fn take_buffer(&mut self, flags: u32, len: usize, dest: Dest) -> bool {
        let Some(bufs) = self.bufs.as_mut() else {
            return false;
        };
        let Some(bid) = cqueue::buffer_select(flags) else {
            return true;
        };
        if len > 0 {
            let data = bufs.data(bid, len);
            match dest {
                Dest::Client(c) => self.core.clients[c].inbuf.extend_from_slice(data),
                Dest::Backend(b) => self.core.backends[b].inbuf.extend_from_slice(data),
            }
        }
        bufs.give(bid);
        bufs.publish();
        true
    }
}

fn set_nodelay(fd: i32) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

pub fn run(listen: SocketAddr, topo: &Topology, multishot: bool, thread: usize) {
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .build(4096)
        .expect("io_uring_setup");
    let listener = crate::listener(listen, false);
    let conns = crate::backend_conns(topo);
    let mut core = Core::new(topo.slot_to_backend.clone(), conns.len());
    for (b, s) in conns.into_iter().enumerate() {
        core.backends[b].fd = s.into_raw_fd();
    }
    let bufs = multishot.then(|| BufRing::new(&ring));
    let mut d = Driver {
        ring,
        bufs,
        core,
        listen_fd: listener.as_raw_fd(),
        pending: Vec::with_capacity(1024),
    };
    d.push(
        opcode::AcceptMulti::new(types::Fd(d.listen_fd))
            .build()
            .user_data(ud(ACCEPT, 0)),
    );
    for b in 0..d.core.backends.len() {
        d.arm_backend_recv(b);
    }
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(4096);
    loop {
        d.flush_sq();
        match d.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EINTR)
                    || e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        cqes.extend(
            d.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for (u, r, f) in cqes.drain(..) {
            d.complete(u, r, f);
        }
        // One coalesced write per backend that got requests this turn, then one per
        // client that got replies; all go out with the next turn's io_uring_enter.
        for i in 0..d.core.dirty_backends.len() {
            let b = d.core.dirty_backends[i];
            d.core.unmark_backend(b);
            d.start_backend_send(b);
        }
        d.core.dirty_backends.clear();
        for i in 0..d.core.dirty_clients.len() {
            let cid = d.core.dirty_clients[i];
            d.core.unmark_client(cid);
            d.start_client_send(cid);
            d.reap(cid);
        }
        d.core.dirty_clients.clear();
        d.core.stats[crate::core::TURNS] += 1;
        crate::stats::publish(thread, &d.core.stats);
    }
}
