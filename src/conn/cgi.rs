//! What every executor does alike for a CGI script: the command (clean environment, its own
//! process group), the relay from its stdout to the client's bytes (head checked, body framed,
//! output capped), the statuses of its failures, and the kill of its whole process group. The
//! executors only move bytes between the pipes and the socket, each in its own way of waiting
//! (`cgi_blocking`: poll(2) on the worker's thread; `cgi_evented`: tokio's process driver).
use std::process::{Command, Stdio};

use super::with_date;
use crate::http::conn::{Conn, Rules};
use crate::shutdown::Stop;
use crate::site::cgi::output::{parse_head, BadOutput, Framing};
use crate::site::cgi::{Peer, Script};

/// How a script's run ended, as the executor reports it.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The answer was sent whole: the connection may go on.
    Sent,
    /// The answer was begun and cannot be finished (the script failed, was killed, or printed
    /// less than its Content-Length): close the connection.
    Cut,
    /// Nothing was sent: answer with this failure's status.
    Failed(Fail),
}

impl Outcome {
    /// The outcome of `fail` for a relay that has (`started`) or has not sent its head.
    pub fn of(fail: Fail, started: bool) -> Outcome {
        if started {
            Outcome::Cut
        } else {
            Outcome::Failed(fail)
        }
    }
}

/// Bytes read from a script's stdout at a time.
pub const CHUNK: usize = 16 * 1024;

/// Why a script got no answer of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// Its output ended before a whole head (it exited, failed, or printed nothing): 502.
    NoHead,
    /// Its head was invalid: 502.
    Bad(BadOutput),
    /// It printed more than `--cgi-max-output`: killed; 502 if nothing was sent yet.
    TooMuch,
    /// It ran past `--cgi-timeout`: killed; 504 if nothing was sent yet.
    Timeout,
    /// The server is shutting down: killed; 503 if nothing was sent yet.
    Stopping,
    /// It could not be started (not executable after all, its interpreter missing): 500.
    Spawn,
    /// `--cgi-max-scripts` scripts are running already: 503.
    Busy,
}

impl Fail {
    /// The status the client gets when nothing of the answer was sent yet.
    pub fn status(self) -> u16 {
        match self {
            Fail::NoHead | Fail::Bad(_) | Fail::TooMuch => 502,
            Fail::Timeout => 504,
            Fail::Stopping | Fail::Busy => 503,
            Fail::Spawn => 500,
        }
    }
}

/// The command for `script`: nothing of the server's environment, stdin and stdout piped,
/// stderr shared with the server's (its error log, as lighttpd does), and a process group of
/// its own so a timeout kills what it started too.
pub fn command(script: &Script, peer: Peer) -> Command {
    let mut cmd = Command::new(&script.program);
    cmd.env_clear()
        .envs(script.env(peer))
        .current_dir(&script.cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd
}

/// Kills the process group `pid` leads (the script and what it started). Harmless if it is
/// gone: the group is not reused while its leader is unreaped, and callers reap after this.
pub fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// The script's stdout turned into the client's bytes.
#[derive(Debug)]
pub struct Relay {
    /// Output before the head is whole.
    pending: Vec<u8>,
    /// Set once the head was sent.
    framing: Option<Framing>,
    /// Body bytes printed so far.
    printed: u64,
    /// The script's status, once its head was sent.
    status: u16,
    max_output: u64,
    head_only: bool,
    http10: bool,
}

/// What [`Relay::feed`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Fed {
    /// Nothing to send yet (the head is not whole).
    Nothing,
    /// The head just became whole: this head (to be ended by the state machine, see
    /// [`Relay::closes`]), then the framed bytes appended to `out`.
    Head(Vec<u8>, u16),
    /// Framed body bytes were appended to `out` (maybe none).
    Body,
}

/// What [`Relay::pass`] left to send.
#[derive(Debug, PartialEq, Eq)]
pub enum Passed {
    /// Nothing yet (the head is not whole).
    Nothing,
    /// The head, with the script's status, and any body bytes behind it.
    Head(u16),
    /// Framed body bytes (maybe none).
    Body,
}

impl Relay {
    pub fn new(script: &Script) -> Relay {
        Relay {
            pending: Vec::new(),
            framing: None,
            printed: 0,
            status: 0,
            max_output: script.max_output,
            head_only: script.head_only,
            http10: script.http10,
        }
    }

    /// Whether the head was sent (so a failure now can only close the connection).
    pub fn started(&self) -> bool {
        self.framing.is_some()
    }

    /// The answer's end is the connection's (HTTP/1.0 without a length).
    pub fn closes(&self) -> bool {
        self.framing.is_some_and(|f| f.closes())
    }

    /// Takes `data` from the script's stdout and leaves in `out` everything to send now: when
    /// the head just became whole, that head ended by the connection's state machine (which
    /// decides keep-alive and writes `Connection`), then the framed body bytes.
    pub fn pass(
        &mut self,
        data: &[u8],
        (conn, rules): (&mut Conn, &Rules),
        out: &mut Vec<u8>,
    ) -> Result<Passed, Fail> {
        out.clear();
        match self.feed(data, out)? {
            Fed::Nothing => Ok(Passed::Nothing),
            Fed::Body => Ok(Passed::Body),
            Fed::Head(mut head, status) => {
                if self.closes() {
                    conn.close_after_answer();
                }
                conn.finish_head(rules, &mut head, Stop.is_set());
                head.extend_from_slice(out);
                *out = head;
                self.status = status;
                Ok(Passed::Head(status))
            }
        }
    }

