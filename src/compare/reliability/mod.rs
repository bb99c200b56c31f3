//! `archserve reliability`: the reliability scenarios (slow clients, a worker killed, SIGTERM
//! under load, descriptor exhaustion, files rewritten under load) and the soak, each on fresh
//! servers started by compare's own machinery (server.rs, scratch.rs, procfs.rs), written as a
//! self-describing run directory: raw.csv (compare's format, one row per figure), run.json
//! (machine, commit, command, load), report.md (a table per scenario), and for the soak
//! soak.csv (every 5 s sample) with its chart.
//!
//! - [`args`]: the command line; [`scenario`]: the five scenarios, one function each;
//!   [`traffic`]: the load they drive (the load engine in threads, raw sockets for the
//!   misbehaving clients); [`soak`]: the long mixed load and its samples; [`fd_burst`]: the
//!   soak's descriptor measure (floor, instant, most), with [`tcp_states`]; [`chart`]: the
//!   soak's chart; [`write`]: report.md and run.json.
pub mod args;
pub mod chart;
pub mod fd_burst;
pub mod scenario;
pub mod soak;
pub mod tcp_states;
pub mod traffic;
pub mod write;

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::{Args as _, FromArgMatches};

pub use args::{ReliabilityArgs, Scenario};

use super::plan::{self, Plan, ServerSpec};
use super::report::{CsvWriter, Sample};
use super::scratch::Scratch;
use super::server::stopped;
use super::{machine, CompareArgs};
use crate::shutdown::Signals;

/// `archserve reliability`: returns the exit status (0; 1 when a scenario failed to run; 130
/// when interrupted).
pub fn run(args: ReliabilityArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let signals = Signals::block().context("blocking SIGINT/SIGTERM")?;
    std::thread::spawn(move || super::run::watch(signals));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| Path::new("results").join(format!("reliability-{}", plan::today())));
    let mut plan = compare_plan(&args, &out)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    crate::descriptors::raise_nofile_limit();
    // Taken now: the run lasts minutes, and the tree may change under it.
    let at_start = (machine::machine(), machine::git_commit());
    let scratch = Scratch::create(&plan.serve_root, &out)
        .with_context(|| format!("copying the document root into {}", out.display()))?;
    plan.serve_root = scratch.root();
    println!(
        "reliability: {} on {}; results in {}",
        args.scenario
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        plan.p.servers.join(", "),
        out.display()
    );
    let raw = out.join("raw.csv");
    let mut csv = CsvWriter::create(&raw).with_context(|| format!("creating {}", raw.display()))?;
    let mut failures = Vec::new();
    for repeat in 1..=args.repeat {
        for &s in &args.scenario {
            if stopped() {
                break;
            }
            let rows = if s == Scenario::Soak {
                soak::run(&plan, &args, &out, &mut failures)
            } else {
                each_server(&plan, s, repeat, args.quick, &mut failures)
            };
            csv.write(&rows).context("writing raw.csv")?;
        }
    }
    drop(csv);
    drop(scratch);
    let samples =
        super::report::parse_csv(&std::fs::read_to_string(&raw)?).map_err(anyhow::Error::msg)?;
    write::finish(&out, &plan, &args, &samples, &failures, at_start, started)?;
    println!("report: {}", out.join("report.md").display());
    Ok(if stopped() {
        130
    } else if failures.is_empty() {
        0
    } else {
        1
    })
}

/// One scenario on every server that can run it, in turn; a failure is printed, kept for the
/// report, and the next server runs.
fn each_server(
    plan: &Plan,
    s: Scenario,
    repeat: u32,
    quick: bool,
    failures: &mut Vec<String>,
) -> Vec<Sample> {
    let mut rows = Vec::new();
    for spec in plan.servers.iter().filter(|spec| s.runs_on(spec)) {
        if stopped() {
            break;
        }
        println!("{} · {} (round {repeat})", s.name(), spec.name);
        match scenario::measure(plan, spec, s, quick) {
            Ok(figures) => rows.extend(figures.into_iter().map(|(metric, value, unit)| Sample {
                server: spec.name.clone(),
                workers: spec.workers,
                workload: s.name().to_string(),
                x: 0,
                repeat,
                metric,
                value,
                unit: unit.to_string(),
                ok: 0,
                errors: 0,
            })),
            Err(e) => {
                let line = format!("{} on {} (round {repeat}): {e:#}", s.name(), spec.name);
                eprintln!("error: {line}");
                failures.push(line);
            }
        }
    }
    rows
}

/// The servers, binary and document root as `archserve compare` would start them with these
/// architectures, baselines and workers: parsed by compare's own command line, so every server
/// is configured in one place.
fn compare_plan(args: &ReliabilityArgs, out: &Path) -> anyhow::Result<Plan> {
    let mut argv: Vec<String> = ["compare", "--workload", "static", "-w"]
        .map(String::from)
        .into();
    argv.push(args.workers.to_string());
    argv.extend(["--root".into(), args.root.display().to_string()]);
    argv.extend(["--out".into(), out.display().to_string()]);
    let archs = args.archs();
    if !archs.is_empty() {
        argv.extend(["--arch".into(), archs.join(",")]);
    }
    if !args.baseline.is_empty() {
        let names: Vec<&str> = args.baseline.iter().map(|b| b.name()).collect();
        argv.extend(["--baseline".into(), names.join(",")]);
    }
    if let Some(bin) = &args.server_bin {
        argv.extend(["--server-bin".into(), bin.display().to_string()]);
    }
    let matches = CompareArgs::augment_args(clap::Command::new("compare"))
        .try_get_matches_from(argv)
        .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
    let compare = CompareArgs::from_arg_matches(&matches)?;
    let plan = Plan::new(&compare, plan::find_program).map_err(anyhow::Error::msg)?;
    for note in &plan.notes {
        println!("{note}");
    }
    Ok(plan)
}

/// Whether the server runs one of our architectures whose workers are event loops.
pub fn event_loop(spec: &ServerSpec) -> bool {
    matches!(spec.kind, plan::Kind::Arch(..)) && !spec.blocking()
}
