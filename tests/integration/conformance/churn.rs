//! The open-file cache under churn, on every architecture: client connections request files while a mutator thread changes them at random, and every answer is checked against the timeline of versions the mutator recorded.
//!
//! The mutator rewrites files in place (same length and another), truncates them, renames new
//! files over them, deletes and re-creates them, turns a file into a directory and back,
//! retargets a symlink inside the root and out of it, removes permissions, moves a whole
//! directory out of the root and back, and sets modification times back (as `cp -p` and
//! `rsync -t` do, which makes validators appear at once instead of after their 2 s settling).
//! After each change it records what every URL leads to (the bytes and metadata of the file,
//! opened afresh beneath the root by `props::expect`, the same model the `file_cache` fuzz
//! target uses) and the time window it existed in: from the start of the change that made it to
//! the end of the change that ended it. A change that removes a path and creates it again also
//! records, for every URL resolved through that path, the gap in between, even when the path
//! ends as it began (`s` removed and linked again to the same target).
//!
//! Every answer must be (a) the bytes of a version that existed while the request was served
//! (from its send to its last byte), with Content-Length, Content-Range, ETag and Last-Modified
//! agreeing with that version, or (b) an error status that some version in that window explains
//! (404 for no file, 301 for a directory asked without its slash, 416 for a range past its end),
//! and a 304 only for a validator of a version in the window. Bytes of two versions mixed are
//! accepted only where the file itself held them: while it was being rewritten in place (a
//! `write` is not atomic against a concurrent `read`). Never a body from outside the root, never
//! a hang (reads time out after 5 s). Across the whole run one strong ETag never stands for two
//! bodies.
//!
//! The short version runs in CI, bounded by a request count. `ARCHSERVE_CHURN_SEED` replays a
//! seed (the operations and requests each thread draws; the interleaving of the threads is the
//! scheduler's), `ARCHSERVE_CHURN_REQUESTS` sets the requests per client and
//! `ARCHSERVE_CHURN_SECONDS` makes each client run for that long instead (`scripts/churn`).

use super::harness::*;
use crate::properties::props::{self, Expect};
use archserve::site::conditional::Validators;
use archserve::site::open_files::FileInfo;
use archserve::site::resolve::Root;
use proptest::prelude::Rng as _;
use proptest::test_runner::{RngAlgorithm, TestRng};
use std::collections::HashMap;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Client connections per server; with `-w 2`, enough for both workers' caches to be used.
const CLIENTS: u64 = 4;
/// Requests per client in CI: 1,600 requests per architecture, about as many changes, a
/// second or two each.
const REQUESTS: u64 = 400;
/// The churned directory inside the root.
const DIR: &str = "churn";
/// Files the mutator writes to (under [`DIR`]); `d/x` goes away with its directory, `g` is a
/// directory half of the time.
const FILES: [&str; 5] = ["f", "big", "d/x", "g", "p"];
/// The URLs requested.
const URLS: [&str; 9] = [
    "/churn/f",
    "/churn/big",
    "/churn/d/x",
    "/churn/d",
    "/churn/s",
    "/churn/g",
    "/churn/g/",
    "/churn/p",
    "/churn/s/x",
];
/// Lengths written: empty, small, at the cache's 4,096-byte in-memory limit, and larger
/// (sendfile, several reads).
const LENS: [usize; 9] = [0, 1, 7, 100, 4095, 4096, 4097, 20_000, 70_000];
/// Where the symlink `s` points, from `churn/`: files and a directory inside the root, the
/// fixture's secret next to the root, a file and a directory outside, nothing.
const LINKS: [&str; 8] = [
    "f",
    "big",
    "d/x",
    "d",
    "../../secret.txt",
    "OUTSIDE/outside.txt",
    "OUTSIDE",
    "missing",
];

#[test]
fn every_answer_is_a_version_the_file_had_while_the_request_was_served() {
    let seed = std::env::var("ARCHSERVE_CHURN_SEED")
        .ok()
        .map(|s| parse_seed(&s))
        .unwrap_or_else(|| {
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            t.as_nanos() as u64 ^ u64::from(std::process::id())
        });
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("{name}={v:?}")))
    };
    let bound = match env("ARCHSERVE_CHURN_SECONDS") {
        Some(s) => Bound::Seconds(s),
        None => Bound::Requests(env("ARCHSERVE_CHURN_REQUESTS").unwrap_or(REQUESTS)),
    };
    eprintln!("churn: seed {seed:#x} (ARCHSERVE_CHURN_SEED replays it), {bound:?}");
    // Every architecture runs even when one finds something, so a long run reports them all.
    let failed = Mutex::new(Vec::new());
    for_each_arch(|arch| {
        let report = run(arch, seed, bound);
        eprintln!("{}", report.summary(arch, seed));
        assert!(report.count("requests") > 0 && report.changes > 0);
        if let Some(log) = report.findings.last() {
            let first = &report.findings[..report.findings.len().min(12)];
            failed.lock().unwrap().push(format!(
                "[{arch}] {} findings, the first:\n{}\n{log}",
                report.findings.len(),
                first.join("\n"),
            ));
        }
    });
    let failed = failed.into_inner().unwrap();
    assert!(failed.is_empty(), "seed {seed:#x}:\n{}", failed.join("\n"));
}

