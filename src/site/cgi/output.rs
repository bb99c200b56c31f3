//! A CGI script's output, sans-IO (RFC 3875 §6): its header block parsed and checked, turned
//! into our response head, and the body that follows framed for the client (Content-Length,
//! chunked, or delimited by the close).
//!
//! The script's own head is never copied through unchecked: a malformed block, a bad `Status`,
//! a bad `Content-Length` or a block larger than [`MAX_HEAD`] is a 502; hop-by-hop fields and
//! the fields we write ourselves (`Date`, `Server`, `Connection`) are dropped.
use crate::http::response::HeadWriter;

/// The largest header block a script may print (64 KiB, twice nginx's default for an upstream's
/// head): beyond it, 502.
pub const MAX_HEAD: usize = 64 * 1024;
/// The most fields a script's head may hold.
const MAX_FIELDS: usize = 100;

/// Why a script's output cannot be answered with (all 502).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadOutput {
    #[error("malformed header block")]
    Malformed,
    #[error("header block larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("invalid Status field")]
    Status,
    #[error("invalid Content-Length field")]
    Length,
    #[error("no header field")]
    Empty,
}

/// A script's head, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptHead {
    pub status: u16,
    /// `Content-Length` as the script gave it.
    pub length: Option<u64>,
    /// The fields passed to the client, in order (`Location` and `Content-Type` included).
    pub fields: Vec<(String, String)>,
}

/// Parses the script's head at the start of `buf`: `Ok(None)` until its blank line arrives;
/// then the head and the bytes it used (the body starts after them).
pub fn parse_head(buf: &[u8]) -> Result<Option<(ScriptHead, usize)>, BadOutput> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let (used, fields) = match httparse::parse_headers(window, &mut headers) {
        Ok(httparse::Status::Complete((used, fields))) => (used, fields),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(BadOutput::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadOutput::TooLarge),
        Err(_) => return Err(BadOutput::Malformed),
    };
    if fields.is_empty() {
        return Err(BadOutput::Empty);
    }
    let mut status = None;
    let mut length = None;
    let mut location = false;
    let mut kept = Vec::with_capacity(fields.len());
    for h in fields {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| BadOutput::Malformed)?
            .trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("status") {
            if status.is_some() {
                return Err(BadOutput::Status);
            }
            status = Some(parse_status(value)?);
        } else if name.eq_ignore_ascii_case("content-length") {
            if length.is_some() || value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadOutput::Length);
            }
            length = Some(value.parse().map_err(|_| BadOutput::Length)?);
        } else if !dropped(name) {
            location |= name.eq_ignore_ascii_case("location");
            kept.push((name.to_owned(), value.to_owned()));
        }
    }
    // RFC 3875 §6.2.3-4: a Location without a Status is a redirect; we send every Location to
    // the client (a local one, `/path`, is not re-processed inside the server: lighttpd's
    // default too).
    let status = status.unwrap_or(if location { 302 } else { 200 });
    Ok(Some((
        ScriptHead {
            status,
            length,
            fields: kept,
        },
        used,
    )))
}

/// `Status: NNN reason`: a three-digit final status (200-599; a 1xx would need a second head).
fn parse_status(value: &str) -> Result<u16, BadOutput> {
    let code = value.split(' ').next().unwrap_or("");
    match code.parse::<u16>() {
        Ok(n) if code.len() == 3 && (200..=599).contains(&n) => Ok(n),
        _ => Err(BadOutput::Status),
    }
}

/// Fields the script does not decide: the connection's own (hop-by-hop, RFC 9110 §7.6.1) and
/// those every head of ours already carries.
fn dropped(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "date",
        "server",
    ]
    .iter()
    .any(|d| name.eq_ignore_ascii_case(d))
}

/// How the body after the head reaches the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The script gave a Content-Length: that many bytes are sent, and nothing past them.
    Length { left: u64 },
    /// HTTP/1.1 without a length: chunked.
    Chunked,
    /// HTTP/1.0 without a length: the bytes as they come, the close ends them.
    Close,
    /// No body at all (HEAD, 204, 304): what the script prints after its head is dropped.
    None,
}

