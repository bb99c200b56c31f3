//! The sweep `archserve compare` runs: which servers (architectures from the registry, then the
//! installed baselines), which workloads each can run at which points, in which order (rounds
//! interleaved: every server once per repeat), and how long all that should take.
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;

use super::args::CompareArgs;
use crate::arch::{self, Arch, Workers};
use crate::site::workload::count_primes;

/// A kind of measurement. Each has one swept parameter (its "x") and one or more metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Workload {
    /// The seed's CPU test: N clients at once, one `/cpu` request each on a new connection;
    /// the total time for the N.
    Cpu,
    /// The seed's I/O test: the same with `/io` (the server waits, then answers).
    Io,
    /// Keep-alive requests for a small file: requests/s, the server's CPU µs per request and
    /// latency percentiles at several connection counts.
    Static,
    /// A new connection per request (handshake, one request, close): requests/s and the
    /// server's CPU µs per request.
    Close,
    /// Keep-alive requests for a 1 MiB file: body MiB/s.
    Big,
    /// A file changed on disk between requests is served with its new content.
    Fresh,
    /// Memory per idle keep-alive connection, holding thousands.
    Idle,
    /// `/io` with many clients at once (1,000 by default): the time until the last answer.
    #[value(name = "io-burst")]
    IoBurst,
    /// System calls per request (keep-alive and connection-per-request), counted with perf or
    /// strace over every process and thread of the server.
    Syscalls,
    /// `archserve load` against h2load and wrk, driving one server: requests/s and each
    /// generator's own CPU per request.
    Loadgen,
    /// Five upgrades in a row under `archserve load` (keep-alive, then connection-per-request,
    /// each on a fresh server): requests answered, failed by kind, connections refused.
    Upgrade,
    /// HTTPS (each server started with the run's certificate): keep-alive CPU per request,
    /// full and resumed handshakes/s, 1 MiB MiB/s, memory per idle TLS connection.
    Tls,
    /// N clients at once, one CGI request each on a new connection (a fork, an exec and two
    /// pipes per request): the total time for the N and the server's CPU per request.
    Cgi,
}

impl Workload {
    pub const ALL: [Workload; 13] = [
        Workload::Cpu,
        Workload::Io,
        Workload::Static,
        Workload::Close,
        Workload::Big,
        Workload::Fresh,
        Workload::Idle,
        Workload::IoBurst,
        Workload::Syscalls,
        Workload::Loadgen,
        Workload::Upgrade,
        Workload::Tls,
        Workload::Cgi,
    ];

    /// The name used on the command line, in raw.csv and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Cpu => "cpu",
            Workload::Io => "io",
            Workload::Static => "static",
            Workload::Close => "close",
            Workload::Big => "big",
            Workload::Fresh => "fresh",
            Workload::Idle => "idle",
            Workload::IoBurst => "io-burst",
            Workload::Syscalls => "syscalls",
            Workload::Loadgen => "loadgen",
            Workload::Upgrade => "upgrade",
            Workload::Tls => "tls",
            Workload::Cgi => "cgi",
        }
    }

    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// What the swept parameter counts.
    pub fn x_name(self) -> &'static str {
        match self {
            Workload::Cpu | Workload::Io | Workload::IoBurst | Workload::Cgi => "clients",
            Workload::Fresh => "checks",
            _ => "connections",
        }
    }

    /// Whether a server without our `/cpu` and `/io` endpoints (a baseline) can run it.
    pub fn for_baselines(self) -> bool {
        !matches!(self, Workload::Cpu | Workload::Io | Workload::IoBurst)
    }

    /// Whether it runs on the server started for the round; idle, upgrade and tls start their
    /// own.
    pub fn shares_a_server(self) -> bool {
        !matches!(self, Workload::Idle | Workload::Upgrade | Workload::Tls)
    }

    /// Counts, not timings: measured in the first round only.
    pub fn once(self) -> bool {
        matches!(self, Workload::Syscalls | Workload::Fresh)
    }
}

/// A well-known server measured beside ours on the workloads it can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Baseline {
    Nginx,
    /// nginx with `listen ... deferred` (TCP_DEFER_ACCEPT), as archserve's default.
    #[value(name = "nginx-deferred")]
    NginxDeferred,
    Lighttpd,
}

