//! Termination and upgrade signals, and the per-process stop flag.
//!
//! SIGINT/SIGTERM (stop) and SIGUSR2 (upgrade: start a successor, then drain) are blocked in the main thread before any worker exists, so threads and forked
//! children inherit the mask and no signal lands in a random worker thread. Then each kind of
//! process takes them its own way: a supervisor or thread-pool master waits with sigwait; a forked
//! blocking worker installs a flag-setting handler (no SA_RESTART, so a blocked accept/read
//! returns EINTR and sees the flag); an event loop unblocks them for tokio's signal driver.
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

/// This process's mode: [`RUNNING`], [`DRAINING`] or [`STOPPING`], only ever raised. A
/// process-wide static because a signal handler can reach nothing else; each forked process has
/// its own copy.
static MODE: AtomicU8 = AtomicU8::new(RUNNING);
const RUNNING: u8 = 0;
/// Not accepting; requests are answered with `Connection: close`; idle keep-alive connections
/// are kept until their next request (so none is closed under a client that is sending one).
const DRAINING: u8 = 1;
/// Not accepting; idle connections are closed at once.
const STOPPING: u8 = 2;

/// The termination signals, blocked; create it first thing in `main`.
#[derive(Debug)]
pub struct Signals {
    set: SigSet,
}

fn termination_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGUSR2);
    set
}

impl Signals {
    /// Blocks SIGINT, SIGTERM and SIGUSR2 in the calling thread (and so in every thread or child it makes).
    pub fn block() -> io::Result<Signals> {
        let set = termination_set();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .map_err(io::Error::from)?;
        Ok(Signals { set })
    }

    /// Waits until SIGINT, SIGTERM or SIGUSR2 arrives; returns which.
    pub fn wait(&self) -> io::Result<Signal> {
        self.set.wait().map_err(io::Error::from)
    }

    /// The blocked set.
    pub fn set(&self) -> &SigSet {
        &self.set
    }

    /// Lets the signals through again in this thread (for tokio's signal driver, which must have
    /// registered its handlers first so a pending signal is not taken by the default action).
    pub fn unblock(self) -> io::Result<()> {
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&self.set), None)
            .map_err(io::Error::from)
    }

    /// For a single-threaded blocking process: SIGINT/SIGTERM set the stop flag, SIGUSR2 the
    /// drain flag (a worker told its master was replaced), and interrupt the blocking call in
    /// progress (EINTR); then they are unblocked.
    pub fn stop_on_signal(self) -> io::Result<()> {
        extern "C" fn on_signal(sig: libc::c_int) {
            // Only an atomic update: async-signal-safe.
            let mode = if sig == libc::SIGUSR2 {
                DRAINING
            } else {
                STOPPING
            };
            MODE.fetch_max(mode, Ordering::SeqCst);
        }
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(), // no SA_RESTART: blocked syscalls return EINTR
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGUSR2] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { nix::sys::signal::sigaction(sig, &action) }.map_err(io::Error::from)?;
        }
        self.unblock()
    }
}

/// The stop flag of this process, polled by connection loops between requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stop;

impl Stop {
    /// Stop: no more accepting, idle connections close now, in-flight requests finish.
    pub fn trigger(&self) {
        MODE.fetch_max(STOPPING, Ordering::SeqCst);
    }

    /// Drain (this server was replaced): no more accepting or keep-alive, but an idle
    /// connection is closed only after answering its next request or at its idle timeout.
    pub fn drain(&self) {
        MODE.fetch_max(DRAINING, Ordering::SeqCst);
    }

    /// Stopping or draining: accept nothing more, keep no connection alive.
    pub fn is_set(&self) -> bool {
        MODE.load(Ordering::Relaxed) != RUNNING
    }

    /// Stopping: close idle connections now.
    pub fn closes_idle(&self) -> bool {
        MODE.load(Ordering::Relaxed) == STOPPING
    }
}