fn parse_seed(s: &str) -> u64 {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.unwrap_or_else(|_| panic!("ARCHSERVE_CHURN_SEED={s:?}: not a number"))
}

/// How long each client runs.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Requests(u64),
    Seconds(u64),
}

/// A seeded generator for one thread.
struct Rng(TestRng);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        bytes[8..16].copy_from_slice(&stream.to_le_bytes());
        Rng(TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
    }

    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// The model: every URL's versions and when they existed
// ---------------------------------------------------------------------------------------------

/// What one URL led to from the start of the change that made it (`from`) to the end of the
/// change that ended it (`to`, `None` while current).
struct Version {
    expect: Expect,
    from: Instant,
    to: Option<Instant>,
}

/// A change that wrote into an existing file (same inode): while it ran, the file held any mix
/// of the old and the new bytes. `recreate`: the change deleted or replaced the path in several
/// steps, so for its duration the path could also lead to nothing or to a prefix of the new
/// bytes.
struct Transition {
    /// The inode written to (for `recreate`, the one before).
    ino: u64,
    old: Vec<u8>,
    new: Vec<u8>,
    recreate: bool,
    from: Instant,
    to: Instant,
}

#[derive(Default)]
struct Timeline {
    versions: Vec<Version>,
    transitions: Vec<Transition>,
}

/// How long an ended version is kept: longer than any request can take (reads time out after
/// 5 s), so that the long runs do not hold every version they made.
const KEEP: Duration = Duration::from_secs(30);

impl Timeline {
    /// Drops the versions and in-place writes that ended more than [`KEEP`] before `now`.
    fn forget_before(&mut self, now: Instant) {
        let Some(horizon) = now.checked_sub(KEEP) else {
            return;
        };
        self.versions
            .retain(|v| v.to.is_none_or(|to| to >= horizon));
        self.transitions.retain(|t| t.to >= horizon);
    }

    fn overlapping(&self, sent: Instant, done: Instant) -> impl Iterator<Item = &Version> {
        self.versions
            .iter()
            .filter(move |v| v.from <= done && v.to.is_none_or(|to| to >= sent))
    }

    fn transitions(&self, sent: Instant, done: Instant) -> impl Iterator<Item = &Transition> {
        self.transitions
            .iter()
            .filter(move |t| t.from <= done && t.to >= sent)
    }
}

fn bytes_of(e: &Expect) -> &[u8] {
    match e {
        Expect::File(b, _) => b,
        _ => &[],
    }
}

fn same(a: &Expect, b: &Expect) -> bool {
    match (a, b) {
        (Expect::File(x, i), Expect::File(y, j)) => x == y && i == j,
        (Expect::Redirect, Expect::Redirect) | (Expect::Error, Expect::Error) => true,
        _ => false,
    }
}

/// The strong entity-tag a version's metadata gives once settled (the `W/` prefix aside).
fn etag_of(info: &FileInfo) -> String {
    let v = Validators::new(info, "", SystemTime::now() + Duration::from_secs(1 << 20));
    v.etag.expect("a settled file has an ETag")
}

