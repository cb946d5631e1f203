//! The epoll driver: one tokio current-thread runtime per thread (tokio's reactor is
//! epoll), with the task layout respgate has: per client a reader and a writer task, per
//! backend connection a writer task (one write for everything queued since it last ran)
//! and a reader task. The core is the io_uring driver's, so a difference between the two
//! modes is the I/O mechanism's.

use crate::core::Core;
use crate::Topology;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

struct Shared {
    thread: usize,
    core: RefCell<Core>,
    backend_wake: Vec<Notify>,
    /// Per client slot: wakes its writer task.
    client_wake: RefCell<Vec<Rc<Notify>>>,
}

impl Shared {
    /// Wakes the writers of the backends and clients the core marked.
    fn wake(&self) {
        let mut core = self.core.borrow_mut();
        for i in 0..core.dirty_backends.len() {
            let b = core.dirty_backends[i];
            core.unmark_backend(b);
            self.backend_wake[b].notify_one();
        }
        core.dirty_backends.clear();
        let wakes = self.client_wake.borrow();
        for i in 0..core.dirty_clients.len() {
            let cid = core.dirty_clients[i];
            core.unmark_client(cid);
            wakes[cid].notify_one();
        }
        core.dirty_clients.clear();
        core.stats[crate::core::TURNS] += 1;
        crate::stats::publish(self.thread, &core.stats);
    }
}

pub fn run(listen: SocketAddr, topo: &Topology, thread: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let conns = crate::backend_conns(topo);
    let n = conns.len();
    let shared = Rc::new(Shared {
        thread,
        core: RefCell::new(Core::new(topo.slot_to_backend.clone(), n)),
        backend_wake: (0..n).map(|_| Notify::new()).collect(),
        client_wake: RefCell::new(Vec::new()),
    });
    local.block_on(&rt, async move {
        for (b, s) in conns.into_iter().enumerate() {
            s.set_nonblocking(true).unwrap();
            let (r, w) = TcpStream::from_std(s).unwrap().into_split();
            tokio::task::spawn_local(backend_reader(shared.clone(), b, r));
            tokio::task::spawn_local(backend_writer(shared.clone(), b, w));
        }
        let listener = TcpListener::from_std(crate::listener(listen, true)).unwrap();
        loop {
            let (s, _) = listener.accept().await.expect("accept");
            s.set_nodelay(true).unwrap();
            let cid = shared.core.borrow_mut().add_client(-1);
            let notify = Rc::new(Notify::new());
            {
                let mut w = shared.client_wake.borrow_mut();
                if w.len() <= cid {
                    w.resize_with(cid + 1, || Rc::new(Notify::new()));
                }
                w[cid] = notify.clone();
            }
            let (r, w) = s.into_split();
            tokio::task::spawn_local(client_reader(shared.clone(), cid, r, notify.clone()));
            tokio::task::spawn_local(client_writer(shared.clone(), cid, w, notify));
        }
    });
}

async fn client_reader(sh: Rc<Shared>, cid: usize, mut r: OwnedReadHalf, notify: Rc<Notify>) {
    loop {
        let mut buf = std::mem::take(&mut sh.core.borrow_mut().clients[cid].inbuf);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let n = r.read_buf(&mut buf).await.unwrap_or(0);
        let mut core = sh.core.borrow_mut();
        core.clients[cid].inbuf = buf;
        if n == 0 || core.client_input(cid).is_err() {
            let c = &mut core.clients[cid];
            c.closed = true;
            c.out.clear();
            drop(core);
            notify.notify_one(); // the writer sees `closed`, frees the slot when it may
            return;
        }
        drop(core);
        sh.wake();
    }
}

async fn client_writer(sh: Rc<Shared>, cid: usize, mut w: OwnedWriteHalf, notify: Rc<Notify>) {
    let mut sending = Vec::with_capacity(16 * 1024);
    loop {
        notify.notified().await;
        loop {
            {
                let mut core = sh.core.borrow_mut();
                let c = &mut core.clients[cid];
                if c.closed {
                    // Replies still owed land in `out` and are dropped; the slot goes
                    // once the queue is empty (checked again at each wake).
                    if c.finished() {
                        core.clients.remove(cid);
                        return;
                    }
                    break;
                }
                if c.out.is_empty() {
                    break;
                }
                std::mem::swap(&mut c.out, &mut sending);
                core.stats[crate::core::CLIENT_WRITES] += 1;
            }
            if w.write_all(&sending).await.is_err() {
                let mut core = sh.core.borrow_mut();
                let c = &mut core.clients[cid];
                c.closed = true;
                c.out.clear();
            }
            sending.clear();
        }
    }
}

async fn backend_writer(sh: Rc<Shared>, b: usize, mut w: OwnedWriteHalf) {
    let mut sending = Vec::with_capacity(64 * 1024);
    loop {
        sh.backend_wake[b].notified().await;
        loop {
            {
                let mut core = sh.core.borrow_mut();
                let be = &mut core.backends[b];
                if be.out.is_empty() {
                    break;
                }
                std::mem::swap(&mut be.out, &mut sending);
                core.stats[crate::core::BACKEND_WRITES] += 1;
            }
            w.write_all(&sending).await.expect("backend write");
            sending.clear();
        }
    }
}

async fn backend_reader(sh: Rc<Shared>, b: usize, mut r: OwnedReadHalf) {
    loop {
        let mut buf = std::mem::take(&mut sh.core.borrow_mut().backends[b].inbuf);
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        let n = r.read_buf(&mut buf).await.expect("backend read");
        assert!(n > 0, "backend connection {b} closed");
        {
            let mut core = sh.core.borrow_mut();
            core.backends[b].inbuf = buf;
            core.backend_input(b).expect("backend reply framing");
        }
        sh.wake();
    }
}
