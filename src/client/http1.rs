//! Client-side HTTP/1.1 response framing, sans-IO: where does one response end, and is it valid?
//!
//! Both clients need the same answer. `send` must know when to stop reading (a keep-alive server
//! will not close), and `load` must count a response only when its status line and framing are
//! valid, so a broken server shows up as errors rather than as speed. The parser is fed whatever
//! bytes arrived; it never copies a body (the load generator only counts bodies), and it holds no
//! socket, clock or allocation, so every case is tested here byte by byte.
//!
//! Framing follows RFC 9112 §6.3: HEAD, 1xx, 204 and 304 have no body; then
//! `Transfer-Encoding: chunked`, then `Content-Length`, else the body runs until the server
//! closes. Interim 1xx responses are skipped. What is accepted is strict where a lenient client
//! would hide a server bug (bad Content-Length, chunk-size or CRLF) and lenient where the
//! difference is harmless (a reason phrase, header case).
use std::mem::MaybeUninit;

/// A response head larger than this is an error (servers limit theirs to far less).
pub const MAX_HEAD: usize = 64 * 1024;
/// Header fields per response head; more is an error rather than a silent truncation.
const MAX_HEADERS: usize = 96;
/// A chunk-size of more than 15 hex digits would overflow u64 arithmetic on the total.
const MAX_CHUNK_DIGITS: u8 = 15;

/// Why a response is not valid HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadResponse {
    #[error("invalid status line or header ({0})")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid or conflicting Content-Length")]
    ContentLength,
    #[error("invalid chunked body")]
    Chunked,
    #[error("101 Switching Protocols is not HTTP/1.1 any more")]
    Upgrade,
}

/// What a call to [`ResponseParser::feed`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes of the input that belong to this response (the rest, if any, follow it).
    pub used: usize,
    /// The response is complete.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// The chunked decoder's position (RFC 9112 §7.1), one state per syntactic element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size { value: u64, digits: u8 },
    Ext { value: u64 },
    SizeLf { value: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
}

/// Frames one response at a time; [`reset`](Self::reset) it for the next one.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    head_request: bool,
    phase: Phase,
    status: u16,
    close: bool,
}

impl ResponseParser {
    /// A parser for the response to a request; `head_request` when the method was HEAD, whose
    /// response announces a length but carries no body.
    pub fn new(head_request: bool) -> ResponseParser {
        ResponseParser {
            head_request,
            phase: Phase::Head,
            status: 0,
            close: false,
        }
    }

    /// Ready for the next response on the same connection.
    pub fn reset(&mut self) {
        self.phase = Phase::Head;
        self.status = 0;
        self.close = false;
    }

    /// The final status code (0 until the head has been parsed).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The server said it will close (`Connection: close`, HTTP/1.0 without keep-alive, or a
    /// body delimited by the close itself): no further request may use this connection.
    pub fn must_close(&self) -> bool {
        self.close
    }

