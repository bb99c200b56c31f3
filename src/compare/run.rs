//! Runs the sweep. Each server in turn is a child process in a process group of its own, on a
//! free loopback port, with the same root and worker count; the run waits until it answers,
//! takes that server's measurements (a fresh server for each `idle` repeat, so memory already
//! touched by earlier load does not hide the cost of new connections), stops it with SIGTERM,
//! reaps it and sweeps its group with SIGKILL, then goes on to the next.
//!
//! Ctrl-C: SIGINT/SIGTERM are blocked before any thread exists and taken by one watcher thread.
//! The first stops the server being measured (SIGTERM), and the run writes what it measured so
//! far and exits 130; a second one kills every server's process group at once and exits. The
//! servers' own process groups keep the terminal's SIGINT away from them, so they are stopped
//! the one way this module controls. A [`Running`] server that goes out of scope on any path
//! (an error, a panic unwinding) is stopped by its `Drop`.
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, IsTerminal};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::arch::Workers;
use crate::client::engine::{self, Limit, Plan as LoadPlan, Progress};
use crate::client::target::{encode_request, Target};
use crate::shutdown::Signals;

use super::baseline;
use super::machine;
use super::measure;
use super::plan::{self, CompareArgs, Kind, Plan, ServerSpec, Workload};
use super::plot;
use super::report::{self, CsvWriter, Params, Setup};

/// Process groups of the servers now running (their leaders' pids).
static LIVE: Mutex<Vec<Pid>> = Mutex::new(Vec::new());
/// Set by the first SIGINT/SIGTERM: take no further measurement.
static STOP: AtomicBool = AtomicBool::new(false);

/// How long a server may take to print its address and answer a first request.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server may take to exit after SIGTERM (ours have a 10 s grace period for
/// requests in flight; none should be in flight when they are stopped).
const STOP_TIMEOUT: Duration = Duration::from_secs(12);

fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn live() -> std::sync::MutexGuard<'static, Vec<Pid>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The watcher thread: first signal, stop gently; second, kill everything and leave.
fn watch(signals: Signals) {
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
    let started = Instant::now();
    // First: every thread made from here on (engine, progress bar) inherits the mask.
    let signals = Signals::block().context("blocking SIGINT/SIGTERM")?;
    std::thread::spawn(move || watch(signals));

    let plan = Plan::new(&args, plan::Baseline::find).map_err(anyhow::Error::msg)?;
    raise_fd_limit(plan.idle_conns as u64 + 1024);
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    let m = machine::machine();
    let runs_cpu = plan
        .servers
        .iter()
        .any(|s| s.workloads.contains(&Workload::Cpu));
    let cpu_request = if runs_cpu {
        plan::time_cpu_request(plan.cpu_n)
    } else {
        Duration::ZERO
    };
    let estimate = plan.estimate(cpu_request, m.cpus);
    let names: Vec<String> = plan.servers.iter().map(|s| s.name.clone()).collect();
    println!(
        "Comparing {} on {} CPUs: {} measurements, estimated {}; results in {}",
        names.join(", "),
        m.cpus,
        plan.total_points(),
        human(estimate),
        plan.out.display()
    );
    for note in &plan.notes {
        println!("{note}");
    }

    let bar = progress_bar(plan.total_points() as u64);
    let raw = plan.out.join("raw.csv");
    let mut csv = CsvWriter::create(&raw).with_context(|| format!("creating {}", raw.display()))?;
    let mut failures = Vec::new();
    for spec in &plan.servers {
        if stopped() {
            break;
        }
        if let Err(e) = sweep(&plan, spec, &mut csv, &bar) {
            let line = format!("{}: {e:#}", spec.name);
            say(&bar, &format!("error: {line}"));
            failures.push(line);
        }
    }
    bar.finish_and_clear();
    drop(csv);
    let interrupted = stopped();
    let mut notes = plan.notes.clone();
    notes.extend(failures.iter().cloned());
    if interrupted {
        notes.push("interrupted by a signal before the end of the sweep".into());
    }

    let text =
        std::fs::read_to_string(&raw).with_context(|| format!("reading {}", raw.display()))?;
    let samples = report::parse_csv(&text).map_err(anyhow::Error::msg)?;
    let setup = Setup {
        date: plan::today(),
        machine: m.clone(),
        archserve: env!("CARGO_PKG_VERSION").to_string(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_string(),
        rustc: machine::rustc(),
        baselines: plan
            .servers
            .iter()
            .filter_map(|s| match &s.kind {
                Kind::Baseline(b, bin) => Some(baseline::version(*b, bin)),
                Kind::Arch(_) => None,
            })
            .collect(),
        command: machine::command_line(std::env::args()),
        params: Params {
            servers: names,
            workers: args.workers,
            workloads: args.workload.iter().map(|w| w.name().to_string()).collect(),
            repeat: plan.repeat,
            clients: plan.clients.clone(),
            cpu_n: plan.cpu_n,
            cpu_request_ms: cpu_request.as_secs_f64() * 1e3,
            io_ms: plan.io_ms,
            static_conns: plan.static_conns.clone(),
            static_duration_s: plan.static_duration.as_secs_f64(),
            static_path: plan.static_path.clone(),
            idle_conns: plan.idle_conns,
            client_threads: plan.client_threads,
            root: plan.root.display().to_string(),
        },
        notes,
        estimated_s: estimate.as_secs_f64(),
        wall_s: started.elapsed().as_secs_f64(),
        interrupted,
    };
    report::write(&plan.out, &setup, &samples).context("writing the report")?;
    let charts = plot::draw_all(&plan.out, &samples).map_err(|e| anyhow!("drawing charts: {e}"))?;
    println!(
        "Done in {} (estimated {}): {}",
        human(started.elapsed()),
        human(estimate),
        ["raw.csv", "summary.json", "report.md"]
            .iter()
            .map(|f| plan.out.join(f).display().to_string())
            .chain(charts.iter().map(|p| p.display().to_string()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(if interrupted {
        130
    } else if !failures.is_empty() {
        1
    } else {
        0
    })
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

/// One server's measurements: one server for cpu, io and static; a fresh one per idle repeat.
fn sweep(
    plan: &Plan,
    spec: &ServerSpec,
    csv: &mut CsvWriter,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let (idle, shared): (Vec<_>, Vec<_>) = plan
        .points(spec)
        .into_iter()
        .partition(|p| p.workload == Workload::Idle);
    let mut server: Option<Running> = None;
    for p in shared.into_iter().chain(idle) {
        if stopped() {
            break;
        }
        if p.workload == Workload::Idle {
            if let Some(mut s) = server.take() {
                s.stop(bar);
            }
        }
        let s = match &mut server {
            Some(s) => s,
            None => {
                let s = Running::start(plan, spec)?;
                say(
                    bar,
                    &format!(
                        "{} ({} workers) on {}{}",
                        spec.name,
                        spec.workers,
                        s.addr,
                        if p.workload == Workload::Idle {
                            ", fresh for idle"
                        } else {
                            ""
                        }
                    ),
                );
                server.insert(s)
            }
        };
        bar.set_message(format!(
            "{} · {} · {} {} · repeat {}/{}",
            spec.name,
            p.workload.name(),
            p.x,
            p.workload.x_name(),
            p.repeat,
            plan.repeat
        ));
        let pid = s.pid;
        let rows = measure::measure(plan, spec, p, s.addr, || group_rss_kib(pid))
            .with_context(|| format!("{} {} at {}", spec.name, p.workload.name(), p.x))?;
        if !stopped() {
            csv.write(&rows).context("writing raw.csv")?;
        }
        bar.inc(1);
        if p.workload == Workload::Idle {
            if let Some(mut s) = server.take() {
                s.stop(bar);
            }
        }
    }
    if let Some(mut s) = server.take() {
        s.stop(bar);
    }
    Ok(())
}

/// A server started by the run; stopped (and its group swept) when dropped.
struct Running {
    name: String,
    child: Child,
    pid: Pid,
    addr: SocketAddr,
    log: PathBuf,
    stopped: bool,
    /// archserve (must exit 0 on SIGTERM), not a baseline (lighttpd exits 1 on SIGTERM).
    ours: bool,
}

impl Running {
    fn start(plan: &Plan, spec: &ServerSpec) -> anyhow::Result<Running> {
        let dir = plan.out.join("servers");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("{}.log", spec.name));
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let (mut cmd, known) = match &spec.kind {
            Kind::Arch(a) => {
                let mut cmd = Command::new(&plan.server_bin);
                cmd.args([
                    "serve",
                    "--arch",
                    a.name,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                ])
                .arg("--root")
                .arg(&plan.root);
                if a.workers != Workers::One {
                    cmd.arg("-w").arg(spec.workers.to_string());
                }
                (cmd, None)
            }
            Kind::Baseline(b, bin) => {
                let addr = baseline::free_port()?;
                let cmd =
                    baseline::prepare(*b, bin, &dir.join(b.name()), &plan.root, addr, spec.workers)
                        .with_context(|| format!("writing the {} configuration", b.name()))?;
                (cmd, Some(addr))
            }
        };
        // The blocked SIGINT/SIGTERM of this process would be inherited through exec (std does
        // not reset the mask on every spawn path), and a server that never unblocks them, like
        // lighttpd, could not be stopped.
        // SAFETY: only async-signal-safe work between fork and exec: pthread_sigmask on a
        // set built on the stack.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::signal::pthread_sigmask(
                    nix::sys::signal::SigmaskHow::SIG_SETMASK,
                    Some(&nix::sys::signal::SigSet::empty()),
                    None,
                )
                .map_err(io::Error::from)
            });
        }
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let pid = Pid::from_raw(child.id() as i32);
        live().push(pid);
        let stdout = child.stdout.take();
        let mut running = Running {
            name: spec.name.clone(),
            child,
            pid,
            addr: known.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            log,
            stopped: false,
            ours: matches!(spec.kind, Kind::Arch(_)),
        };
        // The first stdout line (ours: "Server listening on ADDR"); the rest is drained so the
        // server never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        if let Some(out) = stdout {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(out).lines();
                let _ = tx.send(lines.next());
                for _ in lines {}
            });
        }
        if known.is_none() {
            let line = match rx.recv_timeout(START_TIMEOUT) {
                Ok(Some(Ok(line))) => line,
                _ => bail!("did not print its address{}", running.log_tail()),
            };
            running.addr = line
                .strip_prefix("Server listening on ")
                .and_then(|a| a.trim().parse().ok())
                .ok_or_else(|| anyhow!("unexpected first line {line:?}{}", running.log_tail()))?;
        }
        running.wait_ready(&plan.static_path)?;
        Ok(running)
    }

    /// Until one request gets a valid response (any status), or the server exits, or time out.
    fn wait_ready(&mut self, path: &str) -> anyhow::Result<()> {
        let target =
            Target::new("127.0.0.1", self.addr.port(), path).map_err(anyhow::Error::msg)?;
        let probe = LoadPlan {
            addr: self.addr,
            request: encode_request("GET", &target, &[], true),
            head_request: false,
            connections: 1,
            threads: 1,
            limit: Limit::Requests(1),
            rate: None,
            keep_alive: false,
            timeout: Duration::from_secs(1),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("exited at start ({status}){}", self.log_tail());
            }
            if stopped() {
                bail!("interrupted while starting");
            }
            if engine::run(&probe, &Progress::new(1), None)?.responses > 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("did not answer within {START_TIMEOUT:?}{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of the server's stderr, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n  ");
        if tail.is_empty() {
            format!(" (log: {})", self.log.display())
        } else {
            format!("; {}:\n  {tail}", self.log.display())
        }
    }

    /// SIGTERM, wait, SIGKILL if it hangs; then sweep the group: nothing of it may outlive the
    /// run (a worker whose master died would keep the port).
    fn stop(&mut self, bar: &ProgressBar) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = kill(self.pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    say(
                        bar,
                        &format!("{} did not stop on SIGTERM: killed", self.name),
                    );
                    let _ = killpg(self.pid, Signal::SIGKILL);
                    break self.child.wait().ok();
                }
            }
        };
        let _ = killpg(self.pid, Signal::SIGKILL);
        live().retain(|&p| p != self.pid);
        if let Some(s) = status.filter(|s| !s.success() && self.ours) {
            say(bar, &format!("{} exited with {s} when stopped", self.name));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop(&ProgressBar::hidden());
    }
}

