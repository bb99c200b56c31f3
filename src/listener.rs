//! The listening socket, bound once before any worker exists (the seed's shape: SO_REUSEADDR,
//! then shared by every worker), optionally with SO_REUSEPORT for one socket per worker.
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `addr` with SO_REUSEADDR (a restart does not wait out TIME_WAIT) and starts listening.
///
/// TCP_NODELAY is set here, once: Linux copies it into every connection accepted from this
/// socket (the accepted socket starts as a clone of the listener), which saves a `setsockopt`
/// per connection (one of 11 system calls per connection-per-request request).
/// `accepted_connections_inherit_nodelay` checks that this still holds.
pub fn bind(addr: SocketAddr, backlog: i32, reuseport: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nodelay(true)?;
    if reuseport {
        socket.set_reuse_port(true)?;
    }
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Stops a listening socket for every thread and process sharing it: on Linux, shutdown(SHUT_RD)
/// on a listener wakes every accept() blocked on it with EINVAL, and later ones fail at once.
pub fn stop_accepting(listener: &TcpListener) {
    let _ = socket2::SockRef::from(listener).shutdown(std::net::Shutdown::Read);
}

/// How long to back off after accept() failed for a reason other than shutdown, logging it.
/// Out of descriptors (EMFILE/ENFILE) or memory: 50 ms, so a full descriptor table never turns
/// into a busy loop (the pending connection keeps the listener ready); a connection aborted
/// before we took it (ECONNABORTED) or a signal: no wait. Shared by the blocking accept loops
/// (which sleep) and the event loops (which await a timer).
pub fn accept_backoff(e: &io::Error) -> Duration {
    match e.raw_os_error() {
        Some(libc::ECONNABORTED) | Some(libc::EINTR) => Duration::ZERO,
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM) => {
            tracing::warn!("accept: {e}; backing off");
            Duration::from_millis(50)
        }
        _ => {
            tracing::warn!("accept: {e}");
            Duration::from_millis(10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_port_zero_and_refuses_a_taken_port() {
        let a = bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
        let addr = a.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let err = bind(addr, 16, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn accepted_connections_inherit_nodelay() {
        let l = bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap();
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (accepted, _) = l.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn accept_backoff_waits_only_on_exhaustion() {
        let err = |code| io::Error::from_raw_os_error(code);
        assert_eq!(accept_backoff(&err(libc::ECONNABORTED)), Duration::ZERO);
        assert_eq!(
            accept_backoff(&err(libc::EMFILE)),
            Duration::from_millis(50)
        );
        assert_eq!(
            accept_backoff(&err(libc::ENFILE)),
            Duration::from_millis(50)
        );
    }

    #[test]
    fn stop_accepting_wakes_a_blocked_accept() {
        let l = std::sync::Arc::new(bind("127.0.0.1:0".parse().unwrap(), 16, false).unwrap());
        let l2 = l.clone();
        let t = std::thread::spawn(move || l2.accept().is_err());
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop_accepting(&l);
        assert!(t.join().unwrap());
    }
}
