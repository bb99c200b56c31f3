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
    /// connection each, so for them the worker count is the cap.
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

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub addr: SocketAddr,
    pub workers: usize,
    pub conn: ConnLimits,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub grace: Duration,
    /// Listen backlog.
    pub backlog: i32,
    /// A listening socket per worker process (SO_REUSEPORT) instead of one shared socket.
    pub reuseport: bool,
}