fn last_modified_of(info: &FileInfo) -> String {
    let secs = info
        .modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

// ---------------------------------------------------------------------------------------------
// The mutator
// ---------------------------------------------------------------------------------------------

/// The churned tree and its recorded timelines; changed by one thread only.
struct Tree {
    dir: PathBuf,
    /// Beside the root on the same file system: where new files are written before a rename,
    /// and where the directory `d` is moved out to.
    aside: PathBuf,
    outside: PathBuf,
    fresh: Root,
    timelines: Mutex<Vec<Timeline>>,
    generation: AtomicUsize,
}

impl Tree {
    fn new(fixture: &Fixture) -> Tree {
        let dir = fixture.root.join(DIR);
        let aside = fixture.parent.path().join("aside");
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::create_dir_all(&aside).unwrap();
        let tree = Tree {
            dir,
            aside,
            outside: fixture.outside.path().to_path_buf(),
            fresh: Root::open_dir(&fixture.root).unwrap(),
            timelines: Mutex::new(URLS.iter().map(|_| Timeline::default()).collect()),
            generation: AtomicUsize::new(0),
        };
        for (f, len) in FILES.iter().zip([100, 20_000, 3000, 50, 10]) {
            std::fs::write(tree.dir.join(f), tree.content(len)).unwrap();
        }
        std::os::unix::fs::symlink("f", tree.dir.join("s")).unwrap();
        let now = Instant::now();
        let mut timelines = tree.timelines.lock().unwrap();
        for (url, timeline) in URLS.iter().zip(timelines.iter_mut()) {
            timeline.versions.push(Version {
                expect: props::expect(&tree.fresh, url),
                from: now,
                to: None,
            });
        }
        drop(timelines);
        tree
    }

    /// New bytes of `len`, different from every earlier version's at most positions.
    fn content(&self, len: usize) -> Vec<u8> {
        let g = self.generation.fetch_add(1, Ordering::Relaxed);
        let stamp = format!("<{g}>");
        stamp.bytes().cycle().take(len).collect()
    }

    /// One random change, then the new versions of every URL it affected. The timelines stay
    /// locked meanwhile: a client judges its answer (after its last byte) only once every change
    /// that began before then is recorded.
    fn change(&self, rng: &mut Rng) {
        self.record(|| self.apply(rng));
    }

    /// Runs `apply` (one change) and records its new versions, as [`Tree::change`] says.
    ///
    /// A change in several steps on a path (remove, then create) leaves it leading to nothing
    /// in between even when it ends as it began: `s` removed and linked again to the target it
    /// had (1 in 16 retargets, 1 in 192 changes) leads to the same file or directory before and
    /// after, yet `/churn/s` and `/churn/s/x` answer 404 while it is missing. Every URL resolved
    /// through that path (directly, or through `s` as it pointed before) gets that gap recorded
    /// as a `recreate` transition, its version unchanged.
    fn record(&self, apply: impl FnOnce() -> Kind) {
        let mut timelines = self.timelines.lock().unwrap();
        let before: Vec<Expect> = URLS.iter().map(|u| props::expect(&self.fresh, u)).collect();
        let link = std::fs::read_link(self.dir.join("s")).ok();
        let from = Instant::now();
        let kind = apply();
        let to = Instant::now();
        let steps = matches!(kind, Kind::Steps(_));
        for (i, url) in URLS.iter().enumerate() {
            let now = props::expect(&self.fresh, url);
            let gap = match kind {
                Kind::Steps(path) => leads_through(url, path, link.as_deref()),
                _ => false,
            };
            let unchanged = same(&now, &before[i]);
            if unchanged && !gap {
                continue;
            }
            let timeline = &mut timelines[i];
            let in_place = matches!((&before[i], &now),
                (Expect::File(_, a), Expect::File(_, b)) if a.ino == b.ino);
            if kind != Kind::Atomic && (in_place || steps) {
                let ino = match &before[i] {
                    Expect::File(_, info) => info.ino,
                    _ => 0,
                };
                timeline.transitions.push(Transition {
                    ino,
                    old: bytes_of(&before[i]).to_vec(),
                    new: bytes_of(&now).to_vec(),
                    recreate: steps,
                    from,
                    to,
                });
            }
            timeline.forget_before(to);
            if unchanged {
                continue;
            }
            if let Some(last) = timeline.versions.last_mut() {
                last.to = Some(to);
            }
            timeline.versions.push(Version {
                expect: now,
                from,
                to: None,
            });
        }
    }

    /// Applies one change; what kind of change it was for the paths it touched.
    fn apply(&self, rng: &mut Rng) -> Kind {
        let name = *rng.pick(&FILES);
        let file = self.dir.join(name);
        let len = *rng.pick(&LENS);
        match rng.below(12) {
            0 | 1 => {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&file) {
                    let n = f.metadata().map_or(0, |m| m.len()) as usize;
                    let _ = f.write_all_at(&self.content(n), 0);
                }
                Kind::InPlace
            }
            2 => {
                if file.is_file() {
                    let _ = std::fs::write(&file, self.content(len));
                }
                Kind::InPlace
            }
            3 => {
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&file) {
                    let n = f.metadata().map_or(0, |m| m.len());
                    let _ = f.set_len(n.min(len as u64));
                }
                Kind::InPlace
            }
            4 | 5 => {
                let tmp = self.aside.join("new");
                if std::fs::write(&tmp, self.content(len)).is_ok() {
                    let _ = std::fs::rename(&tmp, &file);
                }
                Kind::Atomic
            }
            6 => {
                if file.is_file() && std::fs::remove_file(&file).is_ok() {
                    let _ = std::fs::write(&file, self.content(len));
                }
                Kind::Steps(name)
            }
            7 => self.swap_g(),
            8 => self.retarget(rng),
            9 => {
                let mode = if rng.below(2) == 0 { 0 } else { 0o644 };
                let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode));
                Kind::Atomic
            }
            10 => self.move_d(),
            _ => {
                // cp -p, rsync -t: the modification time set back, the change time moves on.
                let old = UNIX_EPOCH + Duration::from_secs(1_577_836_800 + rng.below(1000) as u64);
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&file) {
                    let _ = f.set_modified(old);
                }
                Kind::Atomic
            }
        }
    }

    /// `g`: a file becomes a directory holding `index.html`, a directory a file.
    fn swap_g(&self) -> Kind {
        let g = self.dir.join("g");
        if g.is_dir() {
            let _ = std::fs::remove_dir_all(&g);
            let _ = std::fs::write(&g, self.content(50));
        } else if std::fs::remove_file(&g).is_ok() && std::fs::create_dir(&g).is_ok() {
            let _ = std::fs::write(g.join("index.html"), self.content(60));
        }
        Kind::Steps("g")
    }

    /// `s`: a new symlink renamed over the old one (atomic), or the old one removed first.
    fn retarget(&self, rng: &mut Rng) -> Kind {
        let link = rng
            .pick(&LINKS)
            .replace("OUTSIDE", &self.outside.to_string_lossy());
        self.relink(&link, rng.below(2) == 0)
    }

    /// `s` pointed at `link`, by a rename over it (`atomic`) or by removing it first.
    fn relink(&self, link: &str, atomic: bool) -> Kind {
        let s = self.dir.join("s");
        if atomic {
            let tmp = self.aside.join("link");
            let _ = std::fs::remove_file(&tmp);
            if std::os::unix::fs::symlink(link, &tmp).is_ok() {
                let _ = std::fs::rename(&tmp, &s);
            }
            Kind::Atomic
        } else {
            let _ = std::fs::remove_file(&s);
            let _ = std::os::unix::fs::symlink(link, &s);
            Kind::Steps("s")
        }
    }

    /// `d` (with `x` in it) moved out of the root, or back.
    fn move_d(&self) -> Kind {
        let (d, away) = (self.dir.join("d"), self.aside.join("d"));
        if away.exists() {
            let _ = std::fs::rename(&away, &d);
        } else {
            let _ = std::fs::rename(&d, &away);
        }
        Kind::Atomic
    }
}

