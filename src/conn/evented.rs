//! The evented connection loop (tokio): many connections per thread, each a task that is parked
//! on readiness, never on a thread. Used by `async`, `work-stealing` and `hybrid`.
//!
//! Same steps as the blocking loop; what differs is how waiting is done. Waits are readiness
//! futures with deadlines (timers, not threads), `/io` is a timer, `/cpu` runs inline on the loop
//! (as the seed's asyncio server did — the comparison shows what that costs), and an idle
//! connection holds no read buffer: new requests are read into one scratch buffer per thread,
//! and a connection's own buffer exists only while it holds part of a request. Together with a
//! small task (see [`serve`]) that keeps an idle keep-alive connection near 1 KiB.
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{timeout, timeout_at, Instant};

use crate::config::ConnLimits;
use crate::http::{self, Parsed, Request};
use crate::shutdown::Stop;
use crate::site::{Body, Ctx, Part, Plan, Reply, Site, Work};

use super::{inline_small_body, keep_alive, log_request, with_date, work_done, READ_CHUNK};

/// After a refusal, drain what the client still sends for at most this long (see blocking.rs).
const LINGER: Duration = Duration::from_millis(500);

/// What every connection task of one event loop (or runtime) shares.
#[derive(Debug)]
pub struct Shared {
    pub site: Site,
    pub limits: ConnLimits,
    /// Wakes kept-alive connections waiting for their next request so they close: all of them
    /// when shutdown begins (`notify_waiters`), a few when the connection cap is reached
    /// (`notify_one`).
    pub close_idle: Notify,
    /// Wakes new connections still waiting for their first request when shutdown begins. Not
    /// `close_idle`: making room at the cap closes kept-alive connections only (as nginx's
    /// "reusable" ones), never one that has just been accepted and whose request is on its way;
    /// and a `notify_one` permit left over at the cap must not close the next new connection.
    pub stopping: Notify,
    /// Open connections of this event loop / runtime.
    pub active: AtomicUsize,
    /// Signalled when a connection ends while the cap is reached or shutdown is under way (the
    /// acceptor waits on it).
    pub freed: Notify,
}

impl Shared {
    pub fn new(site: Site, limits: ConnLimits) -> Shared {
        Shared {
            site,
            limits,
            close_idle: Notify::new(),
            stopping: Notify::new(),
            active: AtomicUsize::new(0),
            freed: Notify::new(),
        }
    }
}

/// Counts a connection in `Shared::active` for as long as its task lives (the guard handed to
/// [`serve`]), however the task ends.
pub struct Active(Arc<Shared>);

