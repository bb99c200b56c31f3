//! Replacing the running server without refusing a connection (nginx's `USR2` + `QUIT` in one
//! step): on SIGUSR2 the server starts the binary now on disk with the same arguments, hands it
//! the listening sockets, waits until it says it is serving, then stops accepting and drains
//! (answers in-flight and kept-alive requests with `Connection: close`) and exits. The sockets
//! are never closed in between, so the kernel's accept queue carries every connection from the
//! old process to the new one.
//!
//! With `--redirect-http`, the redirect's listening socket is handed over too (the server
//! process keeps a copy of it for that; the redirect process serves the original), so an upgrade
//! neither fails to bind that port nor refuses a plain-HTTP connection.
//!
//! The same hand-over takes sockets from systemd (socket activation: `LISTEN_FDS` and
//! `LISTEN_PID`, the descriptors from 3 on); see README for a unit file.
use std::io::{self, Read};
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The listening descriptors handed to a successor (comma-separated numbers).
const LISTEN_FDS_VAR: &str = "ARCHSERVE_LISTEN_FDS";
/// The redirect's listening descriptor handed to a successor (`--redirect-http`).
const REDIRECT_FD_VAR: &str = "ARCHSERVE_REDIRECT_FD";
/// The write end of a pipe on which a successor says it is serving.
const READY_FD_VAR: &str = "ARCHSERVE_READY_FD";
/// How long a successor gets to start serving before the upgrade is given up (the old server
/// then keeps serving).
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The listening sockets this process was handed (by the server it replaces, or by systemd),
/// if any. Checked to be listening TCP sockets, marked close-on-exec, and their variables
/// removed so a later upgrade of this process does not see them. Call before any thread exists.
pub fn inherited_listeners() -> io::Result<Option<Vec<TcpListener>>> {
    let fds = match std::env::var(LISTEN_FDS_VAR) {
        Ok(list) => parse_fd_list(&list)?,
        Err(_) => match systemd_fds()? {
            Some(fds) => fds,
            None => return Ok(None),
        },
    };
    for var in [LISTEN_FDS_VAR, "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for fd in fds {
        listeners.push(adopt(fd)?);
    }
    Ok(Some(listeners))
}

/// This process's copy of the redirect's listening socket, for a successor.
static REDIRECT: OnceLock<OwnedFd> = OnceLock::new();

/// Keeps a copy of the redirect's listening socket (close-on-exec) to hand to a successor.
pub fn keep_redirect(listener: &TcpListener) -> io::Result<()> {
    let copy = listener.as_fd().try_clone_to_owned()?;
    let _ = REDIRECT.set(copy);
    Ok(())
}

/// The redirect's listening socket handed over by the server this one replaces, if any,
/// checked and adopted as [`inherited_listeners`] does. Call before any thread exists.
pub fn inherited_redirect() -> io::Result<Option<TcpListener>> {
    let Ok(text) = std::env::var(REDIRECT_FD_VAR) else {
        return Ok(None);
    };
    std::env::remove_var(REDIRECT_FD_VAR);
    let fd = text
        .trim()
        .parse::<RawFd>()
        .ok()
        .filter(|&fd| fd >= 3)
        .ok_or_else(|| invalid(format!("{REDIRECT_FD_VAR}={text:?} is not a descriptor")))?;
    adopt(fd).map(Some)
}

/// `3,4`: descriptor numbers.
fn parse_fd_list(list: &str) -> io::Result<Vec<RawFd>> {
    list.split(',')
        .map(|n| n.trim().parse::<RawFd>())
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|fds| !fds.is_empty() && fds.iter().all(|&fd| fd >= 3))
        .ok_or_else(|| {
            invalid(format!(
                "{LISTEN_FDS_VAR}={list:?} is not a list of descriptors"
            ))
        })
}

