//! One connection's HTTP/1.1 protocol state, sans-IO: bytes and the time come in as values,
//! [`Step`]s go out, and every rule about the connection is decided here.
//!
//! An executor (blocking, evented, io_uring) owns the socket, the read buffer and the timers,
//! and loops: `poll` → carry out the step → report what happened (`on_eof`, `on_timeout`,
//! `finish_head`, `written`) → `poll` again. It holds no protocol rule of its own. What this file
//! decides:
//! - which deadline is in force: the header deadline, counted from accept for the first request
//!   and from its first byte for a later one (or from the end of the last reply when a pipelined
//!   request is already buffered); the idle keep-alive deadline between requests; the body's;
//! - when a head is complete, refused (400/408/414/431/411/501/505), or incomplete;
//! - a request body: read and dropped (up to `max_discard`), or left unread and the connection
//!   closed after the answer; or, when the site wants it (a CGI script's stdin, see
//!   [`Conn::keep_body`]), handed out whole up to the site's cap, and refused with 413 beyond;
//! - keep-alive: the client's wish, `--max-requests`, shutdown, an unread body; and so the
//!   `Connection` field that ends every head;
//! - at shutdown, an idle connection gets one last look for a request already sent, then closes;
//! - closing with a linger (half-close, then drain a bounded amount) when unread bytes could
//!   otherwise turn the close into a RST that destroys the last answer.
//!
//! States: `Head` (reading or waiting for a request head), `Body` (dropping a request body),
//! `Keep` (handing a request body out),
//! `Respond` (the executor is building the answer), `Refuse` (the executor is building a refusal),
//! `Writing` (the answer is being written), `Done` (close).
use std::time::{Duration, Instant};

use super::{parse, Limits, Parsed, Request};

/// After a refusal or with unread bytes, drain what the client still sends for at most this long
/// (and [`LINGER_BYTES`]) before closing, so its kernel does not answer our close with a RST that
/// destroys the response still in its receive buffer. Apache's lingering close waits 2 s in
/// 30 ms steps; half a second covers a loopback or LAN client's last in-flight bytes.
pub const LINGER: Duration = Duration::from_millis(500);
/// At most this much is drained while lingering: a client that keeps sending is cut off.
pub const LINGER_BYTES: usize = 256 * 1024;

/// The protocol rules of a connection, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Parser limits (414/431).
    pub head: Limits,
    /// A request head must be complete this long after the connection opened or the first byte
    /// of a later request arrived; else 408 and close (slowloris defence). Also bounds the wait
    /// for a request body.
    pub header_timeout: Duration,
    /// A kept-alive connection with no new request for this long is closed silently.
    pub idle_timeout: Duration,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
    /// Requests served on one connection before it is closed (nginx's keepalive_requests).
    pub max_requests: u64,
    /// Request bodies up to this size are read and discarded to keep the connection; larger ones
    /// get their answer and a close.
    pub max_discard: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            head: Limits::default(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            max_requests: 1000,
            max_discard: 1 << 20,
        }
    }
}

/// What the executor does next.
// Returned by value once per step and matched at once; boxing the request would add an
// allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Wait for bytes until `deadline`, then append them to the buffer (or call
    /// [`Conn::on_eof`], or [`Conn::on_timeout`] when the deadline passed first). `idle`: no
    /// request is under way, so the executor may also close the connection to make room under
    /// its connection cap, and must poll again at once when shutdown begins.
    Read { deadline: Instant, idle: bool },
    /// Shutdown began while idle: read once without waiting (a request the client already sent
    /// is answered, with `Connection: close`), then poll again.
    LastLook,
    /// A request head: drop the first `used` bytes of the buffer and keep the request; poll
    /// again until [`Step::Respond`] (its body, if any, is dropped first).
    Request(Request, usize),
    /// Drop the first `n` bytes of the buffer (request body).
    Discard(usize),
    /// Hand the first `n` bytes of the buffer to the answer (the request body the site asked
    /// for with [`Conn::keep_body`]), then drop them.
    Body(usize),
    /// Build the answer to the request, end its head with [`Conn::finish_head`], write it, then
    /// call [`Conn::written`].
    Respond,
    /// Build the refusal with this status, end its head with [`Conn::finish_head`], write it,
    /// then call [`Conn::written`].
    Refuse(u16),
    /// Close the connection; with `linger`, half-close first and drain what the client still
    /// sends for up to [`LINGER`] and [`LINGER_BYTES`].
    Close { linger: bool },
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for or reading a request head.
    Head,
    /// Dropping `left` bytes of request body (for up to the header timeout from `since`).
    Body { left: u64 },
    /// Handing out `left` more bytes of request body (same deadline as `Body`).
    Keep { left: u64 },
    /// The executor is answering a request.
    Respond,
    /// The executor is answering with a refusal (`status`).
    Refuse { status: u16 },
    /// The answer's head is finished; it is being written. `refused`: it is a refusal.
    Writing { close: bool, refused: bool },
    /// Nothing more to do but close.
    Done { linger: bool },
}

