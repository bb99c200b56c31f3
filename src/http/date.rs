//! IMF-fixdate for the `Date` header, formatted at most once per second per connection loop.
use std::time::{SystemTime, UNIX_EPOCH};

/// Caches the formatted `Date` value for the second it was made in. The caller passes the time in
/// (sans-IO); formatting costs ~150 ns, a cache hit is a compare.
#[derive(Debug, Default)]
pub struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The IMF-fixdate for `now`, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn get(&mut self, now: SystemTime) -> &str {
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if self.text.is_empty() || second != self.second {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_imf_fixdate() {
        let mut cache = DateCache::new();
        let t = UNIX_EPOCH + Duration::from_secs(784111777);
        assert_eq!(cache.get(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn refreshes_when_the_second_changes() {
        let mut cache = DateCache::new();
        let t = UNIX_EPOCH + Duration::from_secs(784111777);
        assert_eq!(
            cache.get(t + Duration::from_millis(999)),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(
            cache.get(t + Duration::from_secs(1)),
            "Sun, 06 Nov 1994 08:49:38 GMT"
        );
    }
}
