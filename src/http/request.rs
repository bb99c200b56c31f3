//! Parsing one request head from a buffer: "complete request + bytes used", "need more", or an error.
//!
//! httparse does the tokenising (it is SIMD-accelerated and fuzzed by hyper's users); this file adds
//! what httparse leaves to the caller: the size and count limits (414/431), the version check (505),
//! and the framing rules of RFC 9112 that keep a pipelined stream in sync (Content-Length,
//! Transfer-Encoding, Host).
use std::mem::MaybeUninit;

use super::error::ParseError;

/// The most header fields any configuration may allow (the stack array the parser uses).
pub const MAX_HEADERS_CAP: usize = 256;

/// Size limits of a request head; the defaults are nginx's (8 KiB line, 32 KiB head, 100 fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, CRLF excluded (414 beyond).
    pub max_line: usize,
    /// Largest head, request line and fields together (431 beyond).
    pub max_head: usize,
    /// Most header fields (431 beyond); at most [`MAX_HEADERS_CAP`].
    pub max_headers: usize,
    /// Keep every field of the request in [`MoreFields::fields`] (for CGI's `HTTP_*`
    /// variables); off unless a CGI directory is served, so no other request pays for it.
    pub keep_fields: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            max_head: 32 * 1024,
            max_headers: 100,
            keep_fields: false,
        }
    }
}

/// The request method. Standard methods we do not serve are kept apart from unknown ones so the
/// site can answer 405 (with `Allow`) for the first and 501 for the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    /// POST, PUT, DELETE, PATCH, CONNECT, TRACE: understood, not allowed on a static site.
    NotAllowed,
    /// Any other token.
    Unknown,
}

impl Method {
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            "POST" | "PUT" | "DELETE" | "PATCH" | "CONNECT" | "TRACE" => Method::NotAllowed,
            _ => Method::Unknown,
        }
    }
}

/// HTTP/1.0 or HTTP/1.1; anything else never gets past the parser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A validated request head. Only the fields the server acts on are kept (owned, so the read
/// buffer can be reused at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The method as sent, for logs.
    pub method_text: String,
    /// The request-target as sent (printable ASCII only; decoding is the site's job).
    pub target: String,
    pub version: Version,
    /// What the client asked for: 1.1 unless `Connection: close`, 1.0 only with `keep-alive`.
    pub keep_alive: bool,
    /// Bytes of body that follow the head (Content-Length), to be read and discarded.
    pub body_len: u64,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub range: Option<String>,
    /// `If-Range`, `Accept-Encoding` and `Accept`, when any was sent (see [`Request::if_range`]).
    pub more: Option<Box<MoreFields>>,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
}

/// Fields only the site reads and only some requests carry. Boxed in [`Request`]: the request
/// is moved by value through the connection loops, and requests without them (scripts, load
/// generators) pay nothing for them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoreFields {
    pub if_range: Option<String>,
    /// `Accept-Encoding` (several lines joined as one list), for precompressed files.
    pub accept_encoding: Option<String>,
    /// `Accept` (several lines joined as one list), for directory listings.
    pub accept: Option<String>,
    /// Every field as sent, in order (only with [`Limits::keep_fields`]): a CGI script's
    /// `HTTP_*` variables.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Request {
    pub fn if_range(&self) -> Option<&str> {
        self.more.as_ref()?.if_range.as_deref()
    }

    pub fn accept_encoding(&self) -> Option<&str> {
        self.more.as_ref()?.accept_encoding.as_deref()
    }

    pub fn accept(&self) -> Option<&str> {
        self.more.as_ref()?.accept.as_deref()
    }

    /// Every field as sent (empty unless the parser kept them, see [`Limits::keep_fields`]).
    pub fn fields(&self) -> &[(String, Vec<u8>)] {
        self.more.as_ref().map_or(&[], |m| &m.fields)
    }

    fn more(&mut self) -> &mut MoreFields {
        self.more.get_or_insert_with(Box::default)
    }
}

/// The outcome of feeding a buffer to [`parse`].
// Returned by value once per request and matched at once; boxing would add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole head: the request and how many bytes of the buffer it used (body not included).
    Complete(Request, usize),
    /// The head is not finished and the buffer is within the limits: read more.
    Partial,
}

