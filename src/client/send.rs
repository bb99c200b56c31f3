//! `archserve send HOST PORT REQUEST`: send one request (completed if the user left it
//! incomplete), read the whole response by its framing, print the exact bytes received.
//!
//! The seed's `send_to_server` sent the argument as given and printed one `recv(1024)`. That
//! only worked because the seed's server answered before the request was even complete. A
//! strict server waits for the blank line (and, for HTTP/1.1, needs Host), so by default the
//! argument is completed; `--raw` sends it untouched for testing what a server does with
//! broken input.
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use clap::Args;

use super::http1::{BadResponse, ResponseParser};
use super::target::host_header;
use super::tls::{describe, rustls_error, ClientTls, TlsArgs};

/// After an invalid response, keep reading this long at most (or until the close) so the bytes
/// the server did send are all shown, without waiting for the whole `--timeout`.
const DRAIN_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Send one request and print the exact bytes of the answer.
#[derive(Debug, Args)]
#[command(after_help = "\
Completion (without --raw): `\\r`, `\\n`, `\\t`, `\\\\` and `\\xHH` escapes are decoded; lines
may end in LF or CRLF; the head is ended with a blank line; an HTTP/1.1 request without Host
gets `Host: HOST[:PORT]`; a body without Content-Length gets one, except after GET, HEAD,
DELETE or OPTIONS, where what follows the blank line is taken as further (pipelined) requests,
each completed the same way and each awaited.

Exit status: 0 when every response arrived complete and valid; 1 otherwise (refused, timed
out, reset, closed early, invalid response), with one `error:` line on stderr after whatever
bytes did arrive.

HTTPS (--tls): the handshake comes first, with HOST as the server name (SNI, and the name the
certificate must carry); a failed handshake is one `error:` line (untrusted certificate, a
plain-HTTP port, ...). The bytes printed are the decrypted response.

Examples: archserve send 127.0.0.1 2000 \"GET / HTTP/1.1\"
          archserve send --tls --cacert cert.pem localhost 8443 \"GET / HTTP/1.1\"")]
pub struct SendArgs {
    /// Server host (name or address).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The request, e.g. "GET / HTTP/1.1" (completed unless --raw).
    pub request: OsString,
    /// Send the argument's bytes exactly as given: no escapes, no completion. One response is
    /// awaited (or everything until the close, with --until-close).
    #[arg(long)]
    pub raw: bool,
    /// Read until the server closes the connection instead of stopping after the response(s).
    #[arg(long)]
    pub until_close: bool,
    /// Seconds to wait for the connection and for the whole response.
    #[arg(long, default_value = "10", value_parser = super::seconds)]
    pub timeout: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
}

pub fn run(args: SendArgs) -> anyhow::Result<i32> {
    let given = args.request.as_bytes();
    let (request, heads) = if args.raw {
        (given.to_vec(), vec![given.starts_with(b"HEAD ")])
    } else {
        complete(
            &unescape(given),
            &host_header(&args.host, args.port, args.tls.tls),
        )
    };
    let tls = match args.tls.tls {
        true => Some(ClientTls::new(&args.tls, &args.host, false).map_err(anyhow::Error::msg)?),
        false => None,
    };
    let deadline = Instant::now() + args.timeout;
    let sock = connect(&args.host, args.port, args.timeout)?;
    let mut stream = match tls {
        Some(tls) => handshake(
            sock,
            &tls,
            deadline,
            &format!("{}:{}", args.host, args.port),
        )?,
        None => Stream::Plain(sock),
    };
    let mut received = Vec::new();
    let outcome = exchange(
        &mut stream,
        &request,
        &heads,
        args.until_close,
        deadline,
        &mut received,
    );
    let mut out = io::stdout().lock();
    out.write_all(&received)?;
    out.flush()?;
    outcome.map(|()| 0)
}

