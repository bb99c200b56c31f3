//! The properties that the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the property tests
//! (`tests/integration/properties.rs`) both check. One copy, included by both with `#[path]`, so
//! the long local fuzz runs and the bounded CI replay assert exactly the same things.
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
        keep_fields: a & 1 == 1,
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

// ---------------------------------------------------------------------------------------------
// The open-file cache under file changes
// ---------------------------------------------------------------------------------------------

/// Paths in the churn fixture's root that operations act on: files, directories and symlinks
/// can take each other's place at any of them.
pub const CHURN_SLOTS: [&str; 8] = [
    "a",
    "d",
    "d/c",
    "d/index.html",
    "e",
    "e/c",
    "l",
    "index.html",
];

/// Request paths looked up (through the site, so through the cache's lookup/remember path).
pub const CHURN_TARGETS: [&str; 14] = [
    "/",
    "/a",
    "/a/",
    "/d",
    "/d/",
    "/d/c",
    "/e/",
    "/e/c",
    "/l",
    "/l/",
    "/l/c",
    "/l/index.html",
    "/index.html",
    "/z/c",
];

/// Where symlinks point: inside the root (relative to the root, for a link at its top level),
/// out of it, and nowhere.
pub const CHURN_LINKS: [&str; 8] = [
    "a",
    "d",
    "d/c",
    "e",
    "../outside/m",
    "../outside",
    "/etc",
    "missing",
];

/// File lengths written: empty, small (kept in memory by the cache), at and past the in-memory
/// limit, and larger.
const CHURN_LENS: [usize; 8] = [0, 1, 5, 64, 4096, 4097, 9000, 3];

/// One change to the fixture, or a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChurnOp {
    /// GET of `CHURN_TARGETS[i]`, checked against the files as they are now.
    Get(u8),
    /// Overwrite in place (same inode, no truncation) with new bytes of the same length.
    WriteSame(u8),
    /// Truncate and write new bytes of `CHURN_LENS[len]`.
    WriteOther(u8, u8),
    /// Truncate to `CHURN_LENS[len]` bytes (or fewer bytes, whichever it had).
    Truncate(u8, u8),
    /// Write a new file beside it and rename it over (atomic replace).
    RenameOver(u8, u8),
    /// Delete, then create again with new bytes.
    DeleteRecreate(u8, u8),
    /// A file becomes a directory (holding `c` and `index.html`), a directory a file.
    Swap(u8),
    /// Replace whatever is there with a symlink to `CHURN_LINKS[to]`.
    Symlink(u8, u8),
    /// chmod: 0 or 0644 (the server runs as root here, so this changes metadata only).
    Chmod(u8, bool),
    /// Move it out of the root, to `outside/m` (what `../outside/m` links point to).
    MoveOut(u8),
    /// Rename it to `z` beside the root's other entries, or `z` back to it.
    RenameAway(u8),
}

impl ChurnOp {
    /// Decodes two input bytes; the high bits of the first choose the operation, so requests
    /// come as often as changes.
    pub fn from_bytes(op: u8, arg: u8) -> ChurnOp {
        let slot = op & 0x7;
        let x = arg & 0x7;
        match op >> 3 {
            0..=10 => ChurnOp::Get(arg % CHURN_TARGETS.len() as u8),
            11 | 12 => ChurnOp::WriteSame(slot),
            13 | 14 => ChurnOp::WriteOther(slot, x),
            15 => ChurnOp::Truncate(slot, x),
            16 | 17 => ChurnOp::RenameOver(slot, x),
            18 | 19 => ChurnOp::DeleteRecreate(slot, x),
            20 | 21 => ChurnOp::Swap(slot),
            22..=24 => ChurnOp::Symlink(slot, x),
            25 => ChurnOp::Chmod(slot, arg & 1 == 0),
            26 | 27 => ChurnOp::MoveOut(slot),
            _ => ChurnOp::RenameAway(slot),
        }
    }
}

/// A document root whose files change between requests, served by a [`archserve::site::Site`]
/// (so every request goes through the thread's open-file cache), and a second handle on the
/// root to find what a request must get, by opening the file afresh.
pub struct Churn {
    pub base: PathBuf,
    root_dir: PathBuf,
    site: archserve::site::Site,
    fresh: Root,
    /// Makes every write's bytes differ from every earlier version's.
    generation: u64,
}