impl Active {
    pub fn new(shared: &Arc<Shared>) -> Active {
        shared.active.fetch_add(1, Ordering::AcqRel);
        Active(Arc::clone(shared))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let before = self.0.active.fetch_sub(1, Ordering::AcqRel);
        if before >= self.0.limits.max_conns || Stop.is_set() {
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

/// Serves one connection to its end, then drops `guard` (the accept loop counts live
/// connections by it).
///
/// The whole loop is this one future, and this future is the task of every connection: its size
/// is what every idle keep-alive connection costs (the 1 KiB budget of issue 3), and a future is
/// as large as its largest waiting state. So the loop is written flat (an `async fn` keeps its
/// arguments twice, a nested future keeps copies of what it borrows), the request is never held
/// across an await (`answer` takes it), the idle wait is one `poll_fn` over the stream's own
/// readiness slot, a timer and the shutdown notice, and every rare or bulky wait (a refusal and
/// its linger, a body to discard, a workload, a reply the socket does not take at once) is
/// boxed, allocated only when it happens. Measured with `scripts/bench-servers --servers
/// async,hybrid --tests rss` (10,000 idle connections): the future was 5,240 bytes (a 4 KiB
/// linger buffer lived in it) and an idle connection cost 6,020 bytes of RSS; as a 512-byte
/// future, 1,270; written flat, 384 bytes (tokio's task cell 512 instead of 640) and 1,152. The
/// rest is tokio's I/O registration (256 bytes) and what the allocator loses aligning both
/// allocations to 128 bytes (with mimalloc, see main.rs: 629-812). `connection_task_stays_small`
/// keeps it so.
///
/// `read_at_once`: the connection came from a listener with TCP_DEFER_ACCEPT, so its request is
/// most likely there already: the first read is tried before waiting for readiness (which the
/// reactor would report only on its next turn). A read that finds nothing (a connection that came
/// in through a SYN cookie, or one the kernel stopped deferring after a second) waits as usual.
pub fn serve<G: Send + 'static>(
    stream: TcpStream,
    shared: Arc<Shared>,
    guard: G,
    read_at_once: bool,
) -> impl Future<Output = ()> + Send {
    /// `?` for this block, which must not nest a future of its own to have one: logs the error
    /// and ends the connection.
    macro_rules! or_end {
        ($e:expr) => {
            match $e {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!("connection ended: {e}");
                    return;
                }
            }
        };
    }
    async move {
        // Captured (so dropped whenever the connection ends, however it ends), never bound to a
        // local: no reference to the stream, the shared state or the guard is kept in a local
        // either, each would be another 8 bytes of every connection's task.
        let _ = &guard;
        // TCP_NODELAY comes from the listener (see listener::bind).
        let mut buf: Vec<u8> = Vec::new();
        let mut served: u64 = 0;
        let mut idle_since = Instant::now();
        let mut read_at_once = read_at_once;
        loop {
            // 1. A complete request head.
            let req = {
                let mut head_start = if buf.is_empty() {
                    None
                } else {
                    Some(idle_since)
                };
                loop {
                    // A refusal is answered here, where no request is alive, and after the parse
                    // result (which can hold one) is gone.
                    let mut refused = None;
                    if !buf.is_empty() {
                        match http::parse(&buf, &shared.limits.head) {
                            Ok(Parsed::Complete(req, used)) => {
                                buf.drain(..used);
                                break req;
                            }
                            Ok(Parsed::Partial) => {}
                            Err(e) => refused = Some(e.status()),
                        }
                    } else if buf.capacity() > 0 {
                        // Idle: give the buffer back while we wait.
                        buf = Vec::new();
                    }
                    if let Some(status) = refused {
                        let reply = with_date(|date| shared.site.refuse(status, date));
                        or_end!(Box::pin(refuse(&stream, reply, &shared.limits)).await);
                        return;
                    }
                    // A new connection from a deferring listener: its request is most likely
                    // there already (see `read_at_once` above).
                    if std::mem::take(&mut read_at_once) {
                        match or_end!(read_fresh(&stream, &shared.limits, &mut buf, true)) {
                            Fresh::Request(req) => break req,
                            Fresh::Refuse | Fresh::Stale => continue,
                            Fresh::Read(0) => return,
                            Fresh::Read(_) => {
                                head_start = Some(idle_since);
                                continue;
                            }
                        }
                    }
                    let deadline = match head_start {
                        None if served == 0 => idle_since + shared.limits.header_timeout,
                        None => idle_since + shared.limits.idle_timeout,
                        Some(start) => start + shared.limits.header_timeout,
                    };
                    let idle = head_start.is_none();
                    // Wait for bytes, the deadline or (idle) shutdown: one poll_fn over the stream's
                    // own readiness slot, a timer and the shutdown notice, written here rather than
                    // as a future of its own, which would keep copies of its arguments in every
                    // connection's task. Polled in the order the former select! used: readiness,
                    // then the deadline, then shutdown.
                    let sleep = tokio::time::sleep_until(deadline);
                    tokio::pin!(sleep);
                    // Registered before the flag is checked, so a notice sent in between is not
                    // missed.
                    let notice = if served == 0 {
                        &shared.stopping
                    } else {
                        &shared.close_idle
                    };
                    let notified = notice.notified();
                    tokio::pin!(notified);
                    if idle {
                        notified.as_mut().enable();
                    }
                    let wait = std::future::poll_fn(|cx| {
                        // Stopping while idle: no wait, one last read below (so a request the
                        // client already sent is answered with `Connection: close` instead of
                        // dropped), then the connection closes.
                        if idle && Stop.is_set() {
                            return Poll::Ready(Ok(Wait::Stopping));
                        }
                        if let Poll::Ready(r) = stream.poll_read_ready(cx) {
                            return Poll::Ready(r.map(|()| Wait::Ready));
                        }
                        if sleep.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Ok(Wait::TimedOut));
                        }
                        if idle && notified.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Ok(Wait::Stopping));
                        }
                        Poll::Pending
                    })
                    .await;
                    match or_end!(wait) {
                        Wait::Ready => {}
                        // Woken to make room under the connection cap: close.
                        Wait::Stopping if !Stop.is_set() => return,
                        Wait::Stopping => {}
                        Wait::TimedOut if idle => return,
                        Wait::TimedOut => {
                            let reply = with_date(|date| shared.site.refuse(408, date));
                            or_end!(Box::pin(refuse(&stream, reply, &shared.limits)).await);
                            return;
                        }
                    }
                    let got = if buf.is_empty() {
                        // A new request: read and parse it in the thread's scratch buffer.
                        // The last look at shutdown reads the socket itself: the stop notice
                        // can wake us before the reactor has seen the request's readiness,
                        // and tokio's try_io would then not even try.
                        let last_look = idle && Stop.is_set();
                        match or_end!(read_fresh(&stream, &shared.limits, &mut buf, last_look)) {
                            Fresh::Request(req) => break req,
                            // Parsed again from the connection's buffer at the top, and refused.
                            Fresh::Refuse => continue,
                            Fresh::Read(n) => n,
                            // Nothing there: wait again, unless this was the last look.
                            Fresh::Stale if idle && Stop.is_set() => return,
                            Fresh::Stale => continue,
                        }
                    } else {
                        // The rest of a request: appended to what the connection holds of it.
                        match read_more(&stream, &mut buf) {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            r => or_end!(r),
                        }
                    };
                    if got == 0 {
                        return;
                    }
                    head_start.get_or_insert_with(|| {
                        if served == 0 {
                            idle_since
                        } else {
                            Instant::now()
                        }
                    });
                }
            };

            // 2. and 3. The reply: planned without an await for the common request (no body,
            // a file or a page); a body to discard or a workload continue in a boxed future.
            // (Taken apart first, and the reply dropped before the await: neither may stay in
            // the task while it waits.)
            let (reply, close_after) = {
                let mut later = None;
                let now = match answer(&stream, &shared, req, &mut buf, served) {
                    Answer::Now(reply) => Some(reply),
                    Answer::Later(f) => {
                        later = Some(f);
                        None
                    }
                };
                match later {
                    None => match now {
                        Some(reply) => (reply, false),
                        None => return,
                    },
                    Some(later) => {
                        drop(now);
                        match or_end!(later.await) {
                            Some(answer) => answer,
                            None => return,
                        }
                    }
                }
            };
            served += 1;

            // 4. Write it: one send for the common reply, a boxed future for the rest.
            let close = reply.close;
            let sent = or_end!(write_reply(&stream, reply, shared.limits.write_timeout));
            let complete = match sent {
                Sent::All => true,
                Sent::Shrunk => false,
                Sent::Rest(rest) => or_end!(rest.await),
            };
            if !complete {
                return;
            }
            if close {
                if close_after || !buf.is_empty() {
                    Box::pin(linger(&stream)).await;
                }
                return;
            }
            idle_since = Instant::now();
        }
    }
}

