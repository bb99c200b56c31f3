//! The workloads: what one measurement sends to a running server and which numbers it keeps.
//! `cpu`, `io`, `io-burst`, `static`, `close` and `big` run on the load engine
//! (`client::engine`); `idle` holds plain sockets, because the engine closes a connection once
//! it has nothing more to send; `fresh` is three plain requests around file changes;
//! `syscalls` and `loadgen` have modules of their own.
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::client::engine::{self, Limit, Plan as LoadPlan, Progress};
use crate::client::http1::ResponseParser;
use crate::client::stats::Stats;
use crate::client::target::{encode_request, Target};

use super::plan::{Plan, Point, ServerSpec, Workload, IDLE_QUIET, IDLE_SETTLE, WARM_UP};
use super::report::Sample;
use super::scratch::{BIG_FILE, BIG_SIZE, CGI_PATH, FRESH_FILE};
use super::{loadgen, procfs, syscalls};

/// The server being measured: where it listens and its process group (for /proc).
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub addr: SocketAddr,
    pub pgid: i32,
}

impl Probe {
    pub fn rss_kib(&self) -> io::Result<u64> {
        procfs::group_rss_kib(self.pgid)
    }

    pub fn cpu_s(&self) -> io::Result<f64> {
        procfs::group_cpu_s(self.pgid)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A GET of `path` on 127.0.0.1:port, encoded once.
pub fn request(addr: SocketAddr, path: &str, close: bool) -> io::Result<Vec<u8>> {
    let target = Target::new(&addr.ip().to_string(), addr.port(), path)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    Ok(encode_request("GET", &target, &[], close))
}

/// (2xx responses, everything else: errors and other statuses).
pub fn ok_errors(stats: &Stats) -> (u64, u64) {
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
        tls: None,
    };
    let t = Instant::now();
    let stats = engine::run(&plan, &Progress::new(1), None)?;
    Ok((t.elapsed(), stats))
}

/// A closed loop on `conns` connections for `duration`: keep-alive, or a new connection per
/// request.
pub fn closed_loop(
    addr: SocketAddr,
    path: &str,
    conns: u32,
    duration: Duration,
    threads: usize,
    keep_alive: bool,
    timeout: Duration,
) -> io::Result<Stats> {
    let threads = threads.clamp(1, conns as usize);
    let plan = LoadPlan {
        addr,
        request: request(addr, path, !keep_alive)?,
        head_request: false,
        connections: conns as usize,
        threads,
        limit: Limit::Duration(duration),
        rate: None,
        keep_alive,
        timeout,
        tls: None,
    };
    engine::run(&plan, &Progress::new(threads), None)
}

/// A closed loop after an unmeasured warm-up, with the server's CPU time over the measured
/// part: (stats, server CPU seconds).
fn timed_loop(
    plan: &Plan,
    probe: &Probe,
    path: &str,
    conns: u32,
    keep_alive: bool,
) -> io::Result<(Stats, f64)> {
    let run = |d| {
        let threads = plan.p.client_threads;
        closed_loop(
            probe.addr,
            path,
            conns,
            d,
            threads,
            keep_alive,
            plan.timeout,
        )
    };
    run(WARM_UP)?;
    let before = probe.cpu_s()?;
    let stats = run(plan.duration())?;
    let cpu = probe.cpu_s()? - before;
    Ok((stats, cpu))
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
/// after a warm-up and after the last answer. Opening stops when a batch is not answered in
/// full (a blocking server with every worker taken: the rest of the batch waits in its
/// backlog, and more connections would only join them) or a connection cannot be made.
pub fn idle(probe: &Probe, path: &str, count: u32, workers: usize) -> io::Result<Idle> {
    let addr = probe.addr;
    warm_up(addr, path, workers)?;
    let req = request(addr, path, false)?;
    let rss_before_kib = probe.rss_kib()?;
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
    let rss_after_kib = probe.rss_kib()?;
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
        tls: None,
    };
    engine::run(&plan, &Progress::new(1), None)?;
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}

/// One GET on `stream`: (status, body). Reads the head to its end and a `Content-Length`
/// body (every server here frames a file that way).
fn get(stream: &mut TcpStream, addr: SocketAddr, path: &str) -> io::Result<(u16, Vec<u8>)> {
    stream.write_all(&request(addr, path, false)?)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("status line"))?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| bad("no Content-Length"))?;
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(bad("closed mid-body"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok((status, buf[end + 4..end + 4 + len].to_vec()));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("closed before the head ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The freshness check: the file is rewritten in place with the same length (within the same
/// second, so the same mtime a cache might key on) between two requests on one kept-alive
/// connection, then replaced by rename with a longer version and asked on a new connection.
/// Whether every answer carried the content on disk at the time.
pub fn fresh(addr: SocketAddr, root: &Path) -> io::Result<bool> {
    let path = root.join(FRESH_FILE);
    let url = format!("/{FRESH_FILE}");
    let versions: [&[u8]; 3] = [
        b"version 1 of the file\n",
        b"version 2 of the file\n",
        b"version 3, longer than the two before it\n",
    ];
    std::fs::write(&path, versions[0])?;
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let first = get(&mut conn, addr, &url)?;
    std::fs::write(&path, versions[1])?;
    let second = get(&mut conn, addr, &url)?;
    let tmp = root.join(format!("{FRESH_FILE}.new"));
    std::fs::write(&tmp, versions[2])?;
    std::fs::rename(&tmp, &path)?;
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let third = get(&mut conn, addr, &url)?;
    Ok([first, second, third]
        .iter()
        .zip(versions)
        .all(|((status, body), want)| *status == 200 && body == want))
}

/// The rows of one measurement: everything but the metric, its value and counts is shared.
struct Rows<'a> {
    server: &'a ServerSpec,
    point: Point,
}

impl Rows<'_> {
    fn row(&self, metric: &str, value: f64, unit: &str, ok: u64, errors: u64) -> Sample {
        Sample {
            server: self.server.name.clone(),
            workers: self.server.workers,
            workload: self.point.workload.name().to_string(),
            x: self.point.x,
            repeat: self.point.repeat,
            metric: metric.to_string(),
            value,
            unit: unit.to_string(),
            ok,
            errors,
        }
    }

    /// requests/s and the server's CPU µs per request (and latency percentiles).
    fn throughput(&self, stats: &Stats, cpu_s: f64, latency: bool) -> Vec<Sample> {
        let (ok, errors) = ok_errors(stats);
        let secs = stats.elapsed.as_secs_f64().max(1e-9);
        let per = |v: f64| if ok > 0 { v / ok as f64 } else { f64::NAN };
        let mut rows = vec![
            self.row("req_per_s", ok as f64 / secs, "1/s", ok, errors),
            self.row("cpu_us", per(cpu_s * 1e6), "µs", ok, errors),
        ];
        if latency {
            let ms = |q: f64| stats.latency.value_at_quantile(q) as f64 / 1e3;
            rows.push(self.row("p50_ms", ms(0.50), "ms", ok, errors));
            rows.push(self.row("p99_ms", ms(0.99), "ms", ok, errors));
        }
        rows
    }
}

/// Takes one measurement of `point` on the server `probe` describes and returns its rows.
pub fn measure(
    plan: &Plan,
    server: &ServerSpec,
    point: Point,
    probe: &Probe,
) -> io::Result<Vec<Sample>> {
    let rows = Rows { server, point };
    let x = point.x;
    Ok(match point.workload {
        Workload::Cpu | Workload::Io | Workload::IoBurst => {
            let path = match point.workload {
                Workload::Cpu => format!("/cpu?n={}", plan.p.cpu_n),
                Workload::Io => format!("/io?ms={}", plan.p.io_ms),
                _ => format!("/io?ms={}", plan.p.burst_ms),
            };
            let (wall, stats) = burst(probe.addr, &path, x, plan.timeout)?;
            let (ok, errors) = ok_errors(&stats);
            vec![rows.row("total_ms", wall.as_secs_f64() * 1e3, "ms", ok, errors)]
        }
        Workload::Cgi => {
            let before = probe.cpu_s()?;
            let (wall, stats) = burst(probe.addr, CGI_PATH, x, plan.timeout)?;
            let cpu = probe.cpu_s()? - before;
            let (ok, errors) = ok_errors(&stats);
            let per_request = cpu * 1e6 / ok.max(1) as f64;
            vec![
                rows.row("total_ms", wall.as_secs_f64() * 1e3, "ms", ok, errors),
                rows.row("cpu_us", per_request, "µs", ok, errors),
            ]
        }
        Workload::Static | Workload::Close => {
            let keep_alive = point.workload == Workload::Static;
            let (stats, cpu) = timed_loop(plan, probe, &plan.p.static_path, x, keep_alive)?;
            rows.throughput(&stats, cpu, keep_alive)
        }
        Workload::Big => {
            let (stats, _) = timed_loop(plan, probe, &format!("/{BIG_FILE}"), x, true)?;
            let (ok, errors) = ok_errors(&stats);
            let mib = ok as f64 * BIG_SIZE as f64 / (1 << 20) as f64;
            let secs = stats.elapsed.as_secs_f64().max(1e-9);
            vec![rows.row("mib_per_s", mib / secs, "MiB/s", ok, errors)]
        }
        Workload::Fresh => {
            let ok = fresh(probe.addr, &plan.serve_root)?;
            vec![rows.row(
                "fresh",
                f64::from(u8::from(ok)),
                "yes",
                u64::from(ok),
                u64::from(!ok),
            )]
        }
        Workload::Idle => idle_rows(&rows, idle(probe, &plan.p.static_path, x, server.workers)?),
        Workload::Syscalls => syscalls::measure(plan, probe, &server.name, x)?
            .into_iter()
            .map(|(metric, v)| rows.row(&metric, v, "calls", 0, 0))
            .collect(),
        Workload::Loadgen => loadgen::measure(plan, probe, x)?
            .into_iter()
            .map(|(metric, v, unit)| rows.row(&metric, v, unit, 0, 0))
            .collect(),
        Workload::Upgrade => {
            return Err(io::Error::other(
                "upgrade starts servers of its own (compare::upgrade::measure)",
            ))
        }
        Workload::Tls => {
            return Err(io::Error::other(
                "tls starts servers of its own (compare::tls::measure)",
            ))
        }
    })
}

fn idle_rows(rows: &Rows, m: Idle) -> Vec<Sample> {
    // Connections waiting unanswered in a blocking server's backlog are not errors: the
    // "held" column shows them.
    let (ok, errors) = (u64::from(m.held), u64::from(m.failed));
    vec![
        rows.row("opened", f64::from(m.opened), "conns", ok, errors),
        rows.row("held", f64::from(m.held), "conns", ok, errors),
        rows.row("rss_before_kib", m.rss_before_kib as f64, "KiB", ok, errors),
        rows.row("rss_after_kib", m.rss_after_kib as f64, "KiB", ok, errors),
        rows.row("kib_per_conn", m.kib_per_conn(), "KiB", ok, errors),
    ]
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
