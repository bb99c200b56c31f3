//! A CGI script run by the event loops (`async`, `work-stealing`, `hybrid`, plain or TLS):
//! spawned through tokio's process driver, its stdin written and its stdout read as readiness
//! futures on the loop, so the loop's other connections go on while it runs. Its deadline, the
//! shutdown notice and the client's write timeout are timers, as everywhere in these loops.
use std::future::Future;
use std::io;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::accept::Shared;
use super::cgi::{command, kill_group, Fail, Outcome, Passed, Relay, CHUNK};
use crate::http::conn::{Conn, Rules};
use crate::http::Request;
use crate::shutdown::Stop;
use crate::site::cgi::{Peer, Running, Script};

/// Where the answer's bytes go: the client's socket, or its TLS session. Each `send` waits
/// for writability under the executor's write timeout.
pub trait Sink {
    fn send(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
}

/// The addresses a script is told of, and whether the connection is HTTPS.
pub fn peer(stream: &TcpStream, https: bool) -> Peer {
    Peer {
        remote: stream.peer_addr().ok(),
        local: stream.local_addr().ok(),
        https,
    }
}

/// Runs `script` for `req` on a connection from `peer`, its answer going to `sink`, and logs
/// it unless it failed before answering (the executor then sends the failure's page, which is
/// logged as any reply). The executor acts on the outcome.
pub async fn serve<S: Sink>(
    peer: Peer,
    shared: &Shared,
    (req, script, body): (&Request, &Script, Vec<u8>),
    conn: &mut Conn,
    sink: &mut S,
) -> io::Result<Outcome> {
    let rules = &shared.limits.rules;
    let max = shared.site.cgi().map_or(1, |o| o.max_scripts);
    let (outcome, status, printed) = run(
        script,
        body,
        peer,
        max,
        (conn, rules),
        sink,
        &shared.stopping,
    )
    .await?;
    if crate::access_log::enabled() && !matches!(outcome, Outcome::Failed(_)) {
        super::log_request(peer.remote.map(|a| a.ip()), Some(req), status, printed);
    }
    Ok(outcome)
}

/// The script's process group is killed when the run ends however it ends (tokio reaps the
/// process: explicitly below, or in the background once dropped with `kill_on_drop`).
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            kill_group(pid);
        }
    }
}

/// Runs `script` with `body` on its stdin and streams its answer to `sink`, ending the head
/// with `conn`. Returns how it ended, the status sent and the body bytes the script printed.
pub async fn run<S: Sink>(
    script: &Script,
    body: Vec<u8>,
    peer: Peer,
    max_scripts: usize,
    (conn, rules): (&mut Conn, &Rules),
    sink: &mut S,
    stopping: &Notify,
) -> io::Result<(Outcome, u16, u64)> {
    let Some(_place) = Running::acquire(max_scripts) else {
        return Ok((Outcome::Failed(Fail::Busy), 0, 0));
    };
    let deadline = tokio::time::Instant::from_std(Instant::now() + script.timeout);
    let mut cmd = tokio::process::Command::from(command(script, peer));
    cmd.kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!("CGI {}: {e}", script.program.display());
            return Ok((Outcome::Failed(Fail::Spawn), 0, 0));
        }
    };
    let group = Group(child.id());
    let result = relay_output(
        &mut child,
        script,
        body,
        deadline,
        (conn, rules),
        sink,
        stopping,
    )
    .await;
    // A script that answered whole is given until its deadline to exit (it usually has);
    // then, or at once after a failure, its group is killed and it is reaped here, not left to
    // tokio's background reaping of dropped children (which `hybrid` never got to: zombies).
    if matches!(result, Ok((Outcome::Sent, ..))) {
        let _ = tokio::time::timeout_at(deadline, child.wait()).await;
    }
    drop(group);
    let _ = child.wait().await;
    result
}

/// Feeds the body to the script and relays its output until it ends or fails.
async fn relay_output<S: Sink>(
    child: &mut tokio::process::Child,
    script: &Script,
    body: Vec<u8>,
    deadline: tokio::time::Instant,
    (conn, rules): (&mut Conn, &Rules),
    sink: &mut S,
    stopping: &Notify,
) -> io::Result<(Outcome, u16, u64)> {
    if let Some(mut stdin) = child.stdin.take() {
        if !body.is_empty() {
            // A task of its own, so a script that prints before it reads cannot deadlock
            // against us; it ends when the write completes or the script's stdin closes.
            tokio::spawn(async move {
                let _ = stdin.write_all(&body).await;
            });
        }
    }
    let Some(mut stdout) = child.stdout.take() else {
        return Ok((Outcome::Failed(Fail::Spawn), 0, 0));
    };
    let mut relay = Relay::new(script);
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK + 32);
    loop {
        let notified = stopping.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let read = if Stop.closes_idle() {
            Err(Fail::Stopping)
        } else {
            tokio::select! {
                r = stdout.read(&mut buf) => Ok(r.unwrap_or(0)),
                () = tokio::time::sleep_until(deadline) => Err(Fail::Timeout),
                () = &mut notified => Err(Fail::Stopping),
            }
        };
        let n = match read {
            Ok(n) => n,
            Err(fail) => return Ok(relay.failed(fail)),
        };
        if n == 0 {
            break;
        }
        match relay.pass(&buf[..n], (&mut *conn, rules), &mut out) {
            Err(fail) => return Ok(relay.failed(fail)),
            Ok(Passed::Head(_) | Passed::Body) if !out.is_empty() => sink.send(&out).await?,
            Ok(_) => {}
        }
    }
    let ended = relay.end(&mut out);
    if !matches!(ended.0, Outcome::Failed(_)) {
        sink.send(&out).await?;
    }
    Ok(ended)
}
