//! `uring`: bind once, fork N workers (default: one per CPU) under the supervisor, each driving
//! its own io_uring: completion-based I/O, thread-per-core, share-nothing. Like `hybrid` it runs
//! an event loop per core; unlike every other architecture it does not wait for readiness and
//! then make a syscall per read and per write: it queues the reads and writes themselves and one
//! `io_uring_enter` per loop turn submits a batch and collects a batch (see `conn::uring`).
//!
//! Processes rather than threads: each worker already shares nothing (its own ring, buffers,
//! connections, open-file cache), so threads would save nothing on the request path; processes
//! add the supervisor's respawn of a worker that dies, isolation of a crash, and a
//! single-threaded process per ring (the ring's fd lookup on each enter takes no reference when
//! the file table is not shared).
use std::io;
use std::net::TcpListener;

use super::{supervisor, Arch, Server, Workers, EVENTED_IDLE};
use crate::config::Config;
use crate::conn::uring::{available, Worker};
use crate::shutdown::Signals;
use crate::site::Site;

pub const ARCH: Arch = Arch {
    name: "uring",
    about: "bind once, fork N workers (default: one per CPU), each driving its own io_uring (completions, not readiness)",
    workers: Workers::Cpus,
    idle_timeout: EVENTED_IDLE,
    multi_process: true,
    run,
};

/// Fails at once, with the reason, where io_uring cannot be used; else supervises the workers.
fn run(server: Server) -> io::Result<()> {
    available().map_err(|reason| io::Error::new(io::ErrorKind::Unsupported, reason))?;
    supervisor::run(server, worker)
}

/// The body of one forked worker: its ring is created after the fork (a ring must not be
/// shared between processes).
fn worker(listeners: Vec<TcpListener>, config: &Config, site: &Site, signals: Signals) -> i32 {
    let result = (|| -> io::Result<()> {
        super::announce_worker(&crate::listener::describe(&listeners)?);
        let site = site.try_clone()?;
        let tls = config.tls.as_ref().map(|t| std::sync::Arc::clone(&t.0));
        Worker::new(listeners, site, config.conn, config.grace, &signals, tls)?.run()
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("worker: {e}");
            1
        }
    }
}