impl Baseline {
    pub const ALL: [Baseline; 3] = [Baseline::Nginx, Baseline::NginxDeferred, Baseline::Lighttpd];

    /// The name in every table.
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Nginx => "nginx",
            Baseline::NginxDeferred => "nginx-deferred",
            Baseline::Lighttpd => "lighttpd",
        }
    }

    /// The program that runs it.
    pub fn program(self) -> &'static str {
        match self {
            Baseline::Nginx | Baseline::NginxDeferred => "nginx",
            Baseline::Lighttpd => "lighttpd",
        }
    }
}

/// Where a program is installed, if it is (PATH first, then the sbin directories that a
/// non-root PATH often lacks).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What a server in the sweep is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// One of ours, from this run's archserve binary or (`--against`) another one.
    Arch(&'static Arch, Option<PathBuf>),
    /// A baseline and the path of its binary.
    Baseline(Baseline, PathBuf),
}

/// One server of the sweep.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    /// The name in every table and chart.
    pub name: String,
    pub kind: Kind,
    /// Workers it runs (threads, processes or event loops).
    pub workers: usize,
    /// The workloads it runs, in order.
    pub workloads: Vec<Workload>,
}

impl ServerSpec {
    /// Whether one worker serves one connection at a time (a blocking loop).
    pub fn blocking(&self) -> bool {
        // The registry gives the blocking loops the short idle timeout: exactly the property
        // (a connection occupies a worker) that matters here.
        matches!(self.kind, Kind::Arch(a, _) if a.idle_timeout == arch::BLOCKING_IDLE)
    }

    /// Whether the tls workload runs on it: every architecture, and nginx.
    pub fn serves_tls(&self) -> bool {
        !matches!(self.kind, Kind::Baseline(Baseline::Lighttpd, _))
    }

    /// Whether the upgrade workload runs on it: ours, and plain nginx (`USR2` + `QUIT`).
    pub fn upgradable(&self) -> bool {
        matches!(
            self.kind,
            Kind::Arch(..) | Kind::Baseline(Baseline::Nginx, _)
        )
    }

    /// How many `/cpu` requests run at once on `cpus` cores.
    fn cpu_parallelism(&self, cpus: usize) -> usize {
        self.workers.min(cpus).max(1)
    }
}

/// One measurement to take: a workload at one value of its parameter, one repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub workload: Workload,
    pub x: u32,
    /// 1-based.
    pub repeat: u32,
}

/// The external programs some workloads need, where installed.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub h2load: Option<PathBuf>,
    pub wrk: Option<PathBuf>,
    pub perf: Option<PathBuf>,
    pub strace: Option<PathBuf>,
}

/// The workload parameters, as run (also the report's record of them).
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub servers: Vec<String>,
    pub workers: u32,
    pub workloads: Vec<String>,
    pub repeat: u32,
    pub clients: Vec<u32>,
    pub cpu_n: u64,
    /// One `/cpu` request's work timed in the compare process before the run.
    pub cpu_request_ms: f64,
    pub io_ms: u64,
    pub static_conns: Vec<u32>,
    pub close_conns: u32,
    pub big_conns: u32,
    pub duration_s: f64,
    pub static_path: String,
    pub idle_conns: u32,
    pub burst_clients: u32,
    pub burst_ms: u64,
    pub load_conns: u32,
    /// upgrade: how long `archserve load` runs while the upgrades happen, and how many.
    pub upgrade_duration_s: f64,
    pub upgrades: u32,
    pub client_threads: usize,
    pub root: String,
}

/// The whole sweep, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub servers: Vec<ServerSpec>,
    pub p: Params,
    /// The document root the servers get: the given root at first, the run's scratch copy
    /// once the run has made it.
    pub serve_root: PathBuf,
    pub out: PathBuf,
    pub timeout: Duration,
    pub server_bin: PathBuf,
    pub tools: Tools,
    /// One line per workload or baseline left out, and why.
    pub notes: Vec<String>,
}

