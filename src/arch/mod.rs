//! The registry of concurrency architectures. An architecture only schedules: it decides who runs
//! the connection loops (threads, forked processes, event loops) on an already-bound listener and
//! never speaks HTTP itself. The CLI's `--arch` values and help, the conformance suite and the
//! compare matrix all iterate [`REGISTRY`], so a new architecture is one file plus one line here.
pub mod threads;

use std::io;
use std::net::TcpListener;

use crate::config::Config;
use crate::shutdown::Signals;
use crate::site::Site;

/// What an architecture is handed: a bound listener, the validated config, the site, and the
/// (already blocked) termination signals it must wait for.
#[derive(Debug)]
pub struct Server {
    pub listener: TcpListener,
    pub config: Config,
    pub site: Site,
    pub signals: Signals,
}

/// One registered architecture.
#[derive(Debug)]
pub struct Arch {
    /// The `--arch` value.
    pub name: &'static str,
    /// One line for `--help` and the docs.
    pub about: &'static str,
    /// Workers when `-w` is not given.
    pub default_workers: fn() -> usize,
    /// Runs until a termination signal has been handled and in-flight work finished (or the
    /// grace period ran out).
    pub run: fn(Server) -> io::Result<()>,
}

/// The seed's worker count.
pub fn seed_workers() -> usize {
    5
}

/// Every architecture, in the order `--help` and the reports list them.
pub static REGISTRY: &[Arch] = &[threads::ARCH];

/// The architecture used when `--arch` is not given.
pub const DEFAULT: &str = "threads";

/// Looks an architecture up by name.
pub fn find(name: &str) -> Option<&'static Arch> {
    REGISTRY.iter().find(|a| a.name == name)
}

/// The seed-style line each worker prints when it starts.
pub fn announce_worker(addr: std::net::SocketAddr) {
    println!(
        "Starting connection worker for {addr}, pid: {}, tid: {}",
        std::process::id(),
        nix::unistd::gettid()
    );
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
