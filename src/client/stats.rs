//! What one load-engine thread counts (latency histogram, status codes, errors by kind, bytes),
//! kept per thread so the hot path touches no shared memory, and merged once at the end.
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs to one hour, to 3 significant digits
/// (HdrHistogram's usual precision: the reported value is within 0.1% of the true one).
const LOWEST_US: u64 = 1;
const HIGHEST_US: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;
/// Status codes are three digits (httparse guarantees it), so a flat array indexes them.
const STATUS_SLOTS: usize = 1000;

/// Why a request failed. Each started request ends as exactly one response or one error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The TCP connection could not be established (refused, unreachable, no local port).
    Connect,
    /// No complete response within `--timeout` (of the request's start, or of its intended
    /// start under `--rate`).
    Timeout,
    /// The connection was reset (RST, broken pipe) while sending or receiving.
    Reset,
    /// The server closed the connection before the response was complete.
    Closed,
    /// The bytes were not a valid HTTP/1.1 response (status line, headers, framing), or more
    /// bytes arrived than the response framed.
    BadResponse,
    /// A valid response whose status is not one of `--expect-status` (never counted without it).
    UnexpectedStatus,
    /// HTTPS: the TLS handshake or a record failed (untrusted certificate, a server that does
    /// not speak TLS, a bad record); the first message is kept in [`Stats::tls_error`].
    Tls,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Closed,
        ErrorKind::BadResponse,
        ErrorKind::UnexpectedStatus,
        ErrorKind::Tls,
    ];

    /// Stable name, used in the report and the JSON keys.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::UnexpectedStatus => "unexpected_status",
            ErrorKind::Tls => "tls",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One thread's counts (and, after [`Stats::merge`], the whole run's).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latency of every valid response, in µs; errors are counted, not timed.
    pub latency: Histogram<u64>,
    statuses: Vec<u64>,
    errors: [u64; ErrorKind::ALL.len()],
    /// Bytes received (heads and bodies).
    pub bytes: u64,
    /// Valid responses.
    pub responses: u64,
    /// Connections on which bytes arrived while no request was in flight (the connection is
    /// then dropped). Not tied to a request, so not among the errors that end one; the report
    /// counts them under `bad_response`.
    pub unrequested: u64,
    /// TCP connections opened (attempted).
    pub connects: u64,
    /// From the common start to this thread's last completion.
    pub elapsed: Duration,
    /// HTTPS: time of each completed full handshake and of each resumed one, in µs (from the
    /// connect call to the handshake's end).
    pub handshake_full: Histogram<u64>,
    pub handshake_resumed: Histogram<u64>,
    /// HTTPS: the first TLS failure, in words.
    pub tls_error: Option<String>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        let histogram = || {
            Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG)
                .expect("constant histogram bounds are valid")
        };
        Stats {
            latency: histogram(),
            handshake_full: histogram(),
            handshake_resumed: histogram(),
            tls_error: None,
            statuses: vec![0; STATUS_SLOTS],
            errors: [0; ErrorKind::ALL.len()],
            bytes: 0,
            responses: 0,
            unrequested: 0,
            connects: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// A valid response: its status and its latency.
    #[inline]
    pub fn response(&mut self, status: u16, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.saturating_record(us.max(LOWEST_US));
        if let Some(slot) = self.statuses.get_mut(status as usize) {
            *slot += 1;
        }
        self.responses += 1;
    }

    /// A valid response with a status the run does not accept: counted under its status and as
    /// an [`ErrorKind::UnexpectedStatus`] error, not as a response (no latency).
    pub fn unexpected(&mut self, status: u16) {
        if let Some(slot) = self.statuses.get_mut(status as usize) {
            *slot += 1;
        }
        self.error(ErrorKind::UnexpectedStatus);
    }

    /// A completed TLS handshake: resumed or full, and how long it took.
    pub fn handshake(&mut self, resumed: bool, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let h = match resumed {
            true => &mut self.handshake_resumed,
            false => &mut self.handshake_full,
        };
        h.saturating_record(us.max(LOWEST_US));
    }

    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind.index()] += 1;
    }

    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// Requests that ended (responses plus errors).
    pub fn finished(&self) -> u64 {
        self.responses + self.total_errors()
    }

    /// (status, count) for every status seen (responses and unexpected statuses), in ascending
    /// order.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.statuses
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(s, &n)| (s as u16, n))
    }

    /// Adds `other` (another thread's counts) to these.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.handshake_full.add(&other.handshake_full);
        let _ = self.handshake_resumed.add(&other.handshake_resumed);
        if self.tls_error.is_none() {
            self.tls_error.clone_from(&other.tls_error);
        }
        for (a, b) in self.statuses.iter_mut().zip(&other.statuses) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(&other.errors) {
            *a += b;
        }
        self.bytes += other.bytes;
        self.responses += other.responses;
        self.unrequested += other.unrequested;
        self.connects += other.connects;
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new();
        a.response(200, Duration::from_micros(100));
        a.response(404, Duration::from_millis(2));
        a.error(ErrorKind::Timeout);
        a.bytes = 10;
        a.elapsed = Duration::from_secs(1);
        let mut b = Stats::new();
        b.response(200, Duration::from_nanos(10)); // below 1 µs: recorded as 1 µs
        b.error(ErrorKind::Reset);
        b.error(ErrorKind::Reset);
        b.unexpected(503);
        b.unrequested = 2;
        b.bytes = 5;
        b.connects = 3;
        b.elapsed = Duration::from_secs(2);
        b.handshake(true, Duration::from_micros(300));
        b.handshake(false, Duration::from_micros(900));
        b.tls_error = Some("x".into());
        a.handshake(false, Duration::from_micros(800));
        a.merge(&b);
        assert_eq!((a.handshake_full.len(), a.handshake_resumed.len()), (2, 1));
        assert_eq!(a.tls_error.as_deref(), Some("x"));
        assert_eq!(a.responses, 3);
        // Unrequested bytes end no request.
        assert_eq!(a.finished(), 7);
        assert_eq!(a.unrequested, 2);
        assert_eq!(a.errors(ErrorKind::Reset), 2);
        assert_eq!(a.errors(ErrorKind::Timeout), 1);
        assert_eq!(a.errors(ErrorKind::UnexpectedStatus), 1);
        assert_eq!(
            a.statuses().collect::<Vec<_>>(),
            vec![(200, 2), (404, 1), (503, 1)]
        );
        assert_eq!(a.latency.len(), 3);
        assert_eq!(a.latency.min(), 1);
        assert!(a.latency.max() >= 1999);
        assert_eq!((a.bytes, a.connects), (15, 3));
        assert_eq!(a.elapsed, Duration::from_secs(2));
    }

    #[test]
    fn names_are_stable() {
        let names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "connect",
                "timeout",
                "reset",
                "closed",
                "bad_response",
                "unexpected_status",
                "tls"
            ]
        );
    }
}