impl Plan {
    /// Validates the arguments; `find` locates a program (injected for tests).
    pub fn new(args: &CompareArgs, find: impl Fn(&str) -> Option<PathBuf>) -> Result<Plan, String> {
        let root = check_root(&args.root)?;
        if !args.static_path.starts_with('/') || args.static_path.contains(char::is_whitespace) {
            return Err(format!(
                "--static-path {:?} must start with / and have no spaces",
                args.static_path
            ));
        }
        let preset = args.preset();
        let workloads = dedup(if args.workload.is_empty() {
            &preset.workloads
        } else {
            &args.workload
        });
        let baselines = dedup(if args.baseline.is_empty() {
            &preset.baselines
        } else {
            &args.baseline
        });
        let tools = Tools {
            h2load: find("h2load"),
            wrk: find("wrk"),
            perf: find("perf"),
            strace: find("strace"),
        };
        let mut notes = Vec::new();
        let mut servers = arch_specs(args, &workloads)?;
        servers.extend(baseline_specs(
            &baselines,
            &workloads,
            args.workers,
            &find,
            &mut notes,
        ));
        fit_workloads(&mut servers, &tools, &mut notes);
        let server_bin = match &args.server_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find the archserve binary: {e}"))?,
        };
        let p = Params {
            servers: servers.iter().map(|s| s.name.clone()).collect(),
            workers: args.workers,
            workloads: workloads.iter().map(|w| w.name().to_string()).collect(),
            repeat: args.repeat.unwrap_or(preset.repeat),
            clients: args.clients.clone().map_or(preset.clients, |c| c.0),
            cpu_n: args.cpu_n,
            cpu_request_ms: 0.0,
            io_ms: args.io_ms,
            static_conns: args
                .static_conns
                .clone()
                .map_or(preset.static_conns, |c| c.0),
            close_conns: args.close_conns,
            big_conns: args.big_conns,
            duration_s: args.duration.unwrap_or(preset.duration).as_secs_f64(),
            static_path: args.static_path.clone(),
            idle_conns: args.idle_conns,
            burst_clients: args.burst_clients,
            burst_ms: args.burst_ms,
            load_conns: args.load_conns,
            upgrade_duration_s: args
                .upgrade_duration
                .unwrap_or(preset.upgrade_duration)
                .as_secs_f64(),
            upgrades: super::upgrade::UPGRADES,
            client_threads: args.client_threads as usize,
            root: root.display().to_string(),
        };
        Ok(Plan {
            servers,
            p,
            serve_root: root,
            out: args.out.clone().unwrap_or_else(default_out),
            timeout: args.timeout,
            server_bin,
            tools,
            notes,
        })
    }

    /// How long each timed point runs.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.p.duration_s)
    }

    /// The values a workload sweeps.
    pub fn xs(&self, w: Workload) -> Vec<u32> {
        match w {
            Workload::Cpu | Workload::Io | Workload::Cgi => self.p.clients.clone(),
            Workload::Static => self.p.static_conns.clone(),
            Workload::Close | Workload::Tls => vec![self.p.close_conns],
            Workload::Big => vec![self.p.big_conns],
            Workload::Fresh => vec![1],
            Workload::Idle => vec![self.p.idle_conns],
            Workload::IoBurst => vec![self.p.burst_clients],
            Workload::Syscalls | Workload::Loadgen | Workload::Upgrade => {
                vec![self.p.load_conns]
            }
        }
    }

    /// A server's measurements in one round, in the order they are taken: workload by
    /// workload, each over its whole sweep.
    pub fn round(&self, server: &ServerSpec, repeat: u32) -> Vec<Point> {
        let mut out = Vec::new();
        for &workload in &server.workloads {
            if workload.once() && repeat > 1 {
                continue;
            }
            for x in self.xs(workload) {
                out.push(Point {
                    workload,
                    x,
                    repeat,
                });
            }
        }
        out
    }

    /// A server's measurements over every round.
    pub fn points(&self, server: &ServerSpec) -> Vec<Point> {
        (1..=self.p.repeat)
            .flat_map(|r| self.round(server, r))
            .collect()
    }

    /// Every measurement of the run.
    pub fn total_points(&self) -> usize {
        self.servers.iter().map(|s| self.points(s).len()).sum()
    }

    /// Expected wall time of the run, from the workload parameters and `cpu_request`, the time
    /// one `/cpu` request takes on one core. A guide, not a promise.
    pub fn estimate(&self, cpu_request: Duration, cpus: usize) -> Duration {
        let mut total = Duration::ZERO;
        for s in &self.servers {
            for repeat in 1..=self.p.repeat {
                let round = self.round(s, repeat);
                if round.iter().any(|p| p.workload.shares_a_server()) {
                    total += START_COST;
                }
                for p in round {
                    total += self.point_cost(s, p, cpu_request, cpus) + POINT_COST;
                }
            }
        }
        total
    }

    fn point_cost(&self, s: &ServerSpec, p: Point, cpu_request: Duration, cpus: usize) -> Duration {
        let duration = self.duration();
        match p.workload {
            Workload::Cpu => {
                let rounds = p.x as f64 / s.cpu_parallelism(cpus) as f64;
                cpu_request.mul_f64(rounds.max(1.0))
            }
            Workload::Io => {
                let at_once = if s.blocking() { s.workers as u32 } else { p.x };
                Duration::from_millis(self.p.io_ms) * p.x.div_ceil(at_once.max(1))
            }
            Workload::Static | Workload::Close | Workload::Big => duration + WARM_UP,
            Workload::Fresh => Duration::ZERO,
            // A fresh server, the warm-up, the connections, the settling; a blocking server
            // leaves its first batch unanswered, which costs a quiet window.
            Workload::Idle => {
                let quiet = if s.blocking() {
                    IDLE_QUIET
                } else {
                    Duration::ZERO
                };
                START_COST + IDLE_SETTLE + Duration::from_micros(60) * p.x + quiet
            }
            Workload::IoBurst => Duration::from_millis(self.p.burst_ms + 300),
            // A fork and exec of a small sh script: a few ms each, at most two at once.
            Workload::Cgi => Duration::from_millis(5) * p.x.div_ceil(2),
            // Keep-alive and connection-per-request, each with the tracer's start and stop.
            Workload::Syscalls => (duration + TRACER_COST + WARM_UP) * 2,
            Workload::Loadgen => (duration + WARM_UP) * GENERATORS,
            // Two servers; four timed loops; the idle connections one by one (a resumed
            // handshake each, well under a millisecond).
            Workload::Tls => {
                (START_COST + IDLE_SETTLE) * 2
                    + (duration + WARM_UP) * 4
                    + Duration::from_micros(700) * self.p.idle_conns
            }
            // Two modes, each on a fresh server started, loaded and stopped.
            Workload::Upgrade => {
                (START_COST + Duration::from_secs_f64(self.p.upgrade_duration_s)) * 2
            }
        }
    }
}

