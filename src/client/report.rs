//! The load generator's report: built once from the merged [`Stats`], printed for people or
//! as JSON for machines (the same fields, so a script never parses the human form).
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::engine::{Limit, Plan};
use super::stats::{ErrorKind, Stats};

/// Latency summary in microseconds, from the HDR histogram of valid responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub min: u64,
    pub mean: f64,
    pub stdev: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// HTTPS handshakes: how many of each kind, and their times in µs (connect call to the
/// handshake's end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handshakes {
    /// Whether the client offered its saved sessions (false: `--no-resume`).
    pub resume: bool,
    pub full: u64,
    pub resumed: u64,
    pub full_us: Latency,
    pub resumed_us: Latency,
    /// The first TLS failure, in words (also counted under `errors.tls`).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub keep_alive: bool,
    /// Requested open-loop rate (requests/s), if any.
    pub rate: Option<f64>,
    /// Requests that ended: `responses` plus the errors that ended a request (every error but
    /// the `unrequested` part of `bad_response`).
    pub requests: u64,
    /// Valid responses (of an expected status, when `expect_status` is set).
    pub responses: u64,
    /// Errors by kind (every kind present, zeros included). `bad_response` includes
    /// `unrequested`; `unexpected_status` counts valid responses whose status is not in
    /// `expect_status`.
    pub errors: BTreeMap<String, u64>,
    /// Connections on which bytes arrived with no request in flight (also in `bad_response`).
    pub unrequested: u64,
    /// Valid responses by status code, unexpected ones included.
    pub status: BTreeMap<String, u64>,
    /// Valid responses whose status is not 2xx (the sum of `status` outside 200-299).
    pub non_2xx: u64,
    /// The statuses `--expect-status` accepts; empty: every status is a response.
    pub expect_status: Vec<u16>,
    /// From the start to the last request's end.
    pub elapsed_s: f64,
    /// Valid responses per second.
    pub requests_per_s: f64,
    /// Bytes received (heads and bodies), total and per second.
    pub bytes: u64,
    pub bytes_per_s: f64,
    /// TCP connections opened.
    pub connects: u64,
    pub latency_us: Latency,
    /// Closed loop: what Little's law predicts from the concurrency and the mean latency
    /// (connections ÷ mean latency). Far from `requests_per_s` means something is off.
    pub littles_law_req_per_s: Option<f64>,
    /// HTTPS only.
    pub tls: Option<Handshakes>,
}

/// The summary of one histogram (zeros when empty).
fn summary(h: &hdrhistogram::Histogram<u64>) -> Latency {
    let q = |p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    Latency {
        min: if h.is_empty() { 0 } else { h.min() },
        mean: h.mean(),
        stdev: h.stdev(),
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
        p999: q(0.999),
        max: h.max(),
    }
}

impl Report {
    pub fn new(plan: &Plan, url: &str, stats: &Stats, expect_status: &[u16]) -> Report {
        let secs = stats.elapsed.as_secs_f64().max(1e-9);
        let latency = summary(&stats.latency);
        let tls = plan.tls.as_ref().map(|t| Handshakes {
            resume: t.resume,
            full: stats.handshake_full.len(),
            resumed: stats.handshake_resumed.len(),
            full_us: summary(&stats.handshake_full),
            resumed_us: summary(&stats.handshake_resumed),
            error: stats.tls_error.clone(),
        });
        let littles_law = (plan.rate.is_none() && latency.mean > 0.0)
            .then(|| plan.connections as f64 / (latency.mean / 1e6));
        Report {
            url: url.to_string(),
            connections: plan.connections,
            threads: plan.threads,
            keep_alive: plan.keep_alive,
            rate: plan.rate,
            requests: stats.finished(),
            responses: stats.responses,
            errors: ErrorKind::ALL
                .iter()
                .map(|&k| {
                    let extra = if k == ErrorKind::BadResponse {
                        stats.unrequested
                    } else {
                        0
                    };
                    (k.name().to_string(), stats.errors(k) + extra)
                })
                .collect(),
            unrequested: stats.unrequested,
            status: stats.statuses().map(|(s, n)| (s.to_string(), n)).collect(),
            non_2xx: stats
                .statuses()
                .filter(|(s, _)| !(200..300).contains(s))
                .map(|(_, n)| n)
                .sum(),
            expect_status: expect_status.to_vec(),
            elapsed_s: secs,
            requests_per_s: stats.responses as f64 / secs,
            bytes: stats.bytes,
            bytes_per_s: stats.bytes as f64 / secs,
            connects: stats.connects,
            latency_us: latency,
            littles_law_req_per_s: littles_law,
            tls,
        }
    }

