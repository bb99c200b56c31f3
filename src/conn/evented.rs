//! The evented executor (tokio): many connections per thread, each a task parked on readiness,
//! never on a thread, doing what the connection state machine says. Used by `async`,
//! `work-stealing` and `hybrid`.
//!
//! Waits are readiness futures with deadlines (timers, not threads), `/io` is a timer, `/cpu`
//! runs inline on the loop (as the seed's asyncio server did — the comparison shows what that
//! costs). An idle connection holds no read buffer: a new request is read into one scratch
//! buffer per thread, and a connection's own buffer exists only while it holds part of a
//! request.
//!
//! The connection task's size is what every idle keep-alive connection costs, and a future is
//! as large as its largest waiting state. So the task only waits for readiness (`wait::readable`:
//! the stream's readiness slot, a timer and the shutdown notices); everything that can be
//! done without waiting is done by [`drive`], a plain function, and every rare or bulky wait (a
//! body to drop, a workload, a reply the socket does not take at once, a refusal, a linger) is a
//! boxed future, allocated only when it happens. `connection_task_stays_small` keeps it so.
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::accept::Shared;
use super::cgi::Outcome;
use super::cgi_evented::Sink;
use super::wait::{self, Wait};
use super::{after_work, cgi_failure, log_request, plan, plan_at_head, refusal, READ_CHUNK};
use crate::http::conn::{Conn, Step, LINGER, LINGER_BYTES};
use crate::http::Request;
use crate::shutdown::Stop;
use crate::site::cgi::Script;
use crate::site::{Body, Part, Plan, Reply, Work};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether the connection goes on after a boxed step.
enum Flow {
    Continue,
    /// The connection ends now (the file shrank under a reply whose length was promised).
    End,
}

/// What the connection task waits for next, as [`drive`] found.
enum Next<'a> {
    /// Readable, until `deadline`; `idle`: between requests.
    Wait { deadline: Instant, idle: bool },
    /// A boxed step (body, workload, slow write, refusal).
    Later(BoxFuture<'a, io::Result<Flow>>),
    /// Close, lingering first or not.
    Close { linger: bool },
    /// End at once.
    End,
}

/// How [`drive`] may read before it waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Not until readiness is reported.
    No,
    /// Readiness was reported: read through tokio (which clears it when the socket is drained).
    Ready,
    /// Read the socket itself: a deferred connection's first request (the reactor has not
    /// turned since it was registered, so tokio would report WouldBlock without trying), or the
    /// shutdown's last look (the stop notice can wake the task before the reactor has seen the
    /// request's readiness).
    Raw,
}

/// Serves one connection to its end, then drops `guard` (the accept layer counts live
/// connections by it).
///
/// `read_at_once`: the connection came from a listener with TCP_DEFER_ACCEPT, so its request is
/// most likely there already: the first read is tried before waiting for readiness. A read that
/// finds nothing (a connection that came in through a SYN cookie, or one the kernel stopped
/// deferring after a second) waits as usual.
// Not an `async fn`: that would keep its arguments twice in every connection's task.
#[allow(clippy::manual_async_fn)]
pub fn serve<G: Send + 'static>(
    stream: TcpStream,
    shared: Arc<Shared>,
    guard: G,
    read_at_once: bool,
) -> impl Future<Output = ()> + Send {
    async move {
        // Captured (so dropped whenever the connection ends, however it ends), never bound to a
        // local: each reference kept in a local would be another 8 bytes of every task.
        let _ = &guard;
        let mut buf: Vec<u8> = Vec::new();
        let mut conn = Conn::new(Instant::now());
        let mut read = if read_at_once { Read::Raw } else { Read::No };
        loop {
            let (deadline, idle) = match drive(&stream, &shared, &mut conn, &mut buf, read) {
                Ok(Next::Wait { deadline, idle }) => (deadline, idle),
                Ok(Next::Later(later)) => match later.await {
                    Ok(Flow::Continue) => {
                        read = Read::No;
                        continue;
                    }
                    Ok(Flow::End) => return,
                    Err(e) => return tracing::debug!("connection ended: {e}"),
                },
                Ok(Next::Close { linger: true }) => return Box::pin(linger(&stream)).await,
                Ok(Next::Close { linger: false } | Next::End) => return,
                Err(e) => return tracing::debug!("connection ended: {e}"),
            };
            read = Read::No;
            if buf.is_empty() && buf.capacity() > 0 {
                // Idle: give the buffer back while we wait.
                buf = Vec::new();
            }
            match wait::readable(
                &stream,
                wait::notice(&shared, conn.served()),
                deadline,
                idle,
            )
            .await
            {
                Ok(Wait::Ready) => read = Read::Ready,
                Ok(Wait::TimedOut) => conn.on_timeout(),
                Ok(Wait::Shed) => return,
                // The state machine asks for a last look.
                Ok(Wait::Stopping) => {}
                Err(e) => return tracing::debug!("connection ended: {e}"),
            }
        }
    }
}