/// Appends what the socket holds to the connection's partial request.
fn read_more(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    let len = buf.len();
    buf.resize(buf.capacity(), 0);
    let r = read_some(stream, &mut buf[len..]);
    buf.truncate(len + *r.as_ref().unwrap_or(&0));
    r
}

thread_local! {
    /// The read buffer of every connection of this thread that holds no partial request, which
    /// is all of them but the one being served: a request is read and parsed here, and only
    /// what is left over (the start of a pipelined request) or a request that did not come
    /// whole is copied into the connection's own buffer. A buffer per connection cost an 8 KiB
    /// malloc, memset and free per request: 40% of the loop's user-space instructions
    /// (callgrind, 20,715 -> see the commit message) and RSS fragments between idle tasks.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// What [`read_fresh`] found.
enum Fresh {
    /// A whole request (anything after it was kept in the connection's buffer).
    Request(Request),
    /// A request the parser refuses: its bytes were kept in the connection's buffer, where the
    /// loop parses them again and answers the refusal (this path is rare; the request path
    /// stays free of a request kept across the refusal's await).
    Refuse,
    /// Bytes read but not yet a whole request, kept in the connection's buffer; 0: the client
    /// closed.
    Read(usize),
    /// Nothing to read after all (the readiness was stale): wait again.
    Stale,
}

/// Reads into the thread's scratch buffer and parses from there (see [`SCRATCH`]); `buf` (the
/// connection's, empty) receives what must outlive this call.
fn read_fresh(
    stream: &TcpStream,
    limits: &ConnLimits,
    buf: &mut Vec<u8>,
    bypass_readiness: bool,
) -> io::Result<Fresh> {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let read = if bypass_readiness {
            use std::io::Read;
            (&*socket2::SockRef::from(stream)).read(&mut scratch[..])
        } else {
            read_some(stream, &mut scratch[..])
        };
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fresh::Stale),
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(Fresh::Read(0));
        }
        let bytes = &scratch[..n];
        Ok(match http::parse(bytes, &limits.head) {
            Ok(Parsed::Complete(req, used)) => {
                buf.extend_from_slice(&bytes[used..]);
                Fresh::Request(req)
            }
            Ok(Parsed::Partial) => {
                buf.extend_from_slice(bytes);
                Fresh::Read(n)
            }
            Err(_) => {
                buf.extend_from_slice(bytes);
                Fresh::Refuse
            }
        })
    })
}