/// systemd's socket activation: `LISTEN_PID` is this process and `LISTEN_FDS` counts the
/// descriptors from 3.
fn systemd_fds() -> io::Result<Option<Vec<RawFd>>> {
    let (Ok(pid), Ok(count)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    match count.trim().parse::<RawFd>() {
        Ok(n) if (1..=64).contains(&n) => Ok(Some((3..3 + n).collect())),
        _ => Err(invalid(format!(
            "LISTEN_FDS={count:?} is not a count of sockets"
        ))),
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Takes ownership of an inherited descriptor after checking it is a listening TCP socket
/// (a descriptor that is not is left alone, open).
fn adopt(fd: RawFd) -> io::Result<TcpListener> {
    use nix::sys::socket::{getsockopt, sockopt, SockType};
    // SAFETY: only borrowed for the checks; the caller says it is open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let listening = getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false)
        && getsockopt(&borrowed, sockopt::SockType).ok() == Some(SockType::Stream);
    if !listening {
        return Err(invalid(format!(
            "inherited descriptor {fd} is not a listening TCP socket"
        )));
    }
    // SAFETY: the descriptor was handed to this process to own; nothing else in it uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on an open descriptor.
    if unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(owned))
}

/// Tells the process that started this one (an upgrade) that it is serving. Without a waiting
/// predecessor, does nothing.
pub fn notify_ready() {
    let Some(fd) = std::env::var(READY_FD_VAR)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
    else {
        return;
    };
    std::env::remove_var(READY_FD_VAR);
    if fd < 3 {
        return;
    }
    // SAFETY: the descriptor is the pipe's write end, handed to this process to own.
    let mut pipe = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let _ = std::io::Write::write_all(&mut pipe, b"1");
}

/// Starts the successor: this binary as it is on disk now, with this process's arguments and
/// the listening sockets `fds`. Returns its process id once it says it is serving; an error
/// (and the successor killed) if it exits or stays silent for [`START_TIMEOUT`].
pub fn start_successor(fds: &[RawFd]) -> io::Result<u32> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let (read_end, write_end) = nix::unistd::pipe().map_err(io::Error::from)?;
    let ready_fd = write_end.as_raw_fd();
    let list = fds
        .iter()
        .map(|fd| fd.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env(LISTEN_FDS_VAR, list)
        .env(READY_FD_VAR, ready_fd.to_string());
    let redirect = REDIRECT.get().map(AsRawFd::as_raw_fd);
    if let Some(fd) = redirect {
        cmd.env(REDIRECT_FD_VAR, fd.to_string());
    }
    let keep: Vec<RawFd> = fds
        .iter()
        .copied()
        .chain([ready_fd])
        .chain(redirect)
        .collect();
    // SAFETY: between fork and exec only fcntl, which is async-signal-safe, runs.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(write_end);
    match wait_ready(read_end) {
        Ok(()) => Ok(child.id()),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Waits for the successor's byte on the pipe (end of file: it exited or closed it unsaid).
fn wait_ready(read_end: OwnedFd) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: read_end.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = START_TIMEOUT.as_millis() as libc::c_int;
    // SAFETY: one valid pollfd.
    match unsafe { libc::poll(&mut pfd, 1, millis) } {
        0 => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "successor did not start",
            ))
        }
        n if n < 0 => return Err(io::Error::last_os_error()),
        _ => {}
    }
    let mut byte = [0u8; 1];
    match std::fs::File::from(read_end).read(&mut byte)? {
        1 => Ok(()),
        _ => Err(io::Error::other("successor exited before serving")),
    }
}

/// Starts the successor and reports the outcome: true when it serves (this process must now
/// drain and exit), false when the upgrade failed (this process keeps serving).
pub fn replace_self(fds: &[RawFd]) -> bool {
    match start_successor(fds) {
        Ok(pid) => {
            crate::arch::say(format_args!(
                "Upgraded: process {pid} is serving; process {} drains and exits",
                std::process::id()
            ));
            true
        }
        Err(e) => {
            tracing::error!("upgrade failed, still serving: {e}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_lists_are_checked() {
        assert_eq!(parse_fd_list("3,4").unwrap(), vec![3, 4]);
        assert!(parse_fd_list("").is_err());
        assert!(parse_fd_list("1").is_err());
        assert!(parse_fd_list("3,x").is_err());
    }

    #[test]
    fn only_a_listening_tcp_socket_is_adopted() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // SAFETY: dup of an open descriptor; the copy is handed to `adopt` to own.
        let fd = unsafe { libc::dup(l.as_raw_fd()) };
        let adopted = adopt(fd).unwrap();
        assert_eq!(adopted.local_addr().unwrap(), l.local_addr().unwrap());
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = adopt(file.as_raw_fd()).unwrap_err();
        assert!(err.to_string().contains("not a listening TCP socket"));
        // A connected socket is not a listener either.
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(adopt(c.as_raw_fd()).is_err());
    }
}
