//! The access log in the Combined Log Format (nginx's and Apache's default, so existing log tools
//! read it), buffered per worker thread.
//!
//! Each thread appends lines to its own buffer (an uncontended lock: only the flusher ever takes
//! it too); a buffer is written with one `write` of whole lines when it passes [`FLUSH_AT`], and a
//! per-process flusher thread writes every buffer once a second, so a quiet server's lines
//! still appear promptly. The file is opened with O_APPEND, so whole-line writes from several
//! threads and forked workers never interleave inside a line.
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A thread's buffer is written out when it grows past this.
pub const FLUSH_AT: usize = 32 * 1024;
/// The flusher writes every buffer this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where lines go.
#[derive(Debug)]
enum Sink {
    Stdout,
    File(File),
}

impl Sink {
    fn write_all(&self, bytes: &[u8]) {
        let result = match self {
            Sink::Stdout => io::stdout().lock().write_all(bytes),
            Sink::File(f) => (&*f).write_all(bytes),
        };
        if let Err(e) = result {
            tracing::warn!("access log: {e}");
        }
    }
}

#[derive(Debug)]
struct Log {
    sink: Sink,
    /// Every thread's buffer, for the flusher and for [`flush`].
    buffers: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    flusher: std::sync::Once,
}

static LOG: OnceLock<Log> = OnceLock::new();

thread_local! {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = const { OnceLock::new() };
}

/// Opens the access log (`-` for stdout). Call once, in `main`, before any worker exists; the
/// descriptor is inherited by forked workers.
pub fn open(path: &Path) -> io::Result<()> {
    let sink = if path == Path::new("-") {
        Sink::Stdout
    } else {
        Sink::File(OpenOptions::new().create(true).append(true).open(path)?)
    };
    LOG.set(Log {
        sink,
        buffers: Mutex::new(Vec::new()),
        flusher: std::sync::Once::new(),
    })
    .map_err(|_| io::Error::other("access log opened twice"))
}

/// Whether an access log is configured (callers skip building the entry otherwise).
pub fn enabled() -> bool {
    LOG.get().is_some()
}

/// One request, as the connection loops know it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub peer: Option<IpAddr>,
    /// The `Date` header value of the response (IMF-fixdate), reformatted for the log.
    pub date: &'a str,
    /// `METHOD target VERSION`, or None when the request line could not be parsed.
    pub request: Option<(&'a str, &'a str, &'a str)>,
    pub status: u16,
    pub body_bytes: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Appends one line to this thread's buffer.
pub fn record(entry: &Entry) {
    let Some(log) = LOG.get() else { return };
    // The flusher starts with the first line, so it is created in the worker process (after any
    // fork), never in the master.
    log.flusher.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            });
    });
    BUFFER.with(|cell| {
        let buffer = cell.get_or_init(|| {
            let b = Arc::new(Mutex::new(Vec::with_capacity(FLUSH_AT + 1024)));
            log.buffers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Arc::clone(&b));
            b
        });
        let mut buf = buffer.lock().unwrap_or_else(|p| p.into_inner());
        format_line(&mut buf, entry);
        if buf.len() >= FLUSH_AT {
            log.sink.write_all(&buf);
            buf.clear();
        }
    });
}

/// Writes out every thread's buffered lines (the flusher, and architectures before exiting).
pub fn flush() {
    let Some(log) = LOG.get() else { return };
    let buffers = log
        .buffers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for b in buffers {
        let mut buf = b.lock().unwrap_or_else(|p| p.into_inner());
        if !buf.is_empty() {
            log.sink.write_all(&buf);
            buf.clear();
        }
    }
}

/// `127.0.0.1 - - [26/Nov/2026:05:39:34 +0000] "GET / HTTP/1.1" 200 532 "-" "curl/8.0"`
pub fn format_line(out: &mut Vec<u8>, e: &Entry) {
    match e.peer {
        // An IPv6 peer bare, as nginx writes it (`::1`); an IPv4 one that reached an IPv6
        // socket (a systemd-made dual-stack one) as IPv4 (`127.0.0.1`, not `::ffff:127.0.0.1`).
        Some(ip) => {
            let _ = write!(out, "{}", ip.to_canonical());
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" - - [");
    clf_time(out, e.date);
    out.extend_from_slice(b"] \"");
    match e.request {
        Some((method, target, version)) => {
            escaped(out, method);
            out.push(b' ');
            escaped(out, target);
            out.push(b' ');
            escaped(out, version);
        }
        None => out.push(b'-'),
    }
    let _ = write!(out, "\" {} ", e.status);
    if e.body_bytes == 0 {
        out.push(b'-');
    } else {
        let _ = write!(out, "{}", e.body_bytes);
    }
    out.extend_from_slice(b" \"");
    escaped(out, e.referer.unwrap_or("-"));
    out.extend_from_slice(b"\" \"");
    escaped(out, e.user_agent.unwrap_or("-"));
    out.extend_from_slice(b"\"\n");
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → `06/Nov/1994:08:49:37 +0000`: the Date we already format
/// once a second, rearranged, instead of a calendar computation per line.
fn clf_time(out: &mut Vec<u8>, date: &str) {
    let parts: Vec<&str> = date.split([' ', ',']).filter(|s| !s.is_empty()).collect();
    if let [_, day, month, year, time, _] = parts.as_slice() {
        let _ = write!(out, "{day}/{month}/{year}:{time} +0000");
    } else {
        out.push(b'-');
    }
}

/// Escapes `"`, `\` and bytes outside printable ASCII as `\xHH`, as nginx does, so a hostile
/// User-Agent cannot forge a line or a field.
fn escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_combined_log_format() {
        let mut out = Vec::new();
        format_line(
            &mut out,
            &Entry {
                peer: Some("127.0.0.1".parse().unwrap()),
                date: "Sun, 06 Nov 1994 08:49:37 GMT",
                request: Some(("GET", "/a?b=1", "HTTP/1.1")),
                status: 200,
                body_bytes: 532,
                referer: None,
                user_agent: Some("curl/8.0 \"x\"\n"),
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "127.0.0.1 - - [06/Nov/1994:08:49:37 +0000] \"GET /a?b=1 HTTP/1.1\" 200 532 \"-\" \
             \"curl/8.0 \\x22x\\x22\\x0A\"\n"
        );
    }

    #[test]
    fn ipv6_peers_are_written_bare() {
        for (peer, written) in [
            ("::1", "::1 "),
            ("2001:db8::7", "2001:db8::7 "),
            ("::ffff:127.0.0.1", "127.0.0.1 "),
        ] {
            let mut out = Vec::new();
            format_line(
                &mut out,
                &Entry {
                    peer: Some(peer.parse().unwrap()),
                    date: "Sun, 06 Nov 1994 08:49:37 GMT",
                    request: None,
                    status: 400,
                    body_bytes: 0,
                    referer: None,
                    user_agent: None,
                },
            );
            let line = String::from_utf8(out).unwrap();
            assert!(line.starts_with(&format!("{written}- - [")), "{line}");
        }
    }

    #[test]
    fn unparsed_requests_and_empty_bodies_use_dashes() {
        let mut out = Vec::new();
        format_line(
            &mut out,
            &Entry {
                peer: None,
                date: "Sun, 06 Nov 1994 08:49:37 GMT",
                request: None,
                status: 400,
                body_bytes: 0,
                referer: None,
                user_agent: None,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "- - - [06/Nov/1994:08:49:37 +0000] \"-\" 400 - \"-\" \"-\"\n"
        );
    }
}
