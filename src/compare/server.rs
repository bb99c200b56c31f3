//! A server under measurement as a child process: started in a process group of its own on a
//! loopback port (ours pick a free one and print it; a baseline is given one), waited for until
//! it answers, stopped with SIGTERM, reaped, and its group swept with SIGKILL so nothing of it
//! outlives the run (a worker whose master died would keep the port). A [`Running`] server that
//! goes out of scope on any path (an error, a panic unwinding) is stopped by its `Drop`.
//!
//! [`LIVE`] lists the groups now running and [`STOP`] says a signal asked the run to stop:
//! run.rs's signal watcher uses both.
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::arch::Workers;
use crate::client::engine::{self, Limit, Plan as LoadPlan, Progress};

use super::baseline;
use super::measure::{request, Probe};
use super::plan::{Kind, Plan, ServerSpec};

/// Process groups of the servers now running (their leaders' pids).
pub static LIVE: Mutex<Vec<Pid>> = Mutex::new(Vec::new());
/// Set by the first SIGINT/SIGTERM: take no further measurement.
pub static STOP: AtomicBool = AtomicBool::new(false);

/// How long a server may take to print its address and answer a first request.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server may take to exit after SIGTERM (ours have a 10 s grace period for
/// requests in flight; none should be in flight when they are stopped).
const STOP_TIMEOUT: Duration = Duration::from_secs(12);

pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

pub fn live() -> std::sync::MutexGuard<'static, Vec<Pid>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes `cmd` start in a process group of its own (the terminal's Ctrl-C reaches only
/// compare, which stops its children itself) with no signal blocked: this process blocks
/// SIGINT/SIGTERM for its watcher thread, the mask would be inherited through exec (std does
/// not reset it on every spawn path), and a program that never unblocks them, like lighttpd,
/// could not be stopped.
pub fn own_group(cmd: &mut Command) {
    // SAFETY: only async-signal-safe work between fork and exec: pthread_sigmask on a set
    // built on the stack.
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
    cmd.process_group(0);
}

/// A server started by the run; stopped (and its group swept) when dropped.
pub struct Running {
    name: String,
    child: Child,
    pid: Pid,
    pub addr: SocketAddr,
    log: PathBuf,
    stopped: bool,
    /// archserve (must exit 0 on SIGTERM), not a baseline (lighttpd exits 1 on SIGTERM).
    ours: bool,
}

impl Running {
    /// What the workloads need to reach and observe it.
    pub fn probe(&self) -> Probe {
        Probe {
            addr: self.addr,
            pgid: self.pid.as_raw(),
        }
    }

    /// The command that runs `spec`, and the address it will listen on when it is fixed
    /// beforehand (a baseline's; ours print theirs).
    fn command(
        plan: &Plan,
        spec: &ServerSpec,
        dir: &std::path::Path,
    ) -> anyhow::Result<(Command, Option<SocketAddr>)> {
        Ok(match &spec.kind {
            Kind::Arch(a, bin) => {
                let mut cmd = Command::new(bin.as_ref().unwrap_or(&plan.server_bin));
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
                .arg(&plan.serve_root);
                if a.workers != Workers::One {
                    cmd.arg("-w").arg(spec.workers.to_string());
                }
                (cmd, None)
            }
            Kind::Baseline(b, bin) => {
                let addr = baseline::free_port()?;
                let cmd = baseline::prepare(
                    *b,
                    bin,
                    &dir.join(b.name()),
                    &plan.serve_root,
                    addr,
                    spec.workers,
                )
                .with_context(|| format!("writing the {} configuration", b.name()))?;
                (cmd, Some(addr))
            }
        })
    }

    pub fn start(plan: &Plan, spec: &ServerSpec) -> anyhow::Result<Running> {
        let dir = plan.out.join("servers");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("{}.log", spec.name));
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let (mut cmd, known) = Running::command(plan, spec, &dir)?;
        own_group(&mut cmd);
        cmd.stdin(Stdio::null())
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
            ours: matches!(spec.kind, Kind::Arch(..)),
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
        running.wait_ready(&plan.p.static_path)?;
        Ok(running)
    }

    /// Until one request gets a valid response (any status), or the server exits, or time out.
    fn wait_ready(&mut self, path: &str) -> anyhow::Result<()> {
        let probe = LoadPlan {
            addr: self.addr,
            request: request(self.addr, path, true)?,
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

    /// SIGTERM, wait, SIGKILL if it hangs; then sweep the group. Returns a line worth
    /// reporting, if any (killed, or ours exiting with a failure).
    pub fn stop(&mut self) -> Option<String> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        let _ = kill(self.pid, Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut said = None;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    said = Some(format!("{} did not stop on SIGTERM: killed", self.name));
                    let _ = killpg(self.pid, Signal::SIGKILL);
                    break self.child.wait().ok();
                }
            }
        };
        let _ = killpg(self.pid, Signal::SIGKILL);
        live().retain(|&p| p != self.pid);
        if let Some(s) = status.filter(|s| !s.success() && self.ours) {
            said = Some(format!("{} exited with {s} when stopped", self.name));
        }
        said
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}
