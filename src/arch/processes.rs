//! `processes`: bind once, fork N workers, each a single-threaded blocking accept-and-serve loop —
//! the seed's `-p`, Apache's prefork. Workers share nothing but the listening socket, so a crash
//! takes one worker's connection with it and the supervisor replaces the worker.
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd};

use super::{supervisor, Arch, Server, Workers, BLOCKING_IDLE};
use crate::config::Config;
use crate::conn::blocking;
use crate::shutdown::{Signals, Stop};
use crate::site::Site;

pub const ARCH: Arch = Arch {
    name: "processes",
    about: "bind once, fork N single-threaded workers, each blocking in accept() (seed -p, Apache prefork)",
    workers: Workers::Seed,
    idle_timeout: BLOCKING_IDLE,
    multi_process: true,
    run,
};

fn run(server: Server) -> io::Result<()> {
    supervisor::run(server, worker)
}

/// The body of one forked worker; returns its exit code.
fn worker(listener: TcpListener, config: &Config, site: &Site, signals: Signals) -> i32 {
    if let Err(e) = signals.stop_on_signal() {
        tracing::error!("worker signals: {e}");
        return 1;
    }
    super::announce_worker(match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return 1,
    });
    while !Stop.is_set() {
        match accept(&listener) {
            Ok(stream) => blocking::serve(stream, site, &config.conn, Stop),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => std::thread::sleep(crate::listener::accept_backoff(&e)),
        }
    }
    crate::access_log::flush();
    0
}

/// accept4 without retrying on EINTR (std's accept retries, and would sleep through SIGTERM).
fn accept(listener: &TcpListener) -> io::Result<std::net::TcpStream> {
    // SAFETY: accept4 on a listening fd we own; null address pointers are allowed.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh connected socket fd owned by nobody else.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}
