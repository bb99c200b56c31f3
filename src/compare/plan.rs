//! `archserve compare`'s command line and the sweep it expands to: which servers (architectures
//! from the registry, then the installed baselines), which workloads at which points, how many
//! repeats, where the results go, and how long all that should take.
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::arch::{self, Arch, Workers};
use crate::site::workload::{count_primes, DEFAULT_N, MAX_MS, MAX_N};

/// A kind of measurement. Each has one swept parameter (its "x") and one or more metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum Workload {
    /// The seed's CPU test: N clients at once, one `/cpu` request each on a new connection;
    /// the total time for the N.
    Cpu,
    /// The seed's I/O test: the same with `/io` (the server waits, then answers).
    Io,
    /// Keep-alive requests for a small file: requests/s and latency percentiles at several
    /// connection counts.
    Static,
    /// Memory per idle keep-alive connection, holding a few thousand.
    Idle,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Cpu,
        Workload::Io,
        Workload::Static,
        Workload::Idle,
    ];

    /// The name used on the command line, in raw.csv and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Cpu => "cpu",
            Workload::Io => "io",
            Workload::Static => "static",
            Workload::Idle => "idle",
        }
    }

    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// What the swept parameter counts.
    pub fn x_name(self) -> &'static str {
        match self {
            Workload::Cpu | Workload::Io => "clients",
            Workload::Static | Workload::Idle => "connections",
        }
    }

    /// Whether a server without our `/cpu` and `/io` endpoints (a baseline) can run it.
    pub fn for_baselines(self) -> bool {
        matches!(self, Workload::Static | Workload::Idle)
    }
}

/// A well-known server measured beside ours on the workloads it can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Baseline {
    Nginx,
    Lighttpd,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Nginx => "nginx",
            Baseline::Lighttpd => "lighttpd",
        }
    }

    /// Where the binary is, if it is installed (PATH first, then the sbin directories that a
    /// non-root PATH often lacks).
    pub fn find(self) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(self.name()))
            .find(|p| is_executable(p))
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Start every architecture in turn, sweep the workloads, write the comparison.
#[derive(Debug, Args)]
#[command(after_help = "\
Writes raw.csv (every measurement), summary.json (median, min, max per point), report.md \
(tables, setup) and the charts (SVG and PNG) to --out. Ctrl-C stops the run, stops the server \
being measured, and writes what was measured so far.

Examples:
  archserve compare
  archserve compare --arch threads,hybrid --workload cpu,io --clients 1-10 --repeat 5
  archserve compare --workload static,idle --baseline nginx")]
