//! The blocking executor (std::net): one connection served to its end by the calling thread or
//! process, doing what the connection state machine says. Used by `threads` and `processes`.
//!
//! Over TLS (`tls`: a [`Session`] between the socket and the buffer) the same loop runs; the
//! socket's timeouts bound the handshake's reads and writes as they bound a request's, and file
//! bodies are encrypted in chunks instead of sent with sendfile.
//!
//! A blocked worker serves no one else, so every wait is bounded (the state machine's deadlines,
//! the write timeout as SO_SNDTIMEO), and an idle wait wakes every [`STOP_POLL`] to notice a
//! shutdown.
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::http::conn::{Conn, Rules, Step, LINGER, LINGER_BYTES};
use crate::http::Request;
use crate::shutdown::Stop;
use crate::site::{Body, Part, Plan, Reply, Site, Work};

use super::cgi::Outcome;
use super::exchange::Exchange;
use super::tls::Session;
use super::{after_work, cgi_failure, log_request, refusal, READ_CHUNK};
use crate::site::cgi::{Peer, Script};

/// While idle, wake this often to notice a shutdown (cheap: a handful of workers).
const STOP_POLL: Duration = Duration::from_millis(200);

/// Serves `stream` until the client leaves, a limit is hit, or shutdown begins; over TLS with
/// `tls`.
pub fn serve(
    stream: TcpStream,
    site: &Site,
    rules: &Rules,
    stop: Stop,
    tls: Option<&crate::tls::Tls>,
) {
    let peer = if crate::access_log::enabled() {
        stream.peer_addr().ok().map(|a| a.ip())
    } else {
        None
    };
    let tls = match tls.map(|t| Session::new(&t.0)).transpose() {
        Ok(tls) => tls,
        Err(e) => return tracing::warn!("TLS session: {e}"),
    };
    let mut ex = Blocking {
        stream,
        tls,
        buf: Vec::with_capacity(READ_CHUNK),
        timeout: None,
        peer,
    };
    if let Err(e) = ex.run(site, rules, stop) {
        tracing::debug!("connection ended: {e}");
    }
}

struct Blocking {
    stream: TcpStream,
    /// The TLS session, on an HTTPS listener.
    tls: Option<Session>,
    buf: Vec<u8>,
    /// The read timeout currently set on the socket (set only when it changes: a syscall).
    timeout: Option<Duration>,
    /// The client's address, for the access log (looked up only when logging).
    peer: Option<std::net::IpAddr>,
}

impl Blocking {
    fn run(&mut self, site: &Site, rules: &Rules, stop: Stop) -> io::Result<()> {
        // TCP_NODELAY comes from the listener (see listener::bind).
        self.stream.set_write_timeout(Some(rules.write_timeout))?;
        let mut conn = Conn::new(Instant::now());
        let mut ex = Exchange::default();
        loop {
            let step = conn.poll(rules, Instant::now(), &self.buf, stop.closes_idle());
            let Some(step) = ex.take(site, &mut conn, &mut self.buf, step) else {
                continue;
            };
            match step {
                Step::Read { deadline, idle } => self.read(&mut conn, deadline, idle, stop)?,
                Step::LastLook => self.last_look(&mut conn)?,
                Step::Respond => {
                    let Some((req, planned, body)) = ex.answer(site) else {
                        return Ok(());
                    };
                    if let Plan::Cgi(script) = planned {
                        if !self.cgi(&mut conn, (site, rules), &req, &script, body, stop)? {
                            return Ok(());
                        }
                        continue;
                    }
                    let reply = answer(site, &req, planned);
                    if !self.send(&mut conn, rules, reply, Some(&req), stop)? {
                        return Ok(());
                    }
                }
                Step::Refuse(status) => {
                    if !self.send(&mut conn, rules, refusal(site, status), None, stop)? {
                        return Ok(());
                    }
                }
                Step::Close { linger } => {
                    self.close_notify();
                    if linger {
                        self.linger()?;
                    }
                    return Ok(());
                }
                // Taken by the exchange.
                Step::Request(..) | Step::Discard(_) | Step::Body(_) => {}
            }
        }
    }

