//! The soak: minutes of mixed load on every event-loop architecture at once, each with its own
//! server (it measures whether memory and descriptors stay flat, not speed, so the servers may
//! share the cores). Per server, open-loop streams at fixed rates (keep-alive and
//! connection-per-request small files, ranges, 304s, 404s, `/io`, a file replaced or rewritten
//! every second), slow readers, and clients that vanish mid-response; every `--sample-every`
//! seconds its RSS (summed over its processes), open descriptors (sockets apart; a burst of
//! looks, fd_burst.rs) and threads go to soak.csv. The target: after the first minute, RSS
//! within ±5 % and the descriptors held (fd_burst.rs) within ±1 % of their level at minute one.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::super::plan::{Plan, ServerSpec};
use super::super::procfs;
use super::super::report::Sample;
use super::super::scratch::BIG_FILE;
use super::super::server::{stopped, Running};
use super::fd_burst::{self, Burst, Listing};
use super::traffic::{figures, misbehave, Figures, Stream};
use super::ReliabilityArgs;

/// `fds` and `socket_fds` are the burst's first look (the instant value); `fds_floor`/`fds_max`
/// the fewest and most descriptors over the burst, `non_socket_*` the same without sockets,
/// `pipes_*` the pipes', `changing_*` the changing file's; `held` the figure judged,
/// `connections` and `held_sockets` the sockets open through the burst (fd_burst.rs).
pub const CSV_HEADER: &str = "server,t_s,rss_kib,fds,socket_fds,threads,processes,\
                              fds_floor,fds_max,non_socket_fds,non_socket_floor,non_socket_max,\
                              pipes_floor,pipes_max,changing_floor,changing_max,held,connections,held_sockets,looks";
/// Where minute one is: its sample is the level the rest is held to (half the run when the
/// run is shorter than two minutes).
const MINUTE_ONE: Duration = Duration::from_secs(60);

/// One sample of a server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t_s: f64,
    pub rss_kib: u64,
    /// The descriptors over the sample's burst.
    pub fd: Burst,
    pub threads: u64,
    pub processes: u64,
}

/// Runs the soak on every event-loop server of the plan at once; writes soak.csv and the
/// chart; returns the figures as raw.csv rows.
pub fn run(
    plan: &Plan,
    args: &ReliabilityArgs,
    out: &Path,
    failures: &mut Vec<String>,
) -> Vec<Sample> {
    let specs: Vec<&ServerSpec> = plan
        .servers
        .iter()
        .filter(|s| super::event_loop(s))
        .collect();
    let duration = args.soak_duration();
    let every = Duration::from_secs(args.sample_every);
    println!(
        "soak: {} at once for {:.1} min, a sample every {} s",
        specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        args.minutes,
        args.sample_every
    );
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = specs
            .iter()
            .map(|spec| scope.spawn(move || one(plan, spec, duration, every)))
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut csv = vec![CSV_HEADER.to_string()];
    let mut rows = Vec::new();
    let mut series = Vec::new();
    for (spec, result) in specs.iter().zip(results) {
        match result.map_err(|_| anyhow!("panicked")).and_then(|r| r) {
            Ok((points, figs)) => {
                csv.extend(points.iter().map(|p| csv_line(&spec.name, p)));
                rows.extend(figs.into_iter().map(|(metric, value, unit)| Sample {
                    server: spec.name.clone(),
                    workers: spec.workers,
                    workload: "soak".into(),
                    x: 0,
                    repeat: 1,
                    metric,
                    value,
                    unit: unit.to_string(),
                    ok: 0,
                    errors: 0,
                }));
                series.push((spec.name.clone(), points));
            }
            Err(e) => failures.push(format!("soak on {}: {e:#}", spec.name)),
        }
    }
    let file = out.join("soak.csv");
    if let Err(e) = std::fs::write(&file, csv.join("\n") + "\n") {
        failures.push(format!("writing {}: {e}", file.display()));
    }
    if let Err(e) = super::chart::draw(out, &series) {
        failures.push(format!("soak chart: {e}"));
    }
    rows
}

