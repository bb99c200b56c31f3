//! `archserve reliability`'s command line and the scenarios it names.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::super::plan::{Baseline, Kind, ServerSpec};

/// Measure what clients see when things go wrong: slow clients, a killed worker, a stop under
/// load, descriptors running out, files rewritten under load; and the soak.
#[derive(Debug, Args)]
#[command(after_help = "\
Each scenario starts a fresh server per architecture (and per --baseline, where the scenario \
applies), on loopback, bounded in time, and writes raw.csv (one row per figure), run.json \
(machine, commit, command, load average) and report.md (a table per scenario) to --out. The \
soak also writes soak.csv (RSS, descriptors and threads every 5 s) and soak.svg/soak.png.

Examples:
  archserve reliability
  archserve reliability --scenario slowloris,files --baseline nginx,lighttpd
  archserve reliability --scenario soak --minutes 10 --out docs/results/soak-$(date +%F)")]
pub struct ReliabilityArgs {
    /// Scenarios to run, in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "slowloris,crash,sigterm,emfile,files"
    )]
    pub scenario: Vec<Scenario>,
    /// Architectures [default: all of them; the soak runs the event-loop ones].
    #[arg(long, value_delimiter = ',', value_parser = crate::cli::arch_parser())]
    pub arch: Vec<String>,
    /// Also run these servers in the scenarios that apply to them (slowloris, crash, files).
    #[arg(long, value_delimiter = ',')]
    pub baseline: Vec<Baseline>,
    /// Workers of every architecture that takes a count, and of nginx.
    #[arg(short = 'w', long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
    /// Rounds of every scenario (each on fresh servers); the report gives median and min–max.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub repeat: u32,
    /// soak: minutes of mixed load on each architecture (all of them at once, each with its own
    /// server).
    #[arg(long, default_value_t = 10.0, value_parser = minutes)]
    pub minutes: f64,
    /// soak: seconds between two samples of memory, descriptors and threads.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub sample_every: u64,
    /// Shorter loads (3 s instead of 5 s in slowloris).
    #[arg(long)]
    pub quick: bool,
    /// Document root (copied into a scratch directory of --out, removed at the end).
    #[arg(long, default_value = "www")]
    pub root: PathBuf,
    /// Output directory [default: results/reliability-<date>/].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The archserve binary whose architectures are started [default: this one].
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
}

impl ReliabilityArgs {
    /// The architectures asked for; for a soak alone without --arch, the event-loop ones.
    pub fn archs(&self) -> Vec<String> {
        if self.arch.is_empty() && self.scenario.iter().all(|s| *s == Scenario::Soak) {
            return crate::arch::REGISTRY
                .iter()
                .filter(|a| a.idle_timeout != crate::arch::BLOCKING_IDLE)
                .map(|a| a.name.to_string())
                .collect();
        }
        self.arch.clone()
    }

    pub fn soak_duration(&self) -> Duration {
        Duration::from_secs_f64(self.minutes * 60.0)
    }
}

fn minutes(s: &str) -> Result<f64, String> {
    let m: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.5..=24.0 * 60.0).contains(&m) {
        return Err(format!("{s}: give 0.5 to 1440 minutes"));
    }
    Ok(m)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 2,000 connections trickling a request head, beside 16 normal keep-alive clients.
    Slowloris,
    /// `kill -9` of one worker process under keep-alive load.
    Crash,
    /// SIGTERM under load (small files, and `/io` in flight).
    Sigterm,
    /// RLIMIT_NOFILE 64 and 200 connections held, then recovery.
    Emfile,
    /// A file truncated, rewritten and replaced by rename while clients fetch it.
    Files,
    /// Minutes of mixed load; memory, descriptors and threads sampled.
    Soak,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Slowloris => "slowloris",
            Scenario::Crash => "crash",
            Scenario::Sigterm => "sigterm",
            Scenario::Emfile => "emfile",
            Scenario::Files => "files",
            Scenario::Soak => "soak",
        }
    }

    /// Whether it runs on `spec`: sigterm needs our `/io`, emfile counts our log's warnings,
    /// the soak runs our event loops; crash needs worker processes (lighttpd runs one).
    pub fn runs_on(self, spec: &ServerSpec) -> bool {
        let ours = matches!(spec.kind, Kind::Arch(..));
        match self {
            Scenario::Slowloris | Scenario::Files => true,
            Scenario::Crash => match &spec.kind {
                Kind::Arch(a, _) => a.multi_process,
                Kind::Baseline(b, _) => *b != Baseline::Lighttpd,
            },
            Scenario::Sigterm | Scenario::Emfile => ours,
            Scenario::Soak => super::event_loop(spec),
        }
    }
}