/// Parses the request head at the start of `buf`.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    // Only the first `max_head` bytes can hold an acceptable head (empty lines before it
    // included), so look no further: what lies beyond cannot change the answer, which is then the
    // same however the bytes arrived, and a client cannot make the buffer grow past the limit.
    let over = buf.len() > limits.max_head;
    let buf = &buf[..buf.len().min(limits.max_head)];

    // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    let skip = leading_empty_lines(buf);
    let rest = &buf[skip..];
    if !request_line_complete(rest, limits, over)? {
        return Ok(Parsed::Partial);
    }

    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS_CAP];
    let headers = &mut headers[..limits.max_headers.min(MAX_HEADERS_CAP)];
    let mut req = httparse::Request::new(&mut []);
    let used = match req.parse_with_uninit_headers(rest, headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if over => return Err(ParseError::HeadersTooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(e) => return Err(httparse_error(e)),
    };
    let mut out = request_from_line(&req)?;
    let framing = read_fields(&mut out, req.headers)?;
    if limits.keep_fields {
        out.more().fields = req
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_owned()))
            .collect();
    }
    framing.apply(&mut out)?;
    Ok(Parsed::Complete(out, skip + used))
}

/// Checks the request line on its own, before httparse: its limit (414) is separate from the
/// head's (431), and a well-formed but unsupported version must be told apart from garbage (505
/// vs 400). False while the line has not ended.
fn request_line_complete(rest: &[u8], limits: &Limits, over: bool) -> Result<bool, ParseError> {
    let line_end = memchr_newline(rest);
    // Bytes that can never begin a request (binary garbage, a TLS ClientHello) are refused at
    // the first such byte, not after a line end or the header timeout. Only as far as the line
    // limit, so a line too long is 414 however it was split.
    let line = strip_cr(&rest[..line_end.unwrap_or(rest.len())]);
    check_line_start(&line[..line.len().min(limits.max_line + 1)])?;
    match line_end {
        // A trailing CR may be the first half of the line's CRLF: it does not count yet.
        None if strip_cr(rest).len() > limits.max_line => Err(ParseError::UriTooLong),
        None if over => Err(ParseError::HeadersTooLarge),
        None => Ok(false),
        Some(_) if line.len() > limits.max_line => Err(ParseError::UriTooLong),
        Some(_) => check_version(line).map(|()| true),
    }
}

/// The status for what httparse refused.
fn httparse_error(e: httparse::Error) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError::HeadersTooLarge,
        httparse::Error::Version => ParseError::BadRequest("malformed version"),
        httparse::Error::HeaderName => ParseError::BadRequest("malformed header name"),
        httparse::Error::HeaderValue => ParseError::BadRequest("malformed header value"),
        httparse::Error::NewLine | httparse::Error::Status => {
            ParseError::BadRequest("malformed line ending")
        }
        httparse::Error::Token => ParseError::BadRequest("malformed token"),
    }
}

/// The request from its line (method, target, version), with no fields read yet.
fn request_from_line(req: &httparse::Request) -> Result<Request, ParseError> {
    let method_text = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    // httparse lets bytes >= 0x80 through in the target; a raw (unencoded) non-ASCII byte is not
    // a valid URI character, and a control character never is.
    if target.is_empty() || !target.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return Err(ParseError::BadRequest(
            "invalid character in request target",
        ));
    }
    let version = match req.version {
        Some(0) => Version::Http10,
        _ => Version::Http11,
    };
    Ok(Request {
        method: Method::from_token(method_text),
        method_text: method_text.to_owned(),
        target: target.to_owned(),
        version,
        keep_alive: version == Version::Http11,
        body_len: 0,
        if_none_match: None,
        if_modified_since: None,
        range: None,
        more: None,
        referer: None,
        user_agent: None,
    })
}

/// What the fields say about framing and the connection, checked once all are read.
#[derive(Default)]
struct Framing<'a> {
    hosts: usize,
    content_length: Option<u64>,
    transfer_encoding: Option<&'a [u8]>,
    conn_close: bool,
    conn_keep_alive: bool,
}

