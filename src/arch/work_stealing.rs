//! `work-stealing`: one process, tokio's multi-thread runtime with N worker threads that steal
//! tasks from each other — what most Rust servers (hyper/axum, static-web-server) run. Tasks move
//! between threads, so shared state needs atomics and the scheduler pays for that balance.
use std::io;

use super::{serve_evented, Arch, Role, Server, Workers, EVENTED_IDLE};

pub const ARCH: Arch = Arch {
    name: "work-stealing",
    about:
        "one process, a work-stealing multi-thread tokio runtime with N threads (hyper/axum style)",
    workers: Workers::Five,
    idle_timeout: EVENTED_IDLE,
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers)
        .thread_name("worker")
        .on_thread_start(move || super::announce_worker(&addrs))
        .enable_all()
        .build()?;
    serve_evented(&runtime, listeners, &config, site, signals, Role::Server)
}
