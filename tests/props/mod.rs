//! The properties that the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the property tests
//! (`tests/properties.rs`) both check. One copy, included by both (`#[path]` from the fuzz crate),
//! so the long local fuzz runs and the bounded CI replay assert exactly the same things.
//!
//! Every check panics with the offending input on a violation; nothing here returns an error.
//! Only the public library API is used.
#![allow(dead_code)] // each including crate uses a different subset

use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use archserve::http::{parse, Limits, ParseError, Parsed, Version};
use archserve::site::range::{self, Ranges, MAX_RANGES};
use archserve::site::resolve::{normalize, split_target, Reject, Root};

// ---------------------------------------------------------------------------------------------
// Request heads
// ---------------------------------------------------------------------------------------------

/// The statuses `ParseError` is documented to map to.
pub const STATUSES: [u16; 6] = [400, 411, 414, 431, 501, 505];

/// Limits chosen by two input bytes: the defaults, or small ones so that the 414/431 edges are
/// reachable by short inputs. Always `max_line <= max_head` (the CLI refuses anything else).
pub fn limits_from(a: u8, b: u8, c: u8) -> Limits {
    if a.is_multiple_of(4) {
        return Limits::default();
    }
    let max_line = 4 + usize::from(b % 60);
    Limits {
        max_line,
        max_head: max_line + usize::from(c),
        max_headers: 1 + usize::from((a >> 2) % 16),
    }
}

fn show(buf: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(buf))
}

/// The prefix lengths to re-parse: all of them for short inputs, otherwise the two ends, the
/// neighbourhood of `near` (where the whole input's head ends) and an even sample in between.
fn prefix_lengths(len: usize, near: Option<usize>) -> Vec<usize> {
    if len <= 512 {
        return (0..len).collect();
    }
    let mut ks: Vec<usize> = (0..64).chain(len - 64..len).collect();
    if let Some(n) = near {
        ks.extend(n.saturating_sub(3)..(n + 3).min(len));
    }
    ks.extend((0..len).step_by(len / 64));
    ks.sort_unstable();
    ks.dedup();
    ks
}

/// What must hold of one `parse` result on its own, without parsing again (the lean fuzz
/// target checks only this, so it runs at the parser's speed):
/// - errors carry a documented status;
/// - `Partial`: the buffer is within `max_head` (else a client could grow it without bound);
/// - `Complete(_, used)`: `0 < used <= len`, `used <= max_head`, a non-empty method, a target of
///   visible ASCII only, and an HTTP/1.0 request kept alive only if its head asked for it.
pub fn check_result(buf: &[u8], limits: &Limits, result: &Result<Parsed, ParseError>) {
    match result {
        Err(e) => assert!(
            STATUSES.contains(&e.status()),
            "undocumented status {} for {}",
            e.status(),
            show(buf)
        ),
        Ok(Parsed::Partial) => assert!(
            buf.len() <= limits.max_head,
            "Partial with {} bytes buffered, max_head {} ({limits:?}): {}",
            buf.len(),
            limits.max_head,
            show(buf)
        ),
        Ok(Parsed::Complete(req, used)) => {
            let used = *used;
            assert!(
                used > 0 && used <= buf.len(),
                "used {used} of {}: {}",
                buf.len(),
                show(buf)
            );
            assert!(
                used <= limits.max_head,
                "Complete head of {used} bytes over max_head {} ({limits:?}): {}",
                limits.max_head,
                show(buf)
            );
            assert!(
                !req.target.is_empty() && req.target.bytes().all(|b| (0x21..0x7f).contains(&b)),
                "target {:?} from {}",
                req.target,
                show(buf)
            );
            assert!(!req.method_text.is_empty(), "empty method: {}", show(buf));
            if req.version == Version::Http10 {
                // 1.0 keeps the connection only on request; the rest is checked by unit tests.
                let asked = buf[..used]
                    .windows(10)
                    .any(|w| w.eq_ignore_ascii_case(b"keep-alive"));
                assert!(
                    !req.keep_alive || asked,
                    "1.0 kept alive unasked: {}",
                    show(buf)
                );
            }
        }
    }
}

/// One `parse` of `buf` checked with [`check_result`]: what the lean fuzz target runs per input.
pub fn check_parse_once(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    let whole = parse(buf, limits);
    check_result(buf, limits, &whole);
    whole
}

