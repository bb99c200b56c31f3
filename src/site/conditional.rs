//! Validators (ETag, Last-Modified) and the conditional requests built on them (RFC 9110 §13).
//!
//! Validators that do not lie: a strong ETag here stands for one sequence of bytes only.
//! - It is made of the inode number, the modification and change times in nanoseconds and the
//!   size (`"ino-mtime-ctime-len"`, hex). Any write or truncate sets both times; `touch -d`, `cp
//!   -p` and `rsync -t` can set the modification time back, but never the change time; a file
//!   replaced by rename is another inode (while the old one is still open, its number cannot be
//!   reused). A precompressed variant adds its coding (`-br`, `-gz`).
//! - Timestamps still cannot tell apart two versions written within one tick of the file
//!   system's clock (a few milliseconds, or a whole second or two on coarse file systems such as
//!   ext3 or FAT). So while a file's modification time is less than [`SETTLE`] old (or in the
//!   future), it gets neither ETag nor Last-Modified: no client can hold a validator of a
//!   version that may still change without its timestamps moving, and every request in that
//!   window gets a 200. On a file system that keeps whole seconds only (a change time with no
//!   nanoseconds), the ETag stays weak (`W/`) until the change time is as old, so If-Range
//!   cannot splice ranges of two versions then either.
//! - `Last-Modified` has HTTP-date's whole seconds. nginx (`if_modified_since exact`) and Apache
//!   compare those seconds, so a file changed twice within the second of its Last-Modified can
//!   get a 304 that hides the second change (Apache only marks its ETag weak during that
//!   second). Here the date is not sent until that second is over by [`SETTLE`] (see above),
//!   so a later change always has a later second: `If-Modified-Since` then answers 304 only
//!   when the file's second is not after the date sent, as RFC 9110 §13.1.3 says.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::open_files::FileInfo;

/// How long after a file's last modification its validators are withheld: two seconds, the
/// coarsest timestamp resolution of the file systems people serve from (FAT keeps even
/// seconds; ext3 and HFS+ whole seconds; ext4, XFS, Btrfs and tmpfs the kernel's clock tick).
pub const SETTLE: Duration = Duration::from_secs(2);

/// A file's validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// The entity-tag, quoted (`W/` first when weak); `None` while the file is settling.
    pub etag: Option<String>,
    /// Modification time, whole seconds since the epoch (HTTP dates have no finer resolution);
    /// `None` while the file is settling.
    pub mtime: Option<u64>,
    /// When validators made now would differ (the file stops settling, a weak tag turns
    /// strong); `None` when they are final.
    pub until: Option<SystemTime>,
}

