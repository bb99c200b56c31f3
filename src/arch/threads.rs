//! `threads`: N worker threads, each blocking in accept() on the one shared listener and serving
//! its connection to the end — the seed's `-t`, Apache's worker model without the listener thread.
//!
//! The kernel hands each new connection to one of the threads blocked in accept() (the wait queue
//! is exclusive: no thundering herd). A busy thread serves no one else, so N bounds both the
//! parallelism and the number of clients served at once; the others wait in the backlog.
//! With several listeners (`--listen` twice), each thread waits in poll() on all of them instead
//! (see `accept::blocking_loop`).
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{announce_worker, Arch, Server, Workers, BLOCKING_IDLE};
use crate::conn::accept;
use crate::shutdown::Stop;

pub const ARCH: Arch = Arch {
    name: "threads",
    about: "N threads blocking in accept() on one shared listener, a connection at a time each (seed -t)",
    workers: Workers::Five,
    idle_timeout: BLOCKING_IDLE,
    multi_process: false,
    run,
};

fn run(server: Server) -> io::Result<()> {
    let Server {
        listeners,
        config,
        site,
        signals,
        ..
    } = server;
    let addrs = crate::listener::describe(&listeners)?;
    let shared = Arc::new((listeners, site, config));
    let stop = Stop;

    let mut workers = Vec::with_capacity(shared.2.workers);
    for i in 0..shared.2.workers {
        let shared = Arc::clone(&shared);
        let addrs = addrs.clone();
        let handle = std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                announce_worker(&addrs);
                let (listeners, site, config) = &*shared;
                accept::blocking_loop(listeners, site, &config.conn, config.tls.as_ref());
            })?;
        workers.push(handle);
    }

    loop {
        let signal = signals.wait()?;
        tracing::info!("{signal:?}: stopping, grace {:?}", shared.2.grace);
        if signal != nix::sys::signal::Signal::SIGUSR2 {
            stop.trigger();
            break;
        }
        let fds: Vec<_> = shared.0.iter().map(|l| l.as_raw_fd()).collect();
        if crate::upgrade::replace_self(&fds) {
            stop.drain();
            break;
        }
    }
    // The workers notice within their accept poll (see `accept::blocking_loop`).

    let deadline = Instant::now() + shared.2.grace;
    while workers.iter().any(|w| !w.is_finished()) {
        if Instant::now() >= deadline {
            tracing::warn!("grace period over with requests still in flight; exiting");
            crate::access_log::flush();
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for w in workers {
        let _ = w.join();
    }
    crate::access_log::flush();
    Ok(())
}