/// Reads the fields the server acts on into `out`, and the framing ones into a [`Framing`].
fn read_fields<'a>(
    out: &mut Request,
    fields: &[httparse::Header<'a>],
) -> Result<Framing<'a>, ParseError> {
    let mut f = Framing::default();
    for h in fields {
        let (name, value) = (h.name, h.value);
        // httparse accepts any byte >= 0x80 and HTAB in values but rejects CR/LF and other
        // controls, so a bare CR inside a value is already an error; nothing else to check here.
        if name.eq_ignore_ascii_case("host") {
            f.hosts += 1;
        } else if name.eq_ignore_ascii_case("content-length") {
            if f.content_length.is_some() {
                return Err(ParseError::BadRequest("duplicate Content-Length"));
            }
            f.content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if f.transfer_encoding.is_some() {
                return Err(ParseError::BadRequest("duplicate Transfer-Encoding"));
            }
            f.transfer_encoding = Some(value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                f.conn_close |= token.eq_ignore_ascii_case(b"close");
                f.conn_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else {
            read_field(out, name, value)?;
        }
    }
    Ok(f)
}

/// One of the fields that do not affect framing: validators, ranges, negotiation, and what the
/// log keeps.
fn read_field(out: &mut Request, name: &str, value: &[u8]) -> Result<(), ParseError> {
    if name.eq_ignore_ascii_case("if-none-match") {
        // Several If-None-Match lines are one list (RFC 9110 §5.3).
        let v = text(value)?;
        match &mut out.if_none_match {
            Some(list) => {
                list.push_str(", ");
                list.push_str(v);
            }
            None => out.if_none_match = Some(v.to_owned()),
        }
    } else if name.eq_ignore_ascii_case("if-modified-since") {
        out.if_modified_since.get_or_insert(text(value)?.to_owned());
    } else if name.eq_ignore_ascii_case("range") {
        out.range.get_or_insert(text(value)?.to_owned());
    } else if name.eq_ignore_ascii_case("if-range") {
        let v = text(value)?;
        out.more().if_range.get_or_insert_with(|| v.to_owned());
    } else if name.eq_ignore_ascii_case("accept-encoding") {
        // A value we cannot read only loses the preference it states: not worth a 400.
        if let Ok(v) = text(value) {
            join_list(&mut out.more().accept_encoding, v);
        }
    } else if name.eq_ignore_ascii_case("accept") {
        if let Ok(v) = text(value) {
            join_list(&mut out.more().accept, v);
        }
    } else if name.eq_ignore_ascii_case("referer") {
        out.referer = Some(String::from_utf8_lossy(value).into_owned());
    } else if name.eq_ignore_ascii_case("user-agent") {
        out.user_agent = Some(String::from_utf8_lossy(value).into_owned());
    }
    Ok(())
}

impl Framing<'_> {
    /// The framing rules of RFC 9112, then the body length and keep-alive wish into `out`.
    fn apply(self, out: &mut Request) -> Result<(), ParseError> {
        // RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400; 1.0 may omit it.
        if self.hosts > 1 || (self.hosts == 0 && out.version == Version::Http11) {
            return Err(ParseError::BadRequest("a request needs exactly one Host"));
        }
        // RFC 9112 §6.1: both framings at once is a smuggling attempt.
        if let Some(te) = self.transfer_encoding {
            if self.content_length.is_some() {
                return Err(ParseError::BadRequest(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            let last = te.rsplit(|&b| b == b',').next().map(trim).unwrap_or(b"");
            return Err(if last.eq_ignore_ascii_case(b"chunked") {
                ParseError::LengthRequired
            } else {
                ParseError::NotImplemented
            });
        }
        out.body_len = self.content_length.unwrap_or(0);
        out.keep_alive = match out.version {
            Version::Http11 => !self.conn_close,
            Version::Http10 => self.conn_keep_alive && !self.conn_close,
        };
        Ok(())
    }
}

/// Bytes of CRLF / LF lines before the request line.
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        if buf[i..].starts_with(b"\r\n") {
            i += 2;
        } else if buf[i..].starts_with(b"\n") {
            i += 1;
        } else {
            return i;
        }
    }
}

/// Refuses a request line (or the start of one) that no byte appended could make valid:
/// `method SP target SP HTTP/d.d`, where the method is a token and the target visible ASCII.
/// Lenient where httparse decides on the whole line (repeated spaces, any digits in the
/// version): this only finds bytes that rule a request out.
fn check_line_start(line: &[u8]) -> Result<(), ParseError> {
    const BAD: ParseError = ParseError::BadRequest("not an HTTP request line");
    let mut parts = line.splitn(2, |&b| b == b' ');
    let method = parts.next().unwrap_or(b"");
    if !method.iter().all(|&b| is_tchar(b)) {
        return Err(BAD);
    }
    let Some(rest) = parts.next() else {
        return Ok(());
    };
    let rest = trim_start_spaces(rest);
    let mut parts = rest.splitn(2, |&b| b == b' ');
    let target = parts.next().unwrap_or(b"");
    if !target.iter().all(|b| (0x21..0x7f).contains(b)) {
        return Err(BAD);
    }
    let Some(version) = parts.next() else {
        return Ok(());
    };
    let version = trim_start_spaces(version);
    let shape = b"HTTP/0.0";
    let fits = version.len() <= shape.len()
        && version.iter().zip(shape).all(|(&b, &s)| match s {
            b'0' => b.is_ascii_digit(),
            _ => b == s,
        });
    if fits {
        Ok(())
    } else {
        Err(BAD)
    }
}

fn trim_start_spaces(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().take_while(|&&b| b == b' ').count();
    &bytes[n..]
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn memchr_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `HTTP/d.d` other than 1.0 and 1.1 is understood but unsupported (505); anything else that
/// httparse rejects as a version is malformed (400).
fn check_version(line: &[u8]) -> Result<(), ParseError> {
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    if let [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] = version {
        if major.is_ascii_digit()
            && minor.is_ascii_digit()
            && !(*major == b'1' && (*minor == b'0' || *minor == b'1'))
        {
            return Err(ParseError::VersionNotSupported);
        }
    }
    Ok(())
}

/// Content-Length is 1*DIGIT; a list (even of equal values), a sign or a space inside is a 400.
fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadRequest("malformed Content-Length"));
    }
    value
        .iter()
        .try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .ok_or(ParseError::BadRequest("malformed Content-Length"))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Appends `value` to the list `list` holds, as a list field sent on several lines is one