/// How a change reached its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One rename, chmod or utimensat: each URL led to its old or its new version.
    Atomic,
    /// Writes into an existing file: between the two, any mix of their bytes.
    InPlace,
    /// Several steps on the path (relative to [`DIR`]): remove, then create and write. Every URL
    /// resolved through it could also lead to nothing, or to a prefix of the new bytes.
    Steps(&'static str),
}

/// Whether `url` is resolved through `path` (relative to [`DIR`]): it names `path` or a path
/// beneath it, directly or through the symlink `s` as it pointed then (`link`).
fn leads_through(url: &str, path: &str, link: Option<&std::path::Path>) -> bool {
    let Some(rel) = url.strip_prefix("/churn/") else {
        return false;
    };
    let rel = rel.trim_end_matches('/');
    let beneath = |p: &str| {
        p.strip_prefix(path)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    };
    let via_s = rel
        .strip_prefix('s')
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .zip(link.and_then(|l| l.to_str()))
        .is_some_and(|(r, l)| beneath(&format!("{l}{r}")));
    beneath(rel) || via_s
}

// ---------------------------------------------------------------------------------------------
// The clients
// ---------------------------------------------------------------------------------------------

/// What a client asked for.
#[derive(Debug, Clone)]
enum Ask {
    Get,
    Range(u64, u64),
    IfNoneMatch(String),
    IfModifiedSince(String),
    IfRange(String, u64, u64),
}

impl Ask {
    fn headers(&self) -> Vec<String> {
        match self {
            Ask::Get => vec![],
            Ask::Range(a, b) => vec![format!("Range: bytes={a}-{b}")],
            Ask::IfNoneMatch(t) => vec![format!("If-None-Match: {t}")],
            Ask::IfModifiedSince(d) => vec![format!("If-Modified-Since: {d}")],
            Ask::IfRange(t, a, b) => {
                vec![format!("If-Range: {t}"), format!("Range: bytes={a}-{b}")]
            }
        }
    }

    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Ask::Range(a, b) | Ask::IfRange(_, a, b) => Some((*a, *b)),
            _ => None,
        }
    }
}

/// What one client remembers of the answers it got: validators to send back.
#[derive(Default)]
struct Seen {
    etags: HashMap<&'static str, String>,
    dates: HashMap<&'static str, String>,
}

