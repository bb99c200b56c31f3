//! The validated configuration of `archserve serve`: everything the architectures and the
//! connection loops read, checked once at start-up so no worker meets a bad value.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::http::Limits;

/// Timeouts and caps of one connection (see docs/ARCHITECTURES.md for the trade-offs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Parser limits (414/431).
    pub head: Limits,
    /// A request head must be complete this long after the connection opened or the first byte
    /// of a later request arrived; else 408 and close (slowloris defence).
    pub header_timeout: Duration,
    /// A kept-alive connection with no new request for this long is closed silently.
    pub idle_timeout: Duration,
    /// A write that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
    /// Requests served on one connection before it is closed (nginx's keepalive_requests).
    pub max_requests: u64,
    /// Request bodies up to this size are read and discarded to keep the connection; larger ones
    /// get their answer and a close.
    pub max_discard: u64,
    /// Open connections per event loop (per runtime for work-stealing); at the cap, idle
    /// connections are closed first, then accepting pauses until below. Blocking workers hold one
    /// connection each, so for them the worker count is the cap. `archserve serve` derives its
    /// default from the open-file limit ([`default_max_conns`]).
    pub max_conns: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            head: Limits::default(),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(30),
            max_requests: 1000,
            max_discard: 1 << 20,
            max_conns: 10_000,
        }
    }
}

/// Raises this process's soft limit on open descriptors to its hard limit, as nginx's
/// `worker_rlimit_nofile` and Go's runtime do: a shell's usual soft limit, 1,024, would stop a
/// server near 1,000 connections when the hard limit allows far more. Called before the
/// workers are forked, so they inherit it.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                Ok(()) => tracing::debug!("open-file limit raised from {soft} to {hard}"),
                Err(e) => tracing::debug!("open-file limit stays {soft}: {e}"),
            }
        }
    }
}

/// The default connection cap (`--max-conns`): the open-file limit less what the open-file
/// cache may hold (an eighth of it, see `site::open_files`) and 64 for listeners, the access
/// log and the standard streams. So the cap, which closes idle connections to make room, is
/// reached before accept() fails with EMFILE, which can only back off and leave new clients
/// waiting in the backlog.
pub fn default_max_conns() -> usize {
    max_conns_for(nofile_limit())
}

/// The soft open-file limit (1024 if it cannot be read).
pub fn nofile_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024)
}

/// At most the largest `--max-conns` takes (an unlimited descriptor limit is no reason to have
/// no cap).
fn max_conns_for(nofile: u64) -> usize {
    let files = crate::site::open_files::budget_for(nofile);
    (nofile - files).saturating_sub(64).clamp(1, 1_000_000) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_leaves_room_for_files_and_listeners() {
        assert_eq!(max_conns_for(1024), 832);
        assert_eq!(max_conns_for(20_000), 17_436);
        assert_eq!(max_conns_for(40), 1);
        assert_eq!(max_conns_for(u64::MAX), 1_000_000);
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub addr: SocketAddr,
    pub workers: usize,
    pub conn: ConnLimits,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub grace: Duration,
    /// Backlog, SO_REUSEPORT and TCP_DEFER_ACCEPT of the listening socket(s).
    pub listen: crate::listener::Listen,
}