/// The canonical document root, which must be a directory.
fn check_root(root: &Path) -> Result<PathBuf, String> {
    if !root.is_dir() {
        return Err(format!(
            "document root {} is not a directory",
            root.display()
        ));
    }
    std::fs::canonicalize(root).map_err(|e| format!("document root {}: {e}", root.display()))
}

fn dedup<T: Copy + PartialEq>(items: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    for &i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The architectures asked for (all of the registry by default), in order.
fn arch_specs(args: &CompareArgs, workloads: &[Workload]) -> Result<Vec<ServerSpec>, String> {
    let archs: Vec<&'static Arch> = if args.arch.is_empty() {
        arch::REGISTRY.iter().collect()
    } else {
        let mut v: Vec<&'static Arch> = Vec::new();
        for name in &args.arch {
            let a = arch::find(name).ok_or_else(|| format!("unknown architecture {name}"))?;
            if !v.iter().any(|b| b.name == a.name) {
                v.push(a);
            }
        }
        v
    };
    let workers = |a: &Arch| match a.workers {
        Workers::One => 1,
        _ => args.workers as usize,
    };
    let mut specs = Vec::new();
    for a in archs {
        specs.push(ServerSpec {
            name: a.name.to_string(),
            kind: Kind::Arch(a, None),
            workers: workers(a),
            workloads: workloads.to_vec(),
        });
        // The other binary's run of the same architecture follows it in every round.
        if let Some((label, path)) = &args.against {
            specs.push(ServerSpec {
                name: format!("{}@{label}", a.name),
                kind: Kind::Arch(a, Some(path.clone())),
                workers: workers(a),
                workloads: workloads.to_vec(),
            });
        }
    }
    Ok(specs)
}

