//! The load engine: per thread, one edge-triggered epoll loop (mio) driving its share of the
//! connections, each a small state machine (idle → connecting → writing → reading).
//!
//! Why it is shaped this way (the goal is h2load's speed at no more CPU per request):
//! - The request is encoded once; every send writes the same bytes. Buffers are per
//!   connection and reused, so the hot path allocates nothing.
//! - One `read` per response in the common case: once a read completes the response, nothing
//!   more is read (no data may follow it), so there is no second read just to see EAGAIN; a
//!   response that arrives in pieces is read until EAGAIN, as edge-triggered readiness
//!   requires (reading less could miss a FIN that came with the last piece: no new edge
//!   would announce it). A FIN may follow a complete response, though (a server closing a
//!   kept-alive connection without saying so): the event that reported the response also
//!   reports it (EPOLLRDHUP), and then the connection is not reused. A request written into
//!   it would never be answered by a server that half-closes and drains (a lingering close),
//!   and no new edge would come. One `write` per request, with no readiness wait: a request
//!   always fits the empty send buffer.
//! - Readiness that an event reports while a connection cannot read yet (connecting, or a
//!   request still being written) is remembered and read as soon as the request is out; it
//!   would not be reported again.
//! - One clock read per response: its end is the next request's start.
//! - Counts are per thread ([`Stats`]), merged at the end; the only shared write is a relaxed
//!   store of the thread's progress to its own cache line.
//!
//! HTTPS: a connection holds a rustls client session between the socket and the same state
//! machine, with one more state (handshaking, after connecting). The handshake's time (from the
//! `connect` call to the handshake's end, so TCP's handshake included, as h2load counts it) is
//! recorded apart for full and resumed handshakes; the session cache, when resumption is on, is
//! the configuration's, shared by every connection of the run.
//!
//! Every request that starts ends exactly once, as a response or an error, so `-n N` gives
//! N outcomes. Timeouts are checked every `TICK` (10 ms), so a stalled server costs at most
//! `timeout + TICK` per request and the run always ends by itself.
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use super::http1::{ResponseParser, MAX_HEAD};
use super::stats::{ErrorKind, Stats};
use super::tls::{describe, rustls_error, ClientTls};

/// Closed loop with `-n`: a thread takes this many requests at a time from the shared count,
/// so threads finish together (a static split lets one thread idle while the other works
/// alone through its share, which a busy machine makes likely) at one atomic operation per
/// batch.
const CLAIM: u64 = 16;
/// Timeout checks and open-loop wake-ups happen at least this often.
const TICK: Duration = Duration::from_millis(10);
/// The open loop's timer; connection tokens are indices, far below it.
const TIMER: Token = Token(usize::MAX);
/// Read buffer per connection: a typical response in one read; grows only for a larger head.
const BUF: usize = 16 * 1024;
/// Readiness events taken per `epoll_wait`.
const EVENTS: usize = 1024;

/// What a run does; built by the CLI, shared read-only by the threads.
#[derive(Debug, Clone)]
pub struct Plan {
    pub addr: SocketAddr,
    /// The encoded request, sent as it is for every request.
    pub request: Vec<u8>,
    /// The method is HEAD: responses announce a length but carry no body.
    pub head_request: bool,
    pub connections: usize,
    pub threads: usize,
    pub limit: Limit,
    /// Open loop: requests per second over the whole run, sent on schedule.
    pub rate: Option<f64>,
    /// Reuse connections; otherwise one connection per request.
    pub keep_alive: bool,
    /// Bound on each request, from its (intended) start to its last byte.
    pub timeout: Duration,
    /// HTTPS: the client configuration (its session cache decides resumption) and server name.
    pub tls: Option<ClientTls>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Exactly this many requests.
    Requests(u64),
    /// Start requests for this long (closed loop), or schedule `rate × duration` requests.
    Duration(Duration),
}