impl Seen {
    fn ask(&self, url: &'static str, rng: &mut Rng) -> Ask {
        let (a, n) = (rng.below(25_000) as u64, rng.below(6_000) as u64);
        let range = if rng.below(3) == 0 {
            (a / 100, a / 100 + n / 100)
        } else {
            (a, a + n)
        };
        match (rng.below(10), self.etags.get(url), self.dates.get(url)) {
            (0..=3, _, _) => Ask::Get,
            (4 | 5, _, _) => Ask::Range(range.0, range.1),
            (6 | 7, Some(t), _) => Ask::IfNoneMatch(t.clone()),
            (8, _, Some(d)) => Ask::IfModifiedSince(d.clone()),
            (9, Some(t), _) => Ask::IfRange(t.clone(), range.0, range.1),
            _ => Ask::Get,
        }
    }
}

/// Every strong ETag seen in the run, the [`digest`] of the body it came with and whether that
/// answer was served during an in-place write; shared by the clients.
type Tags = Mutex<HashMap<String, (Vec<u8>, bool)>>;

/// The first bytes of a body kept per strong ETag, beside its hash: enough to show a conflict
/// without holding every body of a long run.
const SHOWN: usize = 60;

/// One client: requests on a kept-alive connection, or each on a fresh one, until the bound.
fn client(server: &ArchServer, tree: &Tree, tags: &Tags, rng: &mut Rng, bound: Bound) -> Report {
    let mut report = Report::default();
    let mut seen = Seen::default();
    let fresh_only = rng.below(3) == 0;
    let mut conn: Option<Conn> = None;
    // What the kept-alive connection answered last (for a finding's message).
    let mut last = String::new();
    let deadline = match bound {
        Bound::Seconds(s) => Some(Instant::now() + Duration::from_secs(s)),
        Bound::Requests(_) => None,
    };
    let mut n = 0;
    while match (bound, deadline) {
        (Bound::Requests(max), _) => n < max,
        (_, Some(d)) => Instant::now() < d,
        _ => false,
    } {
        n += 1;
        let url = *rng.pick(&URLS);
        let ask = seen.ask(url, rng);
        let close = fresh_only || rng.below(8) == 0;
        let mut headers: Vec<String> = ask.headers();
        if close {
            headers.push("Connection: close".into());
        }
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        let request = req("GET", url, &headers);
        let reused = conn.is_some();
        let mut c = conn.take().unwrap_or_else(|| server.connect());
        let sent = Instant::now();
        c.send(&request);
        let answer = c.try_response(false);
        let done = Instant::now();
        report.bump("requests");
        let timelines = tree.timelines.lock().unwrap();
        let timeline = &timelines[URLS.iter().position(|u| *u == url).unwrap()];
        let verdict = judge(&answer, &ask, (timeline, &timelines), sent, done, tags);
        drop(timelines);
        match (verdict, &answer) {
            (Ok(outcome), Ok(resp)) => {
                report.bump(outcome);
                if let Some(t) = resp.header("etag") {
                    seen.etags.insert(url, t.to_string());
                }
                if let Some(d) = resp.header("last-modified") {
                    seen.dates.insert(url, d.to_string());
                }
                if !close && !resp.says_close() {
                    conn = Some(c);
                }
            }
            (Ok(outcome), Err(_)) => report.bump(outcome),
            (Err(why), _) => report.findings.push(format!(
                "GET {url} {ask:?} ({}): {why}",
                if reused {
                    format!("on a kept-alive connection, after {last}")
                } else {
                    "on a fresh connection".into()
                }
            )),
        }
        if let Ok(resp) = &answer {
            last = format!("GET {url} {ask:?}: {}", resp.summary());
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// Judging an answer
// ---------------------------------------------------------------------------------------------

/// Checks one answer against the versions of its URL that existed while it was served; the
/// kind of answer it was, or why it is wrong.
fn judge(
    answer: &Result<Response, String>,
    ask: &Ask,
    (timeline, all): (&Timeline, &[Timeline]),
    sent: Instant,
    done: Instant,
    tags: &Tags,
) -> Result<&'static str, String> {
    let versions: Vec<&Version> = timeline.overlapping(sent, done).collect();
    // In-place writes of this URL, and of any file it led to while the request was served
    // (opened then through a symlink that has moved on since, and written afterwards).
    let inodes: Vec<u64> = versions
        .iter()
        .filter_map(|v| match &v.expect {
            Expect::File(_, i) => Some(i.ino),
            _ => None,
        })
        .collect();
    let mut transitions: Vec<&Transition> = timeline.transitions(sent, done).collect();
    for other in all.iter().filter(|t| !std::ptr::eq(*t, timeline)) {
        transitions.extend(
            other
                .transitions(sent, done)
                .filter(|t| !t.recreate && inodes.contains(&t.ino)),
        );
    }
    let resp = match answer {
        Ok(resp) => resp,
        // The length was promised from the file's size, then the file shrank: the connection
        // is closed before the promised bytes (before the head too, when head and body go out
        // in one write), which the client sees as an incomplete answer.
        Err(e) if e.contains("connection closed") && !transitions.is_empty() => {
            return Ok("cut short while the file shrank")
        }
        Err(e) => return Err(format!("no complete answer: {e}")),
    };
    if resp.body_contains(SECRET) {
        return Err(format!("a body from outside the root: {}", resp.summary()));
    }
    let explained = |what: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{what}, yet no version while it was served explains {}; versions then: {}",
                resp.summary(),
                describe(timeline, sent, done)
            ))
        }
    };
    let files = || {
        versions.iter().filter_map(|v| match &v.expect {
            Expect::File(b, i) => Some((b.as_slice(), i)),
            _ => None,
        })
    };
    let nothing = versions.iter().any(|v| matches!(v.expect, Expect::Error))
        || transitions.iter().any(|t| t.recreate);
    match resp.status {
        200 => {
            let exact = files().any(|(b, i)| b == resp.body && headers_agree(resp, Some(i)));
            let len = resp.body.len() as u64;
            let ok = exact
                || mixed(&resp.body, 0, &transitions) && headers_agree_any(resp, &versions, len);
            explained("200", ok)?;
            let reused = remember_tag(resp, tags, !transitions.is_empty())?;
            Ok(match (exact, reused) {
                (_, true) => "200 whose strong ETag had another body, during an in-place write",
                (true, false) => "200",
                (false, false) => "200 mixed during an in-place write",
            })
        }
        206 => {
            let (first, last, len) = content_range(resp)?;
            let want = ask.range().ok_or("206 to a request without Range")?;
            let range_ok = first == want.0 && last == want.1.min(len.saturating_sub(1));
            let slice = |b: &[u8]| b.get(first as usize..=last as usize).map(<[u8]>::to_vec);
            let exact = files().any(|(b, i)| {
                b.len() as u64 == len
                    && slice(b).as_deref() == Some(&resp.body[..])
                    && headers_agree(resp, Some(i))
            });
            let ok = range_ok
                && (exact
                    || mixed(&resp.body, first as usize, &transitions)
                        && headers_agree_any(resp, &versions, len));
            explained("206", ok)?;
            Ok(if exact {
                "206"
            } else {
                "206 mixed during an in-place write"
            })
        }
        304 => {
            let ok = files().any(|(_, i)| match ask {
                Ask::IfNoneMatch(t) => opaque(t) == opaque(&etag_of(i)),
                Ask::IfModifiedSince(d) => {
                    httpdate::parse_http_date(d).is_ok_and(|since| info_secs(i) <= secs(since))
                }
                _ => false,
            });
            explained("304", ok)?;
            Ok("304")
        }
        301 => {
            let dir = versions
                .iter()
                .any(|v| matches!(v.expect, Expect::Redirect));
            explained("301", dir || nothing)?;
            Ok("301")
        }
        404 | 403 => {
            explained("404/403", nothing)?;
            Ok("404")
        }
        416 => {
            let (first, _) = ask.range().ok_or("416 to a request without Range")?;
            let short = files().any(|(b, _)| b.len() as u64 <= first);
            explained("416", short || !transitions.is_empty())?;
            Ok("416")
        }
        _ => explained("an unexpected status", false).map(|_| ""),
    }
}

