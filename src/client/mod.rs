//! Clients that talk to any HTTP/1.1 server: `send` (one raw request) and `load` (a load
//! generator with the seed's test_my_server as one of its faces).
//!
//! - [`http1`]: sans-IO response framing and validation, shared by both.
//! - [`target`]: URL / `HOST PORT` parsing and request encoding.
//! - [`engine`]: the load generator's per-thread epoll loops; [`stats`]: what they count.
//! - [`report`]: the human and JSON reports; [`seed`]: the seed face's output.
//! - [`tls`]: HTTPS for both (trust, server name, resumption, error messages).
use std::time::Duration;

pub mod engine;
pub mod http1;
pub mod load;
pub mod report;
pub mod seed;
pub mod send;
pub mod stats;
pub mod target;
pub mod tls;

/// A duration in seconds (fractions allowed, `s`/`ms`/`m` suffixes accepted), in (0, 1 day].
pub(crate) fn seconds(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v * scale <= 86_400.0 => Ok(Duration::from_secs_f64(v * scale)),
        _ => Err(format!(
            "`{s}` is not a duration in (0, 1 day]: seconds, or with s/ms/m"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(seconds("2"), Ok(Duration::from_secs(2)));
        assert_eq!(seconds("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(seconds("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(seconds("1m"), Ok(Duration::from_secs(60)));
        for bad in ["0", "-1", "x", "2h", "100000"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
