//! The `tls` workload: every server that can (every architecture of ours, and nginx) serves HTTPS with the
//! same certificate, made for the run, and `archserve load` drives it:
//! - keep-alive small-file requests: requests/s and the server's CPU µs per request;
//! - a new connection per request with full handshakes only (`--no-resume`), then with
//!   resumed ones (every connection offers a ticket an earlier one got): handshakes/s and the
//!   server's CPU µs per handshake, and the share actually resumed;
//! - keep-alive 1 MiB file: MiB/s of body;
//! - memory per idle TLS connection (on a fresh server): connections opened one by one, each
//!   handshake done and one request answered, then held with no traffic; RSS before and after,
//!   as the `idle` workload does for plain HTTP.
//!
//! The certificate (P-256, for `localhost` and 127.0.0.1, made with rcgen) and its key are
//! written to `<out>/tls.tmp/`, outside the document root, and removed with the run's scratch
//! files: no private key is left in the results.
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::measure::{ok_errors, request, Idle, Probe};
use super::plan::{Plan, Point, ServerSpec, IDLE_SETTLE, WARM_UP};
use super::report::Sample;
use super::scratch::BIG_FILE;
use super::server::{Running, Start};
use crate::client::engine::{self, Limit, Plan as LoadPlan, Progress};
use crate::client::http1::ResponseParser;
use crate::client::stats::Stats;
use crate::client::tls::{ClientTls, TlsArgs};

/// The name the certificate carries and the clients ask for (SNI).
const NAME: &str = "localhost";

/// The run's certificate and key files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Where a run writing to `out` keeps them (removed at the run's end, see `run.rs`).
    pub fn dir(out: &Path) -> PathBuf {
        out.join("tls.tmp")
    }

    /// The run's files, made on first use.
    pub fn for_run(out: &Path) -> anyhow::Result<TlsFiles> {
        let dir = TlsFiles::dir(out);
        let files = TlsFiles {
            cert: std::fs::canonicalize(out)?.join("tls.tmp/cert.pem"),
            key: std::fs::canonicalize(out)?.join("tls.tmp/key.pem"),
        };
        if files.cert.is_file() && files.key.is_file() {
            return Ok(files);
        }
        std::fs::create_dir_all(&dir)?;
        let made = rcgen::generate_simple_self_signed(vec![NAME.into(), "127.0.0.1".into()])
            .context("making the run's certificate")?;
        std::fs::write(&files.key, made.key_pair.serialize_pem())?;
        std::fs::write(&files.cert, made.cert.pem())?;
        Ok(files)
    }

    /// A client that trusts exactly this certificate; `resume`: keep and offer tickets.
    pub fn client(&self, resume: bool) -> anyhow::Result<ClientTls> {
        let args = TlsArgs {
            tls: true,
            cacert: Some(self.cert.clone()),
            insecure: false,
        };
        ClientTls::new(&args, NAME, resume).map_err(anyhow::Error::msg)
    }
}

/// One round of the workload on `spec`: two servers started for it (the load, then idle).
pub fn measure(plan: &Plan, spec: &ServerSpec, point: Point) -> anyhow::Result<Vec<Sample>> {
    let files = TlsFiles::for_run(&plan.out)?;
    let row = |metric: &str, value: f64, unit: &str, (ok, errors): (u64, u64)| Sample {
        server: spec.name.clone(),
        workers: spec.workers,
        workload: point.workload.name().to_string(),
        x: point.x,
        repeat: point.repeat,
        metric: metric.to_string(),
        value,
        unit: unit.to_string(),
        ok,
        errors,
    };
    let mut rows = Vec::new();
    {
        let server = Running::start_as(plan, spec, Start::Tls)?;
        let probe = server.probe();
        let conns = point.x;
        let small = &plan.p.static_path;
        let (stats, cpu) = timed(plan, &probe, files.client(true)?, small, conns, true)?;
        let (ok, _) = ok_errors(&stats);
        rows.push(row(
            "ka_req_per_s",
            per_s(ok, &stats),
            "req/s",
            ok_errors(&stats),
        ));
        rows.push(row("ka_cpu_us", per(cpu, ok), "µs", ok_errors(&stats)));
        for (name, resume) in [("full", false), ("resumed", true)] {
            let (stats, cpu) = timed(plan, &probe, files.client(resume)?, small, conns, false)?;
            let (ok, _) = ok_errors(&stats);
            let e = ok_errors(&stats);
            rows.push(row(
                &format!("{name}_per_s"),
                per_s(ok, &stats),
                "conn/s",
                e,
            ));
            rows.push(row(&format!("{name}_cpu_us"), per(cpu, ok), "µs", e));
            let hs = stats.handshake_full.len() + stats.handshake_resumed.len();
            let share = stats.handshake_resumed.len() as f64 / hs.max(1) as f64;
            rows.push(row(&format!("{name}_resumed_share"), share, "ratio", e));
        }
        let big = format!("/{BIG_FILE}");
        let (stats, _) = timed(
            plan,
            &probe,
            files.client(true)?,
            &big,
            plan.p.big_conns,
            true,
        )?;
        let (ok, _) = ok_errors(&stats);
        let mib = ok as f64 * super::scratch::BIG_SIZE as f64 / (1 << 20) as f64;
        let secs = stats.elapsed.as_secs_f64().max(1e-9);
        rows.push(row("big_mib_per_s", mib / secs, "MiB/s", ok_errors(&stats)));
    }
    let server = Running::start_as(plan, spec, Start::Tls)?;
    let idle = idle(&server.probe(), &files, plan, plan.p.idle_conns)?;
    drop(server);
    let e = (u64::from(idle.held), u64::from(idle.failed));
    rows.push(row("idle_held", f64::from(idle.held), "conns", e));
    rows.push(row(
        "idle_rss_before_kib",
        idle.rss_before_kib as f64,
        "KiB",
        e,
    ));
    rows.push(row(
        "idle_rss_after_kib",
        idle.rss_after_kib as f64,
        "KiB",
        e,
    ));
    rows.push(row("idle_kib_per_conn", idle.kib_per_conn(), "KiB", e));
    Ok(rows)
}