/// Carries out the state machine's steps that need no waiting: reads (as `read` allows),
/// answers the common request (no body, a file or a page that the socket takes at once) and
/// returns what must be waited for.
fn drive<'a>(
    stream: &'a TcpStream,
    shared: &'a Shared,
    conn: &'a mut Conn,
    buf: &'a mut Vec<u8>,
    mut read: Read,
) -> io::Result<Next<'a>> {
    let rules = &shared.limits.rules;
    loop {
        let req = match conn.poll(rules, Instant::now(), buf, Stop.closes_idle()) {
            Step::Read { deadline, idle } => {
                let how = std::mem::replace(&mut read, Read::No);
                if how == Read::No {
                    return Ok(Next::Wait { deadline, idle });
                }
                match read_into(stream, conn, shared, buf, how)? {
                    Some(req) => req,
                    None => continue,
                }
            }
            Step::LastLook => match read_into(stream, conn, shared, buf, Read::Raw)? {
                Some(req) => req,
                None => continue,
            },
            Step::Request(req, used) => {
                buf.drain(..used);
                req
            }
            Step::Discard(n) => {
                buf.drain(..n);
                continue;
            }
            // Only in a body's state, which `with_body` drives.
            Step::Body(_) => return Ok(Next::End),
            Step::Refuse(status) => {
                return Ok(Next::Later(Box::pin(refuse(
                    stream, shared, conn, buf, status,
                ))))
            }
            Step::Close { linger } => return Ok(Next::Close { linger }),
            // A request is always taken from `Step::Request` and answered before polling again.
            Step::Respond => return Ok(Next::End),
        };
        match answer_now(stream, shared, conn, buf, req)? {
            Answered::Written => {}
            Answered::End => return Ok(Next::End),
            Answered::Later(pending) => {
                return Ok(Next::Later(later(stream, shared, conn, buf, pending)))
            }
        }
    }
}

/// How far [`answer_now`] got.
// Built and consumed at once, never held across an await.
#[allow(clippy::large_enum_variant)]
enum Answered {
    Written,
    End,
    Later(Pending),
}

/// What is left of an answer that needs waiting.
enum Pending {
    /// A request body to drop (or keep, for a CGI script) first; the plan, if made at the head.
    Body(Request, Option<Plan>),
    /// A CGI script to run (no request body).
    Cgi(Request, Box<Script>),
    /// A workload to run first.
    Work(Request, Work),
    /// The rest of a reply the socket did not take at once, `usize` bytes of its head in.
    Write(Reply, usize),
}

/// Answers `req` without waiting when it can.
fn answer_now(
    stream: &TcpStream,
    shared: &Shared,
    conn: &mut Conn,
    buf: &[u8],
    req: Request,
) -> io::Result<Answered> {
    let planned = plan_at_head(&shared.site, &req, conn);
    if req.body_len > 0 {
        return Ok(Answered::Later(Pending::Body(req, planned)));
    }
    let mut reply = match planned.unwrap_or_else(|| plan(&shared.site, &req)) {
        Plan::Reply(reply) => reply,
        Plan::Work(work) => return Ok(Answered::Later(Pending::Work(req, work))),
        Plan::Cgi(script) => return Ok(Answered::Later(Pending::Cgi(req, script))),
    };
    conn.finish_head(&shared.limits.rules, &mut reply.head, Stop.is_set());
    log_reply(stream, Some(&req), &reply);
    Ok(match write_now(stream, &mut reply)? {
        Sent::All => {
            conn.written(Instant::now(), buf);
            Answered::Written
        }
        Sent::Shrunk => Answered::End,
        Sent::Part(written) => Answered::Later(Pending::Write(reply, written)),
    })
}