impl Plan {
    /// Requests the open loop schedules in total (None: closed loop).
    pub fn scheduled(&self) -> Option<u64> {
        let rate = self.rate?;
        Some(match self.limit {
            Limit::Requests(n) => n,
            Limit::Duration(d) => (rate * d.as_secs_f64()).ceil() as u64,
        })
    }
}

/// One request's end, for callers that print every request (the seed face).
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub result: Result<u16, ErrorKind>,
    pub latency: Duration,
}

/// Per-thread progress counters, each on its own cache line so that threads never share one.
#[derive(Debug, Default)]
pub struct Progress {
    slots: Vec<Slot>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

impl Progress {
    pub fn new(threads: usize) -> Progress {
        Progress {
            slots: (0..threads).map(|_| Slot::default()).collect(),
        }
    }

    /// Requests finished so far, over all threads.
    pub fn finished(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Runs the plan to its end and returns the merged counts; every valid response counts, whatever
/// its status.
pub fn run(plan: &Plan, progress: &Progress, log: Option<Sender<Outcome>>) -> io::Result<Stats> {
    run_expecting(plan, &[], progress, log)
}

/// [`run`], counting a valid response whose status is not in `expect` (when not empty) as an
/// [`ErrorKind::UnexpectedStatus`] error instead of a response. The outcomes sent to `log` keep
/// the status as received.
pub fn run_expecting(
    plan: &Plan,
    expect: &[u16],
    progress: &Progress,
    log: Option<Sender<Outcome>>,
) -> io::Result<Stats> {
    let threads = plan.threads.clamp(1, plan.connections.max(1));
    raise_fd_limit(plan.connections as u64 + 64);
    let pool = AtomicU64::new(match plan.limit {
        Limit::Requests(n) => n,
        Limit::Duration(_) => u64::MAX,
    });
    let t0 = Instant::now();
    let results: Vec<io::Result<Stats>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let log = log.clone();
                let slot = &progress.slots[k % progress.slots.len().max(1)].0;
                let pool = &pool;
                scope.spawn(move || {
                    let mut w = Worker::new(plan, k, threads, t0, slot, pool, log)?;
                    w.expect = expect;
                    w.run()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a load thread panicked")))
            })
            .collect()
    });
    let mut total = Stats::new();
    for r in results {
        total.merge(&r?);
    }
    Ok(total)
}

/// Lifts the soft limit on open files towards `want` (up to the hard limit), so thousands of
/// connections fail with EMFILE only where the system really forbids them. Best effort: if it
/// cannot be raised, the connections beyond it count as connect errors.
fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard);
        }
    }
}