fn csv_line(server: &str, p: &Point) -> String {
    let (all, files) = (p.fd.all, p.fd.non_socket);
    format!(
        "{server},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        p.t_s,
        p.rss_kib,
        all.instant,
        all.instant - files.instant,
        p.threads,
        p.processes,
        all.floor,
        all.max,
        files.instant,
        files.floor,
        files.max,
        p.fd.pipes.floor,
        p.fd.pipes.max,
        p.fd.changing.floor,
        p.fd.changing.max,
        p.fd.held,
        p.fd.connections,
        p.fd.held_sockets,
        p.fd.looks
    )
}

/// The soak of one server: its samples and figures.
fn one(
    plan: &Plan,
    spec: &ServerSpec,
    duration: Duration,
    every: Duration,
) -> anyhow::Result<(Vec<Point>, Figures)> {
    let server = Running::start(plan, spec)?;
    let addr = server.addr;
    let changing = format!("soak-{}.txt", spec.name);
    let tag = etag(addr, "/index.html").context("the ETag of /index.html")?;
    std::fs::write(plan.serve_root.join(&changing), "first version\n")?;
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<(&str, _)> = streams(&changing, &tag, duration)
        .into_iter()
        .map(|(name, s)| (name, s.spawn(addr)))
        .collect();
    let misbehaving = Misbehaving::start(addr, &stop);
    let changer = {
        let (file, flag) = (plan.serve_root.join(&changing), stop.clone());
        std::thread::spawn(move || change_every_second(&file, &flag))
    };
    let cpu0 = thread_cpu_s();
    let t0 = Instant::now();
    // As /proc shows it: absolute, links resolved.
    let changing_path = std::fs::canonicalize(plan.serve_root.join(&changing))?;
    let changing_path = changing_path.display().to_string();
    let (points, floors) = sample(server.probe().pgid, &changing_path, duration, every)?;
    let sampler_pct = (thread_cpu_s() - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let write = |name: String, text: String| {
        let file = plan.out.join(name);
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))
    };
    write(
        format!("descriptors-{}.txt", spec.name),
        descriptors(server.probe().pgid)?,
    )?;
    write(format!("fd-floor-{}.txt", spec.name), floors)?;
    stop.store(true, Ordering::SeqCst);
    let mut figs = Figures::new();
    for (name, h) in streams {
        let stats = h
            .join()
            .map_err(|_| anyhow!("stream {name} panicked"))?
            .with_context(|| format!("stream {name}"))?;
        figs.extend(figures(name, &stats));
    }
    figs.extend(misbehaving.finish());
    let changes = changer
        .join()
        .map_err(|_| anyhow!("file changer panicked"))??;
    figs.push(("file_changes".into(), changes as f64, "changes"));
    figs.push(("sampler.cpu_pct".into(), sampler_pct, "% of a core"));
    figs.extend(flatness(&points));
    Ok((points, figs))
}

/// The well-behaved streams, open loop at rates that keep 4 servers well under 2 cores.
fn streams(changing: &str, etag: &str, duration: Duration) -> Vec<(&'static str, Stream)> {
    let s = |path: &str, conns: usize, keep_alive: bool, rate: f64, expect: u16| Stream {
        path: path.to_string(),
        headers: Vec::new(),
        connections: conns,
        keep_alive,
        rate: Some(rate),
        duration,
        timeout: Duration::from_secs(10),
        expect: vec![expect],
    };
    let header = |mut st: Stream, name: &str, value: &str| {
        st.headers.push((name.to_string(), value.to_string()));
        st
    };
    vec![
        ("keepalive", s("/index.html", 4, true, 300.0, 200)),
        ("close", s("/index.html", 4, false, 100.0, 200)),
        (
            "range",
            header(
                s(&format!("/{BIG_FILE}"), 2, true, 100.0, 206),
                "Range",
                "bytes=1000-5095",
            ),
        ),
        (
            "not_modified",
            header(s("/index.html", 2, true, 100.0, 304), "If-None-Match", etag),
        ),
        ("not_found", s("/no-such-file.html", 2, true, 50.0, 404)),
        ("io", s("/io?ms=100", 8, true, 20.0, 200)),
        ("changing", s(&format!("/{changing}"), 2, true, 100.0, 200)),
    ]
}