fn per(cpu_s: f64, n: u64) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        cpu_s * 1e6 / n as f64
    }
}

fn per_s(n: u64, stats: &Stats) -> f64 {
    n as f64 / stats.elapsed.as_secs_f64().max(1e-9)
}

/// A warm-up, then a closed loop of `plan.duration()` over HTTPS with `tls` (the same client
/// configuration for both, so the tickets of the warm-up are offered in the measured part):
/// the counts and the server's CPU seconds over the measured part.
fn timed(
    plan: &Plan,
    probe: &Probe,
    tls: ClientTls,
    path: &str,
    conns: u32,
    keep_alive: bool,
) -> io::Result<(Stats, f64)> {
    let threads = plan.p.client_threads.clamp(1, conns as usize);
    let run = |d| {
        let load = LoadPlan {
            addr: probe.addr,
            request: request(probe.addr, path, !keep_alive)?,
            head_request: false,
            connections: conns as usize,
            threads,
            limit: Limit::Duration(d),
            rate: None,
            keep_alive,
            timeout: plan.timeout,
            tls: Some(tls.clone()),
        };
        engine::run(&load, &Progress::new(threads), None)
    };
    run(WARM_UP)?;
    let before = probe.cpu_s()?;
    let stats = run(plan.duration())?;
    let cpu = probe.cpu_s()? - before;
    Ok((stats, cpu))
}

/// Opens up to `count` HTTPS connections one at a time (resumed handshakes after the first),
/// each answered once, and holds their sockets (the client's TLS state is dropped: the server
/// cannot tell). Stops at the first connection that fails.
fn idle(probe: &Probe, files: &TlsFiles, plan: &Plan, count: u32) -> anyhow::Result<Idle> {
    let client = files.client(true)?;
    let req = request(probe.addr, &plan.p.static_path, false)?;
    // Warm-up: the workers' first handshakes and buffers are not the idle connections' cost.
    for _ in 0..64 {
        let _ = one(probe, &client, &req)?;
    }
    std::thread::sleep(Duration::from_millis(50));
    let rss_before_kib = probe.rss_kib()?;
    let mut held = Vec::new();
    let mut failed = 0;
    while held.len() < count as usize {
        match one(probe, &client, &req) {
            Ok(sock) => held.push(sock),
            Err(_) => {
                failed += 1;
                break;
            }
        }
    }
    std::thread::sleep(IDLE_SETTLE);
    let rss_after_kib = probe.rss_kib()?;
    // Connections tried: those held and the one that failed (the tls rows report only held).
    let opened = held.len() as u32 + failed;
    Ok(Idle {
        opened,
        held: held.len() as u32,
        failed,
        rss_before_kib,
        rss_after_kib,
    })
}

/// One connection: handshake, one keep-alive request, its whole answer; the socket, open.
fn one(probe: &Probe, client: &ClientTls, req: &[u8]) -> io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sock = TcpStream::connect_timeout(&probe.addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut session = client.session().map_err(io::Error::other)?;
    let mut parser = ResponseParser::new(false);
    let mut buf = Vec::new();
    {
        let mut tls = rustls::Stream::new(&mut session, &mut sock);
        tls.write_all(req)?;
        let mut chunk = [0u8; 4096];
        loop {
            if Instant::now() > deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let n = tls.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
            let fed = parser
                .feed(&buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            buf.drain(..fed.used);
            if fed.done {
                break;
            }
        }
    }
    if !(200..300).contains(&parser.status()) || parser.must_close() {
        return Err(io::Error::other("not a kept-alive 2xx answer"));
    }
    Ok(sock)
}
