//! The evented connection loop (tokio): many connections per thread, each a task that is parked
//! on readiness, never on a thread. Used by `async`, `work-stealing` and `hybrid`.
//!
//! Same steps as the blocking loop; what differs is how waiting is done. Waits are readiness
//! futures with deadlines (timers, not threads), `/io` is a timer, `/cpu` runs inline on the loop
//! (as the seed's asyncio server did — the comparison shows what that costs), and an idle
//! connection holds no read buffer: it is allocated when bytes arrive and freed when the
//! connection goes idle again, so 10,000 idle keep-alive clients cost little memory.
use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{timeout, timeout_at, Instant};

use crate::config::ConnLimits;
use crate::http::{self, Parsed};
use crate::shutdown::Stop;
use crate::site::{Body, Ctx, Part, Plan, Reply, Site, Work};

use super::{inline_small_body, keep_alive, log_request, with_date, READ_CHUNK};

/// After a refusal, drain what the client still sends for at most this long (see blocking.rs).
const LINGER: Duration = Duration::from_millis(500);

/// What every connection task of one event loop (or runtime) shares.
#[derive(Debug)]
pub struct Shared {
    pub site: Site,
    pub limits: ConnLimits,
    /// Wakes idle connections so they close: all of them when shutdown begins
    /// (`notify_waiters`), a few when the connection cap is reached (`notify_one`).
    pub close_idle: Notify,
    /// Open connections of this event loop / runtime.
    pub active: AtomicUsize,
    /// Signalled when a connection ends while the cap was reached (the acceptor waits on it).
    pub freed: Notify,
}

impl Shared {
    pub fn new(site: Site, limits: ConnLimits) -> Shared {
        Shared {
            site,
            limits,
            close_idle: Notify::new(),
            active: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }
}

/// Decrements the open-connection count when a connection task ends, however it ends.
struct Active<'a>(&'a Shared);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let before = self.0.active.fetch_sub(1, Ordering::AcqRel);
        if before >= self.0.limits.max_conns {
            self.0.freed.notify_one();
        }
    }
}

/// How many idle connections to close at once when the cap is reached (nginx drains 32).
const SHED_BATCH: usize = 32;

enum Wait {
    Ready,
    TimedOut,
    Stopping,
}

/// Serves one connection to its end. The caller has already counted it in `shared.active`.
pub async fn serve(stream: TcpStream, peer: std::net::IpAddr, shared: Arc<Shared>) {
    let _active = Active(&shared);
    if let Err(e) = run(&stream, peer, &shared).await {
        tracing::debug!("connection ended: {e}");
    }
}