impl Validators {
    /// The validators of a file with metadata `info` at time `now`; `coding` is appended to the
    /// tag of a precompressed variant (`""` for the file itself).
    pub fn new(info: &FileInfo, coding: &str, now: SystemTime) -> Self {
        let settled = info.modified + SETTLE;
        if now < settled {
            return Validators {
                etag: None,
                mtime: None,
                until: Some(settled),
            };
        }
        let nanos = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        };
        let (mtime_ns, ctime_ns) = (nanos(info.modified), nanos(info.changed));
        let coarse = ctime_ns % 1_000_000_000 == 0;
        let weak_until = info.changed + SETTLE;
        let weak = coarse && now < weak_until;
        Validators {
            etag: Some(format!(
                "{}\"{:x}-{mtime_ns:x}-{ctime_ns:x}-{:x}{coding}\"",
                if weak { "W/" } else { "" },
                info.ino,
                info.len
            )),
            mtime: Some(mtime_ns / 1_000_000_000),
            until: weak.then_some(weak_until),
        }
    }

    /// The `Last-Modified` value, when there is one.
    pub fn last_modified(&self) -> Option<String> {
        self.mtime
            .map(|s| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s)))
    }

    /// True when a GET/HEAD should get 304: If-None-Match decides when present (weak comparison,
    /// `*` matches), and only otherwise If-Modified-Since (RFC 9110 §13.2.2 order).
    pub fn not_modified(
        &self,
        if_none_match: Option<&str>,
        if_modified_since: Option<&str>,
    ) -> bool {
        if let Some(list) = if_none_match {
            return list.split(',').map(str::trim).any(|tag| {
                tag == "*"
                    || self
                        .etag
                        .as_deref()
                        .is_some_and(|etag| !tag.is_empty() && opaque(tag) == opaque(etag))
            });
        }
        match (
            self.mtime,
            if_modified_since.and_then(|d| httpdate::parse_http_date(d.trim()).ok()),
        ) {
            (Some(mtime), Some(since)) => since
                .duration_since(UNIX_EPOCH)
                .map(|d| mtime <= d.as_secs())
                .unwrap_or(false),
            _ => false,
        }
    }

    /// If-Range (RFC 9110 §13.1.5): the Range applies only if the validator still matches, using
    /// the strong comparison for an entity-tag (a weak tag never matches) and an exact match for
    /// a date (strong by RFC 9110 §8.8.2.2: it is sent only once the file has settled).
    pub fn if_range_matches(&self, if_range: &str) -> bool {
        let v = if_range.trim();
        if v.starts_with("W/") {
            false
        } else if v.starts_with('"') {
            self.etag.as_deref() == Some(v)
        } else {
            httpdate::parse_http_date(v)
                .ok()
                .and_then(|d| d.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|d| Some(d.as_secs()) == self.mtime)
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

    const MTIME: u64 = 784111777;

    fn info(len: u64) -> FileInfo {
        FileInfo {
            len,
            modified: UNIX_EPOCH + Duration::from_secs(MTIME),
            changed: UNIX_EPOCH + Duration::new(MTIME + 5, 7),
            ino: 0xabc,
        }
    }

    fn v() -> Validators {
        Validators::new(&info(1234), "", SystemTime::now())
    }

    const TAG: &str = "\"abc-ae1b981bc490a00-ae1b982e64efc07-4d2\"";

    #[test]
    fn etag_and_last_modified() {
        assert_eq!(v().etag.as_deref(), Some(TAG));
        assert_eq!(
            v().last_modified().as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(v().until, None);
        let gz = Validators::new(&info(1234), "-gz", SystemTime::now());
        assert_eq!(
            gz.etag.as_deref(),
            Some("\"abc-ae1b981bc490a00-ae1b982e64efc07-4d2-gz\"")
        );
    }

    #[test]
    fn every_fact_of_the_file_is_in_the_tag() {
        let now = SystemTime::now();
        let base = Validators::new(&info(1), "", now).etag;
        let changes: [fn(&mut FileInfo); 4] = [
            |i| i.len += 1,
            |i| i.ino += 1,
            |i| i.modified += Duration::from_nanos(1),
            |i| i.changed += Duration::from_nanos(1),
        ];
        for change in changes {
            let mut other = info(1);
            change(&mut other);
            assert_ne!(Validators::new(&other, "", now).etag, base, "{other:?}");
        }
    }

    #[test]
    fn a_file_changed_moments_ago_has_no_validators() {
        let now = UNIX_EPOCH + Duration::from_secs(MTIME) + SETTLE - Duration::from_millis(1);
        let v = Validators::new(&info(1), "", now);
        assert_eq!((v.etag.as_deref(), v.mtime), (None, None));
        assert_eq!(v.until, Some(info(1).modified + SETTLE));
        // Nothing matches then, not even the date or tag of the version before.
        assert!(!v.not_modified(None, Some("Sun, 06 Nov 1994 08:49:37 GMT")));
        assert!(!v.not_modified(Some(TAG), None));
        assert!(v.not_modified(Some("*"), None));
        assert!(!v.if_range_matches("Sun, 06 Nov 1994 08:49:37 GMT"));
        // A modification time in the future: the same.
        let future = FileInfo {
            modified: SystemTime::now() + Duration::from_secs(3600),
            ..info(1)
        };
        assert_eq!(Validators::new(&future, "", SystemTime::now()).etag, None);
    }

    #[test]
    fn whole_second_change_times_give_a_weak_tag_while_recent() {
        let coarse = FileInfo {
            changed: UNIX_EPOCH + Duration::from_secs(MTIME + 5),
            ..info(1)
        };
        let soon = coarse.changed + Duration::from_secs(1);
        let v = Validators::new(&coarse, "", soon);
        assert!(v.etag.as_deref().unwrap().starts_with("W/\""), "{v:?}");
        assert_eq!(v.until, Some(coarse.changed + SETTLE));
        // A weak tag never satisfies If-Range.
        assert!(!v.if_range_matches(v.etag.as_deref().unwrap()));
        let later = Validators::new(&coarse, "", coarse.changed + SETTLE);
        assert!(later.etag.as_deref().unwrap().starts_with('"'));
        assert_eq!(later.until, None);
    }

    #[test]
    fn if_none_match_lists_and_weakness() {
        let v = v();
        assert!(v.not_modified(Some(TAG), None));
        assert!(v.not_modified(Some(&format!("\"x\", W/{TAG}")), None));
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
        assert!(v.if_range_matches(TAG));
        assert!(!v.if_range_matches(&format!("W/{TAG}")));
        assert!(!v.if_range_matches("\"old\""));
        assert!(v.if_range_matches("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert!(!v.if_range_matches("Sun, 06 Nov 1994 08:49:38 GMT"));
    }
}
