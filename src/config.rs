//! The validated configuration of `archserve serve`: everything the architectures and the
//! connection loops read, checked once at start-up so no worker meets a bad value.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::http::conn::Rules;

/// What each connection follows (the protocol's rules) and how many an event loop holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Timeouts, request caps and parser limits, applied by `http::conn`.
    pub rules: Rules,
    /// Open connections per event loop (per runtime for work-stealing); at the cap, idle
    /// connections are closed first, then accepting pauses until below. Blocking workers hold one
    /// connection each, so for them the worker count is the cap. `archserve serve` derives its
    /// default from the open-file limit (`descriptors::default_max_conns`).
    pub max_conns: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            rules: Rules::default(),
            max_conns: 10_000,
        }
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    /// The addresses to listen on, at least one, no two alike (`--listen`, or `--host`/`--port`).
    pub addrs: Vec<SocketAddr>,
    pub workers: usize,
    pub conn: ConnLimits,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub grace: Duration,
    /// Backlog, SO_REUSEPORT and TCP_DEFER_ACCEPT of the listening socket(s).
    pub listen: crate::listener::Listen,
    /// What the site does beyond serving files as they are (header rules, listings).
    pub site: crate::site::SiteOptions,
    /// HTTPS on the listening port (`--tls-cert`, `--tls-key`); plain HTTP when None.
    pub tls: Option<crate::tls::Tls>,
    /// A plain-HTTP port (on the first address's host) that answers every request with a 301
    /// to the HTTPS port.
    pub redirect_http: Option<SocketAddr>,
}