/// Every position of `body` (at `offset` in the file) holds a byte that one of the in-place
/// writes running while it was served had there, before or after, or a zero: what a read
/// concurrent with a `write` can see. The zeros: sendfile(2) to TCP queues references to the
/// page cache, not copies, and a truncate zeroes the part of a cached page (a folio, up to
/// 2 MiB) past the new end, so bytes still queued are sent as zeros.
fn mixed(body: &[u8], offset: usize, transitions: &[&Transition]) -> bool {
    !transitions.is_empty()
        && body.iter().enumerate().all(|(i, byte)| {
            *byte == 0
                || transitions.iter().any(|t| {
                    t.old.get(offset + i) == Some(byte) || t.new.get(offset + i) == Some(byte)
                })
        })
}

/// ETag and Last-Modified, when present, are those of `info` (a settled file's; `W/` aside),
/// or of the same inode with a later change time: an inode whose path was renamed over or
/// unlinked while it was being answered has its ctime moved by that (its link count changed),
/// and a `statx` after it sees the same bytes with a new, still unique, tag.
fn headers_agree(resp: &Response, info: Option<&FileInfo>) -> bool {
    let etag = resp.header("etag");
    let date = resp.header("last-modified");
    match info {
        Some(i) => {
            let same_bytes = |t: &str| {
                let t: Vec<&str> = opaque(t).trim_matches('"').split('-').collect();
                let e = etag_of(i);
                let e: Vec<&str> = e.trim_matches('"').split('-').collect();
                let later = u64::from_str_radix(t.get(2).unwrap_or(&""), 16)
                    .is_ok_and(|c| c >= u64::from_str_radix(e[2], 16).unwrap_or(u64::MAX));
                t.len() == 4 && t[0] == e[0] && t[1] == e[1] && t[3] == e[3] && later
            };
            etag.is_none_or(same_bytes) && date.is_none_or(|d| d == last_modified_of(i))
        }
        None => etag.is_none() && date.is_none(),
    }
}

