//! `async`: one thread, one event loop (tokio current-thread runtime), one task per connection —
//! the seed's `start_async_server`. Waiting (`/io`, idle clients) costs a timer, not a thread; but
//! CPU work (`/cpu`) runs on the loop and every other client waits behind it.
use std::io;

use super::{serve_evented, Arch, Role, Server, Workers, EVENTED_IDLE};

pub const ARCH: Arch = Arch {
    name: "async",
    about: "one thread running one event loop, a task per connection (seed start_async_server)",
    workers: Workers::One,
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    super::announce_worker(&crate::listener::describe(&listeners)?);
    serve_evented(&runtime, listeners, &config, site, signals, Role::Server)
}