/// `share(n, k, t)`: thread k's part of n split over t threads (remainder to the first ones).
fn share(n: u64, k: usize, t: usize) -> u64 {
    n / t as u64 + u64::from((k as u64) < n % t as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No request in flight (the stream, if any, is a kept-alive connection).
    Idle,
    Connecting,
    /// HTTPS: connected, TLS handshake under way.
    Handshaking,
    Writing,
    Reading,
}

struct Conn {
    stream: Option<TcpStream>,
    /// HTTPS: the session over `stream` (boxed: rustls' state is about 1 KiB).
    tls: Option<Box<rustls::ClientConnection>>,
    /// HTTPS: when the connection began (the handshake's time counts from it).
    connect_at: Instant,
    state: State,
    written: usize,
    buf: Vec<u8>,
    /// Unparsed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    parser: ResponseParser,
    /// An event reported the peer's FIN (or an error): the stream ends with the current
    /// response, whether or not a read reached the FIN.
    peer_closed: bool,
    /// An event reported readability before the request was written: read once it is.
    unread: bool,
    /// Latency origin: when the request started (closed loop) or was due (open loop).
    origin: Instant,
    deadline: Instant,
    bytes: u64,
}

/// The open loop's schedule for one thread: global request i is due at t0 + i/rate; this
/// thread owns every i ≡ k (mod threads).
struct Schedule {
    next: u64,
    step: u64,
    total: u64,
    t0: Instant,
    interval: f64,
}

impl Schedule {
    fn due(&self) -> Option<Instant> {
        (self.next < self.total)
            .then(|| self.t0 + Duration::from_secs_f64(self.next as f64 * self.interval))
    }
}

/// The open loop's wake-up at the next request's due time, to the microsecond. epoll_wait's own
/// timeout counts whole milliseconds, which would add up to 1 ms of the generator's lag to
/// every open-loop latency (more than a loopback request takes). Armed only when a request is
/// due later and a connection is free to send it: one extra syscall per wait, none per
/// request when requests are already due.
struct Timer {
    fd: TimerFd,
    armed: Option<Instant>,
}

impl Timer {
    fn new(registry: &Registry) -> io::Result<Timer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        registry.register(
            &mut SourceFd(&fd.as_fd().as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        // Timer slack (50 µs by default) would delay each wake-up by as much.
        let _ = nix::sys::prctl::set_timerslack(1);
        Ok(Timer { fd, armed: None })
    }

    fn arm(&mut self, at: Instant, now: Instant) {
        if self.armed == Some(at) {
            return;
        }
        // Zero would disarm the timer: the earliest wake-up is 1 µs.
        let after = at
            .saturating_duration_since(now)
            .max(Duration::from_micros(1));
        let ok = self.fd.set(
            Expiration::OneShot(TimeSpec::from_duration(after)),
            TimerSetTimeFlags::empty(),
        );
        self.armed = ok.is_ok().then_some(at);
    }

    fn fired(&mut self) {
        // Consume the expiration count so the descriptor is not readable any more.
        let _ = self.fd.wait();
        self.armed = None;
    }
}

struct Worker<'a> {
    plan: &'a Plan,
    /// Statuses that count as responses (empty: all); see [`run_expecting`].
    expect: &'a [u16],
    poll: Poll,
    conns: Vec<Conn>,
    stats: Stats,
    /// Closed loop: requests this thread has claimed and not started yet.
    left: u64,
    /// Closed loop: requests no thread has claimed yet.
    pool: &'a AtomicU64,
    /// Closed loop with a duration: start nothing at or after this.
    stop_at: Option<Instant>,
    schedule: Option<Schedule>,
    /// Connections with nothing to do (open loop: waiting for the next due request).
    idle: Vec<usize>,
    /// Connections to (re)start at the top of the loop: avoids recursing through failures.
    restart: Vec<usize>,
    /// Requests in flight.
    active: usize,
    t0: Instant,
    progress: &'a AtomicU64,
    log: Option<Sender<Outcome>>,
}

impl<'a> Worker<'a> {
    fn new(
        plan: &'a Plan,
        k: usize,
        threads: usize,
        t0: Instant,
        progress: &'a AtomicU64,
        pool: &'a AtomicU64,
        log: Option<Sender<Outcome>>,
    ) -> io::Result<Worker<'a>> {
        let conns = share(plan.connections as u64, k, threads) as usize;
        let mut w = Worker {
            plan,
            expect: &[],
            poll: Poll::new()?,
            conns: (0..conns)
                .map(|_| Conn {
                    stream: None,
                    tls: None,
                    connect_at: t0,
                    state: State::Idle,
                    written: 0,
                    buf: Vec::new(),
                    start: 0,
                    end: 0,
                    parser: ResponseParser::new(plan.head_request),
                    peer_closed: false,
                    unread: false,
                    origin: t0,
                    deadline: t0,
                    bytes: 0,
                })
                .collect(),
            stats: Stats::new(),
            left: 0,
            pool,
            stop_at: None,
            schedule: None,
            idle: Vec::new(),
            restart: Vec::new(),
            active: 0,
            t0,
            progress,
            log,
        };
        match (plan.scheduled(), plan.limit) {
            (Some(total), _) => {
                w.schedule = Some(Schedule {
                    next: k as u64,
                    step: threads as u64,
                    total,
                    t0,
                    interval: 1.0 / plan.rate.unwrap_or(1.0),
                });
                w.idle = (0..conns).rev().collect();
            }
            (None, Limit::Requests(_)) => {
                w.restart = (0..conns).collect();
            }
            (None, Limit::Duration(d)) => {
                w.stop_at = Some(t0 + d);
                w.restart = (0..conns).collect();
            }
        }
        Ok(w)
    }

    fn run(mut self) -> io::Result<Stats> {
        let mut events = Events::with_capacity(EVENTS);
        let mut next_tick = Instant::now() + TICK;
        let mut timer = match self.schedule {
            Some(_) => Some(Timer::new(self.poll.registry())?),
            None => None,
        };
        loop {
            let now = Instant::now();
            while let Some(i) = self.restart.pop() {
                self.next(i, now);
            }
            self.dispatch(now);
            if now >= next_tick {
                self.expire(now);
                next_tick = now + TICK;
                continue; // expiries may have queued restarts
            }
            if self.finished() {
                break;
            }
            if let (Some(t), Some(due), false) = (
                &mut timer,
                self.schedule.as_ref().and_then(Schedule::due),
                self.idle.is_empty(),
            ) {
                t.arm(due, now);
            }
            match self.poll.poll(&mut events, Some(next_tick - now)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == TIMER {
                    if let Some(t) = &mut timer {
                        t.fired();
                    }
                    continue;
                }
                let i = ev.token().0;
                let c = &mut self.conns[i];
                if c.stream.is_none() {
                    continue; // stale event for a connection closed in this batch
                }
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                let writable = ev.is_writable() || ev.is_error();
                // Edge-triggered: this event is the only notice of what it reports.
                c.peer_closed |= ev.is_read_closed() || ev.is_error();
                match c.state {
                    State::Connecting | State::Writing => c.unread |= readable,
                    State::Handshaking | State::Reading | State::Idle => {}
                }
                match c.state {
                    State::Connecting if writable || readable => self.connected(i),
                    State::Handshaking if writable || readable => self.handshake(i),
                    State::Writing if writable => self.write(i),
                    State::Reading if readable => self.read(i),
                    State::Idle if readable => self.idle_event(i),
                    _ => {}
                }
            }
        }
        self.stats.elapsed = Instant::now() - self.t0;
        Ok(self.stats)
    }

    fn finished(&self) -> bool {
        self.active == 0
            && self.restart.is_empty()
            && match &self.schedule {
                Some(s) => s.next >= s.total,
                None => true, // an idle connection in the closed loop had nothing left to start
            }
    }

    /// The connection `i` is free: give it the next request, if any.
    fn next(&mut self, i: usize, now: Instant) {
        if self.schedule.is_some() {
            self.idle.push(i);
            self.dispatch(now);
            return;
        }
        let open = self.stop_at.is_none_or(|s| now < s) && self.claim();
        if open {
            self.start(i, now);
        } else if let Some(stream) = self.conns[i].stream.take() {
            // Nothing more to send on it: close now rather than hold the server's resources.
            self.conns[i].tls = None;
            drop(stream);
        }
    }

    /// Takes one request to start from the thread's claim, refilling it from the shared pool.
    fn claim(&mut self) -> bool {
        if self.left == 0 {
            let got = self
                .pool
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                    (p > 0).then(|| p - p.min(CLAIM))
                })
                .map_or(0, |before| before.min(CLAIM));
            self.left = got;
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }

    /// Open loop: hands every due request to an idle connection; a due request for which no
    /// connection is free waits, and its latency keeps counting from its due time (that is the
    /// coordinated-omission correction). One that waited past the timeout is a timeout.
    fn dispatch(&mut self, now: Instant) {
        loop {
            let Some(s) = &mut self.schedule else { return };
            let Some(due) = s.due().filter(|&d| d <= now) else {
                return;
            };
            if now.saturating_duration_since(due) >= self.plan.timeout {
                s.next += s.step;
                self.outcome(Err(ErrorKind::Timeout), self.plan.timeout);
                continue;
            }
            let Some(i) = self.idle.pop() else { return };
            s.next += s.step;
            self.start(i, due);
        }
    }

    /// Starts a request on connection `i` whose latency counts from `origin`.
    fn start(&mut self, i: usize, origin: Instant) {
        self.active += 1;
        let c = &mut self.conns[i];
        c.origin = origin;
        c.deadline = origin + self.plan.timeout;
        c.bytes = 0;
        c.written = 0;
        if c.stream.is_some() {
            c.state = State::Writing;
            self.write(i);
            return;
        }
        self.stats.connects += 1;
        c.connect_at = Instant::now();
        c.tls = match &self.plan.tls {
            None => None,
            Some(t) => match t.session() {
                Ok(session) => Some(Box::new(session)),
                Err(e) => return self.fail_tls(i, &e),
            },
        };
        let connecting = TcpStream::connect(self.plan.addr).and_then(|mut s| {
            self.poll.registry().register(
                &mut s,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(s)
        });
        match connecting {
            Ok(s) => {
                let c = &mut self.conns[i];
                c.stream = Some(s);
                c.state = State::Connecting;
                c.peer_closed = false;
                c.unread = false;
            }
            Err(_) => self.fail(i, ErrorKind::Connect),
        }
    }

    /// A readiness event while connecting: find out whether the connection was made.
    fn connected(&mut self, i: usize) {
        let Some(s) = &self.conns[i].stream else {
            return;
        };
        match s.take_error() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => return self.fail(i, ErrorKind::Connect),
        }
        match s.peer_addr() {
            Ok(_) => {
                // Responses are read in one go and requests are single writes: Nagle's delay
                // could only hurt.
                let _ = s.set_nodelay(true);
                if self.conns[i].tls.is_some() {
                    self.conns[i].state = State::Handshaking;
                    return self.handshake(i);
                }
                self.conns[i].state = State::Writing;
                self.write(i);
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {} // not yet: wait
            Err(_) => self.fail(i, ErrorKind::Connect),
        }
    }

    /// Drives the TLS handshake as far as the socket allows; at its end, records its time and
    /// kind and writes the request.
    fn handshake(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let (Some(s), Some(tls)) = (&mut c.stream, &mut c.tls) else {
            return;
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(s) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return self.fail(i, io_kind(&e)),
                }
            }
            if !tls.is_handshaking() {
                let took = c.connect_at.elapsed();
                let resumed = tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                self.stats.handshake(resumed, took);
                c.state = State::Writing;
                return self.write(i);
            }
            match tls.read_tls(s) {
                Ok(0) => {
                    let why = "the server closed the connection during the TLS handshake";
                    self.stats.tls_error.get_or_insert_with(|| why.into());
                    return self.fail(i, ErrorKind::Tls);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, io_kind(&e)),
            }
            if let Err(e) = tls.process_new_packets() {
                // The alert rustls queued for it, best effort.
                let _ = tls.write_tls(s);
                return self.fail_tls(i, &e);
            }
        }
    }

    /// A TLS failure: counted, and its message kept for the report (the first one).
    fn fail_tls(&mut self, i: usize, e: &rustls::Error) {
        if self.stats.tls_error.is_none() {
            self.stats.tls_error = Some(describe(e));
        }
        self.fail(i, ErrorKind::Tls);
    }

    fn write(&mut self, i: usize) {
        if self.conns[i].tls.is_some() {
            return self.write_tls(i);
        }
        let request = &self.plan.request;
        let c = &mut self.conns[i];
        let Some(s) = &mut c.stream else { return };
        while c.written < request.len() {
            match s.write(&request[c.written..]) {
                Ok(0) => return self.fail(i, ErrorKind::Reset),
                Ok(n) => c.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, io_kind(&e)),
            }
        }
        c.state = State::Reading;
        if std::mem::take(&mut c.unread) {
            self.read(i);
        }
    }

    /// [`Worker::write`] over TLS: the request encrypted into the session once, its records
    /// written out as the socket takes them.
    fn write_tls(&mut self, i: usize) {
        let request = &self.plan.request;
        let c = &mut self.conns[i];
        let (Some(s), Some(tls)) = (&mut c.stream, &mut c.tls) else {
            return;
        };
        if c.written == 0 {
            if let Err(e) = tls.writer().write_all(request) {
                return self.fail(i, io_kind(&e));
            }
            c.written = request.len();
        }
        while tls.wants_write() {
            match tls.write_tls(s) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(i, io_kind(&e)),
            }
        }
        c.state = State::Reading;
        // Records may already be in the socket (the handshake's reads stop at WouldBlock, so
        // this only matters for bytes that came with the handshake's last flight).
        self.read(i);
    }

    fn read(&mut self, i: usize) {
        loop {
            let c = &mut self.conns[i];
            let Some(s) = &mut c.stream else { return };
            if c.end == c.buf.len() {
                if c.start > 0 {
                    c.buf.copy_within(c.start..c.end, 0);
                    c.end -= c.start;
                    c.start = 0;
                } else if c.buf.len() < MAX_HEAD {
                    // First read on this connection (buffers are allocated lazily, so ten
                    // thousand seed-face clients do not cost 160 MB), or a head that does not
                    // fit yet.
                    c.buf.resize((c.buf.len() * 2).clamp(BUF, MAX_HEAD), 0);
                } else {
                    return self.fail(i, ErrorKind::BadResponse);
                }
            }
            let got = match &mut c.tls {
                Some(tls) => read_tls(tls, s, &mut c.buf[c.end..]),
                None => s.read(&mut c.buf[c.end..]),
            };
            let n = match got {
                Ok(0) => {
                    return if c.parser.eof() {
                        self.complete(i)
                    } else {
                        self.fail(i, ErrorKind::Closed)
                    };
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => match rustls_error(&e).cloned() {
                    Some(t) => return self.fail_tls(i, &t),
                    None => return self.fail(i, io_kind(&e)),
                },
            };
            c.end += n;
            c.bytes += n as u64;
            match c.parser.feed(&c.buf[c.start..c.end]) {
                Ok(fed) => {
                    c.start += fed.used;
                    let rest = c.end - c.start;
                    if c.start == c.end {
                        c.start = 0;
                        c.end = 0;
                    }
                    if fed.done {
                        // Nothing may follow a response we did not pipeline.
                        return if rest == 0 {
                            self.complete(i)
                        } else {
                            self.fail(i, ErrorKind::BadResponse)
                        };
                    }
                }
                Err(_) => return self.fail(i, ErrorKind::BadResponse),
            }
        }
    }

    /// Readiness on a connection with no request: the server closed it (idle timeout) or sent
    /// something unasked. Either way it cannot carry the next request. Unasked bytes are a
    /// server fault a tester wants to see (a response to nothing, a stray byte after a
    /// response that was read before it arrived): counted in [`Stats::unrequested`].
    fn idle_event(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let (Some(s), Some(tls)) = (&mut c.stream, &mut c.tls) {
            // TLS records that carry no data (a late session ticket, a key update) leave the
            // connection usable.
            let mut probe = [0u8; 64];
            match read_tls(tls, s, &mut probe) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Ok(n) if n > 0 => {
                    self.stats.bytes += n as u64;
                    self.stats.unrequested += 1;
                }
                _ => {}
            }
            c.stream = None;
            c.tls = None;
            return;
        }
        if let Some(mut s) = c.stream.take() {
            let mut probe = [0u8; 64];
            if let Ok(n) = s.read(&mut probe) {
                if n > 0 {
                    self.stats.bytes += n as u64;
                    self.stats.unrequested += 1;
                }
            }
        }
    }

    fn complete(&mut self, i: usize) {
        let now = Instant::now();
        let c = &mut self.conns[i];
        let status = c.parser.status();
        let latency = now.saturating_duration_since(c.origin);
        self.stats.bytes += c.bytes;
        if !self.plan.keep_alive || c.parser.must_close() || c.peer_closed {
            c.stream = None;
            c.tls = None;
        }
        self.end_request(i);
        self.outcome(Ok(status), latency);
        self.next(i, now);
    }

    fn fail(&mut self, i: usize, kind: ErrorKind) {
        let now = Instant::now();
        let c = &mut self.conns[i];
        let latency = now.saturating_duration_since(c.origin);
        self.stats.bytes += c.bytes;
        c.stream = None;
        c.tls = None;
        self.end_request(i);
        self.outcome(Err(kind), latency);
        self.restart.push(i);
    }

    fn end_request(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.state = State::Idle;
        c.parser.reset();
        c.start = 0;
        c.end = 0;
        self.active -= 1;
    }

    fn outcome(&mut self, result: Result<u16, ErrorKind>, latency: Duration) {
        match result {
            Ok(status) if self.expect.is_empty() || self.expect.contains(&status) => {
                self.stats.response(status, latency)
            }
            Ok(status) => self.stats.unexpected(status),
            Err(kind) => self.stats.error(kind),
        }
        self.progress
            .store(self.stats.finished(), Ordering::Relaxed);
        if let Some(log) = &self.log {
            // The receiver only goes away when the caller stopped listening; counts stay right.
            let _ = log.send(Outcome { result, latency });
        }
    }

    /// Fails every request past its deadline.
    fn expire(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if c.state != State::Idle && now >= c.deadline {
                self.fail(i, ErrorKind::Timeout);
            }
        }
    }
}

