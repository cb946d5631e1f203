//! One simulated client: its connection (one to the target, or one per master of a
//! cluster), the requests it has in flight on each, and the reader task per connection
//! that times the replies.
//!
//! Everything of a load thread lives on that thread (a `LocalSet`), so the writer and its
//! readers share the in-flight queues and the thread's [`Stats`] through `Rc<RefCell>`
//! without locks. Replies come back in request order on each connection: a reader pops
//! the oldest request per reply and records `now - t0`, where `t0` is when the request
//! was written (closed loop) or was meant to be written (open loop).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::cluster::{self, SlotMap};
use crate::resp::{self, Scan};
use crate::slot::key_slot;
use crate::stats::Stats;
use crate::workload::{Gen, Workload};

pub struct Pending {
    kind: u16,
    t0: Instant,
}

type Queue = Rc<RefCell<VecDeque<Pending>>>;

/// State a client shares with its readers.
pub struct Shared {
    pub outstanding: Cell<usize>,
    pub notify: Notify,
    /// A MOVED was seen: refresh the slot map before the next batch.
    pub stale: Cell<bool>,
    pub failed: RefCell<Option<String>>,
}

/// What every client of a thread needs.
pub struct Env {
    pub workload: Arc<Workload>,
    pub stats: Rc<RefCell<Stats>>,
    pub start: Instant,
    pub done: Arc<AtomicU64>,
    pub auth: Option<(String, String)>,
    /// Where to ask for a new slot map (cluster targets): the seed, then known nodes.
    pub seed: SocketAddr,
    pub allow_remote: bool,
}

struct Conn {
    addr: SocketAddr,
    w: OwnedWriteHalf,
    out: Vec<u8>,
    queue: Queue,
    reader: JoinHandle<()>,
}

pub struct Client {
    pub shared: Rc<Shared>,
    pub gen: Gen,
    conns: Vec<Conn>,
    /// Cluster: the slot map and, per master of it, the index of its connection.
    map: Option<Rc<SlotMap>>,
    route: Vec<usize>,
    staged: Vec<(usize, u16)>,
}

impl Client {
    /// Connects to `addr` (a single target) or to every master of `map`.
    pub async fn connect(
        env: &Env,
        id: u64,
        seed: u64,
        addr: SocketAddr,
        map: Option<Rc<SlotMap>>,
    ) -> Result<Client, String> {
        let shared = Rc::new(Shared {
            outstanding: Cell::new(0),
            notify: Notify::new(),
            stale: Cell::new(false),
            failed: RefCell::new(None),
        });
        let mut c = Client {
            shared,
            gen: Gen::new(id, seed),
            conns: Vec::new(),
            map: None,
            route: Vec::new(),
            staged: Vec::new(),
        };
        match map {
            None => {
                let conn = c.open(env, addr).await?;
                c.conns.push(conn);
            }
            Some(m) => c.use_map(env, m).await?,
        }
        Ok(c)
    }