/// One connection's protocol state (64 bytes: every idle connection of an event loop holds
/// one).
#[derive(Debug, Clone)]
pub struct Conn {
    state: State,
    /// Requests answered so far.
    served: u64,
    /// When the wait for the next request began: the accept, or the end of the last answer
    /// (while a body is dropped: the end of the request's head).
    since: Instant,
    /// When the request head now being read began (`None` while idle).
    head_start: Option<Instant>,
    /// The client's wish to keep the connection after the request being answered.
    wants_keep: bool,
    /// The request's body is left unread: close (with a linger) after the answer.
    body_unread: bool,
    /// The executor reported the deadline of the last [`Step::Read`] passed.
    expired: bool,
    /// The peer closed its side (read returned 0).
    eof: bool,
    /// The shutdown's last look has been taken.
    looked: bool,
}

impl Conn {
    /// A connection accepted at `now`.
    pub fn new(now: Instant) -> Conn {
        Conn {
            state: State::Head,
            served: 0,
            since: now,
            head_start: None,
            wants_keep: false,
            body_unread: false,
            expired: false,
            eof: false,
            looked: false,
        }
    }

    /// Requests answered so far.
    pub fn served(&self) -> u64 {
        self.served
    }

    /// The next step, given the buffered bytes (`buf`: what has been read and not yet dropped),
    /// the time, and whether shutdown has begun.
    pub fn poll(&mut self, rules: &Rules, now: Instant, buf: &[u8], stopping: bool) -> Step {
        match self.state {
            State::Head => self.poll_head(rules, now, buf, stopping),
            State::Body { left } => {
                self.poll_body(left, false, self.since + rules.header_timeout, buf)
            }
            State::Keep { left } => {
                self.poll_body(left, true, self.since + rules.header_timeout, buf)
            }
            State::Respond => Step::Respond,
            State::Refuse { status } => Step::Refuse(status),
            // The executor polls again only after `written`; a poll now is a bug in it, and
            // closing is the safe answer.
            State::Writing { .. } => Step::Close { linger: false },
            State::Done { linger } => Step::Close { linger },
        }
    }

    fn poll_head(&mut self, rules: &Rules, now: Instant, buf: &[u8], stopping: bool) -> Step {
        let expired = std::mem::take(&mut self.expired);
        if buf.is_empty() {
            return self.poll_idle(rules, now, stopping, expired);
        }
        // The first request counts from the accept, a later one from its first byte, or from
        // the end of the last answer when it was already buffered (pipelined).
        let start = *self
            .head_start
            .get_or_insert(if self.served == 0 { self.since } else { now });
        match parse(buf, &rules.head) {
            Ok(Parsed::Complete(req, used)) => self.start_request(rules, now, req, used),
            Err(e) => self.refuse(e.status()),
            Ok(Parsed::Partial) if self.eof => self.close(false),
            Ok(Parsed::Partial) => {
                let deadline = start + rules.header_timeout;
                if expired || now >= deadline {
                    self.refuse(408)
                } else {
                    Step::Read {
                        deadline,
                        idle: false,
                    }
                }
            }
        }
    }