/// Reads plaintext from a TLS session into `dst`, reading the socket only when the session holds
/// none: Ok(0) at the end of the stream (close_notify, or a close without it: the response's
/// framing decides whether that was too early); WouldBlock once the socket is drained; a TLS
/// failure as InvalidData carrying the rustls error.
fn read_tls(
    tls: &mut rustls::ClientConnection,
    s: &mut TcpStream,
    dst: &mut [u8],
) -> io::Result<usize> {
    loop {
        match tls.reader().read(dst) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        if tls.read_tls(s)? == 0 {
            return Ok(0);
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = tls.write_tls(s);
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        // A key update or an alert to answer (rare): written now, best effort.
        if tls.wants_write() {
            let _ = tls.write_tls(s);
        }
    }
}

/// The error kind of an I/O error on an established connection.
fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::TimedOut => ErrorKind::Timeout,
        io::ErrorKind::ConnectionRefused => ErrorKind::Connect,
        _ => ErrorKind::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (n, t) in [(10, 3), (1, 4), (0, 2), (400_000, 2), (7, 7)] {
            let parts: Vec<u64> = (0..t).map(|k| share(n, k, t)).collect();
            assert_eq!(parts.iter().sum::<u64>(), n);
            assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn open_loop_schedule_counts() {
        let mut plan = Plan {
            addr: "127.0.0.1:1".parse().unwrap(),
            request: Vec::new(),
            head_request: false,
            connections: 1,
            threads: 1,
            limit: Limit::Duration(Duration::from_millis(1500)),
            rate: Some(200.0),
            keep_alive: true,
            timeout: Duration::from_secs(1),
            tls: None,
        };
        assert_eq!(plan.scheduled(), Some(300));
        plan.limit = Limit::Requests(7);
        assert_eq!(plan.scheduled(), Some(7));
        plan.rate = None;
        assert_eq!(plan.scheduled(), None);
    }
}