    /// The head has been parsed (some of the response was valid).
    pub fn head_done(&self) -> bool {
        self.phase != Phase::Head
    }

    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Consumes the bytes of `buf` that belong to this response. While the head is incomplete
    /// nothing is consumed: call again with the same bytes plus more (the head must be
    /// contiguous, the body need not be).
    pub fn feed(&mut self, buf: &[u8]) -> Result<Fed, BadResponse> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self.phase {
                Phase::Done => break,
                Phase::Head => match self.parse_head(rest)? {
                    Some(n) => used += n,
                    None => break,
                },
                Phase::Length(left) => {
                    let n = left.min(rest.len() as u64);
                    used += n as usize;
                    self.phase = if n == left {
                        Phase::Done
                    } else {
                        Phase::Length(left - n)
                    };
                    break;
                }
                Phase::Chunked(state) => {
                    let (n, next) = chunked(state, rest)?;
                    used += n;
                    self.phase = next;
                    if n == rest.len() || next == Phase::Done {
                        break;
                    }
                }
                Phase::UntilClose => {
                    used = buf.len();
                    break;
                }
            }
        }
        Ok(Fed {
            used,
            done: self.phase == Phase::Done,
        })
    }

    /// The server closed the connection: true when that completes the response (a body
    /// delimited by the close), false when the response was cut short.
    pub fn eof(&mut self) -> bool {
        if self.phase == Phase::UntilClose {
            self.phase = Phase::Done;
        }
        self.phase == Phase::Done
    }

    /// Parses a whole head at the start of `buf`: `Some(bytes)` when complete, `None` when more
    /// bytes are needed. Sets the phase that follows.
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<usize>, BadResponse> {
        let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(BadResponse::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(BadResponse::Head(e)),
        };
        let code = resp.code.unwrap_or(0);
        let http10 = resp.version == Some(0);
        if (100..200).contains(&code) {
            if code == 101 {
                return Err(BadResponse::Upgrade);
            }
            // Interim response (100 Continue, 103 Early Hints): the real one follows.
            return Ok(Some(len));
        }
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut other_coding = false;
        let mut close = http10;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let v = parse_length(h.value).ok_or(BadResponse::ContentLength)?;
                if length.is_some_and(|l| l != v) {
                    return Err(BadResponse::ContentLength);
                }
                length = Some(v);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // Only the last coding decides the framing; anything but chunked there means
                // the body runs until the close.
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                chunked = trim(last).eq_ignore_ascii_case(b"chunked");
                other_coding = !chunked;
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if http10 && token.eq_ignore_ascii_case(b"keep-alive") {
                        close = false;
                    }
                }
            }
        }
        self.status = code;
        self.close = close;
        self.phase = if self.head_request || code == 204 || code == 304 {
            Phase::Done
        } else if chunked {
            Phase::Chunked(Chunk::Size {
                value: 0,
                digits: 0,
            })
        } else if other_coding {
            self.close = true;
            Phase::UntilClose
        } else if let Some(l) = length {
            if l == 0 {
                Phase::Done
            } else {
                Phase::Length(l)
            }
        } else {
            self.close = true;
            Phase::UntilClose
        };
        Ok(Some(len))
    }
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// Content-Length is 1*DIGIT (RFC 9110 §8.6); a list of identical values is tolerated.
fn parse_length(v: &[u8]) -> Option<u64> {
    let mut result = None;
    for part in v.split(|&b| b == b',').map(trim) {
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = part
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        if result.is_some_and(|r| r != n) {
            return None;
        }
        result = Some(n);
    }
    result
}

