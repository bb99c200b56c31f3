//! The evented executor over TLS (tokio): one task per HTTPS connection, rustls driven by the
//! task itself through readiness (a [`Session`] between the socket and the state machine),
//! doing what the connection state machine says. Used by `async`, `work-stealing` and `hybrid`
//! when the server has a certificate.
//!
//! Not the plain executor with a session added: its tricks are about the raw socket (a read
//! buffer shared by the thread's connections, sendfile, a first write that skips tokio's
//! readiness), and every byte here goes through rustls' buffers instead. Not tokio-rustls
//! either: its stream keeps rustls' buffers and our read buffer besides, where here the
//! connection's own buffer exists only while it holds part of a request, and the wait between
//! requests is the same readiness-plus-deadline wait as the plain executor's.
//!
//! Memory of an idle connection: this task, the boxed session (rustls' state and its 4 KiB
//! receive buffer), no read buffer, no queued records.
use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::accept::Shared;
use super::cgi::Outcome;
use super::cgi_evented::Sink;
use super::evented::{linger, log_reply, work_reply, writable};
use super::exchange::Exchange;
use super::tls::Session;
use super::wait::{self, Wait};
use super::{cgi_failure, refusal, READ_CHUNK};
use crate::http::conn::{Conn, Step};
use crate::http::Request;
use crate::shutdown::Stop;
use crate::site::cgi::Script;
use crate::site::{Body, Part, Plan, Reply};

thread_local! {
    /// Decrypted bytes land here first, and only what a request leaves over is kept by the
    /// connection (see `evented::SCRATCH`, same reason: no 8 KiB buffer per connection).
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

/// Serves one HTTPS connection to its end, then drops `guard` (the accept layer counts live
/// connections by it).
#[allow(clippy::manual_async_fn)]
pub fn serve<G: Send + 'static>(
    stream: TcpStream,
    shared: Arc<Shared>,
    guard: G,
) -> impl Future<Output = ()> + Send {
    async move {
        let _ = &guard;
        let Some(tls) = &shared.tls else { return };
        let session = match Session::new(&tls.0) {
            Ok(s) => Box::new(s),
            Err(e) => return tracing::warn!("TLS session: {e}"),
        };
        let mut ex = Tls {
            stream,
            session,
            buf: Vec::new(),
        };
        if let Err(e) = ex.run(&shared).await {
            tracing::debug!("connection ended: {e}");
        }
    }
}

/// The socket as rustls reads and writes it: through tokio's readiness (`try_io` clears a
/// stale readiness on WouldBlock, so the next wait is a real one), or straight (`raw`: the
/// shutdown's last look, which must not wait for the reactor).
struct Sock<'a> {
    stream: &'a TcpStream,
    raw: bool,
}

impl Read for Sock<'_> {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if self.raw {
            return (&*socket2::SockRef::from(self.stream)).read(dst);
        }
        self.stream.try_read(dst)
    }
}

impl Write for Sock<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.stream.try_io(Interest::WRITABLE, || {
            super::send(self.stream, bytes, false)
        })
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.stream.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Tls {
    stream: TcpStream,
    session: Box<Session>,
    /// What the state machine has not consumed yet (part of a request); empty and without
    /// capacity while idle.
    buf: Vec<u8>,
}

impl Tls {
    async fn run(&mut self, shared: &Shared) -> io::Result<()> {
        let rules = &shared.limits.rules;
        let mut conn = Conn::new(Instant::now());
        let mut ex = Exchange::default();
        loop {
            let step = conn.poll(rules, Instant::now(), &self.buf, Stop.closes_idle());
            let Some(step) = ex.take(&shared.site, &mut conn, &mut self.buf, step) else {
                continue;
            };
            match step {
                Step::Read { deadline, idle } => {
                    if !self.read(&mut conn, shared, deadline, idle).await? {
                        return Ok(());
                    }
                }
                Step::LastLook => {
                    match self.read_now(true) {
                        Ok(0) => conn.on_eof(),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    };
                }
                Step::Respond => {
                    let Some(job) = ex.answer(&shared.site) else {
                        return Ok(());
                    };
                    if !Box::pin(self.respond(&mut conn, shared, job)).await? {
                        return Ok(());
                    }
                }
                Step::Refuse(status) => {
                    let reply = refusal(&shared.site, status);
                    if !Box::pin(self.send(&mut conn, shared, reply, None)).await? {
                        return Ok(());
                    }
                }
                Step::Close { linger: lingers } => {
                    self.session.close_notify();
                    let _ = self.flush_now();
                    if lingers {
                        Box::pin(linger(&self.stream)).await;
                    }
                    return Ok(());
                }
                // Taken by the exchange.
                Step::Request(..) | Step::Discard(_) | Step::Body(_) => {}
            }
        }
    }

    /// Writes queued records without waiting (WouldBlock when the socket is full).
    fn flush_now(&mut self) -> io::Result<()> {
        let mut sock = Sock {
            stream: &self.stream,
            raw: false,
        };
        self.session.flush(&mut sock)
    }

