//! Termination signals and the per-process stop flag.
//!
//! SIGINT/SIGTERM are blocked in the main thread before any worker exists, so threads and forked
//! children inherit the mask and no signal lands in a random worker thread. Then each kind of
//! process takes them its own way: a supervisor or thread-pool master waits with sigwait; a forked
//! blocking worker installs a flag-setting handler (no SA_RESTART, so a blocked accept/read
//! returns EINTR and sees the flag); an event loop unblocks them for tokio's signal driver.
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

/// Set once when this process begins shutting down. A process-wide static because a signal
/// handler can reach nothing else; each forked process has its own copy.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// The termination signals, blocked; create it first thing in `main`.
#[derive(Debug)]
pub struct Signals {
    set: SigSet,
}

fn termination_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}

impl Signals {
    /// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread or child it makes).
    pub fn block() -> io::Result<Signals> {
        let set = termination_set();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .map_err(io::Error::from)?;
        Ok(Signals { set })
    }

    /// Waits until SIGINT or SIGTERM arrives; returns which.
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

    /// For a single-threaded blocking process: SIGINT/SIGTERM set the stop flag and interrupt
    /// the blocking call in progress (EINTR), then are unblocked.
    pub fn stop_on_signal(self) -> io::Result<()> {
        extern "C" fn on_signal(_: libc::c_int) {
            // Only an atomic store: async-signal-safe.
            STOPPING.store(true, Ordering::SeqCst);
        }
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(), // no SA_RESTART: blocked syscalls return EINTR
            SigSet::empty(),
        );
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
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
    pub fn trigger(&self) {
        STOPPING.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        STOPPING.load(Ordering::Relaxed)
    }
}