    /// No byte of a request yet: wait for one, or close (client left, idle too long, shutdown).
    fn poll_idle(&mut self, rules: &Rules, now: Instant, stopping: bool, expired: bool) -> Step {
        if self.eof {
            return self.close(false);
        }
        if stopping {
            if std::mem::replace(&mut self.looked, true) {
                return self.close(false);
            }
            return Step::LastLook;
        }
        let wait = if self.served == 0 {
            rules.header_timeout
        } else {
            rules.idle_timeout
        };
        let deadline = self.since + wait;
        if expired || now >= deadline {
            return self.close(false);
        }
        Step::Read {
            deadline,
            idle: true,
        }
    }

    fn start_request(&mut self, rules: &Rules, now: Instant, req: Request, used: usize) -> Step {
        self.wants_keep = req.keep_alive;
        self.body_unread = false;
        self.state = if req.body_len == 0 {
            State::Respond
        } else if req.body_len <= rules.max_discard {
            // The body's deadline counts from the end of the head.
            self.since = now;
            State::Body { left: req.body_len }
        } else {
            self.body_unread = true;
            State::Respond
        };
        Step::Request(req, used)
    }

    /// Dropping (or, `keep`, handing out) a body: what is buffered now, else wait for more (an
    /// incomplete body is not answered: the client stopped, or was too slow).
    fn poll_body(&mut self, left: u64, keep: bool, deadline: Instant, buf: &[u8]) -> Step {
        if left == 0 {
            self.state = State::Respond;
            return Step::Respond;
        }
        if !buf.is_empty() {
            let n = (buf.len() as u64).min(left);
            let left = left - n;
            if keep {
                self.state = State::Keep { left };
                return Step::Body(n as usize);
            }
            self.state = State::Body { left };
            return Step::Discard(n as usize);
        }
        if self.eof || std::mem::take(&mut self.expired) {
            return self.close(false);
        }
        Step::Read {
            deadline,
            idle: false,
        }
    }

    fn refuse(&mut self, status: u16) -> Step {
        self.state = State::Refuse { status };
        Step::Refuse(status)
    }

    fn close(&mut self, linger: bool) -> Step {
        self.state = State::Done { linger };
        Step::Close { linger }
    }

    /// The site wants the body of the request just returned by [`Step::Request`] (`body_len`
    /// bytes): it is handed out by [`Step::Body`] instead of dropped, and [`Step::Respond`]
    /// follows once it is whole. Beyond `limit` bytes the request is refused with 413 instead
    /// (the body left unread, so the connection closes with a linger), before any is read:
    /// the body is held in memory until the answer starts. Call it before polling again.
    pub fn keep_body(&mut self, body_len: u64, limit: u64, now: Instant) {
        if body_len == 0 || !matches!(self.state, State::Body { .. } | State::Respond) {
            return;
        }
        if body_len > limit {
            self.body_unread = true;
            self.state = State::Refuse { status: 413 };
            return;
        }
        self.body_unread = false;
        // The body's deadline counts from the end of the head.
        self.since = now;
        self.state = State::Keep { left: body_len };
    }

    /// The answer under way has no length of its own (a CGI script's output to an HTTP/1.0
    /// client): its end is the connection's, so the head says `Connection: close`. Call it
    /// before [`Conn::finish_head`].
    pub fn close_after_answer(&mut self) {
        self.wants_keep = false;
    }

    /// The peer closed its sending side (a read returned 0).
    pub fn on_eof(&mut self) {
        self.eof = true;
    }

    /// The deadline of the last [`Step::Read`] passed with nothing read.
    pub fn on_timeout(&mut self) {
        self.expired = true;
    }