/// Resolves and connects within `timeout`, trying each address; the error names the target.
fn connect(host: &str, port: u16, timeout: Duration) -> anyhow::Result<TcpStream> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| anyhow!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let e = last.ok_or_else(|| anyhow!("{host} has no address"))?;
    Err(match e.kind() {
        io::ErrorKind::ConnectionRefused => anyhow!("connection refused by {host}:{port}"),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => anyhow!(
            "timed out after {} s connecting to {host}:{port}",
            secs(timeout)
        ),
        _ => anyhow!("cannot connect to {host}:{port}: {e}"),
    })
}

/// The connection: the socket, or a rustls session over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn sock(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock().set_read_timeout(t)
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock().set_write_timeout(t)
    }
}

impl Read for Stream {
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(dst),
            // A close without close_notify ends the stream here like a plain close: the
            // response's own framing says whether it was complete.
            Stream::Tls(t) => match t.read(dst) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(bytes),
            Stream::Tls(t) => t.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(t) => t.flush(),
        }
    }
}

/// Runs the TLS handshake to its end before anything is sent, so that its failure is reported
/// as such (`server`: host:port, for the messages).
fn handshake(
    mut sock: TcpStream,
    tls: &ClientTls,
    deadline: Instant,
    server: &str,
) -> anyhow::Result<Stream> {
    let mut session = tls.session()?;
    while session.is_handshaking() {
        let left = remaining(deadline)
            .map_err(|_| anyhow!("timed out during the TLS handshake with {server}"))?;
        sock.set_read_timeout(Some(left))?;
        sock.set_write_timeout(Some(left))?;
        match session.complete_io(&mut sock) {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => bail!("timed out during the TLS handshake with {server}"),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => bail!(
                "the server closed the connection during the TLS handshake with {server} (is it \
                 a plain-HTTP port?)"
            ),
            Err(e) => match rustls_error(&e) {
                Some(t) => bail!("TLS handshake with {server} failed: {}", describe(t)),
                None => bail!("TLS handshake with {server} failed: {e}"),
            },
        }
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(
        session, sock,
    ))))
}

/// Writes the request and reads one response per entry of `heads` (true: answer to HEAD),
/// appending every byte received to `received`.
fn exchange(
    stream: &mut Stream,
    request: &[u8],
    heads: &[bool],
    until_close: bool,
    deadline: Instant,
    received: &mut Vec<u8>,
) -> anyhow::Result<()> {
    stream.set_write_timeout(Some(remaining(deadline)?))?;
    stream
        .write_all(request)
        .map_err(|e| io_error(e, "sending the request", 0))?;
    let mut framing = Framing::new(heads);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if framing.all_done() && !until_close {
            if received.len() > framing.parsed {
                eprintln!(
                    "warning: {} bytes arrived after the last response",
                    received.len() - framing.parsed
                );
            }
            return Ok(());
        }
        let wait = match framing.bad {
            Some(_) => remaining(deadline)
                .unwrap_or(Duration::ZERO)
                .min(DRAIN_AFTER_ERROR),
            None => {
                remaining(deadline).map_err(|_| timed_out(framing.done, heads.len(), received))?
            }
        };
        if wait.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(wait))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if framing.bad.is_some() && is_timeout(&e) => break,
            Err(e) if is_timeout(&e) => return Err(timed_out(framing.done, heads.len(), received)),
            Err(e) => return Err(io_error(e, "waiting for the response", received.len())),
        };
        if n == 0 {
            framing.closed(received.len())?;
            break;
        }
        received.extend_from_slice(&chunk[..n]);
        framing.feed(received);
    }
    match framing.bad {
        Some(e) => bail!("the response is not valid HTTP/1.1: {e}"),
        None if until_close || framing.all_done() => Ok(()),
        None => bail!(
            "timed out waiting for the response ({} bytes received)",
            received.len()
        ),
    }
}

