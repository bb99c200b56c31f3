//! The workloads: what one measurement sends to a running server and which numbers it keeps.
//! `cpu`, `io` and `static` run on the load engine (`client::engine`); `idle` holds plain
//! sockets, because the engine closes a connection once it has nothing more to send.
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::client::engine::{self, Limit, Plan as LoadPlan, Progress};
use crate::client::http1::ResponseParser;
use crate::client::stats::Stats;
use crate::client::target::{encode_request, Target};

use super::plan::{Plan, Point, ServerSpec, Workload, IDLE_QUIET, IDLE_SETTLE};
use super::report::Sample;

/// A GET of `path` on 127.0.0.1:port, encoded once.
fn request(addr: SocketAddr, path: &str, close: bool) -> io::Result<Vec<u8>> {
    let target = Target::new(&addr.ip().to_string(), addr.port(), path)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(encode_request("GET", &target, &[], close))
}

/// (2xx responses, everything else: errors and other statuses).
fn ok_errors(stats: &Stats) -> (u64, u64) {
    let ok: u64 = stats
        .statuses()
        .filter(|(s, _)| (200..300).contains(s))
        .map(|(_, n)| n)
        .sum();
    (ok, stats.finished() - ok)
}

/// The seed's measurement: `n` clients at once, one request each on its own connection; the
/// wall time until the last answered.
pub fn burst(
    addr: SocketAddr,
    path: &str,
    n: u32,
    timeout: Duration,
) -> io::Result<(Duration, Stats)> {
    let plan = LoadPlan {
        addr,
        request: request(addr, path, true)?,
        head_request: false,
        connections: n as usize,
        // One epoll loop opens the N connections within microseconds of each other, as the
        // seed's N client processes meant to (they took milliseconds to start).
        threads: 1,
        limit: Limit::Requests(n as u64),
        rate: None,
        keep_alive: false,
        timeout,
    };
    let t = Instant::now();
    let stats = engine::run(&plan, &Progress::new(1), None)?;
    Ok((t.elapsed(), stats))
}

/// Keep-alive load on `conns` connections for `duration` (closed loop).
pub fn keep_alive(
    addr: SocketAddr,
    path: &str,
    conns: u32,
    duration: Duration,
    threads: usize,
    timeout: Duration,
) -> io::Result<Stats> {
    let threads = threads.clamp(1, conns as usize);
    let plan = LoadPlan {
        addr,
        request: request(addr, path, false)?,
        head_request: false,
        connections: conns as usize,
        threads,
        limit: Limit::Duration(duration),
        rate: None,
        keep_alive: true,
        timeout,
    };
    engine::run(&plan, &Progress::new(threads), None)
}

/// What holding idle connections cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Idle {
    /// Connections that were established.
    pub opened: u32,
    /// Connections whose request was answered, then held idle.
    pub held: u32,
    /// Connections answered with an error, an invalid response or a close.
    pub failed: u32,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

impl Idle {
    pub fn kib_per_conn(&self) -> f64 {
        if self.held == 0 {
            return f64::NAN;
        }
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.held as f64
    }
}

/// Connections opened before waiting for their answers: small enough that a server accepting
/// more slowly than we connect never overflows its listen backlog (the kernel would drop SYNs,
/// and a connect would wait for the retransmission).
const IDLE_BATCH: usize = 100;

/// One held connection: the socket and its answer so far.
struct Held {
    stream: TcpStream,
    parser: ResponseParser,
    buf: Vec<u8>,
    answered: bool,
}

/// Opens up to `count` keep-alive connections, `IDLE_BATCH` at a time, each sending one
/// request, and waits for each batch's answers; reads the memory of the server's processes
/// (`rss` gives it) after a warm-up and after the last answer. Opening stops when a batch is
/// not answered in full (a blocking server with every worker taken: the rest of the batch
/// waits in its backlog, and more connections would only join them) or a connection cannot be
/// made.
pub fn idle(
    addr: SocketAddr,
    path: &str,
    count: u32,
    workers: usize,
    rss: impl Fn() -> io::Result<u64>,
) -> io::Result<Idle> {
    warm_up(addr, path, workers)?;
    let req = request(addr, path, false)?;
    let rss_before_kib = rss()?;
    let mut conns: Vec<Held> = Vec::new();
    let (mut held, mut failed) = (0u32, 0u32);
    let mut saturated = false;
    while conns.len() < count as usize && !saturated {
        let end = (conns.len() + IDLE_BATCH).min(count as usize);
        while conns.len() < end {
            let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
                saturated = true;
                break;
            };
            if stream.write_all(&req).is_err() {
                saturated = true;
                break;
            }
            stream.set_nonblocking(true)?;
            conns.push(Held {
                stream,
                parser: ResponseParser::new(false),
                buf: Vec::new(),
                answered: false,
            });
        }
        collect(&mut conns, &mut held, &mut failed);
        if ((held + failed) as usize) < conns.len() {
            saturated = true;
        }
    }
    std::thread::sleep(IDLE_SETTLE);
    let rss_after_kib = rss()?;
    let opened = conns.len() as u32;
    drop(conns);
    Ok(Idle {
        opened,
        held,
        failed,
        rss_before_kib,
        rss_after_kib,
    })
}