/// Reads what the socket holds into `dst`, like `try_read`, but a read that returns less than
/// asked also clears tokio's cached read-readiness. TCP's recv hands over everything queued up
/// to the size asked, so a short read has drained the socket; without this, the next wait would
/// find the socket "ready" and learn otherwise from one more recv failing with EAGAIN, which
/// happened for 0.4-0.9 of every keep-alive request. Data arriving after the recv raises a new
/// edge, and tokio clears only readiness older than that edge, so no wake-up is lost.
fn read_some(stream: &TcpStream, dst: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    let mut got = 0;
    let r = stream.try_io(Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(stream)).read(dst)?;
        got = n;
        if n > 0 && n < dst.len() {
            // Not an error: the signal that makes try_io clear the readiness.
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        r => r,
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The reply to a request, now or after an await.
enum Answer<'a> {
    Now(Reply),
    /// `None`: the client stopped sending its body. The flag: close after the reply.
    Later(BoxFuture<'a, io::Result<Option<(Reply, bool)>>>),
}

/// Takes the request (so it is never held across the connection task's awaits) and answers it
/// at once when it can.
fn answer<'a>(
    stream: &'a TcpStream,
    shared: &'a Shared,
    req: Request,
    buf: &'a mut Vec<u8>,
    served: u64,
) -> Answer<'a> {
    if req.body_len > 0 {
        return Answer::Later(Box::pin(with_body(stream, shared, req, buf, served)));
    }
    let ka = keep_alive(&req, served, shared.limits.max_requests, Stop.is_set());
    match plan(&shared.site, &req, ka) {
        Plan::Reply(reply) => {
            log_reply(stream, &req, &reply);
            Answer::Now(reply)
        }
        Plan::Work(work) => Answer::Later(Box::pin(async move {
            let reply = work_reply(&shared.site, &req, work, ka).await;
            log_reply(stream, &req, &reply);
            Ok(Some((reply, false)))
        })),
    }
}

/// What to answer `req`, given whether the connection is to be kept.
fn plan(site: &Site, req: &Request, keep_alive: bool) -> Plan {
    with_date(|date| site.plan(req, Ctx { date, keep_alive }))
}

/// Runs a workload (inline for `/cpu`, a timer for `/io`), then builds its reply.
async fn work_reply(site: &Site, req: &Request, work: Work, keep_alive: bool) -> Reply {
    let primes = match work {
        Work::Primes(n) => Some(crate::site::workload::count_primes(n)),
        Work::Sleep(d) => {
            tokio::time::sleep(d).await;
            None
        }
    };
    work_done(site, req, work, primes, keep_alive)
}

/// The client's address for the access log, looked up only when a log is written (keeping it
/// in the task would cost every idle connection 24 bytes).
fn peer(stream: &TcpStream) -> Option<std::net::IpAddr> {
    if crate::access_log::enabled() {
        stream.peer_addr().ok().map(|a| a.ip())
    } else {
        None
    }
}

/// Access-log line of an answered request, written when the reply is ready (the request is
/// not kept across the write's await).
fn log_reply(stream: &TcpStream, req: &Request, reply: &Reply) {
    if crate::access_log::enabled() {
        log_request(peer(stream), Some(req), reply.status, reply.body.len());
    }
}