    /// Errors that ended a request (`unrequested` bytes ended none).
    pub fn error_total(&self) -> u64 {
        self.errors.values().sum::<u64>() - self.unrequested
    }

    /// Valid responses whose status `--expect-status` did not accept.
    pub fn unexpected(&self) -> u64 {
        self.errors
            .get(ErrorKind::UnexpectedStatus.name())
            .copied()
            .unwrap_or(0)
    }

    /// The report for people.
    pub fn human(&self, plan: &Plan) -> String {
        let mut o = String::new();
        self.write_title(&mut o, plan);
        self.write_totals(&mut o);
        self.write_statuses(&mut o);
        self.write_errors(&mut o);
        self.write_tls(&mut o);
        self.write_check(&mut o);
        o
    }

    /// The first line: target, connections, threads, mode and length.
    fn write_title(&self, o: &mut String, plan: &Plan) {
        let limit = match (plan.limit, plan.rate) {
            (Limit::Requests(n), _) => format!("{n} requests"),
            (Limit::Duration(d), _) => format!("{:.3} s", d.as_secs_f64()),
        };
        let rate = plan
            .rate
            .map(|r| format!(", open loop at {r} req/s"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{} — {} connection{}, {} thread{}, {}, {limit}{rate}",
            self.url,
            self.connections,
            plural(self.connections),
            self.threads,
            plural(self.threads),
            if self.keep_alive {
                "keep-alive"
            } else {
                "new connection per request"
            },
        );
    }

    /// Requests, throughput and latency.
    fn write_totals(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "  requests    {} finished in {:.3} s: {} responses, {} errors",
            self.requests,
            self.elapsed_s,
            self.responses,
            self.error_total()
        );
        let _ = writeln!(
            o,
            "  throughput  {:.0} req/s, {}/s ({} received)",
            self.requests_per_s,
            bytes(self.bytes_per_s),
            bytes(self.bytes as f64)
        );
        let l = &self.latency_us;
        let _ = writeln!(
            o,
            "  latency     min {}  mean {}  stdev {}",
            ms(l.min as f64),
            ms(l.mean),
            ms(l.stdev)
        );
        let _ = writeln!(
            o,
            "              p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            ms(l.p50 as f64),
            ms(l.p90 as f64),
            ms(l.p99 as f64),
            ms(l.p999 as f64),
            ms(l.max as f64)
        );
    }

    /// Every status seen, and the non-2xx ones on a line of their own.
    fn write_statuses(&self, o: &mut String) {
        let status: Vec<String> = self
            .status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  status      {}",
            if status.is_empty() {
                "none".to_string()
            } else {
                status.join(", ")
            }
        );
        let non_2xx: Vec<String> = self
            .status
            .iter()
            .filter(|(s, _)| !s.starts_with('2'))
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        let _ = writeln!(
            o,
            "  non-2xx     {}{}",
            self.non_2xx,
            if non_2xx.is_empty() {
                String::new()
            } else {
                format!(" ({})", non_2xx.join(", "))
            }
        );
    }

    /// Errors by kind, what counts as one, and the connections opened.
    fn write_errors(&self, o: &mut String) {
        let errors: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|k| format!("{} {}", k.name(), self.errors.get(k.name()).unwrap_or(&0)))
            .collect();
        let _ = writeln!(o, "  errors      {}", errors.join(", "));
        if self.unrequested > 0 {
            let _ = writeln!(
                o,
                "              bad_response includes {} unrequested (bytes on an idle \
                 connection)",
                self.unrequested
            );
        }
        if !self.expect_status.is_empty() {
            let expected: Vec<String> = self.expect_status.iter().map(u16::to_string).collect();
            let _ = writeln!(
                o,
                "  expected    status {}: any other is an unexpected_status error",
                expected.join(", ")
            );
        }
        let _ = writeln!(o, "  connections {} opened", self.connects);
    }

    /// HTTPS: handshakes of each kind and their times.
    fn write_tls(&self, o: &mut String) {
        let Some(t) = &self.tls else { return };
        let kind = |n: u64, l: &Latency| {
            if n == 0 {
                return String::new();
            }
            format!(
                " (mean {}, p50 {}, p99 {})",
                ms(l.mean),
                ms(l.p50 as f64),
                ms(l.p99 as f64)
            )
        };
        let _ = writeln!(
            o,
            "  tls         {} full handshakes{}, {} resumed{}{}",
            t.full,
            kind(t.full, &t.full_us),
            t.resumed,
            kind(t.resumed, &t.resumed_us),
            if t.resume { "" } else { "; resumption off" }
        );
        if let Some(e) = &t.error {
            let _ = writeln!(o, "              first TLS error: {e}");
        }
    }

    /// Little's law, as a check of the figures above.
    fn write_check(&self, o: &mut String) {
        let l = &self.latency_us;
        if let Some(expected) = self.littles_law_req_per_s {
            let _ = writeln!(
                o,
                "  check       Little's law: {} connections / {} mean latency = {:.0} req/s \
                 (measured {:.0})",
                self.connections,
                ms(l.mean),
                expected,
                self.requests_per_s
            );
        } else if let Some(rate) = self.rate {
            let _ = writeln!(
                o,
                "  check       Little's law: {rate} req/s × {} mean latency = {:.1} requests \
                 in flight on average (of {} connections)",
                ms(l.mean),
                rate * l.mean / 1e6,
                self.connections
            );
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Microseconds as milliseconds with a precision that suits their size.
fn ms(us: f64) -> String {
    let v = us / 1000.0;
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.3} ms")
    }
}

fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn plan() -> Plan {
        Plan {
            addr: "127.0.0.1:1".parse().unwrap(),
            request: Vec::new(),
            head_request: false,
            connections: 4,
            threads: 1,
            limit: Limit::Requests(3),
            rate: None,
            keep_alive: true,
            timeout: Duration::from_secs(1),
            tls: None,
        }
    }

    #[test]
    fn figures_and_round_trip() {
        let mut s = Stats::new();
        s.response(200, Duration::from_millis(2));
        s.response(200, Duration::from_millis(2));
        s.error(ErrorKind::Closed);
        s.bytes = 2048;
        s.elapsed = Duration::from_secs(2);
        let r = Report::new(&plan(), "http://127.0.0.1:1/", &s, &[]);
        assert_eq!((r.requests, r.responses, r.error_total()), (3, 2, 1));
        assert_eq!(r.errors["closed"], 1);
        assert_eq!(r.non_2xx, 0);
        assert_eq!(r.errors.len(), ErrorKind::ALL.len());
        assert_eq!(r.status["200"], 2);
        assert!((r.requests_per_s - 1.0).abs() < 1e-9);
        assert!((r.bytes_per_s - 1024.0).abs() < 1e-9);
        // 4 connections / 2 ms = 2000 req/s
        let ll = r.littles_law_req_per_s.unwrap();
        assert!((ll - 2000.0).abs() < 5.0, "{ll}");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
        let text = r.human(&plan());
        assert!(text.contains("status      200: 2"), "{text}");
        assert!(text.contains("non-2xx     0\n"), "{text}");
        assert!(text.contains("closed 1"), "{text}");
        assert!(text.contains("1.00 KiB/s"), "{text}");
    }

    #[test]
    fn other_statuses_and_unrequested_bytes_have_their_own_lines() {
        let mut s = Stats::new();
        s.response(200, Duration::from_millis(1));
        s.response(301, Duration::from_millis(1));
        s.unexpected(404);
        s.unexpected(404);
        s.unrequested = 1;
        s.error(ErrorKind::BadResponse);
        s.elapsed = Duration::from_secs(1);
        let r = Report::new(&plan(), "u", &s, &[200, 301]);
        assert_eq!((r.requests, r.responses, r.error_total()), (5, 2, 3));
        assert_eq!(r.non_2xx, 3);
        assert_eq!(r.unexpected(), 2);
        assert_eq!((r.errors["bad_response"], r.unrequested), (2, 1));
        let text = r.human(&plan());
        assert!(text.contains("non-2xx     3 (301: 1, 404: 2)\n"), "{text}");
        assert!(
            text.contains("bad_response 2, unexpected_status 2"),
            "{text}"
        );
        assert!(text.contains("includes 1 unrequested"), "{text}");
        assert!(text.contains("expected    status 200, 301:"), "{text}");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }

    #[test]
    fn empty_run_reports_zeros() {
        let r = Report::new(&plan(), "u", &Stats::new(), &[]);
        assert_eq!(r.latency_us.p99, 0);
        assert_eq!(r.littles_law_req_per_s, None);
        assert!(r.human(&plan()).contains("status      none"));
    }

    #[test]
    fn units() {
        assert_eq!(ms(420.0), "0.420 ms");
        assert_eq!(ms(1_072_600.0), "1073 ms");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(3.5 * 1024.0 * 1024.0), "3.50 MiB");
    }
}
