//! Validators (ETag, Last-Modified) and the conditional requests built on them (RFC 9110 §13).
use std::time::{SystemTime, UNIX_EPOCH};

/// A file's validators, computed from its metadata the way nginx does: `"<mtime hex>-<len hex>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    pub etag: String,
    /// Modification time, whole seconds since the epoch (HTTP dates have no finer resolution).
    pub mtime: u64,
}

impl Validators {
    pub fn new(mtime: SystemTime, len: u64) -> Self {
        let mtime = mtime
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Validators {
            etag: format!("\"{mtime:x}-{len:x}\""),
            mtime,
        }
    }

    pub fn last_modified(&self) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(self.mtime))
    }

    /// True when a GET/HEAD should get 304: If-None-Match decides when present (weak comparison,
    /// `*` matches), and only otherwise If-Modified-Since (RFC 9110 §13.2.2 order).
    pub fn not_modified(
        &self,
        if_none_match: Option<&str>,
        if_modified_since: Option<&str>,
    ) -> bool {
        if let Some(list) = if_none_match {
            return list
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || (!tag.is_empty() && opaque(tag) == opaque(&self.etag)));
        }
        match if_modified_since.and_then(|d| httpdate::parse_http_date(d.trim()).ok()) {
            Some(since) => since
                .duration_since(UNIX_EPOCH)
                .map(|d| self.mtime <= d.as_secs())
                .unwrap_or(false),
            None => false,
        }
    }

    /// If-Range (RFC 9110 §13.1.5): the Range applies only if the validator still matches, using
    /// the strong comparison for an entity-tag and an exact match for a date.
    pub fn if_range_matches(&self, if_range: &str) -> bool {
        let v = if_range.trim();
        if v.starts_with("W/") {
            false
        } else if v.starts_with('"') {
            v == self.etag
        } else {
            httpdate::parse_http_date(v)
                .ok()
                .and_then(|d| d.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|d| d.as_secs() == self.mtime)
        }
    }
}

/// The opaque part of an entity-tag: weak comparison ignores the `W/` prefix.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn v() -> Validators {
        Validators::new(UNIX_EPOCH + Duration::from_secs(784111777), 1234)
    }

    #[test]
    fn etag_and_last_modified() {
        assert_eq!(v().etag, "\"2ebc98a1-4d2\"");
        assert_eq!(v().last_modified(), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn if_none_match_lists_and_weakness() {
        let v = v();
        assert!(v.not_modified(Some("\"2ebc98a1-4d2\""), None));
        assert!(v.not_modified(Some("\"x\", W/\"2ebc98a1-4d2\""), None));
        assert!(v.not_modified(Some("*"), None));
        assert!(!v.not_modified(Some("\"other\""), None));
        // If-None-Match wins over a date that alone would give 304.
        assert!(!v.not_modified(Some("\"other\""), Some("Sun, 06 Nov 2094 08:49:37 GMT")));
    }

    #[test]
    fn if_modified_since() {
        let v = v();
        assert!(v.not_modified(None, Some("Sun, 06 Nov 1994 08:49:37 GMT")));
        assert!(v.not_modified(None, Some("Mon, 07 Nov 1994 08:49:37 GMT")));
        assert!(!v.not_modified(None, Some("Sun, 06 Nov 1994 08:49:36 GMT")));
        assert!(!v.not_modified(None, Some("yesterday")));
        assert!(!v.not_modified(None, None));
    }

    #[test]
    fn if_range() {
        let v = v();
        assert!(v.if_range_matches("\"2ebc98a1-4d2\""));
        assert!(!v.if_range_matches("W/\"2ebc98a1-4d2\""));
        assert!(!v.if_range_matches("\"old\""));
        assert!(v.if_range_matches("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!v.if_range_matches("Sun, 06 Nov 1994 08:49:38 GMT"));
    }
}