    /// Takes `data` from the script's stdout; framed body bytes go to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<Fed, Fail> {
        if let Some(framing) = &mut self.framing {
            self.printed += data.len() as u64;
            if self.printed > self.max_output {
                return Err(Fail::TooMuch);
            }
            framing.body(data, out);
            return Ok(Fed::Body);
        }
        self.pending.extend_from_slice(data);
        let Some((head, used)) = parse_head(&self.pending).map_err(Fail::Bad)? else {
            return Ok(Fed::Nothing);
        };
        let (bytes, framing) = with_date(|date| head.encode(date, self.http10, self.head_only));
        self.framing = Some(framing);
        let rest = self.pending.split_off(used);
        self.pending = Vec::new();
        self.feed(&rest, out)?;
        Ok(Fed::Head(bytes, head.status))
    }

    /// The script's stdout ended: the body's end goes to `out`. `Ok(false)`: the body is short
    /// of its Content-Length (the connection must close).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool, Fail> {
        match &self.framing {
            Some(framing) => Ok(framing.end(out)),
            None => Err(Fail::NoHead),
        }
    }

    /// Body bytes the script printed (for the access log).
    pub fn printed(&self) -> u64 {
        self.printed
    }

    /// How a run ended by `fail` ends, with the status sent (0 if none) and the body bytes
    /// printed.
    pub fn failed(&self, fail: Fail) -> (Outcome, u16, u64) {
        (Outcome::of(fail, self.started()), self.status, self.printed)
    }

    /// The script's stdout ended: how the run ends, with the status sent and the body bytes
    /// printed; unless it failed, `out` holds the body's end, to send.
    pub fn end(&mut self, out: &mut Vec<u8>) -> (Outcome, u16, u64) {
        out.clear();
        let outcome = match self.finish(out) {
            Err(fail) => Outcome::Failed(fail),
            Ok(true) => Outcome::Sent,
            Ok(false) => Outcome::Cut,
        };
        (outcome, self.status, self.printed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse, Limits, Parsed};
    use crate::site::cgi::{find, CgiOptions, Found};

    fn script(target: &str, version: &str, max_output: u64) -> Script {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cgi-bin")).unwrap();
        let p = dir.path().join("cgi-bin/s");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let root = crate::site::resolve::Root::open_dir(dir.path()).unwrap();
        let mut opts = CgiOptions::new("cgi-bin").unwrap();
        opts.max_output = max_output;
        let text = format!("{target} /cgi-bin/s {version}\r\nHost: a\r\n\r\n");
        let Ok(Parsed::Complete(req, _)) = parse(text.as_bytes(), &Limits::default()) else {
            panic!()
        };
        match find(&opts, &root, dir.path(), &req) {
            Some(Found::Script(s)) => *s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_head_then_the_body_chunked_whatever_the_pieces() {
        let out_text = b"Content-Type: text/plain\n\nhello world";
        for piece in [1, 3, out_text.len()] {
            let mut relay = Relay::new(&script("GET", "HTTP/1.1", 100));
            let (mut head, mut body) = (None, Vec::new());
            for data in out_text.chunks(piece) {
                if let Fed::Head(h, status) = relay.feed(data, &mut body).unwrap() {
                    head = Some((h, status));
                }
            }
            assert!(relay.finish(&mut body).unwrap());
            let (head, status) = head.unwrap();
            assert_eq!(status, 200);
            assert!(String::from_utf8(head).unwrap().contains("chunked"));
            let text = String::from_utf8(body).unwrap();
            assert!(text.ends_with("0\r\n\r\n"), "{text:?}");
            let unchunked: String = text
                .split("\r\n")
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s)
                .collect();
            assert_eq!(unchunked, "hello world");
        }
    }

    #[test]
    fn failures_have_their_status() {
        let mut relay = Relay::new(&script("GET", "HTTP/1.1", 100));
        let mut out = Vec::new();
        assert_eq!(relay.finish(&mut out), Err(Fail::NoHead));
        assert_eq!(
            relay.feed(b"garbage\n\n", &mut out),
            Err(Fail::Bad(BadOutput::Malformed))
        );
        let mut relay = Relay::new(&script("GET", "HTTP/1.1", 4));
        assert!(matches!(
            relay.feed(b"A: b\n\n1234", &mut out),
            Ok(Fed::Head(..))
        ));
        assert_eq!(relay.feed(b"5", &mut out), Err(Fail::TooMuch));
        assert_eq!(Fail::TooMuch.status(), 502);
        assert_eq!(Fail::Timeout.status(), 504);
    }

    #[test]
    fn http_1_0_is_close_delimited_and_head_sends_no_body() {
        let mut relay = Relay::new(&script("GET", "HTTP/1.0", 100));
        let mut out = Vec::new();
        relay.feed(b"A: b\n\nxyz", &mut out).unwrap();
        assert!(relay.closes());
        assert_eq!(out, b"xyz");
        let mut relay = Relay::new(&script("HEAD", "HTTP/1.1", 100));
        let mut out = Vec::new();
        relay.feed(b"A: b\n\nxyz", &mut out).unwrap();
        assert!(relay.finish(&mut out).unwrap());
        assert!(out.is_empty() && !relay.closes());
    }
}