impl Churn {
    /// A fresh fixture under the temp directory: `a`, `index.html`, `d/c`, `d/index.html`,
    /// `e/c`, a link `l -> d`, and `outside/` next to the root.
    pub fn new() -> io::Result<Churn> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "archserve-churn-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let root_dir = base.join("root");
        std::fs::create_dir_all(root_dir.join("d"))?;
        std::fs::create_dir_all(root_dir.join("e"))?;
        std::fs::create_dir_all(base.join("outside"))?;
        std::fs::write(base.join("outside/c"), "outside c")?;
        std::fs::write(base.join("outside/index.html"), "outside index")?;
        for (i, f) in ["a", "index.html", "d/c", "d/index.html", "e/c"]
            .iter()
            .enumerate()
        {
            std::fs::write(root_dir.join(f), format!("initial {f} {i}"))?;
        }
        std::os::unix::fs::symlink("d", root_dir.join("l"))?;
        let site = archserve::site::Site::new(&root_dir)?;
        let fresh = Root::open_dir(&root_dir)?;
        Ok(Churn {
            base,
            root_dir,
            site,
            fresh,
            generation: 0,
        })
    }

    fn content(&mut self, len: usize) -> Vec<u8> {
        self.generation += 1;
        let stamp = format!("<{}>", self.generation);
        stamp.bytes().cycle().take(len).collect()
    }

    /// Applies one operation; changes that do not apply (no such file) do nothing. Returns
    /// the request's target for [`ChurnOp::Get`].
    pub fn apply(&mut self, op: ChurnOp) -> Option<&'static str> {
        use std::os::unix::fs::{FileExt, PermissionsExt};
        let at = |slot: u8| self.root_dir.join(CHURN_SLOTS[usize::from(slot) % 8]);
        let len = |x: u8| CHURN_LENS[usize::from(x) % CHURN_LENS.len()];
        match op {
            ChurnOp::Get(i) => return Some(CHURN_TARGETS[usize::from(i) % CHURN_TARGETS.len()]),
            ChurnOp::WriteSame(s) => {
                let p = at(s);
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&p) {
                    let n = f.metadata().map_or(0, |m| m.len()) as usize;
                    let bytes = self.content(n);
                    let _ = f.write_all_at(&bytes, 0);
                }
            }
            ChurnOp::WriteOther(s, x) => {
                let p = at(s);
                if p.is_file() {
                    let bytes = self.content(len(x));
                    let _ = std::fs::write(&p, bytes);
                }
            }
            ChurnOp::Truncate(s, x) => {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(at(s)) {
                    let n = f.metadata().map_or(0, |m| m.len());
                    let _ = f.set_len(n.min(len(x) as u64));
                }
            }
            ChurnOp::RenameOver(s, x) => {
                let p = at(s);
                let tmp = self.base.join("tmp");
                let bytes = self.content(len(x));
                if std::fs::write(&tmp, bytes).is_ok() {
                    let _ = std::fs::rename(&tmp, &p);
                }
            }
            ChurnOp::DeleteRecreate(s, x) => {
                let p = at(s);
                if p.is_file() && std::fs::remove_file(&p).is_ok() {
                    let bytes = self.content(len(x));
                    let _ = std::fs::write(&p, bytes);
                }
            }
            ChurnOp::Swap(s) => {
                let p = at(s);
                let meta = std::fs::symlink_metadata(&p);
                if meta.as_ref().is_ok_and(|m| m.is_dir()) {
                    let _ = std::fs::remove_dir_all(&p);
                    let bytes = self.content(5);
                    let _ = std::fs::write(&p, bytes);
                } else if meta.is_ok()
                    && std::fs::remove_file(&p).is_ok()
                    && std::fs::create_dir(&p).is_ok()
                {
                    let (c, index) = (self.content(3), self.content(7));
                    let _ = std::fs::write(p.join("c"), c);
                    let _ = std::fs::write(p.join("index.html"), index);
                }
            }
            ChurnOp::Symlink(s, to) => {
                let p = at(s);
                let slot = CHURN_SLOTS[usize::from(s) % 8];
                // Targets are written for a link at the top level; one level down, prefix "../".
                let mut target = CHURN_LINKS[usize::from(to) % CHURN_LINKS.len()].to_owned();
                if slot.contains('/') && !target.starts_with('/') {
                    target = format!("../{target}");
                }
                remove_any(&p);
                let _ = std::os::unix::fs::symlink(target, &p);
            }
            ChurnOp::Chmod(s, off) => {
                let mode = if off { 0 } else { 0o644 };
                let _ = std::fs::set_permissions(at(s), std::fs::Permissions::from_mode(mode));
            }
            ChurnOp::MoveOut(s) => {
                let out = self.base.join("outside/m");
                remove_any(&out);
                let _ = std::fs::rename(at(s), out);
            }
            ChurnOp::RenameAway(s) => {
                let (p, z) = (at(s), self.root_dir.join("z"));
                if std::fs::symlink_metadata(&z).is_ok() {
                    if std::fs::symlink_metadata(&p).is_err() {
                        let _ = std::fs::rename(&z, &p);
                    }
                } else {
                    let _ = std::fs::rename(&p, &z);
                }
            }
        }
        None
    }

    /// Requests `target` through the site (and so through its open-file cache) and checks the
    /// answer against the file as it is now, opened afresh beneath the root: the same bytes,
    /// with the length and validators of its metadata now; a redirect exactly when the path is
    /// a directory asked without its slash; otherwise an error status. Never a file outside
    /// the root.
    pub fn check_get(&self, target: &str) {
        use archserve::site::{Body, Ctx, Part, Plan};
        let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let Ok(Parsed::Complete(req, _)) = parse(head.as_bytes(), &Limits::default()) else {
            panic!("the request for {target} does not parse");
        };
        let ctx = Ctx {
            date: "Thu, 01 Jan 1970 00:00:00 GMT",
        };
        // Validators depend on the time (none while a file is settling): the reply's are those
        // of an instant between these two.
        let before = std::time::SystemTime::now();
        let Plan::Reply(reply) = self.site.plan(&req, ctx) else {
            panic!("{target}: a workload?");
        };
        let after = std::time::SystemTime::now();
        let head = String::from_utf8_lossy(&reply.head).into_owned();
        let want = expect(&self.fresh, target);
        match want {
            Expect::File(bytes, info) => {
                assert_eq!(
                    reply.status,
                    200,
                    "{target}: want {} bytes, got {head}",
                    bytes.len()
                );
                let body: Vec<u8> = match &reply.body {
                    Body::Empty => Vec::new(),
                    Body::Bytes(b) => b.clone(),
                    Body::File { file, parts, len } => {
                        let real = fd_path(file);
                        assert!(
                            real.starts_with(self.fresh.path()),
                            "{target}: served {} from outside the root",
                            real.display()
                        );
                        let mut out = Vec::new();
                        for part in parts {
                            match part {
                                Part::Bytes(b) => out.extend_from_slice(b),
                                Part::File { offset, len } => {
                                    use std::os::unix::fs::FileExt;
                                    let mut buf = vec![0u8; *len as usize];
                                    // Fewer bytes than promised: what the connection loop
                                    // would cut short; the comparison below reports it.
                                    let n = file.read_at(&mut buf, *offset).unwrap_or(0);
                                    buf.truncate(n);
                                    out.extend_from_slice(&buf);
                                }
                            }
                        }
                        assert_eq!(out.len() as u64, *len, "{target}: {head}");
                        out
                    }
                };
                assert!(
                    body == bytes,
                    "{target}: stale or wrong bytes: served {:?}, the file holds {:?}\n{head}",
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&bytes)
                );
                let length = format!("\r\nContent-Length: {}\r\n", bytes.len());
                assert!(
                    head.contains(&length),
                    "{target}: want {length:?} in\n{head}"
                );
                let agree = |at| {
                    let v = archserve::site::conditional::Validators::new(&info, "", at);
                    let field = |name: &str, value: Option<String>| match value {
                        Some(value) => head.contains(&format!("\r\n{name}: {value}\r\n")),
                        None => !head.contains(&format!("\r\n{name}:")),
                    };
                    field("ETag", v.etag.clone()) && field("Last-Modified", v.last_modified())
                };
                assert!(
                    agree(before) || agree(after),
                    "{target}: validators not those of the file's metadata now: {info:?}\n{head}"
                );
            }
            Expect::Redirect => assert_eq!(reply.status, 301, "{target}: {head}"),
            Expect::Error => assert!(
                reply.status >= 400,
                "{target}: the path leads to no file, yet the answer is\n{head}"
            ),
        }
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// What `target` must get from a server whose root is `fresh`, found the way the site finds
/// it (normalize, open beneath the root, a directory's `index.html`), without any cache.
pub fn expect(fresh: &Root, target: &str) -> Expect {
    use archserve::site::open_files::FileInfo;
    let Ok(norm) = normalize(target) else {
        return Expect::Error;
    };
    let open = |rel: &str| {
        let mut f = fresh.open(rel).ok()?;
        let meta = f.metadata().ok()?;
        let mut bytes = Vec::new();
        if meta.is_file() {
            std::io::Read::read_to_end(&mut f, &mut bytes).ok()?;
        }
        Some((bytes, meta))
    };
    let Some((bytes, meta)) = open(&norm.rel) else {
        return Expect::Error;
    };
    if meta.is_file() {
        return Expect::File(bytes, FileInfo::from_metadata(&meta));
    }
    if !meta.is_dir() {
        return Expect::Error;
    }
    if !norm.dir_form {
        return Expect::Redirect;
    }
    let index = if norm.rel.is_empty() {
        "index.html".to_owned()
    } else {
        format!("{}/index.html", norm.rel)
    };
    match open(&index) {
        Some((bytes, meta)) if meta.is_file() => {
            Expect::File(bytes, FileInfo::from_metadata(&meta))
        }
        _ => Expect::Error,
    }
}

/// What a request must get: the bytes and metadata of the file it leads to, a redirect (a
/// directory asked without its slash), or an error status.
#[derive(Debug, Clone)]
pub enum Expect {
    File(Vec<u8>, archserve::site::open_files::FileInfo),
    Redirect,
    Error,
}

pub fn remove_any(p: &std::path::Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Runs a sequence of operations on a fresh fixture, checking every request.
pub fn check_churn(ops: &[ChurnOp]) {
    let mut churn = Churn::new().expect("create churn fixture");
    for &op in ops {
        if let Some(target) = churn.apply(op) {
            churn.check_get(target);
        }
    }
}