/// For a body mixed from two writes: no validators, or those of one version in the window;
/// or with the length `len` the answer has, as a `statx` during a truncate can see (it takes no
/// lock: it can read the new size beside the old times).
fn headers_agree_any(resp: &Response, versions: &[&Version], len: u64) -> bool {
    headers_agree(resp, None)
        || versions.iter().any(|v| match &v.expect {
            Expect::File(_, i) => {
                headers_agree(resp, Some(i)) || headers_agree(resp, Some(&FileInfo { len, ..*i }))
            }
            _ => false,
        })
}

/// A strong ETag stands for one body across the whole run, except where one of the two
/// answers was served while its file was rewritten in place (`during_write`): validators made
/// from the metadata before the write, bytes read after it. Ok(true) for such a second body.
fn remember_tag(resp: &Response, tags: &Tags, during_write: bool) -> Result<bool, String> {
    let Some(tag) = resp.header("etag").filter(|t| !t.starts_with("W/")) else {
        return Ok(false);
    };
    let mut tags = tags.lock().unwrap();
    match tags.get(tag) {
        Some((body, _)) if *body == digest(&resp.body) => Ok(false),
        Some((_, earlier_during_write)) if during_write || *earlier_during_write => Ok(true),
        Some((body, _)) => Err(format!(
            "strong ETag {tag} stands for two bodies: {} and earlier {}",
            show(&resp.body[..resp.body.len().min(SHOWN)]),
            show(&body[8..])
        )),
        None => {
            tags.insert(tag.to_string(), (digest(&resp.body), during_write));
            Ok(false)
        }
    }
}

/// A body's hash (8 bytes) then its first [`SHOWN`] bytes.
fn digest(body: &[u8]) -> Vec<u8> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    body.hash(&mut h);
    let mut d = h.finish().to_le_bytes().to_vec();
    d.extend_from_slice(&body[..body.len().min(SHOWN)]);
    d
}

fn content_range(resp: &Response) -> Result<(u64, u64, u64), String> {
    let v = resp.must("content-range");
    let parse = || {
        let (range, len) = v.strip_prefix("bytes ")?.split_once('/')?;
        let (a, b) = range.split_once('-')?;
        Some((a.parse().ok()?, b.parse().ok()?, len.parse().ok()?))
    };
    parse().ok_or_else(|| format!("bad Content-Range {v:?}"))
}

fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

fn info_secs(info: &FileInfo) -> u64 {
    secs(info.modified)
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The URL's last versions up to the end of the request, with their windows in µs from its
/// send (the request was served from 0 to `done`), for a finding's message.
fn describe(timeline: &Timeline, sent: Instant, done: Instant) -> String {
    let us = |t: Instant| {
        if t >= sent {
            (t - sent).as_micros() as i64
        } else {
            -((sent - t).as_micros() as i64)
        }
    };
    let shown = timeline.versions.iter().filter(|v| v.from <= done);
    let mut s: Vec<String> = shown
        .map(|v| {
            let what = match &v.expect {
                Expect::File(b, i) => format!(
                    "file {} bytes {} etag {} lm {}",
                    b.len(),
                    show(&b[..b.len().min(24)]),
                    etag_of(i),
                    last_modified_of(i)
                ),
                Expect::Redirect => "directory".into(),
                Expect::Error => "nothing".into(),
            };
            format!("[{}..{:?}] {what}", us(v.from), v.to.map(us))
        })
        .collect();
    s = s.split_off(s.len().saturating_sub(4));
    let writes = timeline.transitions(sent, done).count();
    s.push(format!(
        "served 0..{}; {writes} in-place writes then",
        us(done)
    ));
    s.join("\n    ")
}

// ---------------------------------------------------------------------------------------------
// A run
// ---------------------------------------------------------------------------------------------

/// Counts of one run and what it found.
#[derive(Default)]
struct Report {
    counts: Vec<(&'static str, u64)>,
    changes: u64,
    strong_etags: usize,
    findings: Vec<String>,
}

impl Report {
    fn bump(&mut self, what: &'static str) {
        self.add(what, 1);
    }

    fn add(&mut self, what: &'static str, n: u64) {
        match self.counts.iter_mut().find(|(w, _)| *w == what) {
            Some((_, c)) => *c += n,
            None => self.counts.push((what, n)),
        }
    }

    fn count(&self, what: &str) -> u64 {
        self.counts
            .iter()
            .find(|(w, _)| *w == what)
            .map_or(0, |c| c.1)
    }

    fn merge(&mut self, other: Report) {
        for (w, n) in other.counts {
            self.add(w, n);
        }
        self.findings.extend(other.findings);
    }

    /// One line: `churn arch=A seed=S changes=N requests=N 200=N ... findings=N`.
    fn summary(&self, arch: &str, seed: u64) -> String {
        let mut s = format!("churn arch={arch} seed={seed:#x} changes={}", self.changes);
        for (w, n) in &self.counts {
            s.push_str(&format!(" {}={n}", w.replace(' ', "_")));
        }
        s.push_str(&format!(
            " strong_etags={} findings={}",
            self.strong_etags,
            self.findings.len()
        ));
        s
    }
}

/// Counts a client as finished when dropped.
struct Finished<'a>(&'a AtomicUsize);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Release);
    }
}

