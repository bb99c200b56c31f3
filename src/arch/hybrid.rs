//! `hybrid`: bind once, fork N workers, each running its own single-threaded event loop — the
//! seed's "best of both worlds" and nginx's model. Waiting costs timers (like `async`), CPU work
//! runs on N cores (like `processes`), and no state is shared between workers, so no locks and
//! no cross-core task migration.
use std::io;
use std::net::TcpListener;

use super::{serve_evented, supervisor, Arch, Role, Server, Workers, EVENTED_IDLE};
use crate::config::Config;
use crate::shutdown::Signals;
use crate::site::Site;

pub const ARCH: Arch = Arch {
    name: "hybrid",
    about:
        "bind once, fork N workers (default: one per CPU), each running its own event loop (nginx)",
    workers: Workers::Cpus,
    idle_timeout: EVENTED_IDLE,
    multi_process: true,
    run,
};

fn run(server: Server) -> io::Result<()> {
    supervisor::run(server, worker)
}

/// The body of one forked worker: a current-thread runtime created after the fork (a runtime
/// must never cross a fork), serving until SIGTERM.
fn worker(listeners: Vec<TcpListener>, config: &Config, site: &Site, signals: Signals) -> i32 {
    let result = (|| -> io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        super::announce_worker(&crate::listener::describe(&listeners)?);
        serve_evented(
            &runtime,
            listeners,
            config,
            site.try_clone()?,
            signals,
            Role::Worker,
        )
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("worker: {e}");
            1
        }
    }
}