    /// Ends the answer's head: decides whether the connection is kept and appends the
    /// `Connection` field and the blank line. Returns true when the connection closes after this
    /// answer. `stopping`: shutdown has begun (checked now, after any workload ran, so a client
    /// is told `close` rather than send a request we would not read).
    pub fn finish_head(&mut self, rules: &Rules, head: &mut Vec<u8>, stopping: bool) -> bool {
        let refused = !matches!(self.state, State::Respond);
        let keep = !refused
            && self.wants_keep
            && !self.body_unread
            && !stopping
            && self.served + 1 < rules.max_requests;
        head.extend_from_slice(if keep {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
        self.state = State::Writing {
            close: !keep,
            refused,
        };
        !keep
    }

    /// The answer was written whole at `now`. `buf`: what is buffered (a pipelined request).
    pub fn written(&mut self, now: Instant, buf: &[u8]) {
        let (close, refused) = match self.state {
            State::Writing { close, refused } => (close, refused),
            // Not after a finished head: nothing was promised, close.
            _ => (true, false),
        };
        self.served += 1;
        self.head_start = None;
        self.since = now;
        self.state = if close {
            // Unread bytes (a body left unread, a pipelined request we will not answer, what
            // followed a refused head) would make the close a RST: linger.
            State::Done {
                linger: refused || self.body_unread || !buf.is_empty(),
            }
        } else {
            State::Head
        };
    }

    /// The write deadline for a write starting (or making progress) at `now`.
    pub fn write_deadline(&self, rules: &Rules, now: Instant) -> Instant {
        now + rules.write_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn rules() -> Rules {
        Rules {
            header_timeout: 10 * S,
            idle_timeout: 75 * S,
            ..Rules::default()
        }
    }

    /// Polls until a step other than `Request` or `Discard`, applying those two to `buf`, and
    /// returns the requests seen and that step.
    fn drive(c: &mut Conn, now: Instant, buf: &mut Vec<u8>, stop: bool) -> (Vec<Request>, Step) {
        let mut reqs = Vec::new();
        loop {
            match c.poll(&rules(), now, buf, stop) {
                Step::Request(req, used) => {
                    buf.drain(..used);
                    reqs.push(req);
                }
                Step::Discard(n) => {
                    buf.drain(..n);
                }
                step => return (reqs, step),
            }
        }
    }

    /// Answers the request being responded to and returns the head's ending.
    fn answer(c: &mut Conn, now: Instant, buf: &[u8], stop: bool) -> String {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        c.finish_head(&rules(), &mut head, stop);
        c.written(now, buf);
        String::from_utf8(head).unwrap()
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn first_request_head_deadline_counts_from_accept() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let idle = c.poll(&rules(), t0, b"", false);
        assert_eq!(
            idle,
            Step::Read {
                deadline: t0 + 10 * S,
                idle: true
            }
        );
        // The first byte arrives 4 s in: the deadline stays 10 s after the accept.
        let step = c.poll(&rules(), t0 + 4 * S, b"GE", false);
        assert_eq!(
            step,
            Step::Read {
                deadline: t0 + 10 * S,
                idle: false
            }
        );
        assert_eq!(
            c.poll(&rules(), t0 + 10 * S, b"GE", false),
            Step::Refuse(408)
        );
    }

    #[test]
    fn a_later_request_counts_from_its_first_byte_after_the_idle_wait() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = GET.to_vec();
        let (reqs, step) = drive(&mut c, t0, &mut buf, false);
        assert_eq!((reqs.len(), step), (1, Step::Respond));
        assert!(answer(&mut c, t0 + S, &buf, false).ends_with("Connection: keep-alive\r\n\r\n"));
        // Idle: the keep-alive timeout from the end of the answer.
        let idle = c.poll(&rules(), t0 + 30 * S, b"", false);
        assert_eq!(
            idle,
            Step::Read {
                deadline: t0 + 76 * S,
                idle: true
            }
        );
        // The next request's first byte at 40 s: its head has 10 s from then.
        let step = c.poll(&rules(), t0 + 40 * S, b"G", false);
        assert_eq!(
            step,
            Step::Read {
                deadline: t0 + 50 * S,
                idle: false
            }
        );
        c.on_timeout();
        assert_eq!(
            c.poll(&rules(), t0 + 50 * S, b"G", false),
            Step::Refuse(408)
        );
        let mut head = Vec::new();
        assert!(c.finish_head(&rules(), &mut head, false));
        assert_eq!(head, b"Connection: close\r\n\r\n");
        c.written(t0 + 50 * S, b"G");
        // After a refusal the close lingers, so the 408 is not destroyed by a RST.
        assert_eq!(
            c.poll(&rules(), t0 + 50 * S, b"G", false),
            Step::Close { linger: true }
        );
    }

    #[test]
    fn an_idle_connection_closes_silently_at_the_idle_timeout() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = GET.to_vec();
        drive(&mut c, t0, &mut buf, false);
        answer(&mut c, t0, &buf, false);
        assert_eq!(
            c.poll(&rules(), t0 + 75 * S, b"", false),
            Step::Close { linger: false }
        );
        // Reported by the executor rather than seen on the clock: the same.
        let mut c = Conn::new(t0);
        c.on_timeout();
        assert_eq!(
            c.poll(&rules(), t0, b"", false),
            Step::Close { linger: false }
        );
    }

    #[test]
    fn max_requests_closes_after_the_last_one() {
        let r = Rules {
            max_requests: 2,
            ..rules()
        };
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut endings = Vec::new();
        for _ in 0..2 {
            let mut buf = GET.to_vec();
            drive(&mut c, t0, &mut buf, false);
            let mut head = Vec::new();
            c.finish_head(&r, &mut head, false);
            c.written(t0, &buf);
            endings.push(String::from_utf8(head).unwrap());
        }
        assert_eq!(
            endings,
            [
                "Connection: keep-alive\r\n\r\n",
                "Connection: close\r\n\r\n"
            ]
        );
        assert_eq!(c.served(), 2);
        assert_eq!(c.poll(&r, t0, b"", false), Step::Close { linger: false });
    }

    #[test]
    fn shutdown_takes_one_last_look_at_an_idle_connection() {
        let t0 = Instant::now();
        // Nothing was sent: one look, then close.
        let mut c = Conn::new(t0);
        assert_eq!(c.poll(&rules(), t0, b"", true), Step::LastLook);
        assert_eq!(
            c.poll(&rules(), t0, b"", true),
            Step::Close { linger: false }
        );
        // A request was already sent: it is answered, with `Connection: close`.
        let mut c = Conn::new(t0);
        assert_eq!(c.poll(&rules(), t0, b"", true), Step::LastLook);
        let mut buf = GET.to_vec();
        let (reqs, step) = drive(&mut c, t0, &mut buf, true);
        assert_eq!((reqs.len(), step), (1, Step::Respond));
        assert!(answer(&mut c, t0, &buf, true).ends_with("Connection: close\r\n\r\n"));
        assert_eq!(
            c.poll(&rules(), t0, &buf, true),
            Step::Close { linger: false }
        );
    }

    #[test]
    fn shutdown_during_a_workload_answers_with_close() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = b"GET /io HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        drive(&mut c, t0, &mut buf, false);
        // The workload runs; shutdown begins meanwhile; the head is finished after it.
        assert!(answer(&mut c, t0 + S, &buf, true).ends_with("Connection: close\r\n\r\n"));
        assert_eq!(
            c.poll(&rules(), t0 + S, &buf, true),
            Step::Close { linger: false }
        );
    }

