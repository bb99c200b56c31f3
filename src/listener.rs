//! The listening sockets, bound once before any worker exists (the seed's shape: SO_REUSEADDR,
//! then shared by every worker), optionally with SO_REUSEPORT for one socket per worker; one
//! or more addresses (`--listen`), IPv4 and IPv6.
use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// How a listening socket is set up (from the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    /// Listen backlog.
    pub backlog: i32,
    /// SO_REUSEPORT: a socket per worker process instead of one shared socket.
    pub reuseport: bool,
    /// TCP_DEFER_ACCEPT: a connection is handed to accept() only once its first bytes arrived.
    pub defer_accept: bool,
}

impl Default for Listen {
    fn default() -> Listen {
        Listen {
            backlog: 1024,
            reuseport: false,
            defer_accept: true,
        }
    }
}

/// How long the kernel holds a connection that has sent nothing before handing it to accept()
/// anyway: 1 s, nginx's value for `listen ... deferred` (a connection that came in through a
/// SYN cookie skips the wait, so the server must still expect an empty first read).
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Binds `addr` with SO_REUSEADDR (a restart does not wait out TIME_WAIT) and starts listening.
///
/// TCP_NODELAY is set here, once: Linux copies it into every connection accepted from this
/// socket (the accepted socket starts as a clone of the listener), which saves a `setsockopt`
/// per connection (one of 11 system calls per connection-per-request request when it was made;
/// 7.2 now).
/// `accepted_connections_inherit_nodelay` checks that this still holds.
///
/// TCP_DEFER_ACCEPT (default; `--no-defer-accept` turns it off) makes accept() wait for the
/// request, not the handshake: an event loop wakes once per new connection instead of twice,
/// and a connection that never sends a byte costs no descriptor and, in `threads` and
/// `processes`, pins no worker until the kernel stops deferring it (after 1 s, at the SYN-ACK
/// retransmission; then it is accepted and the header timeout applies). Measured on 2 vCPUs,
/// with and without, 3 runs each, `h2load --h1 -c64 -n100000 -H 'Connection: close'`: server
/// CPU per connection 27-28 µs with it against 35-38 µs without (hybrid and async alike), req/s
/// 17.5-19.4k against 17.0-18.4k (hybrid) and 18.4-20.7k against 14.1-15.9k (async);
/// `h2load --h1 -c1000 -n1000 /io`: 1.07 to 1.10 s against 1.08 to 1.11 s.
pub fn bind(addr: SocketAddr, opts: Listen) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // IPv6 only, as nginx's `listen [::]:80` (ipv6only=on): `[::]:80` then coexists with
        // `0.0.0.0:80`, and an IPv6 socket never reports IPv4 peers as `::ffff:a.b.c.d`.
        socket.set_only_v6(true)?;
    }
    socket.set_nodelay(true)?;
    if opts.reuseport {
        socket.set_reuse_port(true)?;
    }
    if opts.defer_accept {
        set_defer_accept(&socket, DEFER_ACCEPT_SECS)?;
    }
    socket.set_cloexec(true)?;
    socket.bind(&addr.into())?;
    socket.listen(opts.backlog)?;
    Ok(socket.into())
}

/// Binds every address in `addrs`, in order; the error names the address that failed.
pub fn bind_all(addrs: &[SocketAddr], opts: Listen) -> io::Result<Vec<TcpListener>> {
    addrs
        .iter()
        .map(|&addr| {
            bind(addr, opts)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
        })
        .collect()
}

/// The listeners' addresses, each once, comma-separated (`127.0.0.1:8080, [::1]:8080`): the
/// form of the `Server listening on` and worker lines.
pub fn describe(listeners: &[TcpListener]) -> io::Result<String> {
    let mut addrs: Vec<String> = Vec::with_capacity(listeners.len());
    for l in listeners {
        let addr = l.local_addr()?.to_string();
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    Ok(addrs.join(", "))
}

/// The sockets grouped by the address they listen on, in order of first appearance: one group
/// per address, several sockets in a group when they form an SO_REUSEPORT group (handed over
/// by the server this one replaced, or by systemd).
pub fn group_by_addr(listeners: Vec<TcpListener>) -> io::Result<Vec<Vec<TcpListener>>> {
    let mut groups: Vec<(SocketAddr, Vec<TcpListener>)> = Vec::new();
    for l in listeners {
        let addr = l.local_addr()?;
        match groups.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, group)) => group.push(l),
            None => groups.push((addr, vec![l])),
        }
    }
    Ok(groups.into_iter().map(|(_, g)| g).collect())
}