/// Advances the chunked decoder over `buf`; returns the bytes used and the next phase.
fn chunked(mut state: Chunk, buf: &[u8]) -> Result<(usize, Phase), BadResponse> {
    let mut i = 0;
    while i < buf.len() {
        if let Chunk::Data(left) = state {
            let n = left.min((buf.len() - i) as u64);
            i += n as usize;
            state = if n == left {
                Chunk::DataCr
            } else {
                Chunk::Data(left - n)
            };
            continue;
        }
        let b = buf[i];
        i += 1;
        state = match state {
            Chunk::Size { value, digits } => match (b as char).to_digit(16) {
                Some(d) if digits < MAX_CHUNK_DIGITS => Chunk::Size {
                    value: value * 16 + u64::from(d),
                    digits: digits + 1,
                },
                None if digits > 0 && matches!(b, b';' | b' ' | b'\t') => Chunk::Ext { value },
                None if digits > 0 && b == b'\r' => Chunk::SizeLf { value },
                _ => return Err(BadResponse::Chunked),
            },
            Chunk::Ext { value } => match b {
                b'\r' => Chunk::SizeLf { value },
                b'\n' => return Err(BadResponse::Chunked),
                _ => Chunk::Ext { value },
            },
            Chunk::SizeLf { value } => match (b, value) {
                (b'\n', 0) => Chunk::TrailerLineStart,
                (b'\n', v) => Chunk::Data(v),
                _ => return Err(BadResponse::Chunked),
            },
            Chunk::DataCr if b == b'\r' => Chunk::DataLf,
            Chunk::DataLf if b == b'\n' => Chunk::Size {
                value: 0,
                digits: 0,
            },
            Chunk::TrailerLineStart if b == b'\r' => Chunk::FinalLf,
            Chunk::TrailerLineStart | Chunk::TrailerLine if b != b'\r' && b != b'\n' => {
                Chunk::TrailerLine
            }
            Chunk::TrailerLine if b == b'\r' => Chunk::TrailerLf,
            Chunk::TrailerLf if b == b'\n' => Chunk::TrailerLineStart,
            Chunk::FinalLf if b == b'\n' => return Ok((i, Phase::Done)),
            _ => return Err(BadResponse::Chunked),
        };
    }
    Ok((i, Phase::Chunked(state)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes the way a connection would (keeping unconsumed
    /// head bytes), returning (bytes used, done, status, close).
    fn run(input: &[u8], step: usize, head: bool) -> Result<(usize, bool, u16, bool), BadResponse> {
        let mut p = ResponseParser::new(head);
        let mut pending: Vec<u8> = Vec::new();
        let mut total = 0;
        for piece in input.chunks(step.max(1)) {
            pending.extend_from_slice(piece);
            let fed = p.feed(&pending)?;
            total += fed.used;
            pending.drain(..fed.used);
            if fed.done {
                return Ok((total, true, p.status(), p.must_close()));
            }
        }
        Ok((total, false, p.status(), p.must_close()))
    }

    /// Every case must give the same result whole and one byte at a time.
    fn both(input: &[u8], head: bool) -> Result<(usize, bool, u16, bool), BadResponse> {
        let whole = run(input, input.len(), head);
        let bytewise = run(input, 1, head);
        assert_eq!(whole, bytewise, "{:?}", String::from_utf8_lossy(input));
        whole
    }

    #[test]
    fn content_length_frames_and_leaves_what_follows() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        assert_eq!(both(r, false), Ok((r.len() - 8, true, 200, false)));
        let incomplete = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(
            both(incomplete, false),
            Ok((incomplete.len(), false, 200, false))
        );
    }

    #[test]
    fn no_body_cases() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n";
        assert_eq!(both(head, true), Ok((head.len(), true, 200, false)));
        for r in [
            &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert!(both(r, false).unwrap().1, "{r:?}");
        }
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                  5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        assert_eq!(both(r, false), Ok((r.len() - 4, true, 200, false)));
        let simple = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(both(simple, false), Ok((simple.len(), true, 200, false)));
    }

    #[test]
    fn chunked_errors() {
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello\r\n",
            b"1234567890123456\r\n",
            b"0\r\n\n",
        ] {
            let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            r.extend_from_slice(body);
            assert_eq!(both(&r, false), Err(BadResponse::Chunked), "{body:?}");
        }
    }

    #[test]
    fn until_close() {
        // The seed's own replies: no headers at all, the close ends the body.
        let r = b"HTTP/1.1 200 OK\r\n\r\n<html></html>\r\n";
        let mut p = ResponseParser::new(false);
        assert_eq!(
            p.feed(r),
            Ok(Fed {
                used: r.len(),
                done: false
            })
        );
        assert!(p.must_close());
        assert!(p.eof());
        assert!(p.is_done());
        // Cut short: a length was promised.
        let mut p = ResponseParser::new(false);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab")
            .unwrap();
        assert!(!p.eof());
        // Nothing at all.
        assert!(!ResponseParser::new(false).eof());
        // A coding other than chunked last: until close too.
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(both(r, false), Ok((r.len(), false, 200, true)));
    }

    #[test]
    fn connection_close_and_http10() {
        let r = b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 0\r\n\r\n";
        assert!(both(r, false).unwrap().3);
        let r = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert!(both(r, false).unwrap().3);
        let r = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        assert!(!both(r, false).unwrap().3);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(both(r, false), Ok((r.len(), true, 201, false)));
        let r = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n";
        assert_eq!(both(r, false), Err(BadResponse::Upgrade));
    }

    #[test]
    fn bad_heads_and_lengths() {
        for r in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        ] {
            assert!(matches!(both(r, false), Err(BadResponse::Head(_))), "{r:?}");
        }
        for cl in ["abc", "-1", "1, 2", "", "99999999999999999999"] {
            let r = format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n");
            assert_eq!(
                both(r.as_bytes(), false),
                Err(BadResponse::ContentLength),
                "{cl}"
            );
        }
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(both(r, false), Err(BadResponse::ContentLength));
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nab";
        assert_eq!(both(r, false), Ok((r.len(), true, 200, false)));
    }

    #[test]
    fn head_size_is_bounded() {
        let mut r = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        r.resize(MAX_HEAD + 10, b'a');
        assert_eq!(
            ResponseParser::new(false).feed(&r),
            Err(BadResponse::HeadTooLarge)
        );
    }

    #[test]
    fn reset_allows_the_next_response() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        let mut p = ResponseParser::new(false);
        let first = p.feed(r).unwrap();
        assert!(first.done);
        assert_eq!(p.status(), 200);
        p.reset();
        let second = p.feed(&r[first.used..]).unwrap();
        assert!(second.done);
        assert_eq!(first.used + second.used, r.len());
        assert_eq!(p.status(), 404);
    }
}