pub struct CompareArgs {
    /// Architectures to compare, in this order [default: all of them].
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::arch_parser())]
    pub arch: Vec<String>,
    /// Workers for every architecture (one that runs exactly one, like async, keeps one).
    #[arg(short = 'w', long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// Client counts for cpu and io: a list of numbers and ranges (`1-10`, `1,2,4,8`, `2-10:2`).
    /// The default spans the seed's 1..10 in 7 steps (5 and 6 are both in: with 5 workers the
    /// 6th client is where blocking servers need a second round), so the run fits 3 minutes.
    #[arg(long, default_value = "1,2,4,5,6,8,10", value_parser = counts)]
    pub clients: Counts,
    /// Workloads to run, in this order.
    #[arg(long, value_delimiter = ',', default_value = "cpu,io,static,idle")]
    pub workload: Vec<Workload>,
    /// Measurements of every point; the report gives their median and min–max.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// cpu: primes are counted in 1..=N per request (the seed's 1,000,000: ~60 ms in release).
    #[arg(long, default_value_t = DEFAULT_N, value_parser = clap::value_parser!(u64).range(1..=MAX_N))]
    pub cpu_n: u64,
    /// io: milliseconds the server waits per request (the seed waited 1000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=MAX_MS))]
    pub io_ms: u64,
    /// static: keep-alive connection counts (same syntax as --clients).
    #[arg(long, default_value = "1,10,100", value_parser = counts)]
    pub static_conns: Counts,
    /// static: how long each point runs (e.g. 1, 2s, 500ms).
    #[arg(long, default_value = "1s", value_parser = crate::client::seconds)]
    pub static_duration: Duration,
    /// static and idle: the file requested.
    #[arg(long, default_value = "/index.html")]
    pub static_path: String,
    /// idle: keep-alive connections opened and held. 10,000 as in the 1 KiB target of
    /// docs/BENCHMARKS.md: with mimalloc an event loop's RSS grows in steps of about 2 MiB, so
    /// 2,000 connections (1.6 MB) could fit in memory already resident and show 0 KiB each.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub idle_conns: u32,
    /// Also measure these servers on the static and idle workloads, where installed.
    #[arg(long, value_delimiter = ',')]
    pub baseline: Vec<Baseline>,
    /// Document root every server gets.
    #[arg(long, default_value = "www")]
    pub root: PathBuf,
    /// Output directory [default: results/<date>-<host>/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Load-generator threads for the static workload (each an epoll loop). The client shares
    /// the machine with the server; one thread leaves the other cores to it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub client_threads: u32,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, default_value = "60", value_parser = crate::client::seconds)]
    pub timeout: Duration,
    /// Measure nothing: redraw the charts of an earlier run from DIR/raw.csv.
    #[arg(long, value_name = "DIR")]
    pub replot: Option<PathBuf>,
    /// The archserve binary whose architectures are started [default: this one].
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
}

/// A parsed list of counts, in the order given, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts(pub Vec<u32>);

/// Parses `1-10`, `1,2,4,8`, `2-10:2` (a range with a step), or any comma-separated mix.
pub fn counts(s: &str) -> Result<Counts, String> {
    let mut out: Vec<u32> = Vec::new();
    for item in s.split(',').map(str::trim) {
        let bad = || format!("`{item}` is not a count or a range like 1-10 or 2-10:2");
        let num = |t: &str| t.trim().parse::<u32>().ok().filter(|&v| v >= 1);
        let (range, step) = match item.split_once(':') {
            Some((r, st)) => (r, num(st).ok_or_else(bad)?),
            None => (item, 1),
        };
        let (lo, hi) = match range.split_once('-') {
            Some((a, b)) => (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?),
            None => {
                let v = num(range).ok_or_else(bad)?;
                (v, v)
            }
        };
        if lo > hi || hi > 100_000 {
            return Err(bad());
        }
        for v in (lo..=hi).step_by(step as usize) {
            if !out.contains(&v) {
                out.push(v);
            }
        }
    }
    Ok(Counts(out))
}