    #[test]
    fn a_body_is_dropped_before_the_answer_even_when_it_arrives_late() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel".to_vec();
        let (reqs, step) = drive(&mut c, t0, &mut buf, false);
        assert_eq!(reqs[0].body_len, 5);
        assert!(buf.is_empty());
        assert_eq!(
            step,
            Step::Read {
                deadline: t0 + 10 * S,
                idle: false
            }
        );
        // The rest of the body and a pipelined request in one read.
        buf.extend_from_slice(b"lo");
        buf.extend_from_slice(GET);
        let (_, step) = drive(&mut c, t0 + S, &mut buf, false);
        assert_eq!(step, Step::Respond);
        assert_eq!(buf, GET);
        assert!(answer(&mut c, t0 + S, &buf, false).ends_with("keep-alive\r\n\r\n"));
        let (reqs, step) = drive(&mut c, t0 + S, &mut buf, false);
        assert_eq!((reqs[0].target.as_str(), step), ("/", Step::Respond));
    }

    #[test]
    fn an_incomplete_body_is_not_answered() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhe".to_vec();
        drive(&mut c, t0, &mut buf, false);
        c.on_eof();
        assert_eq!(
            c.poll(&rules(), t0, &buf, false),
            Step::Close { linger: false }
        );
        let mut c = Conn::new(t0);
        let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n".to_vec();
        drive(&mut c, t0, &mut buf, false);
        c.on_timeout();
        assert_eq!(
            c.poll(&rules(), t0 + 10 * S, &buf, false),
            Step::Close { linger: false }
        );
    }

    #[test]
    fn a_body_too_large_to_drop_is_answered_then_the_connection_closes_with_a_linger() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999\r\n\r\nxx".to_vec();
        let (_, step) = drive(&mut c, t0, &mut buf, false);
        assert_eq!(step, Step::Respond);
        assert!(answer(&mut c, t0, &buf, false).ends_with("Connection: close\r\n\r\n"));
        assert_eq!(
            c.poll(&rules(), t0, &buf, false),
            Step::Close { linger: true }
        );
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf =
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        let mut order = Vec::new();
        for _ in 0..2 {
            let (reqs, step) = drive(&mut c, t0, &mut buf, false);
            assert_eq!(step, Step::Respond);
            order.push(reqs[0].target.clone());
            answer(&mut c, t0, &buf, false);
        }
        assert_eq!(order, ["/a", "/b"]);
        assert!(matches!(
            c.poll(&rules(), t0, &buf, false),
            Step::Read { idle: true, .. }
        ));
    }

    #[test]
    fn a_pipelined_request_buffered_at_close_makes_the_close_linger() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /".to_vec();
        drive(&mut c, t0, &mut buf, false);
        assert!(answer(&mut c, t0, &buf, false).ends_with("Connection: close\r\n\r\n"));
        assert_eq!(
            c.poll(&rules(), t0, &buf, false),
            Step::Close { linger: true }
        );
    }

    #[test]
    fn http_1_0_closes_unless_it_asks_to_keep() {
        let t0 = Instant::now();
        for (req, ending) in [
            (&b"GET / HTTP/1.0\r\n\r\n"[..], "Connection: close\r\n\r\n"),
            (
                &b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"[..],
                "Connection: keep-alive\r\n\r\n",
            ),
        ] {
            let mut c = Conn::new(t0);
            let mut buf = req.to_vec();
            drive(&mut c, t0, &mut buf, false);
            assert!(answer(&mut c, t0, &buf, false).ends_with(ending));
        }
    }

    #[test]
    fn bad_bytes_are_refused_and_a_client_gone_mid_head_is_not_answered() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        assert_eq!(
            c.poll(&rules(), t0, b"\x16\x03\x01", false),
            Step::Refuse(400)
        );
        let mut c = Conn::new(t0);
        assert!(matches!(
            c.poll(&rules(), t0, b"GET / HT", false),
            Step::Read { idle: false, .. }
        ));
        c.on_eof();
        assert_eq!(
            c.poll(&rules(), t0, b"GET / HT", false),
            Step::Close { linger: false }
        );
    }

    /// The same bytes give the same steps whether they come whole or one at a time.
    #[test]
    fn bytes_one_at_a_time_give_the_same_requests() {
        let t0 = Instant::now();
        let stream = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut c = Conn::new(t0);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        for &b in stream.iter() {
            buf.push(b);
            loop {
                let (reqs, step) = drive(&mut c, t0, &mut buf, false);
                seen.extend(reqs.into_iter().map(|r| r.target));
                match step {
                    Step::Respond => answer(&mut c, t0, &buf, false),
                    Step::Read { .. } => break,
                    other => panic!("unexpected {other:?}"),
                };
            }
        }
        assert_eq!(seen, ["/a", "/b", "/c"]);
        assert_eq!(c.served(), 3);
    }

    /// Like [`drive`], for a site that wants every body (up to `limit`): returns the body
    /// handed out and the step that ended the drive.
    fn drive_keep(c: &mut Conn, now: Instant, buf: &mut Vec<u8>, limit: u64) -> (Vec<u8>, Step) {
        let mut body = Vec::new();
        loop {
            match c.poll(&rules(), now, buf, false) {
                Step::Request(req, used) => {
                    buf.drain(..used);
                    c.keep_body(req.body_len, limit, now);
                }
                Step::Body(n) => body.extend(buf.drain(..n)),
                step => return (body, step),
            }
        }
    }

    const POST: &[u8] = b"POST /cgi HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn a_wanted_body_is_handed_out_whole_then_the_next_request_follows() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = [POST, GET].concat();
        let (body, step) = drive_keep(&mut c, t0, &mut buf, 100);
        assert_eq!((body.as_slice(), step), (&b"hello"[..], Step::Respond));
        assert_eq!(buf, GET);
        assert!(answer(&mut c, t0, &buf, false).ends_with("keep-alive\r\n\r\n"));
        let (_, step) = drive_keep(&mut c, t0, &mut buf, 100);
        assert_eq!(step, Step::Respond);
    }

    #[test]
    fn a_wanted_body_one_byte_at_a_time_is_the_same_body() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = Vec::new();
        let mut body = Vec::new();
        let mut last = None;
        for &b in POST {
            buf.push(b);
            let (got, step) = drive_keep(&mut c, t0, &mut buf, 100);
            body.extend(got);
            last = Some(step);
        }
        assert_eq!(body, b"hello");
        assert_eq!(last, Some(Step::Respond));
    }

    #[test]
    fn a_wanted_body_over_the_limit_is_refused_with_413_and_a_lingering_close() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = POST.to_vec();
        let (body, step) = drive_keep(&mut c, t0, &mut buf, 4);
        assert!(body.is_empty());
        assert_eq!(step, Step::Refuse(413));
        let mut head = Vec::new();
        assert!(c.finish_head(&rules(), &mut head, false));
        c.written(t0, &buf);
        assert_eq!(
            c.poll(&rules(), t0, &buf, false),
            Step::Close { linger: true }
        );
        // Over `max_discard` too: the same refusal.
        let mut c = Conn::new(t0);
        let mut buf = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999\r\n\r\n".to_vec();
        assert_eq!(drive_keep(&mut c, t0, &mut buf, 4).1, Step::Refuse(413));
    }

    #[test]
    fn a_wanted_body_larger_than_max_discard_but_within_the_limit_is_read() {
        let r = Rules {
            max_discard: 2,
            ..rules()
        };
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = POST.to_vec();
        let Step::Request(req, used) = c.poll(&r, t0, &buf, false) else {
            panic!("no request");
        };
        buf.drain(..used);
        c.keep_body(req.body_len, 100, t0);
        assert_eq!(c.poll(&r, t0, &buf, false), Step::Body(5));
        buf.clear();
        assert_eq!(c.poll(&r, t0, &buf, false), Step::Respond);
        assert!(answer(&mut c, t0, &buf, false).ends_with("keep-alive\r\n\r\n"));
    }

    #[test]
    fn a_wanted_body_that_stops_coming_is_not_answered() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = POST[..POST.len() - 2].to_vec();
        let (body, step) = drive_keep(&mut c, t0 + S, &mut buf, 100);
        assert_eq!(body, b"hel");
        // The body's deadline counts from the end of the head.
        assert_eq!(
            step,
            Step::Read {
                deadline: t0 + 11 * S,
                idle: false
            }
        );
        c.on_timeout();
        assert_eq!(
            c.poll(&rules(), t0 + 11 * S, &buf, false),
            Step::Close { linger: false }
        );
    }

    #[test]
    fn an_answer_without_a_length_closes_the_connection() {
        let t0 = Instant::now();
        let mut c = Conn::new(t0);
        let mut buf = GET.to_vec();
        drive(&mut c, t0, &mut buf, false);
        c.close_after_answer();
        assert!(answer(&mut c, t0, &buf, false).ends_with("Connection: close\r\n\r\n"));
        assert_eq!(
            c.poll(&rules(), t0, &buf, false),
            Step::Close { linger: false }
        );
    }

    #[test]
    fn the_state_stays_small() {
        // Every idle connection of an event loop holds one.
        assert!(
            std::mem::size_of::<Conn>() <= 72,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }
}
