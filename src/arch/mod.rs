//! The registry of concurrency architectures. An architecture only schedules: it decides who runs
//! the connection loops (threads, forked processes, event loops) on an already-bound listener and
//! never speaks HTTP itself. The CLI's `--arch` values and help, the conformance suite and the
//! compare matrix all iterate [`REGISTRY`], so a new architecture is one file plus one line here.
pub mod async_single;
pub mod hybrid;
pub mod processes;
pub mod supervisor;
pub mod threads;
pub mod uring;
pub mod work_stealing;

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use crate::config::Config;
pub use crate::conn::accept::Role;
use crate::shutdown::Signals;
use crate::site::Site;

/// What an architecture is handed: the bound listeners, the validated config, the site, and the
/// (already blocked) termination signals it must handle.
#[derive(Debug)]
pub struct Server {
    /// One socket per address (`--listen`), at least one; more than one for an address when
    /// they are an SO_REUSEPORT group handed over by the server this one replaced
    /// (`--reuseport`; see `upgrade`), or by systemd. Accepting from all of them is the
    /// architecture's work.
    pub listeners: Vec<TcpListener>,
    pub config: Config,
    pub site: Site,
    pub signals: Signals,
}

/// How many workers an architecture runs when `-w` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// Five, the seed's count for its thread and process pools.
    Five,
    /// One per CPU (an event loop per core, as nginx's `worker_processes auto`).
    Cpus,
    /// Exactly one; `-w` other than 1 is refused.
    One,
}

impl Workers {
    pub fn default_count(self) -> usize {
        match self {
            Workers::Five => 5,
            Workers::Cpus => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            Workers::One => 1,
        }
    }
}

/// Idle keep-alive timeout for loops where an idle client pins a thread or process: short, so a
/// few idle clients cannot take every worker (Apache's KeepAliveTimeout is 5 s).
pub const BLOCKING_IDLE: Duration = Duration::from_secs(5);
/// Idle keep-alive timeout for event loops, where an idle client costs a few hundred bytes
/// (nginx's keepalive_timeout is 75 s).
pub const EVENTED_IDLE: Duration = Duration::from_secs(75);

/// One registered architecture.
#[derive(Debug)]
pub struct Arch {
    /// The `--arch` value.
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub about: &'static str,
    /// Workers when `-w` is not given.
    pub workers: Workers,
    /// Default idle keep-alive timeout.
    pub idle_timeout: Duration,
    /// Whether it runs several processes (and so can use `--reuseport`).
    pub multi_process: bool,
    /// Runs until a termination signal has been handled and in-flight work finished (or the
    /// grace period ran out).
    pub run: fn(Server) -> io::Result<()>,
}

/// Every architecture, in the order `--help` and the reports list them.
pub static REGISTRY: &[Arch] = &[
    threads::ARCH,
    processes::ARCH,
    async_single::ARCH,
    work_stealing::ARCH,
    hybrid::ARCH,
    uring::ARCH,
];

/// The architecture used when `--arch` is not given: the seed's "best of both worlds".
pub const DEFAULT: &str = "hybrid";

/// Looks an architecture up by name.
pub fn find(name: &str) -> Option<&'static Arch> {
    REGISTRY.iter().find(|a| a.name == name)
}

/// Why architecture `name` cannot run on this machine, if it cannot (`uring` where io_uring is
/// missing or disabled); the tests skip it then, and say so.
pub fn unavailable(name: &str) -> Option<String> {
    if name == uring::ARCH.name {
        crate::conn::uring::available().err()
    } else {
        None
    }
}

/// The seed-style line each worker prints when it starts, naming the addresses it accepts on
/// (`listener::describe`).
pub fn announce_worker(addrs: &str) {
    say(format_args!(
        "Starting connection worker for {addrs}, pid: {}, tid: {}",
        std::process::id(),
        nix::unistd::gettid()
    ));
}

/// Prints one line to stdout, ignoring errors: a server whose stdout was closed (`| head -1`)
/// must keep serving, where `println!` would panic on EPIPE.
pub fn say(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Serves `listeners` with the evented connection loop on `runtime` until SIGINT/SIGTERM (what
/// `async`, `work-stealing` and each `hybrid` worker run once their runtime is built).
pub fn serve_evented(
    runtime: &tokio::runtime::Runtime,
    listeners: Vec<TcpListener>,
    config: &Config,
    site: Site,
    signals: Signals,
    role: Role,
) -> io::Result<()> {
    use crate::conn::accept::{evented_loop, Shared};
    let shared = std::sync::Arc::new(Shared::new(site, config.conn, config.tls.clone()));
    runtime.block_on(evented_loop(
        listeners,
        config.listen.defer_accept,
        shared,
        signals,
        config.grace,
        role,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_default_exists() {
        let mut names: Vec<_> = REGISTRY.iter().map(|a| a.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
        assert!(find(DEFAULT).is_some());
        assert!(find("nope").is_none());
    }
}