/// A request with a body: read and drop the body (or, too large, answer and close), then answer.
/// `None` when the client stopped sending before the body was complete. The flag says the
/// connection closes after the reply because the body was left unread.
async fn with_body(
    stream: &TcpStream,
    shared: &Shared,
    req: Request,
    buf: &mut Vec<u8>,
    served: u64,
) -> io::Result<Option<(Reply, bool)>> {
    let limits = &shared.limits;
    let mut close_after = false;
    if req.body_len <= limits.max_discard {
        let deadline = Instant::now() + limits.header_timeout;
        if !discard(stream, buf, req.body_len, deadline).await? {
            return Ok(None);
        }
    } else {
        close_after = true;
    }
    let ka = keep_alive(&req, served, limits.max_requests, Stop.is_set()) && !close_after;
    let reply = match plan(&shared.site, &req, ka) {
        Plan::Reply(reply) => reply,
        Plan::Work(work) => work_reply(&shared.site, &req, work, ka).await,
    };
    log_reply(stream, &req, &reply);
    Ok(Some((reply, close_after)))
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

/// How far [`write_reply`] got without waiting.
enum Sent<'a> {
    All,
    /// The file is shorter than the length the head promised (truncated meanwhile): close.
    Shrunk,
    /// The rest, to await: true when complete, false if the file shrank while being sent.
    Rest(BoxFuture<'a, io::Result<bool>>),
}

/// Writes a reply. The common one (a small body inlined behind the head) goes out with one
/// `send` and no await; only a reply the socket does not take at once, or one with a file
/// body, continues in a boxed future, so the writing states (timers, readiness futures) are not
/// part of every connection's task.
fn write_reply(stream: &TcpStream, mut reply: Reply, wt: Duration) -> io::Result<Sent<'_>> {
    if !inline_small_body(&mut reply)? {
        return Ok(Sent::Shrunk);
    }
    let mut written = 0;
    if matches!(reply.body, Body::Empty) {
        // Straight to the socket, not through tokio's readiness (see `write_all`).
        match super::send(stream, &reply.head, false) {
            Ok(n) if n == reply.head.len() => return Ok(Sent::All),
            Ok(n) => written = n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Sent::Rest(Box::pin(write_rest(stream, reply, written, wt))))
}

/// The rest of [`write_reply`]: the head from `written` on, then the body.
async fn write_rest(
    stream: &TcpStream,
    reply: Reply,
    written: usize,
    wt: Duration,
) -> io::Result<bool> {
    let more = matches!(reply.body, Body::File { .. });
    // `write_reply` has just tried the socket directly, unless a file body follows the head.
    let raw_first = more;
    write_all(stream, &reply.head[written..], wt, more, raw_first).await?;
    match reply.body {
        Body::Empty | Body::Bytes(_) => Ok(true),
        Body::File { file, parts, .. } => {
            for part in parts {
                match part {
                    Part::Bytes(b) => write_all(stream, &b, wt, false, true).await?,
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
/// (the common small reply costs one write syscall and no readiness future). `more`: a file body
/// follows (see [`super::send`]).
///
/// The first attempt (`raw_first`: unless the caller has just tried) goes straight to the
/// socket, not through tokio's readiness: a connection read at once after a deferred accept has
/// no readiness recorded yet (the reactor has not turned since it was registered), and `try_io` would report WouldBlock without trying, then
/// wait a reactor turn with the write timer armed: `h2load -c64 -H 'Connection: close'` showed
/// 0.4-0.55 eventfd writes per connection (tokio waking its own reactor for that timer). Later
/// attempts go through `try_io`, which clears a stale readiness on EAGAIN, so the wait that
/// follows one is a real one.
async fn write_all(
    stream: &TcpStream,
    bytes: &[u8],
    wt: Duration,
    more: bool,
    raw_first: bool,
) -> io::Result<()> {
    let mut off = 0;
    let mut first = raw_first;
    while off < bytes.len() {
        let rest = &bytes[off..];
        let sent = if std::mem::take(&mut first) {
            super::send(stream, rest, more)
        } else {
            stream.try_io(Interest::WRITABLE, || super::send(stream, rest, more))
        };
        match sent {
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
/// The first attempt bypasses tokio's readiness, as in [`write_all`].
async fn send_file(
    stream: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    len: u64,
    wt: Duration,
) -> io::Result<bool> {
    let mut off = offset as i64;
    let end = offset + len;
    let mut first = true;
    while (off as u64) < end {
        let want = ((end - off as u64) as usize).min(1 << 30);
        let mut send = || {
            nix::sys::sendfile::sendfile(stream.as_fd(), file.as_fd(), Some(&mut off), want)
                .map_err(io::Error::from)
        };
        let sent = if std::mem::take(&mut first) {
            send()
        } else {
            stream.try_io(Interest::WRITABLE, send)
        };
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
    // Logged here, in the boxed refusal, not in the connection task (it would grow the task).
    log_request(peer(stream), None, reply.status, reply.body.len());
    if let Sent::Rest(rest) = write_reply(stream, reply, limits.write_timeout)? {
        rest.await?;
    }
    linger(stream).await;
    Ok(())
}

/// Half-closes and drains what the client still sends (bounded), so our last response is not
/// destroyed by a RST caused by unread data.
async fn linger(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    // On the heap: an array here would be part of every connection's future, idle or not.
    let mut scratch = vec![0u8; 4096];
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

/// Accepts a connection. tokio's own `TcpListener::accept` registers a new connection as
/// already readable, so its first read is tried at once; without deferred accept
/// (`--no-defer-accept`), on a busy server the client has usually not sent its request yet,
/// and that read failed with EAGAIN for 97% of connections
/// (`h2load --h1 -c64 -H 'Connection: close'`, perf's syscall tracepoints: 1.97 `recvfrom` per
/// connection). Registered here as not ready, the first read waits for epoll to report the
/// request (an edge-triggered registration reports data that is already there at once), as
/// nginx does: 1.00 `recvfrom` per connection. (With deferred accept, the default, the request
/// is there already and `serve` reads it at once, see its `read_at_once`.)
async fn accept(listener: &AsyncFd<std::net::TcpListener>) -> io::Result<TcpStream> {
    use nix::sys::socket::{accept4, SockFlag};
    use std::os::fd::{AsRawFd, FromRawFd};
    let fd = listener
        .async_io(Interest::READABLE, |l| {
            let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
            accept4(l.as_raw_fd(), flags).map_err(io::Error::from)
        })
        .await?;
    // SAFETY: accept4 returned a new descriptor, owned by nothing else.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    TcpStream::from_std(stream)
}

/// The accept loop of one event loop: spawns a task per connection until SIGINT/SIGTERM, then
/// stops accepting, tells idle connections to close, and waits (up to `grace`) for the rest.
/// `deferred`: the listener has TCP_DEFER_ACCEPT (see `serve`'s `read_at_once`).
pub async fn accept_until_stopped(
    listener: std::net::TcpListener,
    deferred: bool,
    shared: Arc<Shared>,
    signals: crate::shutdown::Signals,
    grace: Duration,
) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    listener.set_nonblocking(true)?;
    // SAFETY: the AsyncFd owns the listener, which nothing closes or replaces while registered.
    let listener = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE)? };
    // Register tokio's handlers, and only then let the signals through.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    signals.unblock()?;
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
            r = accept(&listener) => match r {
                Ok(stream) => {
                    // Counted now, not when the task first runs, so the cap check above sees it.
                    let guard = Active::new(&shared);
                    tokio::spawn(serve(stream, Arc::clone(&shared), guard, deferred));
                }
                Err(e) => tokio::time::sleep(crate::listener::accept_backoff(&e)).await,
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stopping, grace {grace:?}");
    Stop.trigger();
    drop(listener);
    shared.close_idle.notify_waiters();
    shared.stopping.notify_waiters();
    // Every connection task holds an `Active`; each one ending wakes us (Stop is set).
    let drained = timeout(grace, async {
        loop {
            let freed = shared.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if shared.active.load(Ordering::Acquire) == 0 {
                return;
            }
            freed.await;
        }
    });
    if drained.await.is_err() {
        tracing::warn!("grace period over with requests still in flight; exiting");
    }
    crate::access_log::flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection pays for its whole task, whatever state it waits in: a buffer or a
    /// rare state inlined into the future shows up here (it was 5,240 bytes once). At most 400
    /// bytes keeps tokio's task cell (32-byte header, 16 bytes of scheduler and id, the future
    /// and its tag, a 48-byte trailer, rounded up to 128) at 512 bytes; 8 more would make it 640.
    #[test]
    fn connection_task_stays_small() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let stream = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let dir = std::env::temp_dir();
            let shared = Arc::new(Shared::new(Site::new(&dir).unwrap(), ConnLimits::default()));
            let task = serve(stream, shared, (), true);
            let size = std::mem::size_of_val(&task);
            assert!(size <= 400, "the connection task grew to {size} bytes");
        });
    }
}
