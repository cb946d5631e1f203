//! One link task: connects lazily, then runs its connection until it fails. The writer
//! side coalesces every queued request into one buffer (one syscall for many), the
//! reader side hands replies back in FIFO order ([`super::framing`]), one watchdog timer
//! enforces the request timeout, and a failure answers every request the link held.

use super::connect::connect;
use super::framing;
use super::inflight::Inflight;
use super::{Job, LinkError, LinkOptions};
use crate::tls::BackendStream;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
/// Stop taking new jobs while this much is waiting to be written.
const WRITE_HIGH_WATER: usize = 1 << 20;
const READ_CHUNK: usize = 64 * 1024;
/// Written at once without waiting for more requests.
const COALESCE_MAX: usize = 16 * 1024;

pub(super) async fn run_link(
    addr: Arc<str>,
    opts: Arc<LinkOptions>,
    rx: mpsc::UnboundedReceiver<Job>,
    on_failure: Arc<Notify>,
    links_up: Arc<super::LinkState>,
) {
    // Connect lazily: a dead node costs nothing until a request wants it, and then each
    // attempt is paid by the requests that wanted it (they get NotSent and retry with
    // backoff in the session), so there is no reconnect loop spinning on its own.
    // A dead node fails every request that wants it, on each of its links: one warning
    // per interval for the node (the throttle is shared by its links; the lock is taken
    // on connect and on a failed attempt only).
    run_link_from(addr, opts, rx, on_failure, links_up, None).await
}

/// [`run_link`], starting with a connection made beforehand and the first job for it
/// (a ready dedicated link, [`super::ready`]); later connections are made lazily.
pub(super) async fn run_link_from(
    addr: Arc<str>,
    opts: Arc<LinkOptions>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    on_failure: Arc<Notify>,
    links_up: Arc<super::LinkState>,
    mut ready: Option<(BackendStream, Job)>,
) {
    let failures = |f: &mut dyn FnMut(&mut crate::logging::throttle::Throttle)| {
        f(&mut links_up.failures.lock().unwrap_or_else(|e| e.into_inner()))
    };
    loop {
        let (first, stream) = match ready.take() {
            Some((stream, first)) => (first, Ok(stream)),
            None => match rx.recv().await {
                Some(first) => {
                    let stream = connect(&addr, &opts).await;
                    (first, stream)
                }
                None => return,
            },
        };
        let stream = match stream {
            Ok(s) => {
                failures(&mut |t| {
                    if let n @ 1.. = t.clear() {
                        tracing::info!(node = %addr, failures = n, "backend connects again");
                    }
                });
                s
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                tracing::warn!(node = %addr, error = %e, "backend refused the link's identity");
                metrics::counter!("respgate_backend_identity_refusals_total").increment(1);
                let why = format!("{addr} refused: {e}");
                let refuse = |job: Job| {
                    let _ = job.reply.send(Err(LinkError::Refused(why.clone())));
                };
                refuse(first);
                while let Ok(job) = rx.try_recv() {
                    refuse(job);
                }
                continue;
            }
            Err(e) => {
                failures(&mut |t| {
                    if let Some(r) = t.hit() {
                        tracing::warn!(node = %addr, error = %e, repeated = r.count, "backend connect failed{r}");
                    }
                });
                metrics::counter!("respgate_backend_connect_failures_total").increment(1);
                on_failure.notify_one();
                let why = format!("{addr} unreachable: {e}");
                fail_queued(first, &mut rx, &why);
                continue;
            }
        };
        links_up.up.fetch_add(1, Ordering::Relaxed);
        let served = serve(stream, first, &mut rx, &addr, &opts).await;
        links_up.up.fetch_sub(1, Ordering::Relaxed);
        match served {
            Ok(()) => return, // every handle dropped and every reply delivered
            Err(e) => {
                tracing::warn!(node = %addr, error = %e, "backend connection lost");
                metrics::counter!("respgate_backend_connection_losses_total").increment(1);
                on_failure.notify_one();
            }
        }
    }
}

fn fail_queued(first: Job, rx: &mut mpsc::UnboundedReceiver<Job>, why: &str) {
    let _ = first.reply.send(Err(LinkError::NotSent(why.to_string())));
    while let Ok(job) = rx.try_recv() {
        let _ = job.reply.send(Err(LinkError::NotSent(why.to_string())));
    }
}

/// Runs one connection until it fails (`Err`) or every handle is dropped and the last
/// reply delivered (`Ok`). On failure every request it held is answered with an error.
///
/// A plain connection is split by borrow (`TcpStream::split`: no lock, the same code as
/// before TLS existed); a TLS connection with `tokio::io::split`, whose halves share the
/// TLS session behind a lock taken per poll, a cost only TLS links pay.
async fn serve(
    stream: BackendStream,
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    addr: &str,
    opts: &LinkOptions,
) -> std::io::Result<()> {
    match stream {
        BackendStream::Plain(mut tcp) => {
            let (rd, wr) = tcp.split();
            serve_halves(rd, wr, false, first, rx, addr, opts).await
        }
        BackendStream::Tls(tls) => {
            let (rd, wr) = tokio::io::split(tls);
            serve_halves(rd, wr, true, first, rx, addr, opts).await
        }
    }
}

