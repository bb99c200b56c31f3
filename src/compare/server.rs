//! A server under measurement as a child process: started in a process group of its own on a
//! loopback port (ours pick a free one and print it; a baseline is given one), waited for until
//! it answers, stopped with SIGTERM, reaped, and its group swept with SIGKILL so nothing of it
//! outlives the run (a worker whose master died would keep the port). A [`Running`] server that
//! goes out of scope on any path (an error, a panic unwinding) is stopped by its `Drop`.
//!
//! A server being upgraded changes processes: ours start a successor as a child in the same
//! group, and nginx, started as a daemon for that, leads a session of its own, found through its
//! pid file. [`Running`] follows the process serving and sweeps the whole group.
//!
//! [`LIVE`] lists the groups now running and [`STOP`] says a signal asked the run to stop:
//! run.rs's signal watcher uses both.
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::arch::Workers;
use crate::client::engine::{self, Limit, Plan as LoadPlan, Progress};

use super::measure::{request, Probe};
use super::plan::{Kind, Plan, ServerSpec};
use super::tls::TlsFiles;
use super::{baseline, procfs};
use crate::client::tls::ClientTls;

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
/// could not be stopped. It also inherits no descriptor but its standard three: compare may run
/// under `flock` (the benchmark lock is its descriptor 3), and a server that outlived its run
/// would otherwise hold the lock for every later measurement.
pub fn own_group(cmd: &mut Command) {
    // SAFETY: only async-signal-safe work between fork and exec: pthread_sigmask on a set
    // built on the stack, and close_range(2) marking descriptors close-on-exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )
            .map_err(io::Error::from)?;
            // Linux 5.11+; on an older kernel (ENOSYS) the descriptors are inherited as before.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    cmd.process_group(0);
}

/// How a server is started: to be measured, or to be upgraded under load (ours start the
/// same way; nginx starts as a daemon, the one way its `USR2` is honoured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Measured,
    Upgradable,
    /// Serving HTTPS with the run's certificate (`tls` workload).
    Tls,
}

/// A server started by the run; stopped (and its group swept) when dropped.
pub struct Running {
    name: String,
    /// The process compare started: the server itself, or a daemon's launcher.
    child: Child,
    /// How `child` ended, once it has.
    status: Option<ExitStatus>,
    /// The process group every process of the server is in: `child`'s (a successor of ours is
    /// the old process's child, in the same group), or a daemon master's, which leads a
    /// session of its own (and the masters it starts on `USR2` stay in it).
    group: Pid,
    /// The process now serving: the first, the last successor after upgrades, or a daemon's
    /// master as its pid file names it.
    serving: Pid,
    pub addr: SocketAddr,
    log: PathBuf,
    /// The directory of a baseline's configuration (and nginx's pid file).
    dir: PathBuf,
    stopped: bool,
    /// archserve (must exit 0 on SIGTERM), not a baseline (lighttpd exits 1 on SIGTERM).
    ours: bool,
    /// The stdout lines after the first, from every process of the server (ours print
    /// `Upgraded:` lines there).
    lines: mpsc::Receiver<io::Result<String>>,
}

impl Running {
    /// What the workloads need to reach and observe it.
    pub fn probe(&self) -> Probe {
        Probe {
            addr: self.addr,
            pgid: self.group.as_raw(),
        }
    }