    /// Reads plaintext once without waiting, appending it to the buffer (through the thread's
    /// scratch buffer).
    fn read_now(&mut self, raw: bool) -> io::Result<usize> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let mut sock = Sock {
                stream: &self.stream,
                raw,
            };
            let n = self.session.read(&mut sock, &mut scratch[..])?;
            self.buf.extend_from_slice(&scratch[..n]);
            Ok(n)
        })
    }

    /// Reads until plaintext comes, the client closes, `deadline` passes, or (`idle`) shutdown
    /// or the connection cap asks idle connections to go. Records the handshake could not write
    /// at once are written first. False: close now (to make room under the cap).
    async fn read(
        &mut self,
        conn: &mut Conn,
        shared: &Shared,
        deadline: Instant,
        idle: bool,
    ) -> io::Result<bool> {
        loop {
            match self.read_now(false) {
                Ok(0) => {
                    conn.on_eof();
                    return Ok(true);
                }
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if self.session.wants_write() {
                let left = deadline.saturating_duration_since(Instant::now());
                self.flush(left.max(Duration::from_millis(1))).await?;
                continue;
            }
            if self.buf.is_empty() && self.buf.capacity() > 0 {
                self.buf = Vec::new();
            }
            match wait::readable(
                &self.stream,
                wait::notice(shared, conn.served()),
                deadline,
                idle,
            )
            .await?
            {
                Wait::Ready => {}
                Wait::TimedOut => {
                    conn.on_timeout();
                    return Ok(true);
                }
                Wait::Shed => return Ok(false),
                // The state machine asks for a last look.
                Wait::Stopping => return Ok(true),
            }
        }
    }

    /// Writes every queued record, waiting for writability (each wait up to `wt`).
    async fn flush(&mut self, wt: Duration) -> io::Result<()> {
        loop {
            match self.flush_now() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    writable(&self.stream, wt).await?
                }
                r => return r,
            }
        }
    }

    /// Answers a request as planned (running its workload or CGI script first) and writes the
    /// reply.
    async fn respond(
        &mut self,
        conn: &mut Conn,
        shared: &Shared,
        (req, planned, body): (Request, Plan, Vec<u8>),
    ) -> io::Result<bool> {
        let reply = match planned {
            Plan::Reply(reply) => reply,
            Plan::Work(work) => work_reply(shared, &req, work).await,
            Plan::Cgi(script) => return self.cgi(conn, shared, &req, &script, body).await,
        };
        self.send(conn, shared, reply, Some(&req)).await
    }

    /// Runs a CGI script and streams its answer through the session, or sends the error page
    /// of its failure. False if the connection must end now.
    async fn cgi(
        &mut self,
        conn: &mut Conn,
        shared: &Shared,
        req: &Request,
        script: &Script,
        body: Vec<u8>,
    ) -> io::Result<bool> {
        let wt = shared.limits.rules.write_timeout;
        let peer = super::cgi_evented::peer(&self.stream, true);
        let mut sink = Sealed { tls: self, wt };
        let job = (req, script, body);
        match super::cgi_evented::serve(peer, shared, job, conn, &mut sink).await? {
            Outcome::Sent => {
                conn.written(Instant::now(), &self.buf);
                Ok(true)
            }
            Outcome::Cut => Ok(false),
            Outcome::Failed(fail) => {
                let reply = cgi_failure(&shared.site, fail, script.head_only);
                self.send(conn, shared, reply, Some(req)).await
            }
        }
    }

    /// Finishes the head, logs, writes the whole reply and tells the state machine. False if
    /// the connection must end now (the file shrank under a reply whose length was promised).
    async fn send(
        &mut self,
        conn: &mut Conn,
        shared: &Shared,
        mut reply: Reply,
        req: Option<&Request>,
    ) -> io::Result<bool> {
        let rules = &shared.limits.rules;
        let closing = conn.finish_head(rules, &mut reply.head, Stop.is_set());
        log_reply(&self.stream, req, &reply);
        if !reply.inline_small_body()? {
            return Ok(false);
        }
        if !self
            .write_reply(reply, rules.write_timeout, closing)
            .await?
        {
            return Ok(false);
        }
        conn.written(Instant::now(), &self.buf);
        Ok(true)
    }

    /// The head and each part queued as records and written out; a file part a
    /// [`super::tls::FILE_CHUNK`] at a time (the head in its first chunk), so at most one chunk
    /// of records is queued. False if the file shrank under us. `closing`: the connection ends
    /// after this reply, so its close_notify goes out in the reply's last write rather than in
    /// a write of its own.
    async fn write_reply(&mut self, reply: Reply, wt: Duration, closing: bool) -> io::Result<bool> {
        let Body::File { file, parts, .. } = reply.body else {
            self.session.queue(&reply.head)?;
            if closing {
                self.session.close_notify();
            }
            self.flush(wt).await?;
            return Ok(true);
        };
        let mut head = &reply.head[..];
        for part in parts {
            match part {
                Part::Bytes(b) => {
                    self.session.queue(std::mem::take(&mut head))?;
                    self.session.queue(&b)?;
                }
                Part::File { offset, len } => {
                    let mut done = 0;
                    while done < len {
                        let prefix = std::mem::take(&mut head);
                        let n =
                            self.session
                                .queue_file(prefix, &file, offset + done, len - done)?;
                        if n == 0 {
                            return Ok(false);
                        }
                        done += n as u64;
                        self.flush(wt).await?;
                    }
                }
            }
        }
        self.session.queue(head)?;
        if closing {
            self.session.close_notify();
        }
        self.flush(wt).await?;
        Ok(true)
    }
}

/// The TLS session as a CGI answer's destination: records queued, then written out under the
/// write timeout.
struct Sealed<'a> {
    tls: &'a mut Tls,
    wt: Duration,
}

impl Sink for Sealed<'_> {
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tls.session.queue(bytes)?;
        self.tls.flush(self.wt).await
    }
}