/// What must hold of one buffer fed to `parse`:
/// - everything [`check_result`] checks;
/// - `Complete(_, used)`: the head alone parses the same, appending bytes changes nothing, every
///   shorter prefix is `Partial`;
/// - `Err(e)`: appending bytes keeps the same status, and every prefix is `Partial` or an error
///   with the same status (the answer must not depend on how TCP split the bytes).
///
/// Returns the whole buffer's result.
pub fn check_parse(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    let whole = check_parse_once(buf, limits);
    if let Ok(Parsed::Complete(_, used)) = &whole {
        assert_eq!(
            parse(&buf[..*used], limits),
            whole,
            "the head alone parses differently: {}",
            show(buf)
        );
    }

    // Appending bytes never changes a decided result.
    if !matches!(whole, Ok(Parsed::Partial)) {
        for tail in [
            &b"\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\xff\x00 \t:",
        ] {
            let mut more = buf.to_vec();
            more.extend_from_slice(tail);
            let again = parse(&more, limits);
            match (&whole, &again) {
                (Err(e), Err(f)) => assert_eq!(
                    e.status(),
                    f.status(),
                    "appending {} changed the error: {}",
                    show(tail),
                    show(buf)
                ),
                _ => assert_eq!(
                    again,
                    whole,
                    "appending {} changed the result: {}",
                    show(tail),
                    show(buf)
                ),
            }
        }
    }

    // Prefixes: Partial, then (from `used` on) the same Complete, or the same error status.
    let near = match &whole {
        Ok(Parsed::Complete(_, used)) => Some(*used),
        _ => None,
    };
    for k in prefix_lengths(buf.len(), near) {
        let p = parse(&buf[..k], limits);
        match (&whole, &p) {
            (_, Ok(Parsed::Partial)) => {
                if let Ok(Parsed::Complete(_, used)) = &whole {
                    assert!(
                        k < *used,
                        "prefix of {k} bytes is Partial but the head ends at {used}: {}",
                        show(buf)
                    );
                }
            }
            (Ok(Parsed::Complete(_, used)), Ok(Parsed::Complete(..))) => assert!(
                k >= *used && p == whole,
                "prefix of {k} bytes parsed as {p:?}, whole as {whole:?}: {}",
                show(buf)
            ),
            (Err(e), Err(f)) => assert_eq!(
                e.status(),
                f.status(),
                "prefix of {k} bytes fails with {f:?}, the whole with {e:?}: {}",
                show(buf)
            ),
            _ => panic!(
                "prefix of {k} bytes parsed as {p:?}, the whole as {whole:?} ({limits:?}): {}",
                show(buf)
            ),
        }
    }
    whole
}

/// Walks a pipelined stream the way the connection loops do (parse a head, skip its body, parse
/// the next) and checks every head with [`check_parse`]. Returns how many heads were complete.
pub fn check_stream(buf: &[u8], limits: &Limits, max_requests: usize) -> usize {
    walk_stream(buf, limits, max_requests, check_parse)
}

/// [`check_stream`] with only [`check_parse_once`] per head: each byte is parsed about once, so
/// this runs at the parser's speed (the lean fuzz target).
pub fn check_stream_once(buf: &[u8], limits: &Limits, max_requests: usize) -> usize {
    walk_stream(buf, limits, max_requests, check_parse_once)
}