/// Reads answers until every connection has one, or none has come for `IDLE_QUIET`.
fn collect(conns: &mut [Held], held: &mut u32, failed: &mut u32) {
    let mut last_progress = Instant::now();
    let mut chunk = [0u8; 4096];
    while ((*held + *failed) as usize) < conns.len() && last_progress.elapsed() < IDLE_QUIET {
        let before = *held + *failed;
        for c in conns.iter_mut().filter(|c| !c.answered) {
            let ok = match c.stream.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Ok(0) | Err(_) => false, // closed or reset by the server: not held
                Ok(n) => {
                    c.buf.extend_from_slice(&chunk[..n]);
                    match c.parser.feed(&c.buf) {
                        Ok(fed) if !fed.done => {
                            c.buf.drain(..fed.used);
                            continue;
                        }
                        Ok(_) => (200..300).contains(&c.parser.status()) && !c.parser.must_close(),
                        Err(_) => false,
                    }
                }
            };
            c.answered = true;
            if ok {
                *held += 1;
            } else {
                *failed += 1;
            }
        }
        if *held + *failed > before {
            last_progress = Instant::now();
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Serves some requests on several connections at once before the first memory reading, so
/// that start-up costs paid on first use (a forked worker's copy-on-write page faults, a
/// thread's first buffers) are not charged to the idle connections.
fn warm_up(addr: SocketAddr, path: &str, workers: usize) -> io::Result<()> {
    let conns = (workers * 2).clamp(2, 64);
    let plan = LoadPlan {
        addr,
        request: request(addr, path, true)?,
        head_request: false,
        connections: conns,
        threads: 1,
        limit: Limit::Requests(conns as u64 * 10),
        rate: None,
        keep_alive: false,
        timeout: Duration::from_secs(5),
    };
    engine::run(&plan, &Progress::new(1), None)?;
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// Takes one measurement of `point` on the server at `addr` and returns its rows.
/// `rss` reads the server's memory (for `idle`).
pub fn measure(
    plan: &Plan,
    server: &ServerSpec,
    point: Point,
    addr: SocketAddr,
    rss: impl Fn() -> io::Result<u64>,
) -> io::Result<Vec<Sample>> {
    let row = |metric: &str, value: f64, unit: &str, ok: u64, errors: u64| Sample {
        server: server.name.clone(),
        workers: server.workers,
        workload: point.workload.name().to_string(),
        x: point.x,
        repeat: point.repeat,
        metric: metric.to_string(),
        value,
        unit: unit.to_string(),
        ok,
        errors,
    };
    Ok(match point.workload {
        Workload::Cpu | Workload::Io => {
            let path = match point.workload {
                Workload::Cpu => format!("/cpu?n={}", plan.cpu_n),
                _ => format!("/io?ms={}", plan.io_ms),
            };
            let (wall, stats) = burst(addr, &path, point.x, plan.timeout)?;
            let (ok, errors) = ok_errors(&stats);
            vec![row("total_ms", wall.as_secs_f64() * 1e3, "ms", ok, errors)]
        }
        Workload::Static => {
            let stats = keep_alive(
                addr,
                &plan.static_path,
                point.x,
                plan.static_duration,
                plan.client_threads,
                plan.timeout,
            )?;
            let (ok, errors) = ok_errors(&stats);
            let secs = stats.elapsed.as_secs_f64().max(1e-9);
            let ms = |q: f64| stats.latency.value_at_quantile(q) as f64 / 1e3;
            vec![
                row("req_per_s", ok as f64 / secs, "1/s", ok, errors),
                row("p50_ms", ms(0.50), "ms", ok, errors),
                row("p99_ms", ms(0.99), "ms", ok, errors),
            ]
        }
        Workload::Idle => {
            let m = idle(addr, &plan.static_path, point.x, server.workers, rss)?;
            // Connections waiting unanswered in a blocking server's backlog are not errors:
            // the "held" column shows them.
            let (ok, errors) = (u64::from(m.held), u64::from(m.failed));
            vec![
                row("opened", f64::from(m.opened), "conns", ok, errors),
                row("held", f64::from(m.held), "conns", ok, errors),
                row("rss_before_kib", m.rss_before_kib as f64, "KiB", ok, errors),
                row("rss_after_kib", m.rss_after_kib as f64, "KiB", ok, errors),
                row("kib_per_conn", m.kib_per_conn(), "KiB", ok, errors),
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_connection_memory() {
        let m = Idle {
            opened: 10,
            held: 4,
            failed: 0,
            rss_before_kib: 1000,
            rss_after_kib: 1010,
        };
        assert_eq!(m.kib_per_conn(), 2.5);
        let none = Idle { held: 0, ..m };
        assert!(none.kib_per_conn().is_nan());
    }
}