/// The `ETag` of `path`'s answer, asked again every 200 ms for up to 5 s: a file modified
/// less than 2 s ago has none yet (src/site/conditional.rs), and the scratch root was just
/// written.
fn etag(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let t0 = Instant::now();
    loop {
        match etag_once(addr, path) {
            Ok(tag) => return Ok(tag),
            Err(e) if t0.elapsed() > Duration::from_secs(5) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn etag_once(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = Vec::new();
    s.read_to_end(&mut text)?;
    let text = String::from_utf8_lossy(&text);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("etag").then(|| v.trim().to_string())
        })
        .ok_or_else(|| anyhow!("no ETag in {head:?}"))
}

/// Every second until `stop`: the file replaced by rename (even changes) or rewritten in place
/// with the same length (odd changes), its size cycling through 1–5 kB. Returns the changes.
fn change_every_second(file: &Path, stop: &AtomicBool) -> std::io::Result<u64> {
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let size = 1000 * (1 + (i / 2 % 5) as usize);
        let body = super::scenario::noise(size, i);
        if i.is_multiple_of(2) {
            let tmp: PathBuf = file.with_extension("tmp");
            std::fs::write(&tmp, &body)?;
            std::fs::rename(&tmp, file)?;
        } else {
            // Same length, no O_TRUNC: the file never shrinks under a response being sent (a
            // shrinking file cuts it, by design; the files scenario measures that).
            std::fs::OpenOptions::new()
                .write(true)
                .open(file)?
                .write_all(&body)?;
        }
        i += 1;
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(i)
}

/// The clients that misbehave on purpose: two slow readers (16 KiB every 50 ms of the 1 MiB
/// file, about 3 s each) and one client every 200 ms that reads 64 KiB of it and vanishes.
struct Misbehaving {
    threads: Vec<std::thread::JoinHandle<()>>,
    counts: Arc<Mutex<[u64; 4]>>,
}

impl Misbehaving {
    const NAMES: [&'static str; 4] = [
        "slow.completed",
        "slow.failed",
        "vanish.done",
        "vanish.failed",
    ];

    fn start(addr: SocketAddr, stop: &Arc<AtomicBool>) -> Misbehaving {
        let counts = Arc::new(Mutex::new([0u64; 4]));
        let path = format!("/{BIG_FILE}");
        let kinds = [
            (16 * 1024, Duration::from_millis(50), None, 0),
            (16 * 1024, Duration::from_millis(50), None, 0),
            (64 * 1024, Duration::ZERO, Some(64 * 1024), 2),
        ];
        let threads = kinds
            .into_iter()
            .map(|(chunk, pause, vanish, slot)| {
                let (stop, counts, path) = (stop.clone(), counts.clone(), path.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let ok = misbehave(addr, &path, chunk, pause, vanish)
                            .is_ok_and(|n| vanish.is_some() || n > super::super::scratch::BIG_SIZE);
                        counts.lock().unwrap_or_else(|e| e.into_inner())
                            [slot + usize::from(!ok)] += 1;
                        if vanish.is_some() {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                })
            })
            .collect();
        Misbehaving { threads, counts }
    }

    fn finish(self) -> Figures {
        for t in self.threads {
            let _ = t.join();
        }
        let counts = *self.counts.lock().unwrap_or_else(|e| e.into_inner());
        Misbehaving::NAMES
            .iter()
            .zip(counts)
            .map(|(name, n)| (name.to_string(), n as f64, "clients"))
            .collect()
    }
}

/// Samples the server's group every `every` for `duration` (a sample at 0 s, then one per
/// period; `changing` is the path of the file changed every second); stops early when the run
/// is interrupted. Returns the samples and the floor's log:
/// a line for each sample whose floor (all descriptors, or those not sockets) or held count
/// differs from the one before, with what differs between the two bursts' lowest looks.
fn sample(
    pgid: i32,
    changing: &str,
    duration: Duration,
    every: Duration,
) -> anyhow::Result<(Vec<Point>, String)> {
    let t0 = Instant::now();
    let mut points: Vec<Point> = Vec::new();
    let mut log = String::new();
    let mut last: Option<Listing> = None;
    let mut next = Duration::ZERO;
    while next < duration && !stopped() {
        while t0.elapsed() < next {
            if stopped() {
                return Ok((points, log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (p, lowest) = point(pgid, changing, t0.elapsed())?;
        if let (Some(before), Some(prev)) = (&last, points.last()) {
            let (a, b) = (prev.fd, p.fd);
            let floors = |b: Burst| (b.all.floor, b.non_socket.floor, b.held);
            if floors(a) != floors(b) {
                log += &format!(
                    "{:.1} s: floor {} -> {} (not sockets {} -> {}; held {} -> {}): {}\n",
                    p.t_s,
                    a.all.floor,
                    b.all.floor,
                    a.non_socket.floor,
                    b.non_socket.floor,
                    a.held,
                    b.held,
                    fd_burst::difference(before, &lowest)
                );
            }
        }
        points.push(p);
        last = Some(lowest);
        next += every;
    }
    Ok((points, log))
}

/// RSS and threads summed over the group's processes, and a burst of looks at their
/// descriptors; with the listing of the burst's lowest look.
fn point(pgid: i32, changing: &str, t: Duration) -> anyhow::Result<(Point, Listing)> {
    let pids = procfs::group_pids(pgid)?;
    let rss_kib = procfs::group_rss_kib(pgid)?;
    let threads = pids
        .iter()
        .map(|&pid| procfs::threads(pid).len() as u64)
        .sum();
    let (fd, lowest) = fd_burst::take(&pids, changing);
    let p = Point {
        t_s: t.as_secs_f64(),
        rss_kib,
        fd,
        threads,
        processes: pids.len() as u64,
    };
    Ok((p, lowest))
}

/// CPU time of the calling thread (user + system), in seconds: what the bursts cost.
fn thread_cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_THREAD).map_or(0.0, |u| {
        let (a, b) = (u.user_time(), u.system_time());
        (a.tv_sec() + b.tv_sec()) as f64 + (a.tv_usec() + b.tv_usec()) as f64 / 1e6
    })
}

/// What each descriptor of the group's processes is (`PID FD TARGET`, sockets included), as
/// the load ends: where the descriptors counted go.
fn descriptors(pgid: i32) -> anyhow::Result<String> {
    let pids = procfs::group_pids(pgid)?;
    Ok(fd_burst::list(&pids)
        .into_iter()
        .map(|(pid, fd, target)| format!("{pid} {fd} {target}\n"))
        .collect())
}

/// The target's figures: the level at minute one and the largest deviation from it after,
/// for RSS, for the descriptors held (the target's figure), for the bursts' floors (all, and
/// those not sockets) and for the instant values (sockets come and go with the requests in
/// flight at the instant of a look); pipes' and threads' range; whether the target was met.
pub fn flatness(points: &[Point]) -> Figures {
    let end = points.last().map_or(0.0, |p| p.t_s);
    let at = MINUTE_ONE.as_secs_f64().min(end / 2.0);
    let Some(i) = points.iter().position(|p| p.t_s >= at) else {
        return Vec::new();
    };
    let (base, after) = (points[i], &points[i..]);
    let level = |f: fn(&Point) -> u64| {
        let series: Vec<(f64, u64)> = points.iter().map(|p| (p.t_s, f(p))).collect();
        fd_burst::deviation(&series, base.t_s).unwrap_or((0, 0.0))
    };
    let rss = level(|p| p.rss_kib).1;
    // A leak shows as growth: the largest rise above the level, apart from the deviation
    // either way (memory handed back to the system is a fall).
    let rise = after
        .iter()
        .map(|p| (p.rss_kib as f64 - base.rss_kib as f64) / base.rss_kib.max(1) as f64 * 100.0)
        .fold(0.0, f64::max);
    let fds = level(|p| p.fd.all.instant);
    let files = level(|p| p.fd.non_socket.instant);
    let floor = level(|p| p.fd.all.floor);
    let files_floor = level(|p| p.fd.non_socket.floor);
    let held = level(|p| p.fd.held);
    let threads = || after.iter().map(|p| p.threads);
    let pipes_min = after.iter().map(|p| p.fd.pipes.floor).min().unwrap_or(0);
    let pipes_max = after.iter().map(|p| p.fd.pipes.max).max().unwrap_or(0);
    let last = points[points.len() - 1];
    let n = |v: u64| v as f64;
    let met = |ok: bool| f64::from(u8::from(ok));
    vec![
        ("ref_t_s".into(), base.t_s, "s"),
        ("rss.ref_kib".into(), n(base.rss_kib), "KiB"),
        ("rss.end_kib".into(), n(last.rss_kib), "KiB"),
        ("rss.max_dev_pct".into(), rss, "%"),
        ("rss.max_rise_pct".into(), rise, "%"),
        ("fds.ref".into(), n(fds.0), "fds"),
        ("fds.max_dev_pct".into(), fds.1, "%"),
        ("fds.non_socket_ref".into(), n(files.0), "fds"),
        ("fds.non_socket_max_dev_pct".into(), files.1, "%"),
        ("fds.floor_ref".into(), n(floor.0), "fds"),
        ("fds.floor_end".into(), n(last.fd.all.floor), "fds"),
        ("fds.floor_max_dev_pct".into(), floor.1, "%"),
        ("fds.non_socket_floor_ref".into(), n(files_floor.0), "fds"),
        (
            "fds.non_socket_floor_max_dev_pct".into(),
            files_floor.1,
            "%",
        ),
        ("fds.held_ref".into(), n(held.0), "fds"),
        ("fds.held_end".into(), n(last.fd.held), "fds"),
        ("fds.held_max_dev_pct".into(), held.1, "%"),
        ("pipes.min".into(), n(pipes_min), "fds"),
        ("pipes.max".into(), n(pipes_max), "fds"),
        (
            "threads.min".into(),
            n(threads().min().unwrap_or(0)),
            "threads",
        ),
        (
            "threads.max".into(),
            n(threads().max().unwrap_or(0)),
            "threads",
        ),
        ("rss_target_met".into(), met(rss <= 5.0), "bool"),
        ("fds_target_met".into(), met(held.1 <= 1.0), "bool"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample whose burst saw `fds` (`socket_fds` of them sockets) at its first look and
    /// `floor` at its lowest, sockets only gone; `held` as given.
    fn p(t_s: f64, rss_kib: u64, fds: u64, socket_fds: u64, floor: u64, held: u64) -> Point {
        let spread = |floor, instant| fd_burst::Spread {
            floor,
            instant,
            max: instant,
        };
        let files = fds - socket_fds;
        Point {
            t_s,
            rss_kib,
            fd: Burst {
                all: spread(floor, fds),
                non_socket: spread(files, files),
                pipes: spread(2, 2),
                held,
                changing: spread(1, 1),
                connections: socket_fds,
                held_sockets: 1,
                looks: 51,
            },
            threads: 3,
            processes: 1,
        }
    }

    #[test]
    fn deviation_is_measured_from_minute_one_on() {
        let points = [
            p(0.0, 1000, 10, 2, 9, 7),
            p(60.0, 2000, 20, 10, 14, 9),
            p(120.0, 2080, 22, 12, 13, 9),
            p(180.0, 1950, 20, 10, 14, 9),
        ];
        let f = flatness(&points);
        let get = |m: &str| f.iter().find(|r| r.0 == m).map(|r| r.1).unwrap();
        assert_eq!(get("ref_t_s"), 60.0);
        assert_eq!(get("rss.ref_kib"), 2000.0);
        assert!((get("rss.max_dev_pct") - 4.0).abs() < 1e-9);
        assert!((get("rss.max_rise_pct") - 4.0).abs() < 1e-9);
        assert!((get("fds.max_dev_pct") - 10.0).abs() < 1e-9);
        assert_eq!(get("fds.non_socket_max_dev_pct"), 0.0);
        assert_eq!(get("fds.floor_ref"), 14.0);
        assert!((get("fds.floor_max_dev_pct") - 100.0 / 14.0).abs() < 1e-9);
        assert_eq!(get("fds.held_ref"), 9.0);
        assert_eq!(get("fds.held_max_dev_pct"), 0.0);
        assert_eq!(get("rss_target_met"), 1.0);
        // Judged on what is held: the instant values swing 10 %, the floor 7 %, held not.
        assert_eq!(get("fds_target_met"), 1.0);
    }

    #[test]
    fn a_short_run_takes_its_middle_as_the_level() {
        let points = [
            p(0.0, 1000, 10, 0, 10, 10),
            p(10.0, 1100, 10, 0, 10, 10),
            p(20.0, 1300, 10, 0, 11, 11),
        ];
        let f = flatness(&points);
        let get = |m: &str| f.iter().find(|r| r.0 == m).map(|r| r.1).unwrap();
        assert_eq!(get("ref_t_s"), 10.0);
        assert_eq!(get("rss_target_met"), 0.0);
        // One descriptor more held, never closed: 10 % of 10, the target missed.
        assert_eq!(get("fds.held_max_dev_pct"), 10.0);
        assert_eq!(get("fds_target_met"), 0.0);
    }
}
