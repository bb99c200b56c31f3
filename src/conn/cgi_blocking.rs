//! A CGI script run by a blocking worker (`threads`, `processes`): the worker waits on the
//! script's stdout with poll(2) (bounded by the script's deadline, waking every
//! [`STOP_POLL`](super::blocking) to notice a shutdown) and writes to the client with the
//! socket's own write timeout. The request body goes to stdin from a short-lived thread, so a
//! script that prints before it reads cannot deadlock against us. The worker serves no one else
//! meanwhile: that is the blocking architectures' way.
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::process::Child;
use std::time::{Duration, Instant};

use super::cgi::{command, kill_group, Fail, Outcome, Passed, Relay, CHUNK};
use crate::http::conn::{Conn, Rules};
use crate::shutdown::Stop;
use crate::site::cgi::{Peer, Running, Script};

/// While waiting on a script, wake this often to notice a shutdown.
const STOP_POLL: Duration = Duration::from_millis(200);

/// The script's process: on drop its group is killed and it is reaped, however the run ended.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        kill_group(self.0.id());
        let _ = self.0.wait();
    }
}

/// Runs `script` with `body` on its stdin and streams its answer through `send` (which writes
/// to the client), ending the head with `conn`. `max_scripts`: the cap on scripts at once.
pub fn run(
    script: &Script,
    body: Vec<u8>,
    peer: Peer,
    max_scripts: usize,
    (conn, rules): (&mut Conn, &Rules),
    send: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(Outcome, u16, u64)> {
    let Some(_place) = Running::acquire(max_scripts) else {
        return Ok((Outcome::Failed(Fail::Busy), 0, 0));
    };
    let deadline = Instant::now() + script.timeout;
    let mut child = match command(script, peer).spawn() {
        Ok(child) => Reaped(child),
        Err(e) => {
            tracing::warn!("CGI {}: {e}", script.program.display());
            return Ok((Outcome::Failed(Fail::Spawn), 0, 0));
        }
    };
    if let Some(mut stdin) = child.0.stdin.take() {
        if !body.is_empty() {
            // Ends by itself: the write completes, or fails once the script exits or is killed.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&body);
            });
        }
    }
    let Some(mut stdout) = child.0.stdout.take() else {
        return Ok((Outcome::Failed(Fail::Spawn), 0, 0));
    };
    let mut relay = Relay::new(script);
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK + 32);
    loop {
        if let Err(fail) = wait_readable(&stdout, deadline) {
            return Ok(relay.failed(fail));
        }
        let n = match stdout.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n == 0 {
            break;
        }
        match relay.pass(&buf[..n], (&mut *conn, rules), &mut out) {
            Err(fail) => return Ok(relay.failed(fail)),
            Ok(Passed::Head(_) | Passed::Body) if !out.is_empty() => send(&out)?,
            Ok(_) => {}
        }
    }
    let ended = relay.end(&mut out);
    if !matches!(ended.0, Outcome::Failed(_)) {
        send(&out)?;
    }
    reap(&mut child.0, deadline);
    Ok(ended)
}

/// Waits until the script's stdout is readable (or closed), its deadline passes, or shutdown.
fn wait_readable(stdout: &impl AsRawFd, deadline: Instant) -> Result<(), Fail> {
    loop {
        if Stop.closes_idle() {
            return Err(Fail::Stopping);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Fail::Timeout);
        }
        let wait = (deadline - now).min(STOP_POLL);
        let mut fds = [libc::pollfd {
            fd: stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = wait.as_millis().max(1) as libc::c_int;
        // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if n > 0 {
            return Ok(());
        }
    }
}

/// The script closed its stdout: give it until its deadline to exit (checked every few
/// milliseconds; it is usually gone at once), then the drop kills it.
fn reap(child: &mut Child, deadline: Instant) {
    let mut pause = Duration::from_millis(1);
    while Instant::now() < deadline && !Stop.closes_idle() {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}