async fn run(stream: &TcpStream, peer: std::net::IpAddr, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let limits = &shared.limits;
    let site = &shared.site;
    let mut buf: Vec<u8> = Vec::new();
    let mut served: u64 = 0;
    let mut idle_since = Instant::now();
    loop {
        // 1. A complete request head.
        let mut head_start = if buf.is_empty() {
            None
        } else {
            Some(idle_since)
        };
        let req = loop {
            if !buf.is_empty() {
                match http::parse(&buf, &limits.head) {
                    Ok(Parsed::Complete(req, used)) => {
                        buf.drain(..used);
                        break req;
                    }
                    Ok(Parsed::Partial) => {}
                    Err(e) => {
                        let reply = with_date(|date| site.refuse(e.status(), date));
                        log_request(Some(peer), None, reply.status, reply.body.len());
                        return refuse(stream, reply, limits).await;
                    }
                }
            } else if buf.capacity() > 0 {
                // Idle: give the buffer back while we wait (the 1 KiB-per-idle-client budget).
                buf = Vec::new();
            }
            let deadline = match head_start {
                None if served == 0 => idle_since + limits.header_timeout,
                None => idle_since + limits.idle_timeout,
                Some(start) => start + limits.header_timeout,
            };
            // Shutting down while idle: one last non-blocking read below. A request the
            // client already sent is served (with `Connection: close`); otherwise we close.
            let mut last_look = false;
            match wait_readable(stream, deadline, head_start.is_none(), shared).await? {
                Wait::Ready => {}
                Wait::Stopping => last_look = true,
                Wait::TimedOut if head_start.is_none() => return Ok(()),
                Wait::TimedOut => {
                    let reply = with_date(|date| site.refuse(408, date));
                    log_request(Some(peer), None, reply.status, reply.body.len());
                    return refuse(stream, reply, limits).await;
                }
            }
            buf.reserve(READ_CHUNK);
            let len = buf.len();
            buf.resize(buf.capacity(), 0);
            match stream.try_read(&mut buf[len..]) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    buf.truncate(len + n);
                    head_start.get_or_insert_with(|| {
                        if served == 0 {
                            idle_since
                        } else {
                            Instant::now()
                        }
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !last_look => buf.truncate(len),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        };

        // 2. The body, if any, read and dropped.
        let mut close_after = false;
        if req.body_len > 0 {
            if req.body_len <= limits.max_discard {
                let deadline = Instant::now() + limits.header_timeout;
                if !discard(stream, &mut buf, req.body_len, deadline).await? {
                    return Ok(());
                }
            } else {
                close_after = true;
            }
        }

        // 3. Plan, run the workload, write.
        let ka = keep_alive(&req, served, limits.max_requests, Stop.is_set()) && !close_after;
        let plan = with_date(|date| {
            site.plan(
                &req,
                Ctx {
                    date,
                    keep_alive: ka,
                },
            )
        });
        let reply = match plan {
            Plan::Reply(reply) => reply,
            Plan::Work(work) => {
                let primes = match work {
                    Work::Primes(n) => Some(crate::site::workload::count_primes(n)),
                    Work::Sleep(d) => {
                        tokio::time::sleep(d).await;
                        None
                    }
                };
                // Shutdown may have begun during the work: say so now, so the client does not send
                // another request on a connection we are about to close.
                let ka = ka && !Stop.is_set();
                with_date(|date| {
                    site.after_work(
                        &req,
                        work,
                        primes,
                        Ctx {
                            date,
                            keep_alive: ka,
                        },
                    )
                })
            }
        };
        served += 1;
        let close = reply.close;
        let (status, body_len) = (reply.status, reply.body.len());
        let complete = write_reply(stream, reply, limits.write_timeout).await?;
        log_request(Some(peer), Some(&req), status, body_len);
        if !complete {
            return Ok(());
        }
        if close {
            if close_after || !buf.is_empty() {
                linger(stream).await;
            }
            return Ok(());
        }
        idle_since = Instant::now();
    }
}

/// Waits until the socket is readable, the deadline passes, or (while idle) shutdown begins.
async fn wait_readable(
    stream: &TcpStream,
    deadline: Instant,
    idle: bool,
    shared: &Shared,
) -> io::Result<Wait> {
    if !idle {
        return match timeout_at(deadline, stream.readable()).await {
            Ok(r) => r.map(|()| Wait::Ready),
            Err(_) => Ok(Wait::TimedOut),
        };
    }
    // Register for the close notice before checking the flag, so a notice sent in between
    // is not missed. Woken while not stopping means: shed to make room under the cap.
    let notified = shared.close_idle.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if Stop.is_set() {
        return Ok(Wait::Stopping);
    }
    tokio::select! {
        biased;
        r = timeout_at(deadline, stream.readable()) => match r {
            Ok(r) => r.map(|()| Wait::Ready),
            Err(_) => Ok(Wait::TimedOut),
        },
        _ = notified => Ok(Wait::Stopping),
    }
}

/// Drops `len` body bytes (some may be buffered). False if the client stopped early.
async fn discard(
    stream: &TcpStream,
    buf: &mut Vec<u8>,
    len: u64,
    deadline: Instant,
) -> io::Result<bool> {
    let buffered = (buf.len() as u64).min(len);
    buf.drain(..buffered as usize);
    let mut left = len - buffered;
    let mut scratch = vec![0u8; READ_CHUNK];
    while left > 0 {
        match timeout_at(deadline, stream.readable()).await {
            Err(_) => return Ok(false),
            Ok(r) => r?,
        }
        let want = (left as usize).min(scratch.len());
        match stream.try_read(&mut scratch[..want]) {
            Ok(0) => return Ok(false),
            Ok(n) => left -= n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes a whole reply; false if the file shrank under us (close instead of lying).
async fn write_reply(stream: &TcpStream, mut reply: Reply, wt: Duration) -> io::Result<bool> {
    if !inline_small_body(&mut reply)? {
        return Ok(false);
    }
    write_all(stream, &reply.head, wt).await?;
    match reply.body {
        Body::Empty | Body::Bytes(_) => Ok(true),
        Body::File { file, parts, .. } => {
            for part in parts {
                match part {
                    Part::Bytes(b) => write_all(stream, &b, wt).await?,
                    Part::File { offset, len } => {
                        if !send_file(stream, &file, offset, len, wt).await? {
                            return Ok(false);
                        }
                    }
                }
            }
            Ok(true)
        }
    }
}

/// Writes all of `bytes`, trying first and waiting for writability only when the socket is full
/// (the common small reply costs one write syscall and no readiness future).
async fn write_all(stream: &TcpStream, bytes: &[u8], wt: Duration) -> io::Result<()> {
    let mut off = 0;
    while off < bytes.len() {
        match stream.try_write(&bytes[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(stream, wt).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn writable(stream: &TcpStream, wt: Duration) -> io::Result<()> {
    match timeout(wt, stream.writable()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")),
    }
}

/// sendfile(2) on the non-blocking socket, parked on writability when the socket buffer is full.
async fn send_file(
    stream: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    wt: Duration,
) -> io::Result<bool> {
    let mut off = offset as i64;
    let end = offset + len;
    while (off as u64) < end {
        let want = ((end - off as u64) as usize).min(1 << 30);
        let sent = stream.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile(stream.as_fd(), file.as_fd(), Some(&mut off), want)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(stream, wt).await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Answers a refused request, then closes with a linger.
async fn refuse(stream: &TcpStream, reply: Reply, limits: &ConnLimits) -> io::Result<()> {
    write_reply(stream, reply, limits.write_timeout).await?;
    linger(stream).await;
    Ok(())
}

/// Half-closes and drains what the client still sends (bounded), so our last response is not
/// destroyed by a RST caused by unread data.
async fn linger(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 256 * 1024 {
        match timeout_at(deadline, stream.readable()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        match stream.try_read(&mut scratch) {
            Ok(0) => return,
            Ok(n) => drained += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// The accept loop of one event loop: spawns a task per connection until SIGINT/SIGTERM, then
/// stops accepting, tells idle connections to close, and waits (up to `grace`) for the rest.
pub async fn accept_until_stopped(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    signals: crate::shutdown::Signals,
    grace: Duration,
) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    // Register tokio's handlers, and only then let the signals through.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    signals.unblock()?;
    // Every connection task holds a sender; when all are dropped, recv() returns None.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        // At the connection cap: close some idle connections, then accept only once below it.
        if shared.active.load(Ordering::Acquire) >= shared.limits.max_conns {
            for _ in 0..SHED_BATCH {
                shared.close_idle.notify_one();
            }
            let freed = shared.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if shared.active.load(Ordering::Acquire) >= shared.limits.max_conns {
                tokio::select! {
                    _ = freed => continue,
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                }
            }
        }
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    shared.active.fetch_add(1, Ordering::AcqRel);
                    let shared = Arc::clone(&shared);
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        serve(stream, peer.ip(), shared).await;
                        drop(done);
                    });
                }
                Err(e) => accept_error(&e).await,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping, grace {grace:?}");
    Stop.trigger();
    drop(listener);
    shared.close_idle.notify_waiters();
    drop(done_tx);
    if timeout(grace, done_rx.recv()).await.is_err() {
        tracing::warn!("grace period over with requests still in flight; exiting");
    }
    crate::access_log::flush();
    Ok(())
}

/// accept() failed: back off on resource exhaustion (EMFILE would otherwise spin the loop, since
/// the pending connection keeps the listener readable), skip aborted connections.
async fn accept_error(e: &io::Error) {
    match e.raw_os_error() {
        Some(libc::ECONNABORTED) | Some(libc::EINTR) => {}
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
            tracing::warn!("accept: {e}; backing off");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        _ => {
            tracing::warn!("accept: {e}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
