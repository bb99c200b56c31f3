//! Encoding a response head into bytes: status line, fields, blank line.
use std::fmt;
use std::io::Write;

/// The value of the `Server` field.
pub const SERVER: &str = concat!("archserve/", env!("CARGO_PKG_VERSION"));

/// The reason phrase for the status codes this server sends (and the common ones a CGI
/// script may set with `Status:`; RFC 9110 §15).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Writes a response head into a byte buffer. Fields are written as they are added (no map, no
/// per-field allocation): the head of a small-file response is built with one Vec that the
/// connection loop reuses.
pub struct HeadWriter<'a> {
    out: &'a mut Vec<u8>,
}

/// A field value, appended as bytes. Strings and numbers are copied and formatted directly:
/// through `core::fmt` (`write!`), the eight fields of a file response cost a sixth of the
/// user-space instructions of a keep-alive request (callgrind).
pub trait FieldValue {
    fn append_to(&self, out: &mut Vec<u8>);
}

impl FieldValue for str {
    fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl FieldValue for String {
    fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl FieldValue for fmt::Arguments<'_> {
    fn append_to(&self, out: &mut Vec<u8>) {
        let _ = out.write_fmt(*self);
    }
}

impl<T: FieldValue + ?Sized> FieldValue for &T {
    fn append_to(&self, out: &mut Vec<u8>) {
        (**self).append_to(out);
    }
}

macro_rules! decimal_field_value {
    ($($t:ty),*) => {$(
        impl FieldValue for $t {
            fn append_to(&self, out: &mut Vec<u8>) {
                append_decimal(out, *self as u64);
            }
        }
    )*};
}
decimal_field_value!(u16, u32, u64, usize);

/// `n` in decimal, as `{n}` would write it.
pub fn append_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl<'a> HeadWriter<'a> {
    /// Starts a head with the status line and the fields every response carries.
    pub fn new(out: &'a mut Vec<u8>, status: u16, date: &str) -> Self {
        out.extend_from_slice(b"HTTP/1.1 ");
        append_decimal(out, u64::from(status));
        out.push(b' ');
        out.extend_from_slice(reason(status).as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut w = HeadWriter { out };
        w.field("Date", date);
        w.field("Server", SERVER);
        w
    }

    /// Adds one field; the value must not contain CR or LF (all of ours are generated).
    pub fn field(&mut self, name: &str, value: impl FieldValue) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b": ");
        value.append_to(self.out);
        self.out.extend_from_slice(b"\r\n");
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_written_as_format_would() {
        for n in [0u64, 7, 10, 532, 1 << 20, u64::MAX] {
            let mut out = Vec::new();
            append_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn encodes_a_head() {
        let mut out = Vec::new();
        let mut w = HeadWriter::new(&mut out, 404, "Sun, 06 Nov 1994 08:49:37 GMT");
        w.field("Content-Length", 0u64);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "HTTP/1.1 404 Not Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nServer: {SERVER}\r\n\
                 Content-Length: 0\r\n"
            )
        );
    }
}