/// The installed baselines among those asked for, each with the workloads it can run.
fn baseline_specs(
    baselines: &[Baseline],
    workloads: &[Workload],
    workers: u32,
    find: &impl Fn(&str) -> Option<PathBuf>,
    notes: &mut Vec<String>,
) -> Vec<ServerSpec> {
    let runs: Vec<Workload> = workloads
        .iter()
        .copied()
        .filter(|w| w.for_baselines())
        .collect();
    let mut out = Vec::new();
    for &b in baselines {
        match find(b.program()) {
            None => notes.push(format!(
                "{} is not installed: no {} baseline in this run (scripts/install-bench-deps)",
                b.program(),
                b.name()
            )),
            Some(_) if runs.is_empty() => notes.push(format!(
                "{} runs no selected workload (it has no /cpu or /io)",
                b.name()
            )),
            Some(path) => out.push(ServerSpec {
                name: b.name().to_string(),
                kind: Kind::Baseline(b, path),
                workers: match b {
                    // lighttpd is one event loop; its multi-process mode is unsupported.
                    Baseline::Lighttpd => 1,
                    _ => workers as usize,
                },
                workloads: runs.clone(),
            }),
        }
    }
    out
}

/// Takes out the workloads a server cannot run here (a missing tool, a blocking architecture
/// facing 1,000 clients at once), each with a note, and gives loadgen one target server.
fn fit_workloads(servers: &mut [ServerSpec], tools: &Tools, notes: &mut Vec<String>) {
    let mut note = |names: Vec<String>, text: &dyn Fn(String) -> String| {
        if !names.is_empty() {
            notes.push(text(names.join(", ")));
        }
    };
    let no_cgi = take_out(
        servers,
        Workload::Cgi,
        |s| matches!(s.kind, Kind::Baseline(b, _) if b != Baseline::Lighttpd),
    );
    note(no_cgi, &|names| {
        format!(
            "cgi: not run on {names}: nginx has no CGI (FastCGI only, through a separate process \
             manager; lighttpd's mod_cgi is the baseline)"
        )
    });
    if tools.perf.is_none() && tools.strace.is_none() {
        let all = take_out(servers, Workload::Syscalls, |_| true);
        note(all, &|_| {
            "syscalls: skipped: neither perf nor strace is installed".into()
        });
    }
    if tools.h2load.is_none() && tools.wrk.is_none() {
        let all = take_out(servers, Workload::Loadgen, |_| true);
        note(all, &|_| {
            "loadgen: skipped: neither h2load nor wrk is installed".into()
        });
    }
    let no_upgrade = take_out(servers, Workload::Upgrade, |s| !s.upgradable());
    note(no_upgrade, &|names| {
        format!(
            "upgrade: not run on {names}: lighttpd hands no listening socket to a new binary (its \
             SIGUSR1 reloads the configuration in the running one; a new binary is a stop and \
             a start); nginx-deferred upgrades as nginx does, measured on plain nginx"
        )
    });
    let no_tls = take_out(servers, Workload::Tls, |s| !s.serves_tls());
    note(no_tls, &|names| {
        format!("tls: not run on {names}: no HTTPS there (lighttpd: not configured for it here)")
    });
    let blocking = take_out(servers, Workload::IoBurst, ServerSpec::blocking);
    note(blocking, &|names| {
        format!(
            "io-burst: not run on {names} (blocking: one client per worker at a time, so the burst \
             takes clients/workers rounds of the wait)"
        )
    });
    one_loadgen_target(servers);
}

/// Takes workload `w` out of every server that has it and `cannot` run it; their names.
fn take_out(
    servers: &mut [ServerSpec],
    w: Workload,
    cannot: impl Fn(&ServerSpec) -> bool,
) -> Vec<String> {
    servers
        .iter_mut()
        .filter(|s| s.workloads.contains(&w) && cannot(s))
        .map(|s| {
            s.workloads.retain(|&v| v != w);
            s.name.clone()
        })
        .collect()
}

/// One generator comparison is enough: against lighttpd when it runs (a server none of the
/// generators is built with), else the first of ours.
fn one_loadgen_target(servers: &mut [ServerSpec]) {
    let target = servers
        .iter()
        .position(|s| {
            s.name == Baseline::Lighttpd.name() && s.workloads.contains(&Workload::Loadgen)
        })
        .or_else(|| {
            servers
                .iter()
                .position(|s| s.workloads.contains(&Workload::Loadgen))
        });
    for (i, s) in servers.iter_mut().enumerate() {
        if Some(i) != target {
            s.workloads.retain(|&w| w != Workload::Loadgen);
        }
    }
}

