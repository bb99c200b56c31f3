//! The blocking connection loop (std::net): one connection served to its end by the calling
//! thread or process. Used by `threads` and `processes`.
//!
//! A blocked worker serves no one else, so every wait is bounded: the idle keep-alive timeout,
//! the header deadline (408), the write timeout, and a request cap per connection.
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::config::ConnLimits;
use crate::http::{self, Parsed};
use crate::shutdown::Stop;
use crate::site::{Body, Ctx, Part, Plan, Reply, Site, Work};

use super::{inline_small_body, keep_alive, log_request, with_date, work_done, READ_CHUNK};

/// While idle, wake this often to notice a shutdown (cheap: a handful of workers).
const STOP_POLL: Duration = Duration::from_millis(200);
/// After a refusal, read and drop what the client still sends for at most this long, so the
/// close does not turn into a RST that destroys our error response in the client's buffer.
const LINGER: Duration = Duration::from_millis(500);

/// Serves `stream` until the client leaves, a limit is hit, or shutdown begins.
pub fn serve(stream: TcpStream, site: &Site, limits: &ConnLimits, stop: Stop) {
    let peer = if crate::access_log::enabled() {
        stream.peer_addr().ok().map(|a| a.ip())
    } else {
        None
    };
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(READ_CHUNK),
        timeout: None,
        peer,
    };
    if let Err(e) = conn.run(site, limits, stop) {
        tracing::debug!("connection ended: {e}");
    }
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The read timeout currently set on the socket (set only when it changes: a syscall).
    timeout: Option<Duration>,
    /// The client's address, for the access log (looked up only when logging).
    peer: Option<std::net::IpAddr>,
}

/// Why a read returned without data.
enum Wait {
    Data,
    Closed,
    TimedOut,
    Stopping,
}