/// [`serve`] over a connection's halves. `buffered`: the writer may keep bytes a `write`
/// accepted (TLS records not yet on the socket), so it is flushed once the buffer drains.
async fn serve_halves<R, W>(
    mut rd: R,
    mut wr: W,
    buffered: bool,
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    addr: &str,
    opts: &LinkOptions,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut flush_owed = false;
    let mut inflight: VecDeque<(Inflight, Instant)> = VecDeque::with_capacity(256);
    let mut wbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut framer = framing::Framer::new(opts.max_reply_bytes);
    let mut batch: Vec<Job> = Vec::with_capacity(128);
    let mut open = true;
    let mut write_deferred = false;
    let now = Instant::now();
    let watchdog = tokio::time::sleep(opts.request_timeout);
    tokio::pin!(watchdog);
    enqueue(first, &mut wbuf, &mut inflight, now);

    let result: std::io::Result<()> = loop {
        if !open && inflight.is_empty() && wbuf.is_empty() {
            break Ok(());
        }
        // A client's own link is written at once: it carries no other client's requests
        // to wait for, and a blocking command must reach the node before writes other
        // clients send after it ([`super::ready`]).
        let write_now =
            !wbuf.is_empty() && (write_deferred || opts.dedicated || wbuf.len() >= COALESCE_MAX);
        tokio::select! {
            biased;
            read = rd.read_buf(&mut rbuf) => {
                match read {
                    Ok(0) => break Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed by the node")),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
                if let Err(e) = framer.deliver(&mut rbuf, &mut inflight, addr) {
                    break Err(e);
                }
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(READ_CHUNK);
                }
            }
            n = rx.recv_many(&mut batch, 128), if open && wbuf.len() < WRITE_HIGH_WATER => {
                if n == 0 {
                    if opts.dedicated {
                        return Ok(());
                    }
                    open = false;
                    continue;
                }
                let now = Instant::now();
                if inflight.is_empty() && watchdog.deadline() <= now.into() {
                    watchdog.as_mut().reset((now + opts.request_timeout).into());
                }
                for job in batch.drain(..) {
                    enqueue(job, &mut wbuf, &mut inflight, now);
                }
            }
            written = write_or_flush(&mut wr, &wbuf, write_now), if write_now || (flush_owed && wbuf.is_empty()) => {
                write_deferred = false;
                match written {
                    Ok(Some(0)) => break Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "node stopped reading")),
                    Ok(Some(n)) => {
                        let _ = wbuf.split_to(n);
                        flush_owed = buffered;
                    }
                    Ok(None) => flush_owed = false,
                    Err(e) => break Err(e),
                }
            }
            // Give the clients one scheduling round to queue more before writing: on a
            // 2-core box this took backend writes from ~1.3 to several requests each.
            _ = tokio::task::yield_now(), if !wbuf.is_empty() && !write_now => {
                write_deferred = true;
            }
            _ = &mut watchdog, if !inflight.is_empty() && !opts.dedicated => {
                match overdue(&mut inflight, addr, opts.request_timeout) {
                    Ok(due) => watchdog.as_mut().reset(due.into()),
                    Err(e) => break Err(e),
                }
            }
        }
    };
    if let Err(e) = &result {
        fail_all(e, &mut inflight, rx, addr);
    }
    result
}

/// The request timeout, when the watchdog fires: if the oldest request in flight is
/// overdue, every request on the link fails as `TimedOut` and the link closes (`Err`:
/// once a reply is late the FIFO cannot be trusted); otherwise the oldest one's
/// deadline, the watchdog's next wake-up. One timer per link, reset lazily: no timer
/// per request.
fn overdue(
    inflight: &mut VecDeque<(Inflight, Instant)>,
    addr: &str,
    timeout: Duration,
) -> std::io::Result<Instant> {
    let oldest = inflight
        .front()
        .map(|(_, t)| *t)
        .unwrap_or_else(Instant::now);
    let due = oldest + timeout;
    if due <= Instant::now() {
        let why = format!("{addr} did not answer within {} ms", timeout.as_millis());
        for (entry, _) in inflight.drain(..) {
            if let Inflight::Client(tx, ..) = entry {
                let _ = tx.send(Err(LinkError::TimedOut(why.clone())));
            }
        }
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why));
    }
    Ok(due)
}

/// A connection failed with `e`: what was written on it is `Lost` (it may have run),
/// what is still queued was never written (`NotSent`: it may be retried elsewhere).
fn fail_all(
    e: &std::io::Error,
    inflight: &mut VecDeque<(Inflight, Instant)>,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    addr: &str,
) {
    let why = format!("connection to {addr} lost with the command in flight ({e})");
    for (entry, _) in inflight.drain(..) {
        if let Inflight::Client(tx, ..) = entry {
            let _ = tx.send(Err(LinkError::Lost(why.clone())));
        }
    }
    while let Ok(job) = rx.try_recv() {
        let _ = job
            .reply
            .send(Err(LinkError::NotSent(format!("{addr}: {e}"))));
    }
}

/// One write of `buf` (`Some(bytes written)`), or with `write` false, a flush (`None`).
/// One select branch for both, since both need the writer.
pub(crate) async fn write_or_flush<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
    write: bool,
) -> std::io::Result<Option<usize>> {
    if write {
        wr.write(buf).await.map(Some)
    } else {
        wr.flush().await.map(|()| None)
    }
}

#[inline]
fn enqueue(
    job: Job,
    wbuf: &mut BytesMut,
    inflight: &mut VecDeque<(Inflight, Instant)>,
    now: Instant,
) {
    if job.asking {
        wbuf.extend_from_slice(ASKING);
        inflight.push_back((Inflight::Asking, now));
    }
    wbuf.extend_from_slice(&job.bytes);
    inflight.push_back((
        Inflight::Client(job.reply, job.replies.max(1), job.budget, job.part_of),
        now,
    ));
}