fn walk_stream(
    mut buf: &[u8],
    limits: &Limits,
    max_requests: usize,
    check: fn(&[u8], &Limits) -> Result<Parsed, ParseError>,
) -> usize {
    let mut n = 0;
    while n < max_requests {
        match check(buf, limits) {
            Ok(Parsed::Complete(req, used)) => {
                n += 1;
                buf = &buf[used..];
                let body = usize::try_from(req.body_len)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                buf = &buf[body..];
            }
            _ => break,
        }
    }
    n
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// `split_target`: the path starts with '/', and both parts are free of '#' and come from the
/// target (the path of an absolute-form target may be the implied "/").
pub fn check_split(target: &str) -> Option<(&str, &str)> {
    let split = split_target(target);
    if let Some((path, query)) = split {
        assert!(path.starts_with('/'), "{target:?} -> path {path:?}");
        assert!(
            !path.contains('#') && !query.contains('#'),
            "{target:?} -> {split:?}"
        );
        assert!(!path.contains('?'), "{target:?} -> path {path:?}");
        assert!(
            target.contains(query) && (path == "/" || target.contains(path)),
            "{target:?} -> {split:?}"
        );
    }
    split
}

/// `normalize`: `rel` has no empty, `.` or `..` segment, no leading '/', no '\\', NUL or other
/// control character, no dot-segment (hidden files are 404); and it was decoded exactly once:
/// re-encoding its '%' and normalizing again gives it back.
pub fn check_normalize(raw: &str) -> Result<String, Reject> {
    let n = normalize(raw)?;
    let rel = &n.rel;
    assert!(!rel.starts_with('/'), "{raw:?} -> {rel:?}");
    assert!(
        !rel.contains('\\') && !rel.contains('\0'),
        "{raw:?} -> {rel:?}"
    );
    assert!(!rel.chars().any(char::is_control), "{raw:?} -> {rel:?}");
    if !rel.is_empty() {
        for seg in rel.split('/') {
            assert!(
                !seg.is_empty() && seg != "." && seg != "..",
                "{raw:?} -> {rel:?} has segment {seg:?}"
            );
            assert!(!seg.starts_with('.'), "{raw:?} -> hidden {rel:?}");
        }
    }
    if rel.is_empty() {
        assert!(n.dir_form, "{raw:?} -> the root, not in directory form");
    }
    let again = normalize(&format!("/{}", rel.replace('%', "%25")))
        .unwrap_or_else(|e| panic!("{raw:?} -> {rel:?}, which does not normalize again: {e:?}"));
    assert_eq!(&again.rel, rel, "{raw:?} was not decoded exactly once");
    Ok(n.rel)
}

/// A document root full of symlinks that lead out (absolute, relative, through `..`, to a file
/// and to a directory, in loops), next to a directory of secrets; removed when dropped.
pub struct Fixture {
    pub base: PathBuf,
    pub root: Root,
}

/// Names in the fixture root, for dictionaries and generators.
pub const FIXTURE_NAMES: [&str; 17] = [
    "index.html",
    "sub",
    "sub/a.txt",
    "sub/up",
    "sub/ok",
    "abs",
    "etc",
    "up",
    "upfile",
    "secret-dir",
    "loop",
    "self",
    "hop-out",
    "rel-out",
    "deep/deeper/out",
    "proc",
    "secret",
];

impl Fixture {
    /// Creates the fixture under the system temp directory (a fresh, unique directory).
    pub fn new() -> io::Result<Fixture> {
        use std::os::unix::fs::symlink;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "archserve-props-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("sub"))?;
        std::fs::create_dir_all(root.join("deep/deeper"))?;
        std::fs::create_dir_all(&outside)?;
        std::fs::write(outside.join("secret"), "secret")?;
        std::fs::write(base.join("secret"), "secret")?;
        std::fs::write(root.join("index.html"), "index")?;
        std::fs::write(root.join("sub/a.txt"), "a")?;
        symlink("..", root.join("sub/up"))?; // stays inside (root)
        symlink("../index.html", root.join("sub/ok"))?; // stays inside
        symlink("/", root.join("abs"))?;
        symlink("/etc", root.join("etc"))?;
        symlink("..", root.join("up"))?; // base
        symlink("../secret", root.join("upfile"))?;
        symlink(&outside, root.join("secret-dir"))?;
        symlink("loop", root.join("loop"))?;
        symlink(".", root.join("self"))?;
        symlink("../outside/secret", root.join("rel-out"))?;
        symlink("../../../outside", root.join("deep/deeper/out"))?;
        symlink("/proc/self/root", root.join("proc"))?;
        symlink("sub/up/up", root.join("hop-out"))?; // two hops, the second one out
        let root = Root::open_dir(&root)?;
        Ok(Fixture { base, root })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn fd_path(file: &std::fs::File) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("readlink fd")
}

/// `Root::open` on any string (not only what `normalize` returns: the second layer must hold on
/// its own) never yields a file outside the root. Returns whether something was opened.
pub fn check_open(fx: &Fixture, rel: &str) -> bool {
    match fx.root.open(rel) {
        Ok(file) => {
            let real = fd_path(&file);
            assert!(
                real.starts_with(fx.root.path()),
                "{rel:?} opened {} outside the root {}",
                real.display(),
                fx.root.path().display()
            );
            true
        }
        Err(_) => false,
    }
}

/// The whole text path of a request target: split, normalize, open.
pub fn check_target(fx: &Fixture, target: &str) {
    if let Some((path, _)) = check_split(target) {
        if let Ok(rel) = check_normalize(path) {
            check_open(fx, &rel);
        }
    }
    if target.starts_with('/') {
        if let Ok(rel) = check_normalize(target) {
            check_open(fx, &rel);
        }
    }
    if !target.contains('\0') {
        check_open(fx, target);
        check_open(fx, target.trim_start_matches('/'));
    }
}

// ---------------------------------------------------------------------------------------------
// Ranges
// ---------------------------------------------------------------------------------------------

/// `range::parse`: every range lies in `0..len` with `first <= last`; at most `MAX_RANGES`; when
/// there are several, they add up to no more than `len` (no amplification). `Unsatisfiable`
/// only for a non-empty list (an empty one is `Full`).
pub fn check_range(header: &str, len: u64) -> Ranges {
    let r = range::parse(header, len);
    match &r {
        Ranges::Partial(list) => {
            assert!(!list.is_empty(), "{header:?} len {len}: empty Partial");
            assert!(
                list.len() <= MAX_RANGES,
                "{header:?} len {len}: {} ranges",
                list.len()
            );
            for &(first, last) in list {
                assert!(
                    first <= last && last < len,
                    "{header:?} len {len}: range {first}-{last}"
                );
            }
            if list.len() > 1 {
                let total: u128 = list.iter().map(|&(a, b)| u128::from(b - a) + 1).sum();
                assert!(
                    total <= u128::from(len),
                    "{header:?} len {len}: {total} bytes in {} ranges",
                    list.len()
                );
            }
        }
        Ranges::Unsatisfiable => assert!(
            header.contains('='),
            "{header:?} len {len}: unsatisfiable without a range"
        ),
        Ranges::Full => {}
    }
    r
}