    async fn open(&self, env: &Env, addr: SocketAddr) -> Result<Conn, String> {
        crate::target::check_address(addr, env.allow_remote)?;
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        if let Some((u, p)) = &env.auth {
            let mut out = Vec::new();
            resp::command(&mut out, &[b"AUTH", u.as_bytes(), p.as_bytes()]);
            s.write_all(&out)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            let mut buf = Vec::new();
            while resp::parse(&buf).map_err(|e| e.to_string())?.is_none() {
                if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err(format!("{addr}: closed during AUTH"));
                }
            }
            if buf.first() == Some(&b'-') {
                return Err(format!(
                    "{addr}: AUTH: {}",
                    String::from_utf8_lossy(&buf).trim_end()
                ));
            }
        }
        let (r, w) = s.into_split();
        let queue: Queue = Rc::new(RefCell::new(VecDeque::new()));
        let reader = tokio::task::spawn_local(read_replies(
            r,
            addr,
            queue.clone(),
            self.shared.clone(),
            env.stats.clone(),
            env.start,
            env.done.clone(),
        ));
        Ok(Conn {
            addr,
            w,
            out: Vec::with_capacity(16 * 1024),
            queue,
            reader,
        })
    }

    /// Routes by `map`, opening connections to masters not connected yet.
    async fn use_map(&mut self, env: &Env, map: Rc<SlotMap>) -> Result<(), String> {
        let mut route = Vec::with_capacity(map.masters.len());
        for m in &map.masters {
            let idx = match self.conns.iter().position(|c| c.addr == *m) {
                Some(i) => i,
                None => {
                    let conn = self.open(env, *m).await?;
                    self.conns.push(conn);
                    self.conns.len() - 1
                }
            };
            route.push(idx);
        }
        self.route = route;
        self.map = Some(map);
        Ok(())
    }

    /// After a MOVED: asks the seed (then the known masters) for the slot map again.
    pub async fn refresh(&mut self, env: &Env) -> Result<(), String> {
        self.shared.stale.set(false);
        if self.map.is_none() {
            return Ok(());
        }
        let mut asked = vec![env.seed];
        asked.extend(self.conns.iter().map(|c| c.addr));
        let mut last = String::new();
        for a in asked {
            match cluster::fetch(a, env.auth.as_ref(), false).await {
                Ok(m) => return self.use_map(env, Rc::new(m)).await,
                Err(e) => last = e,
            }
        }
        Err(format!("slot map refresh failed: {last}"))
    }

    /// Generates one operation into the connections' buffers; its requests are staged
    /// until [`Self::commit`] gives them their time. Returns the number of requests.
    pub fn stage_op(&mut self, wl: &Workload) -> usize {
        let op = wl.pick(&mut self.gen.rng);
        let mut staged = std::mem::take(&mut self.staged);
        let before = staged.len();
        let (conns, route, map) = (&mut self.conns, &self.route, &self.map);
        wl.expand(op, &mut self.gen, |kind, key, cmd| {
            let ci = match map {
                Some(m) if !key.is_empty() => route[m.node_of(key_slot(key))],
                _ => 0,
            };
            conns[ci].out.extend_from_slice(cmd);
            staged.push((ci, kind as u16));
        });
        let n = staged.len() - before;
        self.staged = staged;
        n
    }

    /// Queues the staged requests with time `t0`.
    pub fn commit(&mut self, t0: Instant) -> usize {
        let n = self.staged.len();
        for (ci, kind) in self.staged.drain(..) {
            self.conns[ci]
                .queue
                .borrow_mut()
                .push_back(Pending { kind, t0 });
        }
        self.shared
            .outstanding
            .set(self.shared.outstanding.get() + n);
        n
    }

    /// Writes what is buffered on every connection.
    pub async fn flush(&mut self) -> Result<(), String> {
        for c in &mut self.conns {
            if !c.out.is_empty() {
                c.w.write_all(&c.out)
                    .await
                    .map_err(|e| format!("write {}: {e}", c.addr))?;
                c.out.clear();
            }
        }
        Ok(())
    }

    /// Waits until at most `limit` requests are in flight, or a connection failed.
    pub async fn wait_below(&self, limit: usize) -> Result<(), String> {
        loop {
            if let Some(e) = self.shared.failed.borrow().as_ref() {
                return Err(e.clone());
            }
            if self.shared.outstanding.get() <= limit {
                return Ok(());
            }
            self.shared.notify.notified().await;
        }
    }

    pub fn outstanding(&self) -> usize {
        self.shared.outstanding.get()
    }

    /// Stops the readers (what is still in flight stays unanswered).
    pub fn close(self) {
        for c in self.conns {
            c.reader.abort();
        }
    }
}

fn fail(shared: &Shared, msg: String) {
    shared.failed.borrow_mut().get_or_insert(msg);
    shared.notify.notify_one();
}

async fn read_replies(
    mut r: OwnedReadHalf,
    addr: SocketAddr,
    queue: Queue,
    shared: Rc<Shared>,
    stats: Rc<RefCell<Stats>>,
    start: Instant,
    done: Arc<AtomicU64>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        match r.read_buf(&mut buf).await {
            Ok(0) => return fail(&shared, format!("{addr} closed the connection")),
            Ok(_) => {}
            Err(e) => return fail(&shared, format!("read {addr}: {e}")),
        }
        let now = Instant::now();
        let at = now.saturating_duration_since(start);
        let (n, used) = match take_replies(&buf, &queue, &shared, &stats, now, at) {
            Ok(x) => x,
            Err(e) => return fail(&shared, format!("{addr}: {e}")),
        };
        buf.drain(..used);
        if n > 0 {
            done.fetch_add(n as u64, Ordering::Relaxed);
            shared
                .outstanding
                .set(shared.outstanding.get().saturating_sub(n));
            shared.notify.notify_one();
        }
    }
}

/// Times every whole reply at the start of `buf`: (replies, bytes used).
fn take_replies(
    buf: &[u8],
    queue: &Queue,
    shared: &Shared,
    stats: &Rc<RefCell<Stats>>,
    now: Instant,
    at: Duration,
) -> Result<(usize, usize), String> {
    let mut st = stats.borrow_mut();
    let mut q = queue.borrow_mut();
    let (mut pos, mut n) = (0, 0);
    loop {
        match resp::scan(&buf[pos..]).map_err(|e| e.to_string())? {
            Scan::Incomplete => return Ok((n, pos)),
            Scan::Reply { len, error } => {
                let p = q.pop_front().ok_or("a reply to no request")?;
                let kind = usize::from(p.kind);
                st.record(kind, now.saturating_duration_since(p.t0), at);
                if error {
                    let reply = &buf[pos..pos + len];
                    st.error(kind, reply);
                    // An ASK is one key in a migrating slot: the map is still right.
                    if reply.starts_with(b"-MOVED ") {
                        shared.stale.set(true);
                    }
                }
                pos += len;
                n += 1;
            }
        }
    }
}
