//! Runs the comparison: the plan, its estimate and progress bar, the rounds (every server once
//! per round, in turn: a fresh server for its round's workloads, and a fresh one again for each
//! `idle` point, so memory already touched by earlier load does not hide the cost of new
//! connections; `upgrade` starts its own), then everything written from raw.csv at the end.
//!
//! Ctrl-C: SIGINT/SIGTERM are blocked before any thread exists and taken by one watcher thread.
//! The first stops the server being measured (SIGTERM), and the run writes what it measured so
//! far and exits 130; a second one kills every server's process group at once and exits. The
//! servers' own process groups keep the terminal's SIGINT away from them, so they are stopped
//! the one way this module controls.
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::{kill, killpg, Signal};

use crate::shutdown::Signals;

use super::measure;
use super::plan::{self, Kind, Plan, ServerSpec, Workload};
use super::report::{self, CsvWriter, Setup};
use super::scratch::Scratch;
use super::server::{live, stopped, Running, STOP};
use super::{browser, docs, machine, plot, syscalls, tls, upgrade, CompareArgs};

/// The scratch root, removed by the watcher when a second signal ends the run at once.
static SCRATCH_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The watcher thread: first signal, stop gently; second, kill everything and leave.
pub(crate) fn watch(signals: Signals) {
    let mut seen = 0;
    while signals.wait().is_ok() {
        seen += 1;
        STOP.store(true, Ordering::SeqCst);
        let groups = live().clone();
        if seen == 1 {
            eprintln!(
                "\ninterrupted: stopping the server, then writing what was measured \
                 (again to quit at once)"
            );
            for pid in groups {
                let _ = kill(pid, Signal::SIGTERM);
            }
        } else {
            for pid in groups {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            if let Some(dir) = SCRATCH_DIR.get() {
                let _ = std::fs::remove_dir_all(dir);
                // The tls workload's key, beside the scratch root.
                if let Some(out) = dir.parent() {
                    let _ = std::fs::remove_dir_all(tls::TlsFiles::dir(out));
                }
            }
            std::process::exit(130);
        }
    }
}

/// `archserve compare`: returns the exit status (0; 1 when a server failed; 130 when
/// interrupted).
pub fn run(args: CompareArgs) -> anyhow::Result<i32> {
    if let Some(dir) = &args.replot {
        return replot(dir);
    }
    if let Some(dir) = &args.update_docs {
        for file in docs::update(dir, &args.docs)? {
            println!("updated {}", file.display());
        }
        return Ok(0);
    }
    let started = Instant::now();
    // First: every thread made from here on (engine, progress bar) inherits the mask.
    let signals = Signals::block().context("blocking SIGINT/SIGTERM")?;
    std::thread::spawn(move || watch(signals));

    let mut plan = Plan::new(&args, plan::find_program).map_err(anyhow::Error::msg)?;
    let m = machine::machine();
    let runs_cpu = plan
        .servers
        .iter()
        .any(|s| s.workloads.contains(&Workload::Cpu));
    let cpu_request = if runs_cpu {
        plan::time_cpu_request(plan.p.cpu_n)
    } else {
        Duration::ZERO
    };
    plan.p.cpu_request_ms = cpu_request.as_secs_f64() * 1e3;
    let estimate = plan.estimate(cpu_request, m.cpus);
    announce(&plan, m.cpus, estimate);
    if args.dry_run {
        return Ok(0);
    }
    raise_fd_limit(u64::from(plan.p.idle_conns.max(plan.p.burst_clients)) + 1024);
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    let scratch = Scratch::create(&plan.serve_root, &plan.out)
        .with_context(|| format!("copying the document root into {}", plan.out.display()))?;
    let _ = SCRATCH_DIR.set(scratch.root());
    plan.serve_root = scratch.root();

    let bar = progress_bar(plan.total_points() as u64);
    let raw = plan.out.join("raw.csv");
    let mut csv = CsvWriter::create(&raw).with_context(|| format!("creating {}", raw.display()))?;
    let failures = sweep(&plan, &mut csv, &bar);
    bar.finish_and_clear();
    drop(csv);
    drop(scratch);
    // The tls workload's certificate and private key: not part of the results.
    let _ = std::fs::remove_dir_all(tls::TlsFiles::dir(&plan.out));
    let setup = setup(&plan, m, &failures, estimate, started);
    finish(&plan.out, &setup)?;
    Ok(if setup.interrupted {
        130
    } else if !failures.is_empty() {
        1
    } else {
        0
    })
}

/// The first lines: what will run, for how long, and what was left out.
fn announce(plan: &Plan, cpus: usize, estimate: Duration) {
    println!(
        "Comparing {} on {} CPUs: {} measurements in {} rounds, estimated {}; results in {}",
        plan.p.servers.join(", "),
        cpus,
        plan.total_points(),
        plan.p.repeat,
        human(estimate),
        plan.out.display()
    );
    for s in &plan.servers {
        let w: Vec<&str> = s.workloads.iter().map(|w| w.name()).collect();
        println!("  {} ({} workers): {}", s.name, s.workers, w.join(", "));
    }
    for note in &plan.notes {
        println!("{note}");
    }
}

/// The rounds: every server in turn, once per repeat. A server that fails is reported and
/// left out of the later rounds. Returns the failures, one line each.
fn sweep(plan: &Plan, csv: &mut CsvWriter, bar: &ProgressBar) -> Vec<String> {
    let mut failures: Vec<String> = Vec::new();
    let mut failed: Vec<&str> = Vec::new();
    for repeat in 1..=plan.p.repeat {
        for spec in &plan.servers {
            if stopped() {
                return failures;
            }
            if failed.contains(&spec.name.as_str()) {
                bar.inc(plan.round(spec, repeat).len() as u64);
                continue;
            }
            if let Err(e) = round(plan, spec, repeat, csv, bar) {
                let line = format!("{} (round {repeat}): {e:#}", spec.name);
                say(bar, &format!("error: {line}"));
                failures.push(line);
                failed.push(&spec.name);
            }
        }
    }
    failures
}

/// One server's round: one server for every workload but idle and upgrade; a fresh one per
/// idle point; upgrade starts its own.
fn round(
    plan: &Plan,
    spec: &ServerSpec,
    repeat: u32,
    csv: &mut CsvWriter,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let (shared, own): (Vec<_>, Vec<_>) = plan
        .round(spec, repeat)
        .into_iter()
        .partition(|p| p.workload.shares_a_server());
    let (tls, own): (Vec<_>, Vec<_>) = own.into_iter().partition(|p| p.workload == Workload::Tls);
    let (upgrades, idle): (Vec<_>, Vec<_>) = own
        .into_iter()
        .partition(|p| p.workload == Workload::Upgrade);
    let mut batches: Vec<Vec<plan::Point>> = Vec::new();
    if !shared.is_empty() {
        batches.push(shared);
    }
    batches.extend(idle.into_iter().map(|p| vec![p]));
    served(plan, spec, repeat, batches, csv, bar)?;
    for p in tls {
        if stopped() {
            break;
        }
        bar.set_message(format!(
            "round {}/{} · {} · tls",
            repeat, plan.p.repeat, spec.name
        ));
        let rows = tls::measure(plan, spec, p).with_context(|| format!("{} tls", spec.name))?;
        if !stopped() {
            csv.write(&rows).context("writing raw.csv")?;
        }
        bar.inc(1);
    }
    for p in upgrades {
        if stopped() {
            break;
        }
        bar.set_message(format!(
            "round {}/{} · {} · upgrade",
            repeat, plan.p.repeat, spec.name
        ));
        let rows = upgrade::measure(plan, spec, p, &|line| say(bar, line))
            .with_context(|| format!("{} upgrade", spec.name))?;
        if !stopped() {
            csv.write(&rows).context("writing raw.csv")?;
        }
        bar.inc(1);
    }
    Ok(())
}

/// The batches of a round, each on a server started for it.
fn served(
    plan: &Plan,
    spec: &ServerSpec,
    repeat: u32,
    batches: Vec<Vec<plan::Point>>,
    csv: &mut CsvWriter,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    for batch in batches {
        if stopped() {
            break;
        }
        let mut server = Running::start(plan, spec)?;
        say(
            bar,
            &format!(
                "round {repeat}: {} ({} workers) on {}",
                spec.name, spec.workers, server.addr
            ),
        );
        for p in batch {
            if stopped() {
                break;
            }
            bar.set_message(format!(
                "round {}/{} · {} · {} {} {}",
                repeat,
                plan.p.repeat,
                spec.name,
                p.workload.name(),
                p.x,
                p.workload.x_name(),
            ));
            let rows = measure::measure(plan, spec, p, &server.probe())
                .with_context(|| format!("{} {} at {}", spec.name, p.workload.name(), p.x))?;
            if !stopped() {
                csv.write(&rows).context("writing raw.csv")?;
            }
            bar.inc(1);
        }
        if let Some(line) = server.stop() {
            say(bar, &line);
        }
    }
    Ok(())
}

/// The setup section: machine, commit, versions, parameters, notes, times.
fn setup(
    plan: &Plan,
    m: machine::Machine,
    failures: &[String],
    estimate: Duration,
    started: Instant,
) -> Setup {
    let interrupted = stopped();
    let mut notes = plan.notes.clone();
    notes.extend(failures.iter().cloned());
    if interrupted {
        notes.push("interrupted by a signal before the end of the run".into());
    }
    Setup {
        date: plan::today(),
        machine: m,
        git: machine::git_commit(),
        archserve: env!("CARGO_PKG_VERSION").to_string(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_string(),
        versions: versions(plan),
        command: machine::command_line(std::env::args()),
        params: plan.p.clone(),
        notes,
        estimated_s: estimate.as_secs_f64(),
        wall_s: started.elapsed().as_secs_f64(),
        interrupted,
    }
}

/// The version of every program the run used besides archserve.
fn versions(plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = machine::rustc().into_iter().collect();
    let uses = |w: Workload| plan.servers.iter().any(|s| s.workloads.contains(&w));
    let mut programs: Vec<(PathBuf, &[&str])> = Vec::new();
    for s in &plan.servers {
        if let Kind::Baseline(_, bin) = &s.kind {
            if !programs.iter().any(|(p, _)| p == bin) {
                programs.push((bin.clone(), &["-v"]));
            }
        }
    }
    if uses(Workload::Loadgen) {
        programs.extend(plan.tools.h2load.clone().map(|p| (p, &["--version"][..])));
        programs.extend(plan.tools.wrk.clone().map(|p| (p, &["-v"][..])));
    }
    if uses(Workload::Syscalls) {
        if let Some((tool, bin)) = syscalls::tracer(plan) {
            programs.push((
                bin,
                if tool == "perf" {
                    &["--version"]
                } else {
                    &["-V"]
                },
            ));
        }
    }
    out.extend(
        programs
            .iter()
            .map(|(bin, args)| machine::program_version(bin, args)),
    );
    out
}

/// Everything after raw.csv: charts, summary.json, report.md, report.html, the screenshot.
fn finish(out: &Path, setup: &Setup) -> anyhow::Result<()> {
    let raw = out.join("raw.csv");
    let text =
        std::fs::read_to_string(&raw).with_context(|| format!("reading {}", raw.display()))?;
    let samples = report::parse_csv(&text).map_err(anyhow::Error::msg)?;
    let charts = plot::draw_all(out, &samples).map_err(|e| anyhow!("drawing charts: {e}"))?;
    report::write(out, setup, &samples).context("writing the report")?;
    let html = out.join("report.html");
    let shot = match browser::screenshot(&html, &out.join("report.png")) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("no screenshot of report.html: {e}");
            None
        }
    };
    println!(
        "Done in {:.0} s (estimated {:.0} s). Files: {}",
        setup.wall_s,
        setup.estimated_s,
        ["raw.csv", "summary.json", "report.md"]
            .iter()
            .map(|f| out.join(f))
            .chain(charts)
            .chain(shot)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "Report: {}",
        std::fs::canonicalize(&html).unwrap_or(html).display()
    );
    Ok(())
}

/// `--replot DIR`: the charts again from DIR/raw.csv (after a change to the drawing, or to
/// draw a raw.csv edited by hand).
fn replot(dir: &Path) -> anyhow::Result<i32> {
    let raw = dir.join("raw.csv");
    let text =
        std::fs::read_to_string(&raw).with_context(|| format!("reading {}", raw.display()))?;
    let samples = report::parse_csv(&text).map_err(anyhow::Error::msg)?;
    for chart in plot::draw_all(dir, &samples).map_err(|e| anyhow!("drawing charts: {e}"))? {
        println!("{}", chart.display());
    }
    Ok(0)
}

/// Lifts the soft limit on open files to the hard one: the idle and io-burst workloads hold
/// thousands of sockets (and the servers, which inherit it, as many).
fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{getrlimit, Resource};
    crate::descriptors::raise_nofile_limit();
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if hard < want {
            eprintln!(
                "warning: at most {hard} open files: the idle workload may not open all its connections"
            );
        }
    }
}

fn progress_bar(total: u64) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("[{elapsed_precise}] {wide_bar} {pos}/{len} (eta {eta}) {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A line on stderr that does not tear the progress bar.
fn say(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// `2m 05s`.
fn human(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(125)), "2m 05s");
    }
}
