//! Process supervision for every multi-process architecture: fork the workers (before any thread
//! or runtime exists in this process), replace any that dies, forward SIGINT/SIGTERM, reap them
//! all, and exit only when none is left.
//!
//! The master stays single-threaded for its whole life, so forking a replacement later is as
//! safe as the first fork. It takes signals synchronously with sigtimedwait (SIGCHLD included),
//! so there is no handler and no race between "a child died" and "we were asked to stop".
use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::Server;
use crate::config::Config;
use crate::shutdown::Signals;
use crate::site::Site;

/// The body of a worker process: gets its listeners (one per address), returns its exit code.
pub type WorkerFn = fn(Vec<TcpListener>, &Config, &Site, Signals) -> i32;

/// A worker that dies sooner than this after starting is replaced only after [`RESPAWN_DELAY`],
/// so a worker that crashes at start-up does not turn the master into a fork loop.
const MIN_LIFETIME: Duration = Duration::from_secs(1);
const RESPAWN_DELAY: Duration = Duration::from_millis(200);
/// How often the master wakes when no signal comes (to respawn delayed slots).
const TICK: Duration = Duration::from_millis(100);

struct Slot {
    pid: Option<Pid>,
    started: Instant,
    respawn_at: Option<Instant>,
}

/// Runs the master: forks `config.workers` workers running `worker`, supervises until
/// SIGINT/SIGTERM, then stops them within the grace period.
pub fn run(server: Server, worker: WorkerFn) -> io::Result<()> {
    let Server {
        listeners,
        config,
        site,
        signals,
    } = server;
    // SIGCHLD joins the blocked set (before the first fork, so children start with the same mask
    // as before plus this one, which they never wait for).
    let mut waited = *signals.set();
    waited.add(Signal::SIGCHLD);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&waited), None)
        .map_err(io::Error::from)?;

    // Shared listeners: every worker accepts on the one socket of each address. --reuseport: a
    // socket per slot and address, each address's in one SO_REUSEPORT group, bound now; a
    // replacement worker takes over its slot's sockets, so connections queued there while the
    // slot was empty are served, not lost. (After an upgrade, the groups' sockets are the ones
    // handed over, so nothing queued in them is lost.)
    let mut groups = crate::listener::group_by_addr(listeners)?;
    if config.listen.reuseport {
        for group in &mut groups {
            let addr = group[0].local_addr()?;
            while group.len() < config.workers {
                group.push(crate::listener::bind(addr, config.listen)?);
            }
        }
    }
    let master = Master {
        groups,
        config: &config,
        site: &site,
        worker,
    };
    let now = Instant::now();
    let mut slots: Vec<Slot> = (0..config.workers)
        .map(|_| Slot {
            pid: None,
            started: now,
            respawn_at: Some(now),
        })
        .collect();

    let signal = loop {
        reap(&mut slots, false);
        let now = Instant::now();
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.pid.is_none() && slot.respawn_at.is_some_and(|t| t <= now) {
                slot.pid = Some(master.spawn(i)?);
                slot.started = now;
                slot.respawn_at = None;
            }
        }
        match wait_signal(&waited, TICK) {
            Some(Signal::SIGCHLD) | None => {}
            Some(Signal::SIGUSR2) => {
                let fds: Vec<_> = master
                    .groups
                    .iter()
                    .flatten()
                    .map(|l| l.as_raw_fd())
                    .collect();
                if crate::upgrade::replace_self(&fds) {
                    break Signal::SIGUSR2;
                }
            }
            Some(sig) => break sig,
        }
    };

    tracing::info!("{signal:?}: stopping workers, grace {:?}", config.grace);
    drop(master); // close our listener copy: once the workers exit, the port is free
    stop_workers(&mut slots, signal, config.grace, &waited);
    Ok(())
}

/// Tells every worker to stop (SIGTERM) or, after an upgrade (`signal` SIGUSR2), to drain, and
/// reaps them; those still running after the grace period are killed.
fn stop_workers(slots: &mut [Slot], signal: Signal, grace: Duration, waited: &SigSet) {
    let told = if signal == Signal::SIGUSR2 {
        Signal::SIGUSR2
    } else {
        Signal::SIGTERM
    };
    for pid in slots.iter().filter_map(|s| s.pid) {
        let _ = kill(pid, told);
    }
    // Workers get the grace period, plus a little for their own exit.
    let deadline = Instant::now() + grace + Duration::from_millis(500);
    while slots.iter().any(|s| s.pid.is_some()) {
        reap(slots, true);
        if Instant::now() >= deadline {
            for pid in slots.iter().filter_map(|s| s.pid) {
                tracing::warn!("worker {pid} still running after the grace period; killing it");
                let _ = kill(pid, Signal::SIGKILL);
            }
            while slots.iter().any(|s| s.pid.is_some()) {
                reap_blocking(slots);
            }
            break;
        }
        let _ = wait_signal(waited, Duration::from_millis(20));
    }
}

struct Master<'a> {
    /// Per address: one shared listener, or one per slot with --reuseport.
    groups: Vec<Vec<TcpListener>>,
    config: &'a Config,
    site: &'a Site,
    worker: WorkerFn,
}

impl Master<'_> {
    fn spawn(&self, slot: usize) -> io::Result<Pid> {
        let listeners = self
            .groups
            .iter()
            .map(|group| group[slot % group.len()].try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        let master = nix::unistd::getpid();
        // SAFETY: the master is single-threaded (no thread or runtime was ever started in it),
        // so the child starts in a consistent state.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Parent { child } => Ok(child),
            ForkResult::Child => {
                // If the master dies (even by SIGKILL), take the workers down with it: no orphan
                // keeps serving on the port. Checked against a master that died before prctl.
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
                if nix::unistd::getppid() != master {
                    std::process::exit(0);
                }
                let signals = match Signals::block() {
                    Ok(s) => s,
                    Err(_) => std::process::exit(1),
                };
                let code = (self.worker)(listeners, self.config, self.site, signals);
                std::process::exit(code);
            }
        }
    }
}

/// Waits up to `timeout` for one of `set`; None on timeout.
fn wait_signal(set: &SigSet, timeout: Duration) -> Option<Signal> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: a valid sigset and timespec; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    if sig < 0 {
        None
    } else {
        Signal::try_from(sig).ok()
    }
}

/// Collects exited workers without blocking; while running (not `stopping`), logs each death and
/// schedules a replacement.
fn reap(slots: &mut [Slot], stopping: bool) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(status) => record(slots, status, stopping),
        }
    }
}

fn reap_blocking(slots: &mut [Slot]) {
    match waitpid(None, None) {
        Ok(status) => record(slots, status, true),
        Err(_) => {
            for slot in slots.iter_mut() {
                slot.pid = None;
            }
        }
    }
}

fn record(slots: &mut [Slot], status: WaitStatus, stopping: bool) {
    let Some(pid) = status.pid() else { return };
    let Some(slot) = slots.iter_mut().find(|s| s.pid == Some(pid)) else {
        return;
    };
    slot.pid = None;
    if stopping {
        return;
    }
    let lived = slot.started.elapsed();
    let delay = if lived < MIN_LIFETIME {
        RESPAWN_DELAY
    } else {
        Duration::ZERO
    };
    tracing::warn!("worker {pid} exited ({status:?}) after {lived:.1?}; replacing it");
    slot.respawn_at = Some(Instant::now() + delay);
}
