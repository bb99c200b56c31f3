//! Test harness: raw-byte connections, a small HTTP/1.1 response parser (pipelined responses, HEAD/204/304 without body) and the shared assertions; re-exports the fixture, architecture and server helpers so tests `use super::harness::*`.
//!
//! Every test starts its own server (`--port 0`, its own temporary root), so tests are independent
//! and run in parallel. Nothing here asserts on time: timeouts only turn a hung server into a
//! failing test instead of a hanging one.

pub use super::arch::*;
pub use super::fixture::*;
pub use crate::server::*;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Read timeout of raw connections: a server that never answers fails instead of hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Requests and raw connections
// ---------------------------------------------------------------------------------------------

/// `METHOD target HTTP/1.1` with `Host: localhost` and the extra header lines.
pub fn req(method: &str, target: &str, headers: &[&str]) -> Vec<u8> {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Printable form of request bytes for failure messages.
pub fn show(bytes: &[u8]) -> String {
    let s: String = bytes.escape_ascii().to_string();
    if s.len() > 300 {
        format!("{}...({} bytes)", &s[..300], bytes.len())
    } else {
        s
    }
}

/// A raw TCP connection with its unread bytes; answers are parsed one at a time, in order. In
/// the TLS mode (see `super::tls`) the bytes go through a rustls client session, whose
/// handshake starts with the first send or read (so a connection that sends nothing sends
/// nothing at all).
pub struct Conn {
    pub stream: TcpStream,
    tls: Option<Box<rustls::ClientConnection>>,
    buf: Vec<u8>,
    eof: bool,
    ctx: String,
}

impl Conn {
    pub fn open(addr: &str, arch: &str) -> Conn {
        let mut c = Conn::plain(addr, arch);
        c.tls = super::tls::client_session();
        c
    }

    /// A plain-HTTP connection in either mode (the `--redirect-http` port).
    pub fn plain(addr: &str, arch: &str) -> Conn {
        let stream =
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("[{arch}] connect {addr}: {e}"));
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        Conn {
            stream,
            tls: None,
            buf: Vec::new(),
            eof: false,
            ctx: arch.to_string(),
        }
    }

    /// Writes `bytes`; a write error is ignored (the server may close early on a bad request,
    /// and what matters is what it answered).
    pub fn send(&mut self, bytes: &[u8]) {
        match &mut self.tls {
            Some(tls) => {
                let _ = rustls::Stream::new(&mut **tls, &mut self.stream).write_all(bytes);
            }
            None => {
                let _ = self.stream.write_all(bytes);
                let _ = self.stream.flush();
            }
        }
    }

    /// Half-closes the connection (no more request bytes; over TLS, a close_notify first).
    pub fn shutdown_write(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            let _ = rustls::Stream::new(&mut **tls, &mut self.stream).flush();
        }
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Reads once more into the buffer. Ok(false) at EOF or reset; Err on timeout.
    fn fill(&mut self) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = [0u8; 65536];
        let read = match &mut self.tls {
            Some(tls) => rustls::Stream::new(&mut **tls, &mut self.stream).read(&mut chunk),
            None => self.stream.read(&mut chunk),
        };
        match read {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                Err(format!("no data within {READ_TIMEOUT:?}"))
            }
            Err(_) => {
                // ECONNRESET and friends: the server is gone; what we have is all there is.
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// The next response (body framed by Content-Length, or none for HEAD/204/304/1xx).
    pub fn try_response(&mut self, head: bool) -> Result<Response, String> {
        loop {
            match parse_response(&self.buf, head, self.eof)? {
                Some((resp, used)) => {
                    self.buf.drain(..used);
                    return Ok(resp);
                }
                None => {
                    if self.eof {
                        return Err(if self.buf.is_empty() {
                            "connection closed without a response".to_string()
                        } else {
                            format!("connection closed mid-response; got {}", show(&self.buf))
                        });
                    }
                    self.fill().map_err(|e| {
                        format!(
                            "{e} while waiting for a response; got so far: {}",
                            show(&self.buf)
                        )
                    })?;
                }
            }
        }
    }

    /// The next response to a GET-like request; panics with context if none comes.
    pub fn response(&mut self) -> Response {
        let ctx = self.ctx.clone();
        self.try_response(false)
            .unwrap_or_else(|e| panic!("[{ctx}] {e}"))
    }

    /// The next response to a HEAD request.
    pub fn head_response(&mut self) -> Response {
        let ctx = self.ctx.clone();
        self.try_response(true)
            .unwrap_or_else(|e| panic!("[{ctx}] {e}"))
    }

    /// The next response, framed as the request (`HEAD ...` or not) requires; failure messages
    /// quote the request.
    pub fn response_for(&mut self, request: &[u8]) -> Response {
        let head = request.starts_with(b"HEAD ");
        let ctx = self.ctx.clone();
        self.try_response(head)
            .unwrap_or_else(|e| panic!("[{ctx}] request {}: {e}", show(request)))
    }

    /// Reads until the server closes (or the read timeout); returns the unread bytes.
    pub fn read_to_close(&mut self) -> Result<Vec<u8>, String> {
        while !self.eof {
            if let Err(e) = self.fill() {
                return Err(format!(
                    "server did not close the connection ({e}); got {}",
                    show(&self.buf)
                ));
            }
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Asserts the server closes the connection without sending anything more.
    pub fn assert_closed(&mut self, what: &str) {
        let ctx = self.ctx.clone();
        match self.read_to_close() {
            Ok(rest) if rest.is_empty() => {}
            Ok(rest) => panic!(
                "[{ctx}] {what}: expected the connection to close, got extra bytes {}",
                show(&rest)
            ),
            Err(e) => panic!("[{ctx}] {what}: expected the connection to close: {e}"),
        }
    }

    /// True when the server has not closed and has sent nothing within `wait` (keep-alive).
    pub fn is_open_and_quiet(&mut self, wait: Duration) -> bool {
        if self.eof || !self.buf.is_empty() {
            return false;
        }
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let r = self.fill();
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        r.is_err() && self.buf.is_empty()
    }
}

impl ArchServer {
    /// A new raw connection to the server.
    pub fn connect(&self) -> Conn {
        Conn::open(&self.addr(), &self.arch)
    }

    /// One request on a fresh connection, first response returned.
    pub fn exchange(&self, request: &[u8]) -> Response {
        let mut c = self.connect();
        c.send(request);
        c.response_for(request)
    }

    /// One request on a fresh connection; the first response, or why none came.
    pub fn try_exchange(&self, request: &[u8]) -> Result<Response, String> {
        let mut c = self.connect();
        c.send(request);
        c.try_response(request.starts_with(b"HEAD "))
    }

    /// `GET target` (HTTP/1.1, `Connection: close`) on a fresh connection.
    pub fn get(&self, target: &str) -> Response {
        self.exchange(&req("GET", target, &["Connection: close"]))
    }
}

// ---------------------------------------------------------------------------------------------
// Response parsing
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// Header value, or a panic naming the missing header.
    pub fn must(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("response has no `{name}` header: {}", self.summary()))
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn body_contains(&self, needle: &str) -> bool {
        self.body
            .windows(needle.len().max(1))
            .any(|w| w == needle.as_bytes())
    }

    /// `Connection: close` (token, case-insensitive).
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .map(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
            .unwrap_or(false)
    }

    pub fn says_keep_alive(&self) -> bool {
        self.header("connection")
            .map(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("keep-alive"))
            })
            .unwrap_or(false)
    }

    /// Status line, headers and the start of the body, for failure messages.
    pub fn summary(&self) -> String {
        let mut s = format!("{} {} {}", self.version, self.status, self.reason);
        for (n, v) in &self.headers {
            s.push_str(&format!(" | {n}: {v}"));
        }
        let body = show(&self.body[..self.body.len().min(120)]);
        s.push_str(&format!(" || body ({} bytes): {body}", self.body.len()));
        s
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response from the start of `buf`.
/// `Ok(None)`: incomplete (read more). `head`: the request was HEAD, so there is no body.
/// `eof`: the connection is closed, which ends a body that has no Content-Length.
pub fn parse_response(
    buf: &[u8],
    head: bool,
    eof: bool,
) -> Result<Option<(Response, usize)>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head_text = std::str::from_utf8(&buf[..end])
        .map_err(|_| format!("response head is not UTF-8: {}", show(&buf[..end])))?;
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        if n.is_empty() || n.contains(' ') || n.contains('\t') {
            return Err(format!("bad header name in {line:?}"));
        }
        headers.push((n.to_string(), v.trim().to_string()));
    }
    let start = end + 4;
    let no_body = head || status / 100 == 1 || status == 204 || status == 304;
    let mut resp = Response {
        version,
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    if no_body {
        return Ok(Some((resp, start)));
    }
    let cls: Vec<&str> = resp
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_str())
        .collect();
    if resp.header("transfer-encoding").is_some() {
        return Err(format!(
            "server used Transfer-Encoding (the contract wants Content-Length): {}",
            resp.summary()
        ));
    }
    match cls.as_slice() {
        [] => {
            // No length: the body runs to the close.
            if !eof {
                return Ok(None);
            }
            resp.body = buf[start..].to_vec();
            Ok(Some((resp, buf.len())))
        }
        [one] => {
            let len: usize = one
                .parse()
                .map_err(|_| format!("bad Content-Length {one:?}"))?;
            if buf.len() < start + len {
                return Ok(None);
            }
            resp.body = buf[start..start + len].to_vec();
            Ok(Some((resp, start + len)))
        }
        _ => Err(format!(
            "several Content-Length headers: {}",
            resp.summary()
        )),
    }
}