    /// The command that runs `spec`, and the address it will listen on when it is fixed
    /// beforehand (a baseline's; ours print theirs). `tls`: serve HTTPS with these files.
    fn command(
        plan: &Plan,
        spec: &ServerSpec,
        dir: &std::path::Path,
        mode: baseline::Mode,
        tls: Option<&TlsFiles>,
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
                if let Some(t) = tls {
                    cmd.arg("--tls-cert")
                        .arg(&t.cert)
                        .arg("--tls-key")
                        .arg(&t.key);
                }
                // Only for the cgi workload: a CGI folder makes the parser keep every field.
                if spec
                    .workloads
                    .contains(&crate::compare::plan::Workload::Cgi)
                {
                    cmd.args(["--cgi-dir", crate::compare::scratch::CGI_DIR]);
                }
                (cmd, None)
            }
            Kind::Baseline(b, bin) => {
                let addr = baseline::free_port()?;
                let cmd = baseline::prepare(
                    *b,
                    bin,
                    dir,
                    &plan.serve_root,
                    addr,
                    spec.workers,
                    mode,
                    tls,
                )
                .with_context(|| format!("writing the {} configuration", b.name()))?;
                (cmd, Some(addr))
            }
        })
    }

    /// Starts `spec` to be measured.
    pub fn start(plan: &Plan, spec: &ServerSpec) -> anyhow::Result<Running> {
        Running::start_as(plan, spec, Start::Measured)
    }

    /// Starts `spec`, waits until it answers. An upgradable one has its own log and
    /// configuration directory (`<name>-upgrade`).
    pub fn start_as(plan: &Plan, spec: &ServerSpec, how: Start) -> anyhow::Result<Running> {
        Running::start_with(plan, spec, how, &[])
    }

    /// [`Running::start_as`], with `extra` arguments after ours' `serve` arguments (a
    /// baseline takes none: its configuration is baseline.rs's).
    pub fn start_with(
        plan: &Plan,
        spec: &ServerSpec,
        how: Start,
        extra: &[&str],
    ) -> anyhow::Result<Running> {
        let servers = plan.out.join("servers");
        std::fs::create_dir_all(&servers)?;
        let (name, mode) = match how {
            Start::Measured => (spec.name.clone(), baseline::Mode::Foreground),
            Start::Upgradable => (format!("{}-upgrade", spec.name), baseline::Mode::Daemon),
            Start::Tls => (format!("{}-tls", spec.name), baseline::Mode::Foreground),
        };
        let tls = match how {
            Start::Tls => Some(TlsFiles::for_run(&plan.out)?),
            _ => None,
        };
        let daemon = how == Start::Upgradable && matches!(spec.kind, Kind::Baseline(..));
        let log = servers.join(format!("{name}.log"));
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let dir = servers.join(&name);
        let (mut cmd, known) = Running::command(plan, spec, &dir, mode, tls.as_ref())?;
        if known.is_none() {
            cmd.args(extra);
        }
        if daemon {
            // A pid file left by a server killed in an earlier round would name a dead master.
            let pid_file = baseline::nginx_pid_file(&dir);
            for stale in [pid_file.clone(), pid_file.with_extension("pid.oldbin")] {
                let _ = std::fs::remove_file(stale);
            }
        }
        let (child, lines) = spawn_with_lines(cmd, log_file)?;
        let pid = Pid::from_raw(child.id() as i32);
        let mut running = Running {
            name: spec.name.clone(),
            child,
            status: None,
            group: pid,
            serving: pid,
            addr: known.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            log,
            dir,
            stopped: false,
            ours: matches!(spec.kind, Kind::Arch(..)),
            lines,
        };
        if known.is_none() {
            running.addr = running.announced_addr()?;
        }
        if daemon {
            running.adopt_daemon()?;
        }
        let client = match &tls {
            Some(t) => Some(t.client(true)?),
            None => None,
        };
        running.wait_ready(&plan.p.static_path, client)?;
        Ok(running)
    }

    /// The address ours announces on its first stdout line, `Server listening on ADDR[, ADDR...]`:
    /// the load goes to the first.
    fn announced_addr(&self) -> anyhow::Result<SocketAddr> {
        let line = match self.lines.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            _ => bail!("did not print its address{}", self.log_tail()),
        };
        line.strip_prefix("Server listening on ")
            .and_then(|a| a.split(", ").next())
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| anyhow!("unexpected first line {line:?}{}", self.log_tail()))
    }

    /// A daemon: waits for its launcher to exit, then takes the master from the pid file, and
    /// its process group in the launcher's place among the live ones.
    fn adopt_daemon(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.gone(self.serving) {
            if Instant::now() > deadline || stopped() {
                bail!("did not become a daemon{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(s) = self.status.filter(|s| !s.success()) {
            bail!("exited at start ({s}){}", self.log_tail());
        }
        let pid_file = baseline::nginx_pid_file(&self.dir);
        let master = loop {
            if let Some(pid) = read_pid(&pid_file) {
                break pid;
            }
            if Instant::now() > deadline || stopped() {
                bail!("wrote no pid to {}{}", pid_file.display(), self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let group = nix::unistd::getpgid(Some(master))
            .with_context(|| format!("the master {master} of {}", pid_file.display()))?;
        if group != self.group {
            live().push(group);
            live().retain(|&p| p != self.group);
        }
        (self.group, self.serving) = (group, master);
        Ok(())
    }

    /// Until one request gets a valid response (any status), or the server exits, or time out.
    fn wait_ready(&mut self, path: &str, tls: Option<ClientTls>) -> anyhow::Result<()> {
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
            tls,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.gone(self.serving) {
                let how = self.status.map(|s| format!(" ({s})")).unwrap_or_default();
                bail!("exited at start{how}{}", self.log_tail());
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

    /// The process now serving.
    pub fn serving(&self) -> Pid {
        self.serving
    }

    /// After an upgrade: `pid` serves now (a process of the server's group).
    pub fn follow(&mut self, pid: Pid) {
        self.serving = pid;
    }

    /// nginx's pid file (where a new master announces itself).
    pub fn pid_file(&self) -> PathBuf {
        baseline::nginx_pid_file(&self.dir)
    }

    /// The next stdout line after the first, waiting at most `timeout`; None when none came
    /// (or every process of the server closed its stdout).
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()?.ok()
    }

    /// Whether `pid`, a process of this server, has exited: the process compare started is
    /// reaped (its status kept); any other is a zombie or gone from /proc, or a pid now reused
    /// outside the group.
    pub fn gone(&mut self, pid: Pid) -> bool {
        if pid.as_raw() == self.child.id() as i32 {
            if self.status.is_none() {
                self.status = self.child.try_wait().ok().flatten();
            }
            return self.status.is_some();
        }
        !procfs::alive_in_group(pid.as_raw(), self.group.as_raw())
    }

    /// How the process compare started ended, once [`Running::gone`] has seen it exit.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// The server's stderr (ours log their warnings there).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
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

    /// SIGTERM to the process serving, wait, SIGKILL to the group if it hangs; then sweep the
    /// group and reap the process compare started. Returns a line worth reporting, if any
    /// (killed, or ours exiting with a failure).
    pub fn stop(&mut self) -> Option<String> {
        if self.stopped {
            return None;
        }
        self.stopped = true;
        let mut said = None;
        if !self.gone(self.serving) {
            let _ = kill(self.serving, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while !self.gone(self.serving) {
                if Instant::now() > deadline {
                    said = Some(format!("{} did not stop on SIGTERM: killed", self.name));
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = killpg(self.group, Signal::SIGKILL);
        if self.status.is_none() {
            // In the group just killed, or a daemon's launcher that never exited.
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        live().retain(|&p| p != self.group && p != pid);
        if let Some(s) = self.status.filter(|s| !s.success() && self.ours) {
            said = said.or(Some(format!("{} exited with {s} when stopped", self.name)));
        }
        said
    }
}

/// The pid in a pid file, if it names a live process.
pub fn read_pid(path: &std::path::Path) -> Option<Pid> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    (pid > 0 && kill(Pid::from_raw(pid), None).is_ok()).then(|| Pid::from_raw(pid))
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `cmd` in its own process group, stderr to `log`, and counts it among the live
/// servers. Every stdout line, from every process of the server, goes to the returned channel,
/// so none blocks on a full pipe: the first is ours' "Server listening on ADDR".
fn spawn_with_lines(
    mut cmd: Command,
    log: std::fs::File,
) -> anyhow::Result<(Child, mpsc::Receiver<io::Result<String>>)> {
    own_group(&mut cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    live().push(Pid::from_raw(child.id() as i32));
    let (tx, lines) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    Ok((child, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_started_program_inherits_only_the_standard_descriptors() {
        let file = std::fs::File::open("/dev/null").unwrap();
        // A copy without close-on-exec, as `flock` hands its lock to the command it runs (high,
        // so that `ls` cannot get the same number for a descriptor of its own).
        // SAFETY: F_DUPFD on an open descriptor.
        let fd = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD, 200) };
        assert!(fd >= 200);
        let mut cmd = Command::new("ls");
        cmd.arg("/proc/self/fd");
        own_group(&mut cmd);
        let out = cmd.output().unwrap();
        // SAFETY: closes the copy made above.
        unsafe { libc::close(fd) };
        let listed: Vec<i32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        assert!(listed.contains(&0) && listed.contains(&2), "{listed:?}");
        assert!(
            !listed.contains(&fd),
            "descriptor {fd} inherited: {listed:?}"
        );
    }
}