    /// Reads once into the buffer, waiting until `deadline`, and tells `conn` of an end of
    /// stream or a deadline passed. While `idle`, returns early when shutdown begins (the state
    /// machine then asks for a last look).
    fn read(
        &mut self,
        conn: &mut Conn,
        deadline: Instant,
        idle: bool,
        stop: Stop,
    ) -> io::Result<()> {
        loop {
            if idle && stop.closes_idle() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                conn.on_timeout();
                return Ok(());
            }
            let mut wait = deadline - now;
            if idle {
                wait = wait.min(STOP_POLL);
            }
            // Round up to whole milliseconds so the cached value is usually reused.
            self.set_read_timeout(Duration::from_millis(wait.as_millis().max(1) as u64))?;
            match self.read_some() {
                Ok(0) => {
                    conn.on_eof();
                    return Ok(());
                }
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn set_read_timeout(&mut self, wait: Duration) -> io::Result<()> {
        if self.timeout != Some(wait) {
            self.stream.set_read_timeout(Some(wait))?;
            self.timeout = Some(wait);
        }
        Ok(())
    }

    /// One read appended to the buffer.
    fn read_some(&mut self) -> io::Result<usize> {
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let result = match &mut self.tls {
            Some(tls) => tls.read(&mut &self.stream, &mut self.buf[len..]),
            None => self.stream.read(&mut self.buf[len..]),
        };
        self.buf.truncate(len + *result.as_ref().unwrap_or(&0));
        result
    }

    /// Reads whatever is already buffered in the socket, without waiting.
    fn last_look(&mut self, conn: &mut Conn) -> io::Result<()> {
        self.stream.set_nonblocking(true)?;
        let result = self.read_some();
        self.stream.set_nonblocking(false)?;
        if let Ok(0) = result {
            conn.on_eof();
        }
        Ok(())
    }

    /// Finishes the reply's head, writes it, logs it, and tells `conn`. False if the connection
    /// must end now (the file shrank under us: the head promised more bytes than exist).
    fn send(
        &mut self,
        conn: &mut Conn,
        rules: &Rules,
        mut reply: Reply,
        req: Option<&Request>,
        stop: Stop,
    ) -> io::Result<bool> {
        conn.finish_head(rules, &mut reply.head, stop.is_set());
        let (status, body_len) = (reply.status, reply.body.len());
        let complete = self.write_reply(reply)?;
        log_request(self.peer, req, status, body_len);
        if complete {
            conn.written(Instant::now(), &self.buf);
        }
        Ok(complete)
    }

    /// Runs a CGI script and streams its answer (or the error page of its failure). False if
    /// the connection must end now (the answer was cut short).
    fn cgi(
        &mut self,
        conn: &mut Conn,
        (site, rules): (&Site, &Rules),
        req: &Request,
        script: &Script,
        body: Vec<u8>,
        stop: Stop,
    ) -> io::Result<bool> {
        let peer = Peer {
            remote: self.stream.peer_addr().ok(),
            local: self.stream.local_addr().ok(),
            https: self.tls.is_some(),
        };
        let max = site.cgi().map_or(1, |o| o.max_scripts);
        let (stream, tls) = (&self.stream, &mut self.tls);
        let mut send = |bytes: &[u8]| match tls {
            Some(tls) => {
                tls.queue(bytes)?;
                tls.flush(&mut &*stream)
            }
            None => (&*stream).write_all(bytes),
        };
        let (outcome, status, printed) =
            super::cgi_blocking::run(script, body, peer, max, (conn, rules), &mut send)?;
        match outcome {
            Outcome::Sent => {
                log_request(self.peer, Some(req), status, printed);
                conn.written(Instant::now(), &self.buf);
                Ok(true)
            }
            Outcome::Cut => {
                log_request(self.peer, Some(req), status, printed);
                Ok(false)
            }
            Outcome::Failed(fail) => {
                let reply = cgi_failure(site, fail, script.head_only);
                self.send(conn, rules, reply, Some(req), stop)
            }
        }
    }

    /// Writes a whole reply. False if the file shrank under us.
    fn write_reply(&mut self, mut reply: Reply) -> io::Result<bool> {
        if !reply.inline_small_body()? {
            return Ok(false);
        }
        if let Some(tls) = &mut self.tls {
            return write_tls(tls, &self.stream, reply);
        }
        let more = matches!(reply.body, Body::File { .. });
        let mut off = 0;
        while off < reply.head.len() {
            match super::send(&self.stream, &reply.head[off..], more) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let Body::File { file, parts, .. } = reply.body else {
            return Ok(true);
        };
        for part in parts {
            match part {
                Part::Bytes(b) => self.stream.write_all(&b)?,
                Part::File { offset, len } => {
                    if !send_file(&self.stream, &file, offset, len)? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Over TLS, tells the client we are done (close_notify), best effort: the socket's write
    /// timeout bounds it.
    fn close_notify(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.close_notify();
            let _ = tls.flush(&mut &self.stream);
        }
    }

    /// Says we are done writing and drains what the client still sends (bounded), so our last
    /// response is not lost to a RST.
    fn linger(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)?;
        let deadline = Instant::now() + LINGER;
        let mut scratch = [0u8; 4096];
        let mut drained = 0usize;
        while drained < LINGER_BYTES {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.stream.set_read_timeout(Some(deadline - now))?;
            match self.stream.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
        Ok(())
    }
}

/// The reply to `req` as `planned`, running its workload first if it has one (a blocking
/// worker simply computes, or sleeps). A CGI plan is run by [`Blocking::cgi`] before this.
fn answer(site: &Site, req: &Request, planned: Plan) -> Reply {
    match planned {
        Plan::Reply(reply) => reply,
        Plan::Cgi(_) => refusal(site, 500),
        Plan::Work(work) => {
            let primes = match work {
                Work::Primes(n) => Some(crate::site::workload::count_primes(n)),
                Work::Sleep(d) => {
                    std::thread::sleep(d);
                    None
                }
            };
            after_work(site, req, work, primes)
        }
    }
}

/// Writes a whole reply through `tls`: the head and each part queued as records and written
/// out; a file part a [`super::tls::FILE_CHUNK`] at a time (the head in its first chunk), so at
/// most one chunk of records is queued. False if the file shrank under us.
fn write_tls(tls: &mut Session, stream: &TcpStream, reply: Reply) -> io::Result<bool> {
    let Body::File { file, parts, .. } = reply.body else {
        tls.queue(&reply.head)?;
        tls.flush(&mut &*stream)?;
        return Ok(true);
    };
    let mut head = &reply.head[..];
    for part in parts {
        match part {
            Part::Bytes(b) => {
                tls.queue(std::mem::take(&mut head))?;
                tls.queue(&b)?;
            }
            Part::File { offset, len } => {
                let mut done = 0;
                while done < len {
                    let n = tls.queue_file(
                        std::mem::take(&mut head),
                        &file,
                        offset + done,
                        len - done,
                    )?;
                    if n == 0 {
                        return Ok(false);
                    }
                    done += n as u64;
                    tls.flush(&mut &*stream)?;
                }
            }
        }
    }
    tls.queue(head)?;
    tls.flush(&mut &*stream)?;
    Ok(true)
}

/// sendfile(2) of `len` bytes at `offset`. False if the file ended early (truncated meanwhile).
fn send_file(out: &TcpStream, file: &std::fs::File, offset: u64, len: u64) -> io::Result<bool> {
    let mut off = offset as i64;
    let end = offset + len;
    while (off as u64) < end {
        let want = ((end - off as u64) as usize).min(1 << 30);
        match nix::sys::sendfile::sendfile(out.as_fd(), file.as_fd(), Some(&mut off), want) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    Ok(true)
}