/// Parses every response in `buf` (all to GET-like requests), e.g. a pipelined exchange.
pub fn parse_all(mut buf: &[u8]) -> Result<Vec<Response>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        match parse_response(buf, false, true)? {
            Some((r, used)) => {
                out.push(r);
                buf = &buf[used..];
            }
            None => return Err(format!("trailing partial response: {}", show(buf))),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Shared assertions
// ---------------------------------------------------------------------------------------------

/// What every response carries: `Date` (IMF-fixdate), `Server: archserve`, `Connection`, and
/// `Content-Length` except on 1xx/204/304 (where RFC 9110 §8.6 forbids it on 204).
pub fn check_common(r: &Response, what: &str) {
    let date = r
        .header("date")
        .unwrap_or_else(|| panic!("{what}: no Date header: {}", r.summary()));
    assert!(
        parse_imf_fixdate(date).is_some(),
        "{what}: Date is not an IMF-fixdate: {date:?}"
    );
    assert_eq!(r.header_count("date"), 1, "{what}: several Date headers");
    // The exact value is checked once, in files::server_header_is_exactly_archserve; here the
    // product token is enough, so one divergence does not fail every test.
    let server = r.header("server").unwrap_or("");
    assert!(
        server == "archserve" || server.starts_with("archserve/"),
        "{what}: Server header: {}",
        r.summary()
    );
    let conn = r
        .header("connection")
        .unwrap_or_else(|| panic!("{what}: no Connection header: {}", r.summary()));
    assert!(
        conn.eq_ignore_ascii_case("close") || conn.eq_ignore_ascii_case("keep-alive"),
        "{what}: Connection is {conn:?}, expected keep-alive or close"
    );
    if r.status == 204 || r.status / 100 == 1 {
        assert!(
            r.header("content-length").is_none(),
            "{what}: {} must not carry Content-Length: {}",
            r.status,
            r.summary()
        );
    } else if r.status != 304 {
        assert!(
            r.header("content-length").is_some(),
            "{what}: no Content-Length: {}",
            r.summary()
        );
    }
}

/// An error answer that must end the connection: the status, `Connection: close`, then EOF.
pub fn expect_error_and_close(srv: &ArchServer, request: &[u8], status: u16) {
    let mut c = srv.connect();
    c.send(request);
    let r = c.response_for(request);
    let what = format!("request {}", show(request));
    assert_eq!(r.status, status, "{what}: got {}", r.summary());
    check_common(&r, &what);
    assert!(
        r.says_close(),
        "{what}: a {status} that ends the connection must say `Connection: close`: {}",
        r.summary()
    );
    c.assert_closed(&what);
}

/// Numbers in a text body (maximal digit runs), to find a count without matching `100` in `25`.
pub fn numbers_in(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.to_string())
        .collect()
}
