//! The load the scenarios drive: the load engine (`client::engine`) on a thread for the
//! well-behaved clients, plain sockets for the misbehaving ones (slowloris, slow readers,
//! clients that vanish mid-response), and the figures kept from a run's counts.
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::engine::{self, Limit, Plan as LoadPlan, Progress};
use crate::client::stats::{ErrorKind, Stats};
use crate::client::target::{encode_request, Target};

/// What one stream of well-behaved requests sends.
#[derive(Debug, Clone)]
pub struct Stream {
    pub path: String,
    /// Extra request headers (Range, If-None-Match).
    pub headers: Vec<(String, String)>,
    pub connections: usize,
    pub keep_alive: bool,
    /// Open loop at this many requests/s; None: closed loop, as fast as answered.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub timeout: Duration,
    /// Statuses that count as answers; any other is an `unexpected_status` error (empty: any).
    pub expect: Vec<u16>,
}

impl Stream {
    /// Keep-alive, closed loop, any status, 60 s per request.
    pub fn closed(path: &str, connections: usize, duration: Duration) -> Stream {
        Stream {
            path: path.to_string(),
            headers: Vec::new(),
            connections,
            keep_alive: true,
            rate: None,
            duration,
            timeout: Duration::from_secs(60),
            expect: Vec::new(),
        }
    }

    /// Runs it to its end on this thread.
    pub fn run(&self, addr: SocketAddr) -> io::Result<Stats> {
        let target = Target::new(&addr.ip().to_string(), addr.port(), &self.path)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let plan = LoadPlan {
            addr,
            request: encode_request("GET", &target, &self.headers, !self.keep_alive),
            head_request: false,
            connections: self.connections,
            threads: 1,
            limit: Limit::Duration(self.duration),
            rate: self.rate,
            keep_alive: self.keep_alive,
            timeout: self.timeout,
            tls: None,
        };
        engine::run_expecting(&plan, &self.expect, &Progress::new(1), None)
    }

    /// Runs it on a thread of its own.
    pub fn spawn(self, addr: SocketAddr) -> JoinHandle<io::Result<Stats>> {
        std::thread::spawn(move || self.run(addr))
    }
}

/// `(metric, value, unit)`, a scenario's figures.
pub type Figures = Vec<(String, f64, &'static str)>;

/// A stream's figures under `prefix`: responses, requests/s, p99 latency (ms), errors in total
/// and by kind (every kind, zeros included, so a table has the same columns on every row).
pub fn figures(prefix: &str, stats: &Stats) -> Figures {
    let p = |m: &str| {
        if prefix.is_empty() {
            m.to_string()
        } else {
            format!("{prefix}.{m}")
        }
    };
    let secs = stats.elapsed.as_secs_f64().max(1e-9);
    let mut out = vec![
        (p("responses"), stats.responses as f64, "responses"),
        (p("req_per_s"), stats.responses as f64 / secs, "req/s"),
        (
            p("p99_ms"),
            stats.latency.value_at_quantile(0.99) as f64 / 1e3,
            "ms",
        ),
        (p("errors"), stats.total_errors() as f64, "requests"),
    ];
    for kind in ErrorKind::ALL {
        out.push((
            p(&format!("errors.{}", kind.name())),
            stats.errors(kind) as f64,
            "requests",
        ));
    }
    out
}

/// Connections that each send the start of a request head and then a byte a second, until
/// `stop`; opened without waiting (a server whose backlog is full drops SYNs, and a blocking
/// connect would wait out the retries). Returns how many were opened.
pub fn slowloris(addr: SocketAddr, count: usize, stop: &std::sync::atomic::AtomicBool) -> usize {
    use std::sync::atomic::Ordering;
    let mut socks = Vec::with_capacity(count);
    for _ in 0..count {
        if let Ok(s) = nonblocking_connect(addr) {
            socks.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    for s in &mut socks {
        let _ = s.write(b"GET / HTTP/1.1\r\nHo");
    }
    let opened = socks.len();
    while !stop.load(Ordering::SeqCst) {
        for s in &mut socks {
            let _ = s.write(b"X");
        }
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    opened
}

fn nonblocking_connect(addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(s.into())
}

/// One `GET path` with `Connection: close` on a new connection: the status, or None when the
/// connection or the answer failed.
pub fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

/// A client that asks for `path` and reads at most `chunk` bytes every `pause` (a slow
/// reader), or stops reading after `vanish_after` bytes and closes with the rest unread (a
/// client that vanishes mid-response). Returns the bytes read; an error is the connection's.
pub fn misbehave(
    addr: SocketAddr,
    path: &str,
    chunk: usize,
    pause: Duration,
    vanish_after: Option<usize>,
) -> io::Result<usize> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; chunk];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
        if vanish_after.is_some_and(|v| total >= v) {
            // Dropped with unread bytes: the kernel sends a reset.
            return Ok(total);
        }
        std::thread::sleep(pause);
    }
}