/// The boxed future that finishes a pending answer.
fn later<'a>(
    stream: &'a TcpStream,
    shared: &'a Shared,
    conn: &'a mut Conn,
    buf: &'a mut Vec<u8>,
    pending: Pending,
) -> BoxFuture<'a, io::Result<Flow>> {
    match pending {
        Pending::Body(req, planned) => Box::pin(with_body(stream, shared, conn, buf, req, planned)),
        Pending::Cgi(req, script) => {
            Box::pin(async move { cgi(stream, shared, conn, buf, &req, &script, Vec::new()).await })
        }
        Pending::Work(req, work) => Box::pin(async move {
            let reply = work_reply(shared, &req, work).await;
            send(stream, shared, conn, buf, reply, Some(&req)).await
        }),
        Pending::Write(reply, written) => Box::pin(async move {
            let wt = shared.limits.rules.write_timeout;
            if !write_rest(stream, reply, written, wt).await? {
                return Ok(Flow::End);
            }
            conn.written(Instant::now(), buf);
            Ok(Flow::Continue)
        }),
    }
}

thread_local! {
    /// The read buffer of every connection of this thread that holds no partial request, which
    /// is all of them but the one being served: a request is read and parsed here, and only
    /// what is left over (the start of a pipelined request) or a request that did not come
    /// whole is copied into the connection's own buffer. A buffer per connection cost an 8 KiB
    /// malloc, memset and free per request, 40% of the loop's user-space instructions
    /// (callgrind), and RSS fragments between idle tasks.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// One read. Into the thread's scratch buffer when the connection holds no bytes (see
/// [`SCRATCH`]): the state machine sees those bytes there, and only what it does not consume
/// (a request head, body bytes dropped) is copied into `buf`. Returns the request when one came
/// whole.
fn read_into(
    stream: &TcpStream,
    conn: &mut Conn,
    shared: &Shared,
    buf: &mut Vec<u8>,
    how: Read,
) -> io::Result<Option<Request>> {
    if !buf.is_empty() {
        return read_appending(stream, conn, buf, how).map(|()| None);
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let n = match read_some(stream, &mut scratch[..], how) {
            Ok(0) => {
                conn.on_eof();
                return Ok(None);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = &scratch[..n];
        let rules = &shared.limits.rules;
        match conn.poll(rules, Instant::now(), bytes, Stop.closes_idle()) {
            Step::Request(req, used) => {
                buf.extend_from_slice(&bytes[used..]);
                Ok(Some(req))
            }
            Step::Discard(n) => {
                buf.extend_from_slice(&bytes[n..]);
                Ok(None)
            }
            // A step that consumes no bytes is decided again on the connection's buffer (the
            // state machine repeats it).
            _ => {
                buf.extend_from_slice(bytes);
                Ok(None)
            }
        }
    })
}

/// One read appended to the connection's own buffer.
fn read_appending(
    stream: &TcpStream,
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    how: Read,
) -> io::Result<()> {
    buf.reserve(READ_CHUNK);
    let len = buf.len();
    buf.resize(buf.capacity(), 0);
    let r = read_some(stream, &mut buf[len..], how);
    buf.truncate(len + *r.as_ref().unwrap_or(&0));
    match r {
        Ok(0) => {
            conn.on_eof();
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads what the socket holds into `dst`. Through tokio's readiness, a read that returns less
/// than asked also clears the cached read-readiness: TCP's recv hands over everything queued up
/// to the size asked, so a short read has drained the socket; without this, the next wait would
/// find the socket "ready" and learn otherwise from one more recv failing with EAGAIN, which
/// happened for 0.4-0.9 of every keep-alive request. Data arriving after the recv raises a new
/// edge, and tokio clears only readiness older than that edge, so no wake-up is lost.
fn read_some(stream: &TcpStream, dst: &mut [u8], how: Read) -> io::Result<usize> {
    use std::io::Read as _;
    if how == Read::Raw {
        return (&*socket2::SockRef::from(stream)).read(dst);
    }
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

/// A request with a body: drops the body (or keeps it for a CGI script) as the state machine
/// says, then answers.
async fn with_body(
    stream: &TcpStream,
    shared: &Shared,
    conn: &mut Conn,
    buf: &mut Vec<u8>,
    req: Request,
    planned: Option<Plan>,
) -> io::Result<Flow> {
    let rules = &shared.limits.rules;
    let mut body = Vec::new();
    loop {
        match conn.poll(rules, Instant::now(), buf, Stop.closes_idle()) {
            Step::Discard(n) => {
                buf.drain(..n);
            }
            Step::Body(n) => body.extend(buf.drain(..n)),
            Step::Read { deadline, .. } => {
                match tokio::time::timeout_at(deadline.into(), stream.readable()).await {
                    Err(_) => conn.on_timeout(),
                    Ok(r) => {
                        r?;
                        // Into the connection's buffer, never parsed in the scratch buffer: a
                        // body handed out there (`Step::Body`) would be lost.
                        read_appending(stream, conn, buf, Read::Ready)?;
                    }
                }
            }
            Step::Respond => break,
            // The body did not come whole: the connection task polls again and closes.
            _ => return Ok(Flow::Continue),
        }
    }
    let reply = match planned.unwrap_or_else(|| plan(&shared.site, &req)) {
        Plan::Reply(reply) => reply,
        Plan::Work(work) => work_reply(shared, &req, work).await,
        Plan::Cgi(script) => return cgi(stream, shared, conn, buf, &req, &script, body).await,
    };
    send(stream, shared, conn, buf, reply, Some(&req)).await
}

/// The socket as a CGI answer's destination: each write waits under the write timeout.
struct Plain<'a> {
    stream: &'a TcpStream,
    wt: Duration,
}

impl Sink for Plain<'_> {
    fn send(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> + Send {
        write_all(self.stream, bytes, self.wt, false, false)
    }
}

/// Runs a CGI script and streams its answer, or sends the error page of its failure.
async fn cgi(
    stream: &TcpStream,
    shared: &Shared,
    conn: &mut Conn,
    buf: &[u8],
    req: &Request,
    script: &Script,
    body: Vec<u8>,
) -> io::Result<Flow> {
    let mut sink = Plain {
        stream,
        wt: shared.limits.rules.write_timeout,
    };
    let job = (req, script, body);
    let peer = super::cgi_evented::peer(stream, false);
    match super::cgi_evented::serve(peer, shared, job, conn, &mut sink).await? {
        Outcome::Sent => {
            conn.written(Instant::now(), buf);
            Ok(Flow::Continue)
        }
        Outcome::Cut => Ok(Flow::End),
        Outcome::Failed(fail) => {
            let reply = cgi_failure(&shared.site, fail, script.head_only);
            send(stream, shared, conn, buf, reply, Some(req)).await
        }
    }
}

/// Runs a workload (inline for `/cpu`, a timer for `/io`), then builds its reply.
pub(super) async fn work_reply(shared: &Shared, req: &Request, work: Work) -> Reply {
    let primes = match work {
        Work::Primes(n) => Some(crate::site::workload::count_primes(n)),
        Work::Sleep(d) => {
            tokio::time::sleep(d).await;
            None
        }
    };
    after_work(&shared.site, req, work, primes)
}

/// Answers a refused request (the connection task then closes, lingering).
async fn refuse(
    stream: &TcpStream,
    shared: &Shared,
    conn: &mut Conn,
    buf: &[u8],
    status: u16,
) -> io::Result<Flow> {
    send(
        stream,
        shared,
        conn,
        buf,
        refusal(&shared.site, status),
        None,
    )
    .await
}

/// Finishes the head, logs, writes the whole reply and tells the state machine.
async fn send(
    stream: &TcpStream,
    shared: &Shared,
    conn: &mut Conn,
    buf: &[u8],
    mut reply: Reply,
    req: Option<&Request>,
) -> io::Result<Flow> {
    conn.finish_head(&shared.limits.rules, &mut reply.head, Stop.is_set());
    log_reply(stream, req, &reply);
    let complete = match write_now(stream, &mut reply)? {
        Sent::All => true,
        Sent::Shrunk => false,
        Sent::Part(written) => {
            write_rest(stream, reply, written, shared.limits.rules.write_timeout).await?
        }
    };
    if !complete {
        return Ok(Flow::End);
    }
    conn.written(Instant::now(), buf);
    Ok(Flow::Continue)
}

/// Access-log line of an answer (a refusal: `req` None), written when the reply is ready. The
/// client's address is looked up only then (keeping it in the task would cost every idle
/// connection 24 bytes).
pub(super) fn log_reply(stream: &TcpStream, req: Option<&Request>, reply: &Reply) {
    if crate::access_log::enabled() {
        let peer = stream.peer_addr().ok().map(|a| a.ip());
        log_request(peer, req, reply.status, reply.body.len());
    }
}

/// How far [`write_now`] got without waiting.
enum Sent {
    All,
    /// The file is shorter than the length the head promised (truncated meanwhile): close.
    Shrunk,
    /// This much of the head went out; the rest (and any file body) needs [`write_rest`].
    Part(usize),
}

/// Writes a reply as far as it goes without waiting: the common one (a small body inlined
/// behind the head) goes out with one `send`, straight to the socket (see [`write_all`]).
fn write_now(stream: &TcpStream, reply: &mut Reply) -> io::Result<Sent> {
    if !reply.inline_small_body()? {
        return Ok(Sent::Shrunk);
    }
    if !matches!(reply.body, Body::Empty) {
        return Ok(Sent::Part(0));
    }
    match super::send(stream, &reply.head, false) {
        Ok(n) if n == reply.head.len() => Ok(Sent::All),
        Ok(n) => Ok(Sent::Part(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Sent::Part(0)),
        Err(e) => Err(e),
    }
}

/// The rest of a reply: the head from `written` on, then the body. False if the file shrank
/// while being sent.
async fn write_rest(
    stream: &TcpStream,
    reply: Reply,
    written: usize,
    wt: Duration,
) -> io::Result<bool> {
    let more = matches!(reply.body, Body::File { .. });
    // `write_now` has just tried the socket directly, unless a file body follows the head.
    let raw_first = more;
    write_all(stream, &reply.head[written..], wt, more, raw_first).await?;
    let Body::File { file, parts, .. } = reply.body else {
        return Ok(true);
    };
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

/// Writes all of `bytes`, trying first and waiting for writability only when the socket is full
/// (the common small reply costs one write syscall and no readiness future). `more`: a file body
/// follows (see [`super::send`]).
///
/// The first attempt (`raw_first`: unless the caller has just tried) goes straight to the
/// socket, not through tokio's readiness: a connection read at once after a deferred accept has
/// no readiness recorded yet (the reactor has not turned since it was registered), and `try_io`
/// would report WouldBlock without trying, then wait a reactor turn with the write timer armed:
/// `h2load -c64 -H 'Connection: close'` showed 0.4-0.55 eventfd writes per connection (tokio
/// waking its own reactor for that timer). Later attempts go through `try_io`, which clears a
/// stale readiness on EAGAIN, so the wait that follows one is a real one.
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

pub(super) async fn writable(stream: &TcpStream, wt: Duration) -> io::Result<()> {
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

/// Half-closes and drains what the client still sends (bounded), so our last response is not
/// destroyed by a RST caused by unread data.
pub(super) async fn linger(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let deadline = tokio::time::Instant::now() + LINGER;
    // On the heap: an array here would be part of every connection's future, idle or not.
    let mut scratch = vec![0u8; 4096];
    let mut drained = 0usize;
    while drained < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, stream.readable()).await {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConnLimits;
    use crate::site::Site;

    /// Every idle connection pays for its whole task, whatever state it waits in: a buffer or a
    /// rare state inlined into the future shows up here. At most 400 bytes keeps tokio's task
    /// cell (32-byte header, 16 bytes of scheduler and id, the future and its tag, a 48-byte
    /// trailer, rounded up to 128) at 512 bytes; 8 more would make it 640.
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
            let shared = Arc::new(Shared::new(
                Site::new(&dir).unwrap(),
                ConnLimits::default(),
                None,
            ));
            let task = serve(stream, shared, (), true);
            let size = std::mem::size_of_val(&task);
            assert!(size <= 400, "the connection task grew to {size} bytes");
        });
    }
}