/// Rough cost of starting a server, waiting until it answers, and stopping it.
const START_COST: Duration = Duration::from_millis(300);
/// Rough per-measurement overhead (connections, the engine's start and last tick).
const POINT_COST: Duration = Duration::from_millis(30);
/// The short unmeasured run before a timed point (allocator, page cache, lazy state).
pub const WARM_UP: Duration = Duration::from_millis(100);
/// syscalls: the tracer's start (attaching to every thread) and stop.
const TRACER_COST: Duration = Duration::from_millis(1500);
/// loadgen: h2load, wrk, `archserve load -t1` and `-t2`.
const GENERATORS: u32 = 4;
/// idle: how long no new answer must arrive before the held connections are counted.
pub const IDLE_QUIET: Duration = Duration::from_millis(500);
/// idle: pause between the last answer and the memory reading.
pub const IDLE_SETTLE: Duration = Duration::from_millis(200);

/// Times one `/cpu` request's work in this process (same code, same build as the server).
pub fn time_cpu_request(n: u64) -> Duration {
    let t = std::time::Instant::now();
    std::hint::black_box(count_primes(std::hint::black_box(n)));
    t.elapsed()
}

/// `results/<date>-<host>`.
fn default_out() -> PathBuf {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".to_string());
    PathBuf::from("results").join(format!("{}-{host}", today()))
}

