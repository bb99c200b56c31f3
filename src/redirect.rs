//! `--redirect-http PORT`: a plain-HTTP listener beside the HTTPS one that answers every
//! request with `301 Moved Permanently` to the same target on the HTTPS port (as nginx's
//! `return 301 https://$host$request_uri`), then closes.
//!
//! It runs in a process of its own, forked before the architecture starts any thread or
//! worker: a single-threaded tokio loop, whatever `--arch` is. So the supervisor of the
//! multi-process architectures stays single-threaded (it forks replacements at any time), and a
//! redirect costs no worker of the chosen architecture, whose measurements stay its own. It
//! ends with the server: on SIGTERM/SIGINT, or when its parent dies (PR_SET_PDEATHSIG).
use std::io;
use std::net::TcpListener;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::{fork, ForkResult, Pid};
use tokio::net::TcpStream;

use crate::http::Limits;
use crate::shutdown::Signals;

/// The redirect process, stopped and reaped by [`Redirect::stop`].
#[derive(Debug)]
pub struct Redirect {
    pid: Pid,
}

/// Forks the redirect process serving `listener` (bound by the caller, so a busy port is an
/// error at start-up). `https_port`: where to send clients. Call before any thread exists.
pub fn spawn(
    listener: TcpListener,
    https_port: u16,
    head: Limits,
    header_timeout: Duration,
) -> io::Result<Redirect> {
    // SAFETY: called from the single-threaded main process; the child only builds its own
    // runtime and never returns into the caller.
    match unsafe { fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(Redirect { pid: child }),
        ForkResult::Child => {
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
            let code = match run(listener, https_port, head, header_timeout) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: redirect listener: {e}");
                    1
                }
            };
            std::process::exit(code)
        }
    }
}

impl Redirect {
    /// Stops the redirect process and waits for it.
    pub fn stop(self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGTERM);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

fn run(
    listener: TcpListener,
    https_port: u16,
    head: Limits,
    header_timeout: Duration,
) -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Signals::block()?.unblock()?;
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream, https_port, head, header_timeout));
                    }
                    Err(e) => tokio::time::sleep(crate::conn::accept::backoff(&e)).await,
                },
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
            }
        }
    })
}

/// Reads one request head (within `header_timeout`, at most `head.max_head` bytes) and answers
/// it with the redirect; a head that cannot be parsed or has no usable Host gets 400, one too
/// large 431, a slow one nothing (closed).
async fn answer(stream: TcpStream, https_port: u16, head: Limits, header_timeout: Duration) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let reply = tokio::time::timeout(header_timeout, async {
        loop {
            if let Some(reply) = decide(&buf, https_port, &head) {
                return Some(reply);
            }
            stream.readable().await.ok()?;
            match stream.try_read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
    })
    .await;
    if let Ok(Some(reply)) = reply {
        // A few hundred bytes into an empty socket buffer: one write takes them.
        let _ = stream.try_write(reply.as_bytes());
        let _ = socket2::SockRef::from(&stream).shutdown(std::net::Shutdown::Write);
    }
}

/// The answer to what `buf` holds so far, or None while the head is incomplete.
pub fn decide(buf: &[u8], https_port: u16, head: &Limits) -> Option<String> {
    let mut fields = [httparse::EMPTY_HEADER; crate::http::request::MAX_HEADERS_CAP];
    let mut req = httparse::Request::new(&mut fields[..head.max_headers]);
    let parsed = req.parse(buf);
    if buf.len() > head.max_head && !matches!(parsed, Ok(httparse::Status::Complete(_))) {
        return Some(status(431, "Request Header Fields Too Large"));
    }
    match parsed {
        Ok(httparse::Status::Partial) => None,
        Err(httparse::Error::TooManyHeaders) => {
            Some(status(431, "Request Header Fields Too Large"))
        }
        Err(_) => Some(status(400, "Bad Request")),
        Ok(httparse::Status::Complete(_)) => {
            let host = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .and_then(|h| host_name(h.value));
            let target = req.path.unwrap_or("/");
            match host {
                Some(host) if target.starts_with('/') => Some(moved(host, https_port, target)),
                _ => Some(status(400, "Bad Request")),
            }
        }
    }
}

/// The Host field's name without its port, if it is a plausible host name or address (letters,
/// digits, `-`, `.`, or a bracketed IPv6 address): nothing else goes into the Location.
fn host_name(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let name = if value.starts_with('[') {
        &value[..=value.find(']')?]
    } else {
        value.split(':').next()?
    };
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    ok.then_some(name)
}

fn moved(host: &str, port: u16, target: &str) -> String {
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    format!(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )
}

fn status(code: u16, reason: &str) -> String {
    format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(req: &str) -> Option<String> {
        decide(req.as_bytes(), 8443, &Limits::default())
    }

    #[test]
    fn redirects_to_the_same_target_on_the_https_port() {
        let r = ask("GET /a/b?c=d HTTP/1.1\r\nHost: example.org:8080\r\n\r\n").unwrap();
        assert!(r.starts_with("HTTP/1.1 301 "), "{r}");
        assert!(
            r.contains("\r\nLocation: https://example.org:8443/a/b?c=d\r\n"),
            "{r}"
        );
        let r = decide(
            b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
            443,
            &Limits::default(),
        );
        assert!(r.unwrap().contains("\r\nLocation: https://[::1]/\r\n"));
    }

    #[test]
    fn incomplete_waits_and_bad_heads_are_refused() {
        assert_eq!(ask("GET / HTTP/1.1\r\nHost: a"), None);
        for bad in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "\x16\x03\x01\x00\x7f\r\n\r\n",
        ] {
            assert!(ask(bad).unwrap().starts_with("HTTP/1.1 400 "), "{bad:?}");
        }
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(40_000));
        assert!(ask(&long).unwrap().starts_with("HTTP/1.1 431 "));
    }
}
