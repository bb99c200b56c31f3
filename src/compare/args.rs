//! `archserve compare`'s command line: the flags, the two presets they default from (the quick
//! set that fits 3 minutes on 2 cores, and `--full`, the publication set), and the syntax of
//! count lists.
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::plan::{Baseline, Workload};
use crate::site::workload::{DEFAULT_N, MAX_MS, MAX_N};

/// Start every architecture in turn, sweep the workloads, write the comparison.
#[derive(Debug, Args)]
#[command(after_help = "\
Writes raw.csv (every measurement), summary.json (median, min, max per point), report.md and \
report.html (tables, charts, setup), the charts (SVG and PNG) and the baselines' configurations \
to --out. Rounds are interleaved: each repeat starts every server afresh, in turn. Ctrl-C stops \
the run, stops the server being measured, and writes what was measured so far.

Without flags: the quick set (archserve's architectures only, 3 repeats, about 3 minutes on 2 \
cores). --full: the publication set (every workload but cgi, nginx, nginx with deferred accept and \
lighttpd where installed, 5 repeats, within 20 minutes on 2 cores; scripts/install-bench-deps \
installs the baselines and tools). Any flag given overrides its preset value.

Examples:
  archserve compare
  archserve compare --full --out docs/results/$(date +%F)
  archserve compare --arch threads,hybrid --workload cpu,io --clients 1-10 --repeat 5
  archserve compare --workload static,idle --baseline nginx
  archserve compare --full --dry-run
  archserve compare --update-docs docs/results/2026-11-30")]
pub struct CompareArgs {
    /// The publication set: every workload but cgi, every installed baseline, longer points, 5
    /// repeats.
    #[arg(long)]
    pub full: bool,
    /// Print the plan and its estimated duration, measure nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Architectures to compare, in this order [default: all of them].
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::arch_parser())]
    pub arch: Vec<String>,
    /// Workers for every architecture and for nginx (an architecture that runs exactly one,
    /// like async, keeps one; lighttpd is one process).
    #[arg(short = 'w', long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// Workloads to run, in this order [default: the preset's].
    #[arg(long, value_delimiter = ',')]
    pub workload: Vec<Workload>,
    /// Also measure these servers on the workloads they can run, where installed
    /// [default: none; --full: all].
    #[arg(long, value_delimiter = ',')]
    pub baseline: Vec<Baseline>,
    /// Rounds of every point; the report gives their median and min–max [default: 3; --full: 5].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: Option<u32>,
    /// Client counts for cpu and io: a list of numbers and ranges (`1-10`, `1,2,4,8`, `2-10:2`)
    /// [default: 1,2,4,5,6,8,10, where 5 and 6 straddle the seed's 5 workers; --full: 1-10].
    #[arg(long, value_parser = counts)]
    pub clients: Option<Counts>,
    /// cpu: primes are counted in 1..=N per request (the seed's 1,000,000: ~60 ms in release).
    #[arg(long, default_value_t = DEFAULT_N, value_parser = clap::value_parser!(u64).range(1..=MAX_N))]
    pub cpu_n: u64,
    /// io: milliseconds the server waits per request (the seed waited 1000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(0..=MAX_MS))]
    pub io_ms: u64,
    /// static: keep-alive connection counts (same syntax as --clients) [default: 1,100;
    /// --full: 1,64,100].
    #[arg(long, value_parser = counts)]
    pub static_conns: Option<Counts>,
    /// close: connections, each sending one request and closing, then the next.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub close_conns: u32,
    /// big: keep-alive connections fetching the 1 MiB file.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub big_conns: u32,
    /// How long each timed point of static, close, big and loadgen runs (e.g. 1, 2s, 500ms)
    /// [default: 1s; --full: 3s].
    #[arg(long, value_parser = crate::client::seconds)]
    pub duration: Option<Duration>,
    /// static, close, idle and syscalls: the small file requested.
    #[arg(long, default_value = "/index.html")]
    pub static_path: String,
    /// idle: keep-alive connections opened and held. With mimalloc an event loop's RSS grows in
    /// steps of about 2 MiB, so 2,000 connections could fit in memory already resident and
    /// show 0 B each; 10,000 show the cost.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=50_000))]
    pub idle_conns: u32,
    /// io-burst: clients at once, each one `/io` on its own connection.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub burst_clients: u32,
    /// io-burst: milliseconds the server waits per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=MAX_MS))]
    pub burst_ms: u64,
    /// syscalls, loadgen and upgrade: connections (kept alive; upgrade also runs them with a
    /// new connection per request).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub load_conns: u32,
    /// upgrade: how long `archserve load` runs per mode while the five upgrades happen (spread
    /// over its first four fifths) [default: 2s; --full: 1s, to keep the set within its 20
    /// minutes].
    #[arg(long, value_parser = upgrade_duration)]
    pub upgrade_duration: Option<Duration>,
    /// Document root every server gets (copied, with the 1 MiB file and the file the freshness
    /// check rewrites, into a scratch directory removed at the end).
    #[arg(long, default_value = "www")]
    pub root: PathBuf,
    /// Output directory [default: results/<date>-<host>/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Load-generator threads for static, close and big (each an epoll loop). The client shares
    /// the machine with the server; one thread leaves the other cores to it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub client_threads: u32,
    /// Seconds one request may take before it counts as an error.
    #[arg(long, default_value = "60", value_parser = crate::client::seconds)]
    pub timeout: Duration,
    /// Measure nothing: redraw the charts and reports of an earlier run from DIR/raw.csv and
    /// DIR/summary.json.
    #[arg(long, value_name = "DIR")]
    pub replot: Option<PathBuf>,
    /// Measure nothing: rewrite the generated tables of --docs from the run in DIR.
    #[arg(long, value_name = "DIR")]
    pub update_docs: Option<PathBuf>,
    /// The Markdown files whose `<!-- compare:... -->` blocks --update-docs rewrites.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "docs/BENCHMARKS.md,docs/ARCHITECTURES.md"
    )]
    pub docs: Vec<PathBuf>,
    /// The archserve binary whose architectures are started [default: this one].
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Also run every architecture from another archserve binary (a build of another commit),
    /// as `ARCH@LABEL` in the same interleaved rounds, with paired ratios against it: a
    /// before-and-after measurement. `LABEL=PATH`, e.g. `before=/tmp/archserve-v1`.
    #[arg(long, value_name = "LABEL=PATH", value_parser = parse_against)]
    pub against: Option<(String, PathBuf)>,
}

