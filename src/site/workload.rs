//! The seed's two workload endpoints: `/cpu` (count primes) and `/io` (wait), with bounded knobs.
use std::time::Duration;

/// The work a request asks for, done by the connection loop the way its I/O style should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Count the primes in 1..=n (runs inline, even on an event loop: that is the lesson).
    Primes(u64),
    /// Wait this long (a thread sleep in blocking loops, a timer in event loops).
    Sleep(Duration),
}

/// The seed's n: 78,498 primes, about 60 ms in optimised Rust.
pub const DEFAULT_N: u64 = 1_000_000;
/// Upper bound for `?n=`: ~1.5 s of one core, so one request cannot occupy a worker for minutes.
pub const MAX_N: u64 = 10_000_000;
/// The seed's 1 s wait.
pub const DEFAULT_MS: u64 = 1_000;
/// Upper bound for `?ms=`.
pub const MAX_MS: u64 = 60_000;

/// The work for `/cpu` or `/io` with their query, or `None` for any other path.
/// `Some(Err(msg))` when a parameter is malformed or out of bounds (400).
pub fn from_request(path: &str, query: &str) -> Option<Result<Work, String>> {
    match path {
        "/cpu" => Some(param(query, "n", DEFAULT_N, 1, MAX_N).map(Work::Primes)),
        "/io" => Some(
            param(query, "ms", DEFAULT_MS, 0, MAX_MS)
                .map(|ms| Work::Sleep(Duration::from_millis(ms))),
        ),
        _ => None,
    }
}

fn param(query: &str, name: &str, default: u64, min: u64, max: u64) -> Result<u64, String> {
    let Some(value) = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
    else {
        return Ok(default);
    };
    match value.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!("{name} must be an integer in {min}..={max}\n")),
    }
}

/// Counts the primes in 1..=n the seed's way: trial division, skipping even numbers, trying odd
/// divisors up to the integer square root.
pub fn count_primes(n: u64) -> u64 {
    if n < 2 {
        return 0;
    }
    let mut count = 1; // 2
    let mut k = 3;
    while k <= n {
        let mut prime = true;
        let mut d = 3;
        while d * d <= k {
            if k % d == 0 {
                prime = false;
                break;
            }
            d += 2;
        }
        if prime {
            count += 1;
        }
        k += 2;
    }
    count
}

/// The body that reports what was done.
pub fn describe(work: Work, primes: Option<u64>) -> String {
    match work {
        Work::Primes(n) => format!("counted {} primes in 1..={n}\n", primes.unwrap_or(0)),
        Work::Sleep(d) => format!("waited {} ms\n", d.as_millis()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_primes() {
        assert_eq!(count_primes(0), 0);
        assert_eq!(count_primes(1), 0);
        assert_eq!(count_primes(2), 1);
        assert_eq!(count_primes(3), 2);
        assert_eq!(count_primes(9), 4);
        assert_eq!(count_primes(100), 25);
        assert_eq!(count_primes(DEFAULT_N), 78_498);
    }

    #[test]
    fn parses_bounded_parameters() {
        assert_eq!(from_request("/cpu", ""), Some(Ok(Work::Primes(DEFAULT_N))));
        assert_eq!(from_request("/cpu", "n=100"), Some(Ok(Work::Primes(100))));
        assert_eq!(
            from_request("/io", "x=1&ms=5"),
            Some(Ok(Work::Sleep(Duration::from_millis(5))))
        );
        assert!(matches!(from_request("/cpu", "n=0"), Some(Err(_))));
        assert!(matches!(
            from_request("/cpu", "n=99999999999"),
            Some(Err(_))
        ));
        assert!(matches!(from_request("/io", "ms=-1"), Some(Err(_))));
        assert!(matches!(from_request("/io", "ms=abc"), Some(Err(_))));
        assert_eq!(from_request("/index.html", ""), None);
    }
}
