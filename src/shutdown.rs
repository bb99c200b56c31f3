//! Termination signals, taken synchronously: SIGINT/SIGTERM are blocked in the main thread before
//! any worker exists (threads and forked children inherit the mask), and one place waits for them
//! with sigwait. No async-signal-safety puzzles, and no signal can land in a random worker thread.
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The blocked termination signals; create it first thing in `main`.
#[derive(Debug)]
pub struct Signals {
    set: SigSet,
}

impl Signals {
    /// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread or child it makes).
    pub fn block() -> io::Result<Signals> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
            .map_err(io::Error::from)?;
        Ok(Signals { set })
    }

    /// Waits until SIGINT or SIGTERM arrives; returns which.
    pub fn wait(&self) -> io::Result<Signal> {
        self.set.wait().map_err(io::Error::from)
    }

    /// The blocked set, for architectures that restore or inspect it in children.
    pub fn set(&self) -> &SigSet {
        &self.set
    }
}

/// A flag the workers of one process poll: set once when shutdown begins.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}