/// Today's UTC date as YYYY-MM-DD.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::super::args::Preset;
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        args: CompareArgs,
    }

    fn args(s: &str) -> CompareArgs {
        let root = env!("CARGO_MANIFEST_DIR").to_string() + "/www";
        let argv = ["t", "--root", &root]
            .into_iter()
            .map(String::from)
            .chain(s.split_whitespace().map(String::from));
        T::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn against_adds_each_architecture_from_the_other_binary_right_after_it() {
        let plan = Plan::new(
            &args("--arch hybrid,async --against before=/bin/sh"),
            |_| None,
        )
        .unwrap();
        let names: Vec<_> = plan.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["hybrid", "hybrid@before", "async", "async@before"]);
        assert!(
            matches!(&plan.servers[1].kind, Kind::Arch(a, Some(p)) if a.name == "hybrid" && p == Path::new("/bin/sh"))
        );
        let bad = [
            "before",
            "=/bin/sh",
            "be fore=/bin/sh",
            "before=/nonexistent",
        ];
        for b in bad {
            let argv = ["t", "--against", b];
            assert!(T::try_parse_from(argv).is_err(), "{b}");
        }
    }

    fn everything(name: &str) -> Option<PathBuf> {
        Some(PathBuf::from("/usr/bin").join(name))
    }

    #[test]
    fn defaults_are_the_quick_set_for_every_architecture() {
        let plan = Plan::new(&args(""), |_| None).unwrap();
        let names: Vec<_> = plan.servers.iter().map(|s| s.name.as_str()).collect();
        let all: Vec<_> = arch::REGISTRY.iter().map(|a| a.name).collect();
        assert_eq!(names, all);
        assert_eq!(plan.p.clients, [1, 2, 4, 5, 6, 8, 10]);
        assert_eq!(plan.p.repeat, 3);
        for s in &plan.servers {
            let one = matches!(s.kind, Kind::Arch(a, _) if a.workers == Workers::One);
            assert_eq!(s.workers, if one { 1 } else { 5 }, "{}", s.name);
            assert_eq!(s.workloads, Preset::quick().workloads);
        }
        assert!(plan.out.starts_with("results"));
    }

    #[test]
    fn rounds_interleave_servers_and_run_counts_once() {
        let plan = Plan::new(
            &args("--arch threads,async --clients 1,2 --workload io,fresh,idle --repeat 2 --idle-conns 50"),
            |_| None,
        )
        .unwrap();
        let s = &plan.servers[1];
        assert_eq!(s.name, "async");
        let got = |r| -> Vec<_> {
            plan.round(s, r)
                .iter()
                .map(|p| (p.workload.name(), p.x, p.repeat))
                .collect()
        };
        assert_eq!(
            got(1),
            [("io", 1, 1), ("io", 2, 1), ("fresh", 1, 1), ("idle", 50, 1)]
        );
        assert_eq!(got(2), [("io", 1, 2), ("io", 2, 2), ("idle", 50, 2)]);
        assert_eq!(plan.total_points(), 14);
    }

    #[test]
    fn baselines_run_only_where_installed_and_only_what_they_can() {
        let a = args(
            "--arch hybrid --baseline nginx,nginx-deferred,lighttpd --workload cpu,static,idle",
        );
        let plan = Plan::new(&a, |p| {
            (p == "nginx").then(|| PathBuf::from("/usr/sbin/nginx"))
        })
        .unwrap();
        let names: Vec<_> = plan.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["hybrid", "nginx", "nginx-deferred"]);
        assert_eq!(
            plan.servers[1].workloads,
            [Workload::Static, Workload::Idle]
        );
        assert_eq!(plan.servers[1].workers, 5);
        assert_eq!(plan.notes.len(), 1);
        assert!(plan.notes[0].contains("lighttpd is not installed"));
    }

    #[test]
    fn missing_tools_and_blocking_servers_skip_with_a_note() {
        let a = args("--arch threads,async --workload io-burst,syscalls,loadgen");
        let plan = Plan::new(&a, |_| None).unwrap();
        assert!(plan.servers[0].workloads.is_empty());
        assert_eq!(plan.servers[1].workloads, [Workload::IoBurst]);
        let notes = plan.notes.join("\n");
        assert!(notes.contains("syscalls: skipped"), "{notes}");
        assert!(notes.contains("loadgen: skipped"), "{notes}");
        assert!(notes.contains("io-burst: not run on threads"), "{notes}");
    }

    #[test]
    fn upgrade_runs_on_ours_and_plain_nginx_only() {
        let a = args("--arch async,hybrid --workload static,upgrade --static-conns 1 --full");
        let plan = Plan::new(&a, everything).unwrap();
        let with: Vec<_> = plan
            .servers
            .iter()
            .filter(|s| s.workloads.contains(&Workload::Upgrade))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(with, ["async", "hybrid", "nginx"]);
        let notes = plan.notes.join("\n");
        assert!(
            notes.contains("upgrade: not run on nginx-deferred, lighttpd"),
            "{notes}"
        );
        let s = &plan.servers[0];
        let round: Vec<_> = plan.round(s, 2).iter().map(|p| p.workload).collect();
        assert_eq!(round, [Workload::Static, Workload::Upgrade]);
        assert_eq!(plan.xs(Workload::Upgrade), [64]);
        assert!(!Preset::quick().workloads.contains(&Workload::Upgrade));
    }

    #[test]
    fn loadgen_drives_lighttpd_when_it_runs_else_the_first_architecture() {
        let a = args("--arch threads,async --workload loadgen --baseline lighttpd");
        let plan = Plan::new(&a, everything).unwrap();
        let with: Vec<_> = plan
            .servers
            .iter()
            .filter(|s| s.workloads.contains(&Workload::Loadgen))
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(with, ["lighttpd"]);
        let plan = Plan::new(&args("--arch threads,async --workload loadgen"), everything).unwrap();
        assert_eq!(plan.servers[0].workloads, [Workload::Loadgen]);
        assert!(plan.servers[1].workloads.is_empty());
    }

    #[test]
    fn estimate_follows_the_workloads() {
        let plan = Plan::new(
            &args("--arch threads,async --workload io --clients 10 --repeat 1 --io-ms 100"),
            |_| None,
        )
        .unwrap();
        let est = plan.estimate(Duration::from_millis(60), 2);
        // threads: 5 at a time, two rounds of 100 ms; async: one round.
        let expected = START_COST * 2 + Duration::from_millis(300) + POINT_COST * 2;
        assert_eq!(est, expected);
    }

    #[test]
    fn the_presets_fit_their_budgets_on_two_cores() {
        let cpu = Duration::from_millis(65);
        let quick = Plan::new(&args(""), everything).unwrap();
        assert!(
            quick.estimate(cpu, 2) <= Duration::from_secs(180),
            "{:?}",
            quick.estimate(cpu, 2)
        );
        let full = Plan::new(&args("--full"), everything).unwrap();
        assert_eq!(
            full.servers.len(),
            arch::REGISTRY.len() + Baseline::ALL.len()
        );
        assert!(
            full.estimate(cpu, 2) <= Duration::from_secs(20 * 60),
            "{:?}",
            full.estimate(cpu, 2)
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
        assert_eq!(today().len(), 10);
    }
}