/// One server of `arch`, [`CLIENTS`] clients and the mutator, until every client is done.
fn run(arch: &str, seed: u64, bound: Bound) -> Report {
    let server = ArchServer::start(arch);
    let tree = Tree::new(&server.fixture);
    let tags: Tags = Mutex::new(HashMap::new());
    let finished = AtomicUsize::new(0);
    let changes = AtomicUsize::new(0);
    let mut report = Report::default();
    std::thread::scope(|scope| {
        let (tree, tags, finished, changes) = (&tree, &tags, &finished, &changes);
        scope.spawn(move || {
            let mut rng = Rng::new(seed, 0);
            while finished.load(Ordering::Acquire) < CLIENTS as usize {
                tree.change(&mut rng);
                changes.fetch_add(1, Ordering::Relaxed);
                // Versions last long enough to be asked for: up to 0.6 ms, often none.
                std::thread::sleep(Duration::from_micros(rng.below(4) as u64 * 200));
            }
        });
        let clients: Vec<_> = (1..=CLIENTS)
            .map(|i| {
                let server = &server;
                scope.spawn(move || {
                    // Counted even when the client panics, so the mutator stops.
                    let _done = Finished(finished);
                    let mut rng = Rng::new(seed, i);
                    client(server, tree, tags, &mut rng, bound)
                })
            })
            .collect();
        for c in clients {
            report.merge(c.join().expect("client thread"));
        }
    });
    report.changes = changes.load(Ordering::Relaxed) as u64;
    report.strong_etags = tags.lock().unwrap().len();
    if !report.findings.is_empty() {
        let log = server.stderr_text();
        let tail = log.len().saturating_sub(3000);
        report
            .findings
            .push(format!("server stderr: {}", &log[tail..]));
    }
    report
}

/// `s` removed and linked again to the target it had leads to the same file or directory before
/// and after, and to nothing in between: the model records that gap for the URLs through `s`
/// only, so a 404 for them is explained while `s` is being relinked and not once it is back.
#[test]
fn a_404_through_s_is_explained_only_while_s_is_relinked_to_its_own_target() {
    let fixture = Fixture::new(false);
    let tree = Tree::new(&fixture);
    let not_found = Ok(Response {
        version: "HTTP/1.1".into(),
        status: 404,
        reason: "Not Found".into(),
        headers: vec![],
        body: vec![],
    });
    let tags: Tags = Mutex::new(HashMap::new());
    for link in ["f", "d"] {
        tree.record(|| tree.relink(link, true));
        let from = Instant::now();
        tree.record(|| tree.relink(link, false));
        let (to, after) = (Instant::now(), Instant::now() + Duration::from_millis(1));
        let timelines = tree.timelines.lock().unwrap();
        for (url, timeline) in URLS.iter().zip(timelines.iter()) {
            let judged = |sent, done| {
                judge(
                    &not_found,
                    &Ask::Get,
                    (timeline, &timelines),
                    sent,
                    done,
                    &tags,
                )
            };
            let through_s = url.starts_with("/churn/s");
            let leads_somewhere = !matches!(props::expect(&tree.fresh, url), Expect::Error);
            let what = format!("GET {url} with s relinked to {link}");
            assert_eq!(
                judged(from, to).is_ok(),
                through_s || !leads_somewhere,
                "{what}"
            );
            assert_eq!(
                judged(after, after).is_ok(),
                !leads_somewhere,
                "{what}, after"
            );
        }
    }
}