/// What a server in the sweep is.
#[derive(Debug, Clone)]
pub enum Kind {
    Arch(&'static Arch),
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
        matches!(self.kind, Kind::Arch(a) if a.idle_timeout == arch::BLOCKING_IDLE)
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

/// The whole sweep, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub servers: Vec<ServerSpec>,
    pub clients: Vec<u32>,
    pub static_conns: Vec<u32>,
    pub repeat: u32,
    pub cpu_n: u64,
    pub io_ms: u64,
    pub static_duration: Duration,
    pub static_path: String,
    pub idle_conns: u32,
    pub root: PathBuf,
    pub out: PathBuf,
    pub client_threads: usize,
    pub timeout: Duration,
    pub server_bin: PathBuf,
    /// One line per requested baseline that is not installed.
    pub notes: Vec<String>,
}

impl Plan {
    /// Validates the arguments; `find` locates a baseline's binary (injected for tests).
    pub fn new(
        args: &CompareArgs,
        find: impl Fn(Baseline) -> Option<PathBuf>,
    ) -> Result<Plan, String> {
        if !args.root.is_dir() {
            return Err(format!(
                "document root {} is not a directory",
                args.root.display()
            ));
        }
        let root = std::fs::canonicalize(&args.root)
            .map_err(|e| format!("document root {}: {e}", args.root.display()))?;
        if !args.static_path.starts_with('/') || args.static_path.contains(char::is_whitespace) {
            return Err(format!(
                "--static-path {:?} must start with / and have no spaces",
                args.static_path
            ));
        }
        let mut workloads = Vec::new();
        for w in &args.workload {
            if !workloads.contains(w) {
                workloads.push(*w);
            }
        }
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
        let mut servers: Vec<ServerSpec> = archs
            .into_iter()
            .map(|a| ServerSpec {
                name: a.name.to_string(),
                kind: Kind::Arch(a),
                workers: match a.workers {
                    Workers::One => 1,
                    Workers::Five | Workers::Cpus => args.workers as usize,
                },
                workloads: workloads.clone(),
            })
            .collect();
        let mut notes = Vec::new();
        let mut baselines: Vec<Baseline> = Vec::new();
        for b in &args.baseline {
            if !baselines.contains(b) {
                baselines.push(*b);
            }
        }
        for b in baselines {
            let runs: Vec<Workload> = workloads
                .iter()
                .copied()
                .filter(|w| w.for_baselines())
                .collect();
            match find(b) {
                None => notes.push(format!(
                    "{} is not installed: no {} baseline in this run",
                    b.name(),
                    b.name()
                )),
                Some(_) if runs.is_empty() => notes.push(format!(
                    "{} runs only the static and idle workloads, and none was selected",
                    b.name()
                )),
                Some(path) => servers.push(ServerSpec {
                    name: b.name().to_string(),
                    kind: Kind::Baseline(b, path),
                    workers: match b {
                        Baseline::Nginx => args.workers as usize,
                        // lighttpd is one event loop; its multi-process mode is unsupported.
                        Baseline::Lighttpd => 1,
                    },
                    workloads: runs,
                }),
            }
        }
        let server_bin = match &args.server_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find the archserve binary: {e}"))?,
        };
        Ok(Plan {
            servers,
            clients: args.clients.0.clone(),
            static_conns: args.static_conns.0.clone(),
            repeat: args.repeat,
            cpu_n: args.cpu_n,
            io_ms: args.io_ms,
            static_duration: args.static_duration,
            static_path: args.static_path.clone(),
            idle_conns: args.idle_conns,
            root,
            out: args.out.clone().unwrap_or_else(default_out),
            client_threads: args.client_threads as usize,
            timeout: args.timeout,
            server_bin,
            notes,
        })
    }

    /// The values a workload sweeps.
    pub fn xs(&self, w: Workload) -> Vec<u32> {
        match w {
            Workload::Cpu | Workload::Io => self.clients.clone(),
            Workload::Static => self.static_conns.clone(),
            Workload::Idle => vec![self.idle_conns],
        }
    }

    /// A server's measurements in the order they are taken: workload by workload, and within
    /// one, the whole sweep once per repeat (so slow drift spreads over every point instead
    /// of biasing the last ones).
    pub fn points(&self, server: &ServerSpec) -> Vec<Point> {
        let mut out = Vec::new();
        for &workload in &server.workloads {
            for repeat in 1..=self.repeat {
                for x in self.xs(workload) {
                    out.push(Point {
                        workload,
                        x,
                        repeat,
                    });
                }
            }
        }
        out
    }

    /// Every measurement of the run.
    pub fn total_points(&self) -> usize {
        self.servers.iter().map(|s| self.points(s).len()).sum()
    }