/// `--upgrade-duration`: long enough for five upgrades (each takes tens of milliseconds).
fn upgrade_duration(s: &str) -> Result<Duration, String> {
    let d = crate::client::seconds(s)?;
    if d < Duration::from_millis(500) || d > Duration::from_secs(600) {
        return Err(format!("{s:?}: give 500ms to 10m"));
    }
    Ok(d)
}

/// `LABEL=PATH` for `--against`.
fn parse_against(s: &str) -> Result<(String, PathBuf), String> {
    let (label, path) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not LABEL=PATH"))?;
    if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("label {label:?}: use letters, digits and -"));
    }
    let path = PathBuf::from(path);
    if !path.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    Ok((label.to_string(), path))
}

/// The values a preset gives the flags left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub workloads: Vec<Workload>,
    pub baselines: Vec<Baseline>,
    pub repeat: u32,
    pub clients: Vec<u32>,
    pub static_conns: Vec<u32>,
    pub duration: Duration,
    pub upgrade_duration: Duration,
}

impl Preset {
    /// No flags: the seed's sweeps and the cheap server workloads, ours only, within 3 minutes.
    pub fn quick() -> Preset {
        use Workload::*;
        Preset {
            workloads: vec![Cpu, Io, Static, Close, Fresh, Idle],
            baselines: Vec::new(),
            repeat: 3,
            clients: vec![1, 2, 4, 5, 6, 8, 10],
            static_conns: vec![1, 100],
            duration: Duration::from_secs(1),
            upgrade_duration: Duration::from_secs(2),
        }
    }

    /// `--full`: every table docs/BENCHMARKS.md publishes, within 20 minutes on 2 cores; all
    /// but `tls` and `cgi`, which have runs of their own (`--workload tls`: its servers are
    /// other configurations, and its 10,000 handshaken idle connections per server would not
    /// fit; `--workload cgi`: its 50 more points would take the preset past 20 minutes).
    pub fn full() -> Preset {
        Preset {
            workloads: Workload::ALL
                .into_iter()
                .filter(|&w| w != Workload::Tls && w != Workload::Cgi)
                .collect(),
            baselines: Baseline::ALL.to_vec(),
            repeat: 5,
            clients: (1..=10).collect(),
            static_conns: vec![1, 64, 100],
            duration: Duration::from_secs(3),
            upgrade_duration: Duration::from_secs(1),
        }
    }
}

impl CompareArgs {
    pub fn preset(&self) -> Preset {
        if self.full {
            Preset::full()
        } else {
            Preset::quick()
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_full_preset_runs_everything_longer() {
        let (q, f) = (Preset::quick(), Preset::full());
        assert_eq!(f.workloads.len(), Workload::ALL.len() - 2);
        assert!(!f.workloads.contains(&Workload::Tls));
        assert!(!f.workloads.contains(&Workload::Cgi));
        assert!(q.workloads.iter().all(|w| f.workloads.contains(w)));
        assert!(q.baselines.is_empty() && !f.baselines.is_empty());
        assert!(f.repeat > q.repeat && f.duration > q.duration);
    }
}
