//! `processes`: bind once, fork N workers, each a single-threaded blocking accept-and-serve loop —
//! the seed's `-p`, Apache's prefork. Workers share nothing but the listening socket, so a crash
//! takes one worker's connection with it and the supervisor replaces the worker.
use std::io;
use std::net::TcpListener;

use super::{supervisor, Arch, Server, Workers, BLOCKING_IDLE};
use crate::config::Config;
use crate::conn::accept;
use crate::shutdown::Signals;
use crate::site::Site;

pub const ARCH: Arch = Arch {
    name: "processes",
    about: "bind once, fork N single-threaded workers, each blocking in accept() (seed -p, Apache prefork)",
    workers: Workers::Five,
    idle_timeout: BLOCKING_IDLE,
    multi_process: true,
    run,
};

fn run(server: Server) -> io::Result<()> {
    supervisor::run(server, worker)
}

/// The body of one forked worker; returns its exit code.
fn worker(listeners: Vec<TcpListener>, config: &Config, site: &Site, signals: Signals) -> i32 {
    if let Err(e) = signals.stop_on_signal() {
        tracing::error!("worker signals: {e}");
        return 1;
    }
    match crate::listener::describe(&listeners) {
        Ok(addrs) => super::announce_worker(&addrs),
        Err(_) => return 1,
    }
    accept::blocking_loop(&listeners, site, &config.conn, config.tls.as_ref());
    crate::access_log::flush();
    0
}