    /// Expected wall time of the run, from the workload parameters and `cpu_request`, the time
    /// one `/cpu` request takes on one core. A guide, not a promise.
    pub fn estimate(&self, cpu_request: Duration, cpus: usize) -> Duration {
        let io = Duration::from_millis(self.io_ms);
        let mut total = Duration::ZERO;
        for s in &self.servers {
            // Start, readiness, graceful stop.
            total += START_COST;
            for p in self.points(s) {
                total += match p.workload {
                    Workload::Cpu => {
                        let rounds = p.x as f64 / s.cpu_parallelism(cpus) as f64;
                        cpu_request.mul_f64(rounds.max(1.0)) + POINT_COST
                    }
                    Workload::Io => {
                        let at_once = if s.blocking() { s.workers as u32 } else { p.x };
                        io * p.x.div_ceil(at_once.max(1)) + POINT_COST
                    }
                    Workload::Static => self.static_duration + POINT_COST,
                    // A fresh server, the warm-up, the connections, the settling; a blocking
                    // server leaves its first batch unanswered, which costs a quiet window.
                    Workload::Idle => {
                        START_COST
                            + POINT_COST
                            + IDLE_SETTLE
                            + Duration::from_micros(60) * p.x
                            + if s.blocking() {
                                IDLE_QUIET
                            } else {
                                Duration::ZERO
                            }
                    }
                };
            }
        }
        total
    }
}

/// Rough cost of starting a server, waiting until it answers, and stopping it.
const START_COST: Duration = Duration::from_millis(300);
/// Rough per-measurement overhead (connections, the engine's start and last tick).
const POINT_COST: Duration = Duration::from_millis(30);
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
    fn counts_expand() {
        assert_eq!(counts("1-10").unwrap().0, (1..=10).collect::<Vec<_>>());
        assert_eq!(counts("1,2,4,8").unwrap().0, vec![1, 2, 4, 8]);
        assert_eq!(counts("2-10:4").unwrap().0, vec![2, 6, 10]);
        assert_eq!(counts("1, 3-4,3,1").unwrap().0, vec![1, 3, 4]);
        for bad in ["", "0", "5-1", "a", "1-", "1-3:0", "1,,2", "200000"] {
            assert!(counts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_are_the_seed_sweep_for_every_architecture() {
        let plan = Plan::new(&args(""), |_| None).unwrap();
        let names: Vec<_> = plan.servers.iter().map(|s| s.name.as_str()).collect();
        let all: Vec<_> = arch::REGISTRY.iter().map(|a| a.name).collect();
        assert_eq!(names, all);
        assert_eq!(plan.clients, [1, 2, 4, 5, 6, 8, 10]);
        assert_eq!(plan.repeat, 3);
        for s in &plan.servers {
            let one = matches!(s.kind, Kind::Arch(a) if a.workers == Workers::One);
            assert_eq!(s.workers, if one { 1 } else { 5 }, "{}", s.name);
            assert_eq!(s.workloads, Workload::ALL);
        }
        assert!(plan.out.starts_with("results"));
    }

    #[test]
    fn points_expand_workload_by_workload_repeat_by_repeat() {
        let plan = Plan::new(
            &args(
                "--arch threads,async --clients 1,2 --workload io,idle --repeat 2 --idle-conns 50",
            ),
            |_| None,
        )
        .unwrap();
        let s = &plan.servers[1];
        assert_eq!(s.name, "async");
        let got: Vec<_> = plan
            .points(s)
            .iter()
            .map(|p| (p.workload.name(), p.x, p.repeat))
            .collect();
        assert_eq!(
            got,
            [
                ("io", 1, 1),
                ("io", 2, 1),
                ("io", 1, 2),
                ("io", 2, 2),
                ("idle", 50, 1),
                ("idle", 50, 2)
            ]
        );
        assert_eq!(plan.total_points(), 12);
    }

    #[test]
    fn baselines_run_only_where_installed_and_only_static_and_idle() {
        let a = args("--arch hybrid --baseline nginx,lighttpd");
        let plan = Plan::new(&a, |b| {
            (b == Baseline::Nginx).then(|| PathBuf::from("/usr/sbin/nginx"))
        })
        .unwrap();
        let names: Vec<_> = plan.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["hybrid", "nginx"]);
        assert_eq!(
            plan.servers[1].workloads,
            [Workload::Static, Workload::Idle]
        );
        assert_eq!(plan.servers[1].workers, 5);
        assert_eq!(plan.notes.len(), 1);
        assert!(plan.notes[0].contains("lighttpd is not installed"));
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
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_000), (2024, 10, 4));
        assert_eq!(today().len(), 10);
    }
}