impl ScriptHead {
    /// Our response head for it (without `Connection` and the blank line: the connection's
    /// state machine ends it), and how the body goes out.
    pub fn encode(&self, date: &str, http10: bool, head_only: bool) -> (Vec<u8>, Framing) {
        let mut head = Vec::with_capacity(256);
        let mut w = HeadWriter::new(&mut head, self.status, date);
        for (name, value) in &self.fields {
            w.field(name, value.as_str());
        }
        let bodiless = matches!(self.status, 204 | 304);
        if let (Some(len), false) = (self.length, bodiless) {
            w.field("Content-Length", len);
        }
        let framing = match self.length {
            _ if head_only || bodiless => Framing::None,
            Some(left) => Framing::Length { left },
            None if http10 => Framing::Close,
            None => {
                w.field("Transfer-Encoding", "chunked");
                Framing::Chunked
            }
        };
        (head, framing)
    }
}

impl Framing {
    /// Appends to `out` what the client gets for `data` from the script's body.
    pub fn body(&mut self, data: &[u8], out: &mut Vec<u8>) {
        match self {
            Framing::Length { left } => {
                let n = (data.len() as u64).min(*left) as usize;
                out.extend_from_slice(&data[..n]);
                *left -= n as u64;
            }
            Framing::Chunked if !data.is_empty() => {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Framing::Close => out.extend_from_slice(data),
            Framing::Chunked | Framing::None => {}
        }
    }

    /// The script's output ended: appends the end of the body to `out`. False if the body is
    /// short of the length promised (the connection must close rather than go on).
    pub fn end(&self, out: &mut Vec<u8>) -> bool {
        match self {
            Framing::Length { left } => *left == 0,
            Framing::Chunked => {
                out.extend_from_slice(b"0\r\n\r\n");
                true
            }
            Framing::Close | Framing::None => true,
        }
    }

    /// The connection cannot be kept after this body (its end is the close).
    pub fn closes(&self) -> bool {
        matches!(self, Framing::Close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    fn head(text: &str) -> ScriptHead {
        let (h, used) = parse_head(text.as_bytes()).unwrap().unwrap();
        assert!(used <= text.len());
        h
    }

    fn encoded(h: &ScriptHead, http10: bool, head_only: bool) -> (String, Framing) {
        let (bytes, framing) = h.encode(DATE, http10, head_only);
        (String::from_utf8(bytes).unwrap(), framing)
    }

    #[test]
    fn a_document_is_200_with_its_type_and_chunked_without_a_length() {
        let text = "Content-Type: text/plain\r\nX-Y: z\r\n\r\nbody";
        let (h, used) = parse_head(text.as_bytes()).unwrap().unwrap();
        assert_eq!(&text[used..], "body");
        assert_eq!(h.status, 200);
        let (out, framing) = encoded(&h, false, false);
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("Content-Type: text/plain\r\nX-Y: z\r\n"));
        assert!(out.ends_with("Transfer-Encoding: chunked\r\n"));
        assert_eq!(framing, Framing::Chunked);
    }

    #[test]
    fn bare_newlines_are_accepted_as_most_scripts_print_them() {
        let text = "Content-Type: text/html\nStatus: 404 Not Here\n\n<p>";
        let (h, used) = parse_head(text.as_bytes()).unwrap().unwrap();
        assert_eq!((&text[used..], h.status), ("<p>", 404));
    }

    #[test]
    fn a_head_arriving_piece_by_piece_is_partial_until_its_blank_line() {
        let text = b"Status: 201 Created\r\nContent-Type: a/b\r\n\r\n";
        for end in 0..text.len() {
            assert_eq!(parse_head(&text[..end]), Ok(None), "{end}");
        }
        assert_eq!(
            head("Status: 201 Created\r\nContent-Type: a/b\r\n\r\n").status,
            201
        );
    }

    #[test]
    fn location_without_status_is_a_302_and_status_wins_when_given() {
        let h = head("Location: https://example.com/\r\n\r\n");
        assert_eq!(h.status, 302);
        let (out, _) = encoded(&h, false, false);
        assert!(out.starts_with("HTTP/1.1 302 Found\r\n"), "{out}");
        assert_eq!(
            h.fields,
            [("Location".to_owned(), "https://example.com/".to_owned())]
        );
        assert_eq!(head("Status: 301\r\nLocation: /x\r\n\r\n").status, 301);
    }

    #[test]
    fn invalid_heads_are_refused() {
        for (text, err) in [
            ("no colon here\r\n\r\n", BadOutput::Malformed),
            ("Status: 99\r\n\r\n", BadOutput::Status),
            ("Status: 100 Continue\r\n\r\n", BadOutput::Status),
            ("Status: 600\r\n\r\n", BadOutput::Status),
            ("Status: abc\r\n\r\n", BadOutput::Status),
            ("Status: 200\r\nStatus: 404\r\n\r\n", BadOutput::Status),
            ("Content-Length: -1\r\n\r\n", BadOutput::Length),
            (
                "Content-Length: 1\r\nContent-Length: 1\r\n\r\n",
                BadOutput::Length,
            ),
            (
                "Content-Length: 99999999999999999999999\r\n\r\n",
                BadOutput::Length,
            ),
            ("\r\n", BadOutput::Empty),
            ("Bad Name: x\r\n\r\n", BadOutput::Malformed),
        ] {
            assert_eq!(parse_head(text.as_bytes()), Err(err), "{text:?}");
        }
        let huge = format!("X: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(parse_head(huge.as_bytes()), Err(BadOutput::TooLarge));
        let many = "X: y\r\n".repeat(MAX_FIELDS + 1) + "\r\n";
        assert_eq!(parse_head(many.as_bytes()), Err(BadOutput::TooLarge));
    }

    #[test]
    fn hop_by_hop_and_our_own_fields_are_dropped() {
        let h = head(
            "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nDate: x\r\nServer: y\r\nContent-Type: a/b\r\n\r\n",
        );
        assert_eq!(h.fields, [("Content-Type".to_owned(), "a/b".to_owned())]);
    }

    #[test]
    fn the_framing_follows_the_length_the_version_and_the_method() {
        let sized = head("Content-Length: 3\r\n\r\n");
        let (out, framing) = encoded(&sized, false, false);
        assert!(out.contains("Content-Length: 3\r\n") && !out.contains("chunked"));
        assert_eq!(framing, Framing::Length { left: 3 });
        let unsized_ = head("Content-Type: a/b\r\n\r\n");
        assert_eq!(encoded(&unsized_, true, false).1, Framing::Close);
        let (out, framing) = encoded(&unsized_, false, true);
        assert!(!out.contains("chunked"));
        assert_eq!(framing, Framing::None);
        let (out, framing) = encoded(
            &head("Status: 304\r\nContent-Length: 5\r\n\r\n"),
            false,
            false,
        );
        assert!(!out.contains("Content-Length"));
        assert_eq!(framing, Framing::None);
    }

    #[test]
    fn bodies_are_framed_and_ended() {
        let mut out = Vec::new();
        let mut chunked = Framing::Chunked;
        chunked.body(b"hello", &mut out);
        chunked.body(b"", &mut out);
        chunked.body(&[b'x'; 17], &mut out);
        assert!(chunked.end(&mut out));
        let expected = [&b"5\r\nhello\r\n11\r\n"[..], &[b'x'; 17], b"\r\n0\r\n\r\n"].concat();
        assert_eq!(out, expected);

        let mut out = Vec::new();
        let mut sized = Framing::Length { left: 4 };
        sized.body(b"abc", &mut out);
        assert!(!sized.end(&mut out));
        sized.body(b"defg", &mut out);
        assert_eq!(out, b"abcd");
        assert!(sized.end(&mut out));

        let mut out = Vec::new();
        let mut none = Framing::None;
        none.body(b"dropped", &mut out);
        assert!(none.end(&mut out) && out.is_empty());
        assert!(Framing::Close.closes() && !Framing::Chunked.closes());
    }
}