/// VmRSS summed over every process in the group led by `pgid` (the server and its workers).
pub fn group_rss_kib(pgid: Pid) -> io::Result<u64> {
    let mut total = 0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let dir = Path::new("/proc").join(pid);
        // A process may exit between listing and reading: skip it.
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        if stat_pgrp(&stat) != Some(pgid.as_raw()) {
            continue;
        }
        found = true;
        if let Ok(status) = std::fs::read_to_string(dir.join("status")) {
            total += machine::meminfo_kib(&status, "VmRSS").unwrap_or(0);
        }
    }
    if found {
        Ok(total)
    } else {
        Err(io::Error::other(format!("no process in group {pgid}")))
    }
}

/// The process group from /proc/PID/stat: the third field after the `(comm)`, which may itself
/// contain spaces and parentheses (so split after the last `)`).
fn stat_pgrp(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Lifts the soft limit on open files to the hard one: the idle workload holds thousands of
/// sockets (and the servers, which inherit it, as many).
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
    fn reads_the_process_group_from_stat() {
        assert_eq!(stat_pgrp("123 (archserve) S 1 123 123 0 -1"), Some(123));
        assert_eq!(stat_pgrp("7 (a) b (c) R 1 42 7 0"), Some(42));
        assert_eq!(stat_pgrp("garbage"), None);
    }

    #[test]
    fn this_process_group_has_memory() {
        let me = nix::unistd::getpgrp();
        assert!(group_rss_kib(me).unwrap() > 0);
    }

    #[test]
    fn durations_read_like_a_person_would_say_them() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(125)), "2m 05s");
    }
}