/// setsockopt(TCP_DEFER_ACCEPT), which neither std nor socket2 offers.
fn set_defer_accept(socket: &Socket, secs: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor and a pointer to an int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn binds_port_zero_and_refuses_a_taken_port() {
        let a = bind("127.0.0.1:0".parse().unwrap(), Listen::default()).unwrap();
        let addr = a.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let err = bind(addr, Listen::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn accepted_connections_inherit_nodelay() {
        let l = bind("127.0.0.1:0".parse().unwrap(), Listen::default()).unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        // Deferred accept: the connection is handed over once it has sent something.
        client.write_all(b"x").unwrap();
        let (accepted, _) = l.accept().unwrap();
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn ipv6_listeners_are_v6_only_beside_ipv4_on_the_same_port() {
        let Ok(v6) = bind("[::1]:0".parse().unwrap(), Listen::default()) else {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        };
        assert!(socket2::SockRef::from(&v6).only_v6().unwrap());
        let port = v6.local_addr().unwrap().port();
        let v4 = bind(SocketAddr::from(([127, 0, 0, 1], port)), Listen::default()).unwrap();
        let both = [v4, v6];
        assert_eq!(
            describe(&both).unwrap(),
            format!("127.0.0.1:{port}, [::1]:{port}")
        );
    }

    #[test]
    fn bind_all_names_the_address_that_failed_and_groups_follow_addresses() {
        let a = bind("127.0.0.1:0".parse().unwrap(), Listen::default()).unwrap();
        let taken = a.local_addr().unwrap();
        let free: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let two = bind_all(&[free, free], Listen::default()).unwrap();
        assert!(
            two.iter().all(defers_accept),
            "every listener defers accept"
        );
        let err = bind_all(&[free, taken], Listen::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err
            .to_string()
            .starts_with(&format!("cannot listen on {taken}: ")));

        let opts = Listen {
            reuseport: true,
            ..Listen::default()
        };
        let x = bind("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        let x_addr = x.local_addr().unwrap();
        let x2 = bind(x_addr, opts).unwrap();
        let all = vec![x, a, x2];
        assert_eq!(describe(&all).unwrap(), format!("{x_addr}, {taken}"));
        let groups = group_by_addr(all).unwrap();
        let sizes: Vec<_> = groups.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 1]);
        assert_eq!(groups[0][1].local_addr().unwrap(), x_addr);
    }

    /// Whether `listener` has TCP_DEFER_ACCEPT set.
    fn defers_accept(listener: &TcpListener) -> bool {
        use std::os::fd::AsRawFd;
        let mut secs: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a valid descriptor, and an int with its size.
        let r = unsafe {
            libc::getsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&mut secs as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        r == 0 && secs > 0
    }

    #[test]
    fn accept_waits_for_the_first_bytes_unless_told_not_to() {
        let l = bind("127.0.0.1:0".parse().unwrap(), Listen::default()).unwrap();
        assert!(defers_accept(&l));
        let addr = l.local_addr().unwrap();
        // A connection that sends nothing is not handed over before one that sent its request,
        // although it connected first (the kernel holds it for a second).
        let _silent = std::net::TcpStream::connect(addr).unwrap();
        let mut talking = std::net::TcpStream::connect(addr).unwrap();
        talking.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer, talking.local_addr().unwrap());

        let opts = Listen {
            defer_accept: false,
            ..Listen::default()
        };
        let l = bind("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        assert!(!defers_accept(&l));
        let silent = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer, silent.local_addr().unwrap());
    }
}