/// comma-separated list (RFC 9110 §5.3).
fn join_list(list: &mut Option<String>, value: &str) {
    match list {
        Some(l) => {
            l.push_str(", ");
            l.push_str(value);
        }
        None => *list = Some(value.to_owned()),
    }
}

/// Header values we act on must be visible ASCII (obs-text has no meaning in an ETag or a date).
fn text(value: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(value)
        .ok()
        .filter(|s| s.is_ascii())
        .ok_or(ParseError::BadRequest("non-ASCII header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n";

    /// Feeds `input` three ways: whole, one byte at a time, and followed by a pipelined request;
    /// all three must agree, and the pipelined request must parse from where the first ended.
    fn check(input: &[u8]) -> Result<Request, ParseError> {
        check_with(input, &Limits::default())
    }

    fn check_with(input: &[u8], limits: &Limits) -> Result<Request, ParseError> {
        let limits = *limits;
        let whole = parse(input, &limits);

        // Byte at a time: every strict prefix is Partial (or already the same error), never Complete.
        for end in 0..input.len() {
            match parse(&input[..end], &limits) {
                Ok(Parsed::Partial) => {}
                Ok(Parsed::Complete(..)) => panic!("prefix of {end} bytes parsed as complete"),
                Err(e) => {
                    assert_eq!(whole, Err(e), "prefix of {end} bytes failed differently");
                    return Err(e);
                }
            }
        }

        let mut piped = input.to_vec();
        piped.extend_from_slice(NEXT);
        match (&whole, parse(&piped, &limits)) {
            (Ok(Parsed::Complete(a, n)), Ok(Parsed::Complete(b, m))) => {
                assert_eq!((a, *n), (&b, m));
                assert_eq!(*n, input.len(), "a complete head uses the whole input");
                match parse(&piped[m..], &limits) {
                    Ok(Parsed::Complete(next, _)) => assert_eq!(next.target, "/next"),
                    other => panic!("pipelined request not parsed: {other:?}"),
                }
                Ok(b)
            }
            (Err(e), Err(f)) => {
                assert_eq!(*e, f);
                Err(f)
            }
            (w, p) => panic!("whole {w:?} and pipelined {p:?} disagree"),
        }
    }

    fn ok(input: &[u8]) -> Request {
        check(input).unwrap_or_else(|e| panic!("{:?} refused: {e}", String::from_utf8_lossy(input)))
    }

    fn status(input: &[u8]) -> u16 {
        match check(input) {
            Err(e) => e.status(),
            Ok(r) => panic!("{:?} accepted as {r:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn simple_get() {
        let r = ok(b"GET /index.html HTTP/1.1\r\nHost: example\r\n\r\n");
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/index.html");
        assert_eq!(r.version, Version::Http11);
        assert!(r.keep_alive);
        assert_eq!(r.body_len, 0);
    }

    #[test]
    fn methods_are_classified() {
        assert_eq!(
            ok(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::Head
        );
        assert_eq!(
            ok(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::Options
        );
        assert_eq!(
            ok(b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::NotAllowed
        );
        assert_eq!(
            ok(b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::Unknown
        );
        // Methods are case-sensitive (RFC 9110 §9.1).
        assert_eq!(
            ok(b"get / HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::Unknown
        );
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!ok(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            !ok(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n").keep_alive
        );
        assert!(ok(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n").keep_alive);
    }

    #[test]
    fn conditional_and_range_fields_are_kept() {
        let r = ok(b"GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"a\"\r\nIf-None-Match: W/\"b\"\r\n\
              If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nRange: bytes=0-1\r\nIf-Range: \"a\"\r\n\r\n");
        assert_eq!(r.if_none_match.as_deref(), Some("\"a\", W/\"b\""));
        assert_eq!(
            r.if_modified_since.as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(r.range.as_deref(), Some("bytes=0-1"));
        assert_eq!(r.if_range(), Some("\"a\""));
    }

    #[test]
    fn negotiation_fields_are_kept_as_one_list() {
        let r = ok(
            b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\naccept: text/html\r\n\
              ACCEPT-ENCODING: br;q=0.5\r\nAccept: application/json\r\n\r\n",
        );
        assert_eq!(r.accept_encoding(), Some("gzip, br;q=0.5"));
        assert_eq!(r.accept(), Some("text/html, application/json"));
        // A value that is not ASCII is dropped, not refused.
        let r = ok(b"GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: \xff\r\n\r\n");
        assert_eq!(r.accept_encoding(), None);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        assert_eq!(ok(b"\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n").target, "/a");
    }

    #[test]
    fn content_length_is_reported() {
        let input = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(ok(input).body_len, 5);
    }

    #[test]
    fn framing_attacks_are_400() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / FOO/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1\r\nHost: x\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            assert_eq!(status(input), 400, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn transfer_encoding_is_refused() {
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
    }

    #[test]
    fn unsupported_versions_are_505() {
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.2\r\nHost: x\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/0.9\r\n\r\n"), 505);
    }

    #[test]
    fn bytes_that_cannot_start_a_request_are_400_at_once() {
        let limits = Limits::default();
        // A TLS ClientHello's first bytes, binary garbage, a bad target or version byte: no line
        // end needed.
        for prefix in [
            &b"\x16\x03\x01\x02\x00"[..],
            b"\x00",
            b"GE\xffT",
            b"GET /a\x01",
            b"GET / HTTX",
            b"GET / HTTP/1.1x",
            b"GET\t/",
        ] {
            assert_eq!(
                parse(prefix, &limits),
                Err(ParseError::BadRequest("not an HTTP request line")),
                "{prefix:?}"
            );
        }
        // Every prefix of a valid line is still only incomplete.
        let line = b"OPTIONS  /a?b=c  HTTP/1.1\r";
        for n in 0..=line.len() {
            assert_eq!(parse(&line[..n], &limits), Ok(Parsed::Partial), "{n}");
        }
    }

    #[test]
    fn limits_give_414_and_431() {
        let limits = Limits::default();
        let long_target = "a".repeat(limits.max_line);
        let line = format!("GET /{long_target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(line.as_bytes()), 414);
        // Without a newline yet, 414 as soon as the line is known to be too long.
        assert_eq!(
            parse(&line.as_bytes()[..limits.max_line + 1], &limits),
            Err(ParseError::UriTooLong)
        );

        let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
        for i in 0..limits.max_headers {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(status(many.as_bytes()), 431);

        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(limits.max_head)
        );
        assert_eq!(status(big.as_bytes()), 431);
    }

    #[test]
    fn limits_are_configurable() {
        let limits = Limits {
            max_line: 20,
            max_head: 60,
            max_headers: 2,
            keep_fields: false,
        };
        let input = b"GET /0123456789abcdef HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(parse(input, &limits), Err(ParseError::UriTooLong));
        let input = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(parse(input, &limits), Err(ParseError::HeadersTooLarge));
    }

    // Found by fuzz/parse_request (input "\0A:A\r\n::\n", max_line 4): a request line of
    // exactly max_line bytes got 414 when a read ended between its CR and LF, and 400 or 200
    // when it did not.
    #[test]
    fn request_line_of_max_line_bytes_split_after_its_cr() {
        let limits = Limits::default();
        let target = "a".repeat(limits.max_line - "GET / HTTP/1.1".len());
        let input = format!("GET /{target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let line_and_cr = limits.max_line + 1;
        assert_eq!(input.as_bytes()[line_and_cr - 1], b'\r');
        assert_eq!(
            parse(&input.as_bytes()[..line_and_cr], &limits),
            Ok(Parsed::Partial)
        );
        assert_eq!(ok(input.as_bytes()).target.len(), 1 + target.len());
        // One byte longer is too long, CR or not.
        let input = format!("GET /{target}a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(status(input.as_bytes()), 414);
    }

    // Found by fuzz/parse_request (input "\r\n\r\nR:", max_head 4): the empty lines before a
    // request line were not counted against max_head, so a client sending nothing but CRLFs was
    // Partial forever while the connection buffered all of it, and a head behind them could be
    // accepted at any size.
    #[test]
    fn empty_lines_before_the_request_count_against_max_head() {
        let limits = Limits::default();
        let crlfs = b"\r\n".repeat(limits.max_head / 2 + 1);
        assert_eq!(parse(&crlfs, &limits), Err(ParseError::HeadersTooLarge));
        let mut input = b"\r\n".repeat(limits.max_head / 2 - 10);
        input.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(parse(&input, &limits), Err(ParseError::HeadersTooLarge));
        let small = Limits {
            max_line: 4,
            max_head: 4,
            max_headers: 1,
            keep_fields: false,
        };
        assert_eq!(
            check_with(b"\r\n\r\nR:", &small),
            Err(ParseError::HeadersTooLarge)
        );
    }

    // A head too large whose bytes past max_head are also malformed: a read that stopped past the
    // limit got 431, one that took in the malformed byte too got 400. Now the answer depends only
    // on the first max_head bytes, so it is 431 either way.
    #[test]
    fn answer_does_not_depend_on_bytes_past_max_head() {
        let limits = Limits {
            max_line: 64,
            max_head: 64,
            max_headers: 8,
            keep_fields: true,
        };
        let input = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\x01\r\n\r\n",
            "a".repeat(64)
        );
        assert_eq!(
            check_with(input.as_bytes(), &limits),
            Err(ParseError::HeadersTooLarge)
        );
    }

    #[test]
    fn every_field_is_kept_only_when_asked() {
        let input = b"POST /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 0\r\nX-A: 2\r\n\r\n";
        let Ok(Parsed::Complete(plain, _)) = parse(input, &Limits::default()) else {
            panic!("not parsed");
        };
        assert!(plain.fields().is_empty());
        let keep = Limits {
            keep_fields: true,
            ..Limits::default()
        };
        let Ok(Parsed::Complete(kept, _)) = parse(input, &keep) else {
            panic!("not parsed");
        };
        let names: Vec<(&str, &[u8])> = kept
            .fields()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        assert_eq!(
            names,
            [
                ("Host", &b"h"[..]),
                ("X-A", b"1"),
                ("Content-Length", b"0"),
                ("X-A", b"2")
            ]
        );
    }

    #[test]
    fn partial_input_is_partial() {
        let limits = Limits::default();
        assert_eq!(parse(b"", &limits), Ok(Parsed::Partial));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\n", &limits),
            Ok(Parsed::Partial)
        );
    }
}