impl Conn {
    fn run(&mut self, site: &Site, limits: &ConnLimits, stop: Stop) -> io::Result<()> {
        // TCP_NODELAY comes from the listener (see listener::bind).
        self.stream.set_write_timeout(Some(limits.write_timeout))?;
        let mut served: u64 = 0;
        // When the wait for the current request began (connection start, or end of last reply).
        let mut idle_since = Instant::now();
        loop {
            // 1. A complete request head.
            let mut head_start = if self.buf.is_empty() {
                None
            } else {
                Some(idle_since)
            };
            let req = loop {
                match http::parse(&self.buf, &limits.head) {
                    Ok(Parsed::Complete(req, used)) => {
                        self.buf.drain(..used);
                        break req;
                    }
                    Ok(Parsed::Partial) => {}
                    Err(e) => {
                        let reply = with_date(|date| site.refuse(e.status(), date));
                        return self.refuse(reply);
                    }
                }
                let deadline = match head_start {
                    // The first request counts from the connection's start (header timeout);
                    // later ones may idle for the keep-alive timeout before starting.
                    None if served == 0 => idle_since + limits.header_timeout,
                    None => idle_since + limits.idle_timeout,
                    Some(start) => start + limits.header_timeout,
                };
                match self.read_more(deadline, head_start.is_none(), stop)? {
                    Wait::Data => {
                        head_start.get_or_insert_with(|| {
                            if served == 0 {
                                idle_since
                            } else {
                                Instant::now()
                            }
                        });
                    }
                    Wait::Closed | Wait::Stopping => return Ok(()),
                    Wait::TimedOut if head_start.is_none() => return Ok(()),
                    Wait::TimedOut => {
                        return self.refuse(with_date(|date| site.refuse(408, date)));
                    }
                }
            };

            // 2. The body, if any: read and dropped so the next request starts where it should.
            let mut close_after = false;
            if req.body_len > 0 {
                if req.body_len <= limits.max_discard {
                    let deadline = Instant::now() + limits.header_timeout;
                    if !self.discard(req.body_len, deadline)? {
                        return Ok(()); // incomplete request: no answer
                    }
                } else {
                    close_after = true;
                }
            }

            // 3. Plan, run the workload, write.
            let ka = keep_alive(&req, served, limits.max_requests, stop.is_set()) && !close_after;
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
                            std::thread::sleep(d);
                            None
                        }
                    };
                    work_done(site, &req, work, primes, ka)
                }
            };
            served += 1;
            let close = reply.close;
            let (status, body_len) = (reply.status, reply.body.len());
            let complete = self.write_reply(reply)?;
            log_request(self.peer, Some(&req), status, body_len);
            if !complete {
                return Ok(());
            }
            if close {
                return self.close(close_after || !self.buf.is_empty());
            }
            idle_since = Instant::now();
        }
    }

    /// Reads once into the buffer, waiting until `deadline`. While `idle` (between requests),
    /// wakes every [`STOP_POLL`] to notice a shutdown.
    fn read_more(&mut self, deadline: Instant, idle: bool, stop: Stop) -> io::Result<Wait> {
        loop {
            if idle && stop.is_set() {
                // One last non-blocking read: a request the client already sent is served
                // (with `Connection: close`) rather than dropped by the shutdown.
                return self.last_look();
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Wait::TimedOut);
            }
            let mut wait = deadline - now;
            if idle {
                wait = wait.min(STOP_POLL);
            }
            // Round up to whole milliseconds so the cached value is usually reused.
            let wait = Duration::from_millis(wait.as_millis().max(1) as u64);
            if self.timeout != Some(wait) {
                self.stream.set_read_timeout(Some(wait))?;
                self.timeout = Some(wait);
            }
            let len = self.buf.len();
            self.buf.resize(len + READ_CHUNK, 0);
            let result = self.stream.read(&mut self.buf[len..]);
            match result {
                Ok(0) => {
                    self.buf.truncate(len);
                    return Ok(Wait::Closed);
                }
                Ok(n) => {
                    self.buf.truncate(len + n);
                    return Ok(Wait::Data);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    self.buf.truncate(len);
                }
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        }
    }

    /// Reads whatever is already buffered in the socket, without waiting.
    fn last_look(&mut self) -> io::Result<Wait> {
        self.stream.set_nonblocking(true)?;
        let len = self.buf.len();
        self.buf.resize(len + READ_CHUNK, 0);
        let result = self.stream.read(&mut self.buf[len..]);
        self.stream.set_nonblocking(false)?;
        match result {
            Ok(n) if n > 0 => {
                self.buf.truncate(len + n);
                Ok(Wait::Data)
            }
            _ => {
                self.buf.truncate(len);
                Ok(Wait::Stopping)
            }
        }
    }

    /// Drops `len` body bytes (some may already be buffered). False if the client stopped early.
    fn discard(&mut self, len: u64, deadline: Instant) -> io::Result<bool> {
        let buffered = (self.buf.len() as u64).min(len);
        self.buf.drain(..buffered as usize);
        let mut left = len - buffered;
        let mut scratch = [0u8; 8192];
        while left > 0 {
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            self.stream.set_read_timeout(Some(deadline - now))?;
            self.timeout = None;
            let want = (left as usize).min(scratch.len());
            match self.stream.read(&mut scratch[..want]) {
                Ok(0) => return Ok(false),
                Ok(n) => left -= n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes a whole reply. False if the file shrank under us (the connection must close: the
    /// head promised more bytes than exist).
    fn write_reply(&mut self, mut reply: Reply) -> io::Result<bool> {
        if !inline_small_body(&mut reply)? {
            return Ok(false);
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
        match reply.body {
            Body::Empty | Body::Bytes(_) => Ok(true),
            Body::File { file, parts, .. } => {
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
        }
    }

    /// Answers a refused request and closes.
    fn refuse(&mut self, reply: Reply) -> io::Result<()> {
        log_request(self.peer, None, reply.status, reply.body.len());
        self.write_reply(reply)?;
        self.close(true)
    }

    /// Closes; with `linger`, first says we are done writing and drains what the client still
    /// sends (bounded), so our last response is not lost to a RST.
    fn close(&mut self, linger: bool) -> io::Result<()> {
        if linger {
            self.stream.shutdown(Shutdown::Write)?;
            let deadline = Instant::now() + LINGER;
            let mut scratch = [0u8; 4096];
            let mut drained = 0usize;
            while drained < 256 * 1024 {
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
        }
        Ok(())
    }
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