/// The responses framed in the bytes received so far, one per entry of `heads`.
struct Framing<'a> {
    heads: &'a [bool],
    parser: ResponseParser,
    /// Bytes received and already framed.
    parsed: usize,
    /// Complete responses.
    done: usize,
    /// The first framing error: what follows is drained briefly, then it is reported.
    bad: Option<BadResponse>,
}

impl<'a> Framing<'a> {
    fn new(heads: &'a [bool]) -> Framing<'a> {
        Framing {
            heads,
            parser: ResponseParser::new(heads[0]),
            parsed: 0,
            done: 0,
            bad: None,
        }
    }

    fn all_done(&self) -> bool {
        self.done == self.heads.len()
    }

    /// Frames what arrived since the last call (`received`: every byte so far).
    fn feed(&mut self, received: &[u8]) {
        while self.bad.is_none() && !self.all_done() && self.parsed < received.len() {
            match self.parser.feed(&received[self.parsed..]) {
                Ok(fed) => {
                    self.parsed += fed.used;
                    if !fed.done {
                        break;
                    }
                    self.done += 1;
                    if !self.all_done() {
                        self.parser = ResponseParser::new(self.heads[self.done]);
                    }
                }
                Err(e) => self.bad = Some(e),
            }
        }
    }

    /// The server closed the connection after `received` bytes: a body delimited by the close
    /// ends here, and a response still missing is an error.
    fn closed(&mut self, received: usize) -> anyhow::Result<()> {
        if self.bad.is_some() || self.all_done() {
            return Ok(());
        }
        if self.parser.eof() {
            self.done += 1;
        }
        if !self.all_done() {
            bail!(
                "connection closed by the server after {received} bytes, before response {} of {} \
                 was complete",
                self.done + 1,
                self.heads.len()
            );
        }
        Ok(())
    }
}

/// The timeout error, saying what was still awaited.
fn timed_out(done: usize, expected: usize, received: &[u8]) -> anyhow::Error {
    let what = if done < expected {
        "the response"
    } else {
        "the server to close the connection"
    };
    anyhow!(
        "timed out waiting for {what} ({} bytes received)",
        received.len()
    )
}

fn remaining(deadline: Instant) -> anyhow::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        bail!("timed out waiting for the response");
    }
    Ok(left)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn io_error(e: io::Error, doing: &str, got: usize) -> anyhow::Error {
    if let Some(t) = rustls_error(&e) {
        return anyhow!("TLS error while {doing}: {}", describe(t));
    }
    match e.kind() {
        _ if is_timeout(&e) => anyhow!("timed out {doing} ({got} bytes received)"),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            anyhow!("connection reset by the server while {doing} ({got} bytes received)")
        }
        _ => anyhow!("error while {doing}: {e}"),
    }
}

fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// Decodes `\r`, `\n`, `\t`, `\\` and `\xHH`; any other backslash stays as typed.
pub fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            let decoded = match s[i + 1] {
                b'r' => Some((b'\r', 2)),
                b'n' => Some((b'\n', 2)),
                b't' => Some((b'\t', 2)),
                b'\\' => Some((b'\\', 2)),
                b'x' => s
                    .get(i + 2..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .map(|b| (b, 4)),
                _ => None,
            };
            if let Some((b, len)) = decoded {
                out.push(b);
                i += len;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Completes the request(s) in `given` (see the command's help). Returns the bytes to send and,
/// for each request in them, whether it is a HEAD (whose response has no body).
pub fn complete(given: &[u8], host: &str) -> (Vec<u8>, Vec<bool>) {
    let mut out = Vec::with_capacity(given.len() + 64);
    let mut rest = given;
    let mut heads = Vec::new();
    loop {
        let (head, body) = split_head(rest);
        let mut lines: Vec<&[u8]> = head.split(|&b| b == b'\n').map(strip_cr).collect();
        if head.ends_with(b"\n") {
            lines.pop();
        }
        let words: Vec<&[u8]> = lines
            .first()
            .map(|l| l.split(|&b| b == b' ').filter(|w| !w.is_empty()).collect())
            .unwrap_or_default();
        let method = words.first().copied().unwrap_or(b"");
        let has = |name: &[u8]| {
            lines.iter().skip(1).any(|l| {
                l.split(|&b| b == b':')
                    .next()
                    .is_some_and(|n| n.trim_ascii().eq_ignore_ascii_case(name))
            })
        };
        let mut extra: Vec<Vec<u8>> = Vec::new();
        if words.get(2).is_some_and(|v| *v == b"HTTP/1.1") && !has(b"host") {
            extra.push(format!("Host: {host}").into_bytes());
        }
        let pipelined = matches!(method, b"GET" | b"HEAD" | b"DELETE" | b"OPTIONS");
        let (body, next) = match body {
            Some(b) if pipelined => (&b""[..], Some(b)),
            Some(b) => (b, None),
            None => (&b""[..], None),
        };
        if !body.is_empty() && !has(b"content-length") && !has(b"transfer-encoding") {
            extra.push(format!("Content-Length: {}", body.len()).into_bytes());
        }
        for (i, line) in lines.iter().enumerate() {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
            if i == 0 {
                for e in extra.drain(..) {
                    out.extend_from_slice(&e);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
        heads.push(method == b"HEAD");
        match next {
            Some(n) if !n.iter().all(u8::is_ascii_whitespace) => rest = n,
            _ => break,
        }
    }
    (out, heads)
}

/// Splits at the first blank line (CRLF or LF endings): head lines, and what follows it.
fn split_head(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut i = 0;
    while let Some(p) = s[i..].iter().position(|&b| b == b'\n') {
        let end = i + p + 1; // just after this LF
        let rest = &s[end..];
        let blank = if rest.starts_with(b"\r\n") {
            Some(2)
        } else if rest.starts_with(b"\n") {
            Some(1)
        } else {
            None
        };
        if let Some(len) = blank {
            return (&s[..end], Some(&rest[len..]));
        }
        i = end;
    }
    (s, None)
}

fn strip_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(given: &str) -> (String, Vec<bool>) {
        let (b, heads) = complete(&unescape(given.as_bytes()), "h:1");
        (String::from_utf8(b).unwrap(), heads)
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(br"a\r\nb\tc\\d\x41\q\x4"), b"a\r\nb\tc\\dA\\q\\x4");
    }

    #[test]
    fn completes_the_seed_request() {
        assert_eq!(
            done("GET / HTTP/1.1").0,
            "GET / HTTP/1.1\r\nHost: h:1\r\n\r\n"
        );
        assert_eq!(
            done("GET / HTTP/1.1\r\n").0,
            "GET / HTTP/1.1\r\nHost: h:1\r\n\r\n"
        );
        assert_eq!(
            done("GET / HTTP/1.1\nhost: x\n\n").0,
            "GET / HTTP/1.1\r\nhost: x\r\n\r\n"
        );
        // HTTP/1.0 needs no Host; an already complete request is left as it is.
        assert_eq!(done("GET / HTTP/1.0").0, "GET / HTTP/1.0\r\n\r\n");
        let full = "GET /a HTTP/1.1\r\nHost: z\r\nX: 1\r\n\r\n";
        assert_eq!(done(full), (full.to_string(), vec![false]));
    }

    #[test]
    fn bodies_and_pipelines() {
        assert_eq!(
            done(r"POST /f HTTP/1.1\r\n\r\nabc").0,
            "POST /f HTTP/1.1\r\nHost: h:1\r\nContent-Length: 3\r\n\r\nabc"
        );
        let (text, heads) = done(r"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\n");
        assert_eq!(heads, vec![false, true]);
        assert_eq!(
            text,
            "GET /a HTTP/1.1\r\nHost: h:1\r\n\r\nHEAD /b HTTP/1.1\r\nHost: h:1\r\n\r\n"
        );
        assert_eq!(done(r"POST / HTTP/1.1\r\n\r\nab").1, vec![false]);
    }
}
