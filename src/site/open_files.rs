//! A small per-thread cache of open files, re-validated on every use: a file asked for again
//! costs one `statx` of its path instead of `openat2` + `fstat` + `close` (three for `/`'s
//! directory and three more for its `index.html`), and it is still served as it is on disk now.
//! While inotify reports no change to the file or a directory of its path, not even the
//! `statx` is made (at most for a second; see [`Watcher`]).
//!
//! Why a hit is as fresh as opening the file again:
//! - The entry is made only after the full resolution (normalize, open beneath the root,
//!   directory → index) served a regular file for this request path.
//! - Each use `statx`es the same path, following symlinks as that open did, and reuses the open
//!   file only if the path still leads to the same inode (device and inode number: while we hold
//!   the file open its inode number cannot be given to another file), still a regular file with
//!   the same owner and permissions. Anything else (replaced by rename, deleted, `chmod`ed,
//!   moved) drops the entry and the request takes the full path again.
//! - Size and modification time come from that `statx`, not from the cache, and the body is
//!   read from the inode when it is sent: a file rewritten in place is sent as it is now, with
//!   `Content-Length`, `ETag` and `Last-Modified` of now.
//! - The `statx` is skipped only when it would find what the last one found: every way to
//!   change a file or the meaning of its path (write, truncate, chmod, chown, utimes, unlink,
//!   rename of the file or of any directory on its path, an entry created in one of them)
//!   queues an inotify event before that system call returns, any event makes every entry
//!   watch its path again as it is now and `statx` again, and the queue is looked at after the
//!   request was read.
//! - Only paths that pass no symlink are cached, and an entry is used only while its watches
//!   stand for its paths as they are now. `statx` follows symlinks without `RESOLVE_BENEATH`:
//!   were a directory of the path moved out of the root and a symlink to it put in its place
//!   (or a symlink on the path retargeted to where the file went), it would find the same inode
//!   there and serve a file outside the root. Whatever put a symlink on the path re-arms the
//!   watches, which then cannot be set (see [`Watcher::watch_entry`]), and the entry is
//!   dropped; while another thread is reading events away (one may be that change) a lookup is
//!   a miss.
//!   What inotify cannot see (writes through a shared `mmap`, changes by another NFS client, a
//!   mount over a directory of the path) is seen within a second.
//!
//! An entry also holds what was found of the file's precompressed variants (`FILE.br`,
//! `FILE.gz`, see [`super::variants`]): their files are watched and `statx`ed with it, and a
//! variant added, removed or replaced makes the entry stand for its path no more.
//!
//! What it costs: at most [`CAPACITY`] entries per thread (each holds the file and its present
//! variants open: three descriptors at most), and all threads of a process together at most an
//! eighth of its open-file limit in descriptors (so 64 `threads` workers cannot starve
//! accept() of descriptors); a file deleted or replaced stays open, its space not freed, until
//! its path is asked for again or its entry is evicted. One difference with opening every
//! time, for a server that does not run as root: taking read permission away from a *directory*
//! on the path (keeping search permission) is noticed only for files not yet cached, since a
//! file's own `statx` needs search permission only.
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::conditional::Validators;
use super::encoding::{Available, Choice, Coding};
use super::mime::ContentType;
use super::resolve::Root;
use super::variants::{self, Probe, Variant};

/// Entries kept per thread.
pub const CAPACITY: usize = 64;

/// Cached open files in this process, all threads together, and the most allowed.
static CACHED: AtomicUsize = AtomicUsize::new(0);
static BUDGET: OnceLock<usize> = OnceLock::new();

fn budget() -> usize {
    *BUDGET.get_or_init(|| {
        usize::try_from(crate::descriptors::files_budget(
            crate::descriptors::nofile_limit(),
        ))
        .unwrap_or(usize::MAX)
    })
}

/// What answering a file needs from its metadata (the validators are made of all of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    pub len: u64,
    /// Modification time (mtime).
    pub modified: SystemTime,
    /// Status change time (ctime): moves with every write and every metadata change, and unlike
    /// the mtime no one can set it back.
    pub changed: SystemTime,
    pub ino: u64,
}

impl FileInfo {
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileInfo {
        FileInfo {
            len: meta.len(),
            modified: meta.modified().unwrap_or(UNIX_EPOCH),
            changed: since_epoch(meta.ctime(), meta.ctime_nsec()),
            ino: meta.ino(),
        }
    }
}

/// A timestamp from seconds and nanoseconds since the epoch (times before it count as it).
fn since_epoch(secs: i64, nanos: i64) -> SystemTime {
    match (u64::try_from(secs), u32::try_from(nanos)) {
        (Ok(s), Ok(n)) if n < 1_000_000_000 => UNIX_EPOCH + Duration::new(s, n),
        _ => UNIX_EPOCH,
    }
}

/// A cache hit: the open file chosen (the file itself or a precompressed variant), its
/// metadata as of now, the type of the file itself, and its validators for that metadata.
#[derive(Debug)]
pub struct Hit {
    pub file: Arc<File>,
    /// The whole content of a small watched file, read since the last change (see [`BYTES`]).
    pub bytes: Option<Arc<[u8]>>,
    pub info: FileInfo,
    pub ctype: ContentType,
    pub validators: Rc<Validated>,
    /// What the chooser picked (for [`Choice::NotAcceptable`], the fields are the file's own).
    pub choice: Choice,
    /// Which precompressed variants exist.
    pub available: Available,
}

/// The validators of a file and the `Last-Modified` text, kept with the entry for the metadata
/// they were made from: formatting them (an `ETag` in hex, an IMF-fixdate) costs 8% of a
/// keep-alive request's user-space instructions (callgrind). Made again whenever the metadata
/// changes, and when validators made while the file was settling expire (see
/// [`Validators::until`]).
#[derive(Debug)]
pub struct Validated {
    pub validators: Validators,
    pub last_modified: Option<String>,
}

impl Validated {
    /// The validators of `info` now; `coding` tags a precompressed variant (see
    /// [`Validators::new`]).
    pub fn new(info: &FileInfo, coding: &str) -> Validated {
        let validators = Validators::new(info, coding, SystemTime::now());
        let last_modified = validators.last_modified();
        Validated {
            validators,
            last_modified,
        }
    }

    /// Whether validators made now would be these. Reads the clock (vDSO, no system call) only
    /// for validators made while the file was settling; final ones stay valid.
    pub fn current(&self) -> bool {
        self.validators
            .until
            .is_none_or(|until| SystemTime::now() < until)
    }
}

/// What must not have changed for an open file to stand for its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Identity {
    pub fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

/// One open file an entry answers with: the file itself or a precompressed variant.
#[derive(Debug)]
pub struct Rep {
    /// The path it was opened at (for a directory request, its `index.html`).
    path: CString,
    file: Arc<File>,
    id: Identity,
    /// Its metadata as the last `statx` (or the open) found it.
    info: FileInfo,
    /// The validators last made for it, and the metadata they were made from.
    validated: Option<(FileInfo, Rc<Validated>)>,
    /// Its content, read after the last confirming `statx` (so dropped with it), for files of at
    /// most [`BYTES`].
    bytes: Option<Arc<[u8]>>,
}

impl Rep {
    pub fn new(path: CString, file: &Arc<File>, meta: &std::fs::Metadata) -> Rep {
        Rep {
            path,
            file: Arc::clone(file),
            id: Identity::of(meta),
            info: FileInfo::from_metadata(meta),
            validated: None,
            bytes: None,
        }
    }

    /// `statx`es the path: true if it still leads to this file, whose metadata of now is then
    /// taken in (and the bytes read before it dropped).
    pub fn recheck(&mut self, root: &Root) -> bool {
        match statx(root, &self.path) {
            Ok((id, info)) if id == self.id => {
                self.info = info;
                self.bytes = None;
                true
            }
            _ => false,
        }
    }

    /// Reads the small file's content, then looks at the file again. A write moves the file's
    /// modification time before its bytes land (the kernel updates the times first), so bytes
    /// that a write overlapped or preceded since the last `statx` show as other metadata now:
    /// then the bytes are not kept, and the answer takes the metadata of now, which is seconds
    /// old at most and so carries no validators (`conditional::SETTLE`): a strong ETag of the
    /// previous version never goes out with bytes of another.
    fn read_bytes(&mut self) {
        self.bytes = read_whole(&self.file, self.info.len);
        if self.bytes.is_none() {
            return;
        }
        match self.file.metadata() {
            Ok(meta) if FileInfo::from_metadata(&meta) == self.info => {}
            Ok(meta) => {
                self.bytes = None;
                self.info = FileInfo::from_metadata(&meta);
            }
            Err(_) => self.bytes = None,
        }
    }

    /// The hit for this file. `keep_bytes`: the entry is watched and confirmed, so a small
    /// file's content may be kept until the next change.
    fn hit(&mut self, keep_bytes: bool, coding: &str, ctype: ContentType) -> Hit {
        if self.bytes.is_none() && keep_bytes && self.info.len <= BYTES {
            self.read_bytes();
        }
        let info = self.info;
        let validators = match &self.validated {
            Some((made_from, v)) if *made_from == info && v.current() => Rc::clone(v),
            _ => {
                let v = Rc::new(Validated::new(&info, coding));
                self.validated = Some((info, Rc::clone(&v)));
                v
            }
        };
        Hit {
            file: Arc::clone(&self.file),
            bytes: if keep_bytes { self.bytes.clone() } else { None },
            info,
            ctype,
            validators,
            choice: Choice::Identity,
            available: [false, false],
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// The file itself.
    main: Rep,
    /// Its precompressed variants, by [`Coding::index`].
    variants: [Variant; 2],
    ctype: ContentType,
    /// Descriptors held (the file and its present variants), counted in [`CACHED`].
    fds: usize,
    /// The inotify watches on the files and on every directory of their path (see
    /// [`Watcher`]); `None` when they could not all be set (or a path passes a symlink): then
    /// the entry is not kept.
    watches: Option<Box<[i32]>>,
    /// The watcher's change count read just before the watches were placed: while it is still
    /// the count, nothing on the path has changed since. `None`: place them again first.
    armed: Option<u64>,
    /// When (coarse monotonic nanoseconds) the last `statx`es confirmed the entry while armed.
    confirmed: Option<i64>,
}

/// Files up to this size are kept in memory while watched and unchanged, which saves the
/// `pread` of every hit (7% of a keep-alive `GET /`'s CPU time, perf). Small, because every
/// thread has its own cache: 64 entries of 4 KiB at most per thread.
pub const BYTES: u64 = 4096;

impl Drop for Entry {
    fn drop(&mut self) {
        CACHED.fetch_sub(self.fds, Ordering::Relaxed);
        if let (Some(wds), Some(w)) = (&self.watches, watcher()) {
            w.release(wds);
        }
    }
}

/// How long a watched entry is trusted without a `statx` when the watcher reports nothing:
/// bounds how late a change inotify does not see is noticed (writes through a shared `mmap`,
/// another NFS client, a mount over a directory of the path).
const TRUST_NS: i64 = 1_000_000_000;

/// What the inotify watches are asked to report. On a cached file: its content or size
/// (write, truncate), its metadata (chmod, chown, utimes, a link removed), its deletion or
/// move. On each directory of its path: entries created, deleted or renamed in it (a file or
/// directory replaced by rename, an `index.html` added or removed), the directory's own
/// metadata and its deletion or move.
const FILE_EVENTS: u32 =
    libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF;
const DIR_EVENTS: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// One inotify instance per process watching every cached file and the directories of its
/// path, so a hit needs no `statx` while nothing changed: the kernel queues the event before the
/// system call that made the change returns, so a change a client made before sending its
/// request is always visible when the request is answered. Measured on `GET /` keep-alive
/// (perf, cpu-clock): a `statx` per hit costs 14% of the server's CPU time (976 ns in a loop
/// here); the check that replaces it is one `ioctl(FIONREAD)` (about 300 ns).
///
/// Events are hardly interpreted: any event but the removal of a watch we dropped means
/// "something changed", and every entry of every thread then places its watches again on its
/// path as it is now (a directory may have been swapped for a copy holding the same file) and is
/// confirmed by a `statx` on its next use. So nothing is lost if the queue overflows, and the
/// bookkeeping stays a count per watch (watches are shared by entries). Created in the process
/// that serves (a forked worker makes its own: the supervisor never looks files up).
#[derive(Debug)]
struct Watcher {
    fd: OwnedFd,
    /// Entries using each watch descriptor; removed at zero. Taken only on misses, evictions
    /// and changes, and held across `inotify_add_watch` (which returns the descriptor of an
    /// existing watch for the same inode: it must not be removed meanwhile).
    refs: Mutex<HashMap<i32, u32>>,
    /// One thread at a time reads events away (see [`CHANGES`]).
    drain: Mutex<()>,
}

/// The change count: even while no thread is reading events away, odd while one is. Made odd
/// before the events are read, so a thread that finds the queue empty because another thread is
/// reading it sees an odd count (and trusts nothing), and even again after, one higher if any
/// event was a change (a thread that finds the queue emptied then sees the new count).
static CHANGES: AtomicU64 = AtomicU64::new(0);
static WATCHER: OnceLock<Option<Watcher>> = OnceLock::new();

fn watcher() -> Option<&'static Watcher> {
    WATCHER.get_or_init(Watcher::new).as_ref()
}

impl Watcher {
    fn new() -> Option<Watcher> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            tracing::debug!(
                "no inotify ({}): cached files are checked with statx on every use",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(Watcher {
            // SAFETY: a fresh descriptor owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            refs: Mutex::new(HashMap::new()),
            drain: Mutex::new(()),
        })
    }

    /// The change count, after taking in whatever the kernel has queued; `None` while another
    /// thread is reading events (nothing may be trusted then). One system call when nothing
    /// changed.
    fn changes(&self) -> Option<u64> {
        #[cfg(test)]
        tests::WATCHER_CHECKS.with(|n| n.set(n.get() + 1));
        let mut pending: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::FIONREAD, &mut pending) };
        if r != 0 || pending > 0 {
            let _one = self.drain.lock().unwrap_or_else(|e| e.into_inner());
            CHANGES.fetch_add(1, Ordering::SeqCst);
            let mut changed = r != 0;
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reads into a buffer we own (non-blocking: EAGAIN once it is empty).
                let n =
                    unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    let e = std::io::Error::last_os_error();
                    changed |= n < 0 && e.kind() != std::io::ErrorKind::WouldBlock;
                    break;
                }
                changed |= !only_dropped_watches(&buf[..n as usize]);
            }
            if changed {
                CHANGES.fetch_add(1, Ordering::SeqCst);
            } else {
                CHANGES.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let count = CHANGES.load(Ordering::SeqCst);
        count.is_multiple_of(2).then_some(count)
    }

    /// Watches `path` for `mask`, counting one more user of the watch.
    fn watch(&self, path: &str, mask: u32) -> Option<i32> {
        let c = CString::new(path).ok()?;
        let mut refs = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: a NUL-terminated path; the result is checked.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return None;
        }
        *refs.entry(wd).or_insert(0) += 1;
        Some(wd)
    }

    fn release(&self, wds: &[i32]) {
        let mut refs = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        for wd in wds {
            if let Some(n) = refs.get_mut(wd) {
                *n -= 1;
                if *n == 0 {
                    refs.remove(wd);
                    // SAFETY: plain syscall on our descriptor.
                    unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), *wd) };
                }
            }
        }
    }

    /// Watches the files of an entry (the file opened at `path`, relative to the root, and its
    /// variants, in the same directory) and each directory from the root down to them. Through
    /// `/proc/self/fd`: the root is a descriptor, and a file is watched as the inode we hold,
    /// not whatever its path leads to by now.
    fn watch_entry(&self, root: &Root, path: &str, files: &[&Rep]) -> Option<Box<[i32]>> {
        if !files
            .iter()
            .all(|rep| rep.path.to_str().is_ok_and(|p| root.symlink_free(p)))
        {
            return None;
        }
        let base = format!("/proc/self/fd/{}", root.raw_fd());
        let mut wds = Vec::new();
        let mut ok = true;
        let mut dir = base.clone();
        let mut add = |p: &str, mask| match self.watch(p, mask) {
            Some(wd) => wds.push(wd),
            None => ok = false,
        };
        add(&dir, DIR_EVENTS);
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            dir.push('/');
            dir.push_str(part);
            add(&dir, DIR_EVENTS);
        }
        for rep in files {
            add(
                &format!("/proc/self/fd/{}", rep.file.as_raw_fd()),
                FILE_EVENTS,
            );
        }
        if ok {
            Some(wds.into_boxed_slice())
        } else {
            self.release(&wds);
            None
        }
    }
}

/// Where this thread is in its event loop's turn (see [`turn_begins`]).
#[derive(Debug, Clone, Copy)]
enum Turn {
    /// No turns: the watcher is asked on every lookup.
    PerLookup,
    /// A turn began; the first lookup asks the watcher.
    Begun,
    /// The watcher's answer for the rest of this turn.
    Checked(Option<u64>),
}

thread_local! {
    static TURN: Cell<Turn> = const { Cell::new(Turn::PerLookup) };
}

/// Called by an event loop that has taken in every byte it will answer in this turn before it
/// answers any (the `uring` worker, right after it reads the completion queue): the watcher is
/// then asked once for the whole turn, at its first lookup, instead of once per lookup. Still
/// as fresh: a change made before a request was sent queued its event before the request's
/// bytes arrived, so before the completions were read, so before that one check. Measured
/// (`syscalls` workload, keep-alive, 64 connections): the `ioctl(FIONREAD)` per request was
/// 1.00 of uring's 1.06 syscalls per request (docs/results/uring-turn-2026-11-29). A readiness
/// loop (epoll) reads each socket while it answers, so a request may arrive after a check made
/// earlier in the turn: it keeps the check per lookup.
pub fn turn_begins() {
    TURN.with(|t| t.set(Turn::Begun));
}

/// The watcher's change count as this thread may trust it now (see [`Watcher::changes`] and
/// [`turn_begins`]).
fn changes(w: &Watcher) -> Option<u64> {
    TURN.with(|t| match t.get() {
        Turn::PerLookup => w.changes(),
        Turn::Checked(count) => count,
        Turn::Begun => {
            let count = w.changes();
            t.set(Turn::Checked(count));
            count
        }
    })
}

/// True if `events` (whole `struct inotify_event`s) only say that watches were removed
/// (`IN_IGNORED`): what `inotify_rm_watch` of an evicted entry's watches causes. A watch the
/// kernel drops itself (file deleted, file system unmounted) comes after an event of its own.
fn only_dropped_watches(events: &[u8]) -> bool {
    const HEAD: usize = 16; // wd, mask, cookie, len: four 32-bit fields, then len name bytes
    let mut at = 0;
    while at + HEAD <= events.len() {
        let field = |i: usize| {
            let b = &events[at + 4 * i..at + 4 * i + 4];
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
        };
        if field(1) & libc::IN_IGNORED == 0 {
            return false;
        }
        at += HEAD + field(3) as usize;
    }
    at == events.len()
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: read from the vDSO without a system call, to a few
/// milliseconds, which is all [`TRUST_NS`] needs.
fn coarse_now() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

#[derive(Debug, Default)]
struct Cache {
    /// The site the entries belong to (a thread serves one site; tests may make several).
    site: u64,
    /// Keyed by the normalized request path: `files` for `/a/b.html`, `dirs` for `/a/b/`.
    files: HashMap<String, Entry>,
    dirs: HashMap<String, Entry>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Set if the kernel has no statx (Linux < 4.11): the cache is then never used.
static NO_STATX: AtomicBool = AtomicBool::new(false);

/// The file cached for the request path `rel` (`dir_form`: asked as a directory), if its path
/// still leads to it (and its variants' paths to what they led to). `choose` picks among the
/// file and its present variants; the hit is the one picked.
pub fn lookup(
    root: &Root,
    site: u64,
    (rel, dir_form): (&str, bool),
    choose: impl FnOnce(Available) -> Choice,
) -> Option<Hit> {
    if NO_STATX.load(Ordering::Relaxed) {
        return None;
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.site != site {
            return None;
        }
        let map = if dir_form {
            &mut cache.dirs
        } else {
            &mut cache.files
        };
        let entry = map.get_mut(rel)?;
        let now = coarse_now();
        let armed = entry.arm(root);
        if entry.watches.is_none() {
            // A path passes a symlink now, or cannot be watched: open it afresh.
            map.remove(rel);
            return None;
        }
        if !armed {
            return None;
        }
        let trusted = armed && entry.confirmed.is_some_and(|when| now - when < TRUST_NS);
        if !trusted {
            if !entry.recheck(root) {
                map.remove(rel);
                return None;
            }
            entry.confirmed = armed.then_some(now);
        }
        let keep_bytes = entry.confirmed.is_some();
        let available = variants::cached_available(&entry.variants);
        let choice = choose(available);
        let (rep, coding) = match choice {
            Choice::Coded(c) => match &mut entry.variants[c.index()] {
                Variant::Present(rep) => (&mut **rep, c.etag_tag()),
                _ => (&mut entry.main, ""),
            },
            _ => (&mut entry.main, ""),
        };
        let mut hit = rep.hit(keep_bytes, coding, entry.ctype);
        hit.choice = choice;
        hit.available = available;
        Some(hit)
    })
}

impl Entry {
    /// Whether the watches still stand for the paths (the count is taken before any `statx`
    /// that follows, so a change after it shows as a new count next time).
    fn arm(&mut self, root: &Root) -> bool {
        let (Some(_), Some(w)) = (&self.watches, watcher()) else {
            return false;
        };
        match changes(w) {
            Some(count) if self.armed == Some(count) => true,
            Some(count) => {
                // Something changed: watch the paths as they are now, then statx.
                self.confirmed = None;
                self.main.bytes = None;
                let old = self.watches.take();
                self.watches = w.watch_entry(root, &self.path(), &self.reps());
                self.armed = Some(count);
                if let Some(old) = old {
                    w.release(&old);
                }
                self.watches.is_some()
            }
            None => false,
        }
    }

    /// `statx`es the file's path and its variants' paths: true if each still leads to what it
    /// did (the metadata of now is then taken in).
    fn recheck(&mut self, root: &Root) -> bool {
        self.main.recheck(root) && self.variants.iter_mut().all(|v| v.recheck(root))
    }

    fn path(&self) -> String {
        self.main.path.to_string_lossy().into_owned()
    }

    /// The open files: the file itself, then its present variants.
    fn reps(&self) -> Vec<&Rep> {
        std::iter::once(&self.main)
            .chain(self.variants.iter().filter_map(Variant::rep))
            .collect()
    }
}

/// What the full resolution opened for a request path: the file (at `path`, relative to the
/// root), its metadata and type, and what was found of its variants.
#[derive(Debug, Clone, Copy)]
pub struct Opened<'a> {
    pub path: &'a str,
    pub file: &'a Arc<File>,
    pub meta: &'a std::fs::Metadata,
    pub ctype: ContentType,
    pub variants: &'a [Probe; 2],
}

/// Remembers that the request path `rel` (`dir_form`: asked as a directory) was answered with
/// `opened`.
pub fn remember(root: &Root, site: u64, (rel, dir_form): (&str, bool), opened: Opened) {
    if NO_STATX.load(Ordering::Relaxed) {
        return;
    }
    let path = opened.path;
    let Ok(cpath) = CString::new(if path.is_empty() { "." } else { path }) else {
        return;
    };
    let mut variants = [Variant::Skipped, Variant::Skipped];
    for (slot, (coding, probe)) in variants
        .iter_mut()
        .zip(Coding::ALL.iter().zip(opened.variants))
    {
        match Variant::from_probe(path, *coding, probe) {
            Some(v) => *slot = v,
            None => return,
        }
    }
    let mut entry = Entry {
        main: Rep::new(cpath, opened.file, opened.meta),
        variants,
        ctype: opened.ctype,
        fds: 0,
        watches: None,
        armed: None,
        confirmed: None,
    };
    entry.fds = entry.reps().len();
    CACHED.fetch_add(entry.fds, Ordering::Relaxed);
    // The count before the watches are placed (the turn's, taken earlier, is as good): an
    // event from then on re-arms them.
    if let Some(w) = watcher() {
        entry.armed = changes(w);
        entry.watches = w.watch_entry(root, path, &entry.reps());
    }
    if entry.watches.is_none() {
        return; // a path through a symlink, or no watches to be had: never cached
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.site != site {
            cache.files.clear();
            cache.dirs.clear();
            cache.site = site;
        }
        let cache = &mut *cache;
        let (map, other) = if dir_form {
            (&mut cache.dirs, &mut cache.files)
        } else {
            (&mut cache.files, &mut cache.dirs)
        };
        // The entry for this key, if any, is replaced: it does not need room.
        let replaced = map.remove(rel);
        let held = map.len() + other.len();
        if held >= CAPACITY || (replaced.is_none() && CACHED.load(Ordering::Relaxed) > budget()) {
            // Full: make room by dropping an arbitrary entry of this thread (no bookkeeping on
            // the hit path). With none to drop, the process budget is spent elsewhere: skip.
            let victim = map.keys().next().cloned();
            if let Some(victim) = victim {
                map.remove(&victim);
            } else if let Some(victim) = other.keys().next().cloned() {
                other.remove(&victim);
            } else {
                return;
            }
        }
        map.insert(rel.to_owned(), entry);
    });
}

/// The first `len` bytes of `file` (the length its `statx` gave, which the reply promises), or
/// `None` if it has fewer now. (Had it grown meanwhile, an event is on its way and the bytes are
/// read again on the next use.)
fn read_whole(file: &File, len: u64) -> Option<Arc<[u8]>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(buf.into())
}

/// `statx` of `path` beneath the root's directory, following symlinks as the open did.
pub fn statx(root: &Root, path: &CString) -> std::io::Result<(Identity, FileInfo)> {
    #[cfg(test)]
    tests::STATX_CALLS.with(|n| n.set(n.get() + 1));
    // SAFETY: all-zero is a valid statx buffer for the kernel to fill.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a directory fd we own, a NUL-terminated path, a valid out-pointer.
    let r = unsafe {
        libc::statx(
            root.raw_fd(),
            path.as_ptr(),
            libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_BASIC_STATS,
            &mut st,
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            NO_STATX.store(true, Ordering::Relaxed);
        }
        return Err(e);
    }
    let id = Identity {
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        mode: u32::from(st.stx_mode),
        uid: st.stx_uid,
        gid: st.stx_gid,
    };
    let time = |t: libc::statx_timestamp| since_epoch(t.tv_sec, i64::from(t.tv_nsec));
    Ok((
        id,
        FileInfo {
            len: st.stx_size,
            modified: time(st.stx_mtime),
            changed: time(st.stx_ctime),
            ino: st.stx_ino,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::AtomicU64;

    static NEXT_SITE: AtomicU64 = AtomicU64::new(1 << 40);

    thread_local! {
        /// `statx` calls made by this thread (each test runs on a thread of its own).
        pub static STATX_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// Watcher checks (`ioctl(FIONREAD)`) made by this thread.
        pub static WATCHER_CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn statx_calls() -> usize {
        STATX_CALLS.with(|n| n.get())
    }

    /// Looks `rel` up and says whether that took a `statx`.
    fn lookup_checked(root: &Root, site: u64, rel: &str) -> (Option<Hit>, bool) {
        let before = statx_calls();
        let hit = lookup(root, site, (rel, false), identity);
        (hit, statx_calls() > before)
    }

    /// True once a lookup of `rel` takes no statx. The watcher is the process's, and the other
    /// tests running beside this one change files it watches (each change makes every entry
    /// check again once), so a few tries are allowed.
    fn trusted_soon(root: &Root, site: u64, rel: &str) -> bool {
        (0..200).any(|_| {
            let (hit, checked) = lookup_checked(root, site, rel);
            assert!(hit.is_some());
            if checked {
                std::thread::sleep(Duration::from_millis(5));
            }
            !checked
        })
    }

    fn setup() -> (tempfile::TempDir, Root, u64) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open_dir(dir.path()).unwrap();
        (dir, root, NEXT_SITE.fetch_add(1, Ordering::Relaxed))
    }

    fn open(root: &Root, rel: &str) -> (Arc<File>, std::fs::Metadata) {
        let f = root.open(rel).unwrap();
        let m = f.metadata().unwrap();
        (Arc::new(f), m)
    }

    const CT: ContentType = super::super::mime::TEXT_PLAIN;

    fn identity(_: Available) -> Choice {
        Choice::Identity
    }

    /// Remembers `path` for the request path `key`, with whatever variants it has.
    fn keep(
        root: &Root,
        site: u64,
        key: (&str, bool),
        path: &str,
        f: &Arc<File>,
        m: &std::fs::Metadata,
    ) {
        let variants = variants::probe(root, path);
        let opened = Opened {
            path,
            file: f,
            meta: m,
            ctype: CT,
            variants: &variants,
        };
        remember(root, site, key, opened);
    }

    #[test]
    fn a_hit_has_the_metadata_of_now() {
        let (dir, root, site) = setup();
        std::fs::write(dir.path().join("a.txt"), "one").unwrap();
        let (f, m) = open(&root, "a.txt");
        keep(&root, site, ("a.txt", false), "a.txt", &f, &m);
        // Modified "in the future" (as if within the last 2 s, without depending on how
        // long this test takes): no validators yet (see conditional::SETTLE).
        f.set_modified(SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        let hit = lookup(&root, site, ("a.txt", false), identity).expect("cached");
        assert_eq!(hit.info.len, 3);
        assert_eq!(hit.validators.validators.etag, None);
        // Rewritten in place: same inode, so still a hit, with the new length.
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(dir.path().join("a.txt"))
            .unwrap();
        w.write_all(b"twenty-two bytes long\n").unwrap();
        w.set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
        let hit = lookup(&root, site, ("a.txt", false), identity).expect("same inode");
        assert_eq!(hit.info.len, 22);
        // The validators follow the metadata, not the cache.
        let etag = hit.validators.validators.etag.clone().expect("settled");
        assert!(etag.ends_with("-16\""), "{etag}");
        let again = lookup(&root, site, ("a.txt", false), identity).expect("same inode");
        assert!(Rc::ptr_eq(&again.validators, &hit.validators));
        assert!(Arc::ptr_eq(&hit.file, &f));
    }

    #[test]
    fn a_replaced_deleted_or_chmoded_file_is_a_miss() {
        let (dir, root, site) = setup();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "one").unwrap();
        let (f, m) = open(&root, "a.txt");
        keep(&root, site, ("a.txt", false), "a.txt", &f, &m);
        // Replaced by rename: another inode.
        std::fs::write(dir.path().join("b.txt"), "two").unwrap();
        std::fs::rename(dir.path().join("b.txt"), &p).unwrap();
        assert!(lookup(&root, site, ("a.txt", false), identity).is_none());
        // The miss dropped the entry.
        let (f, m) = open(&root, "a.txt");
        keep(&root, site, ("a.txt", false), "a.txt", &f, &m);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(lookup(&root, site, ("a.txt", false), identity).is_none());
        let (f, m) = open(&root, "a.txt");
        keep(&root, site, ("a.txt", false), "a.txt", &f, &m);
        std::fs::remove_file(&p).unwrap();
        assert!(lookup(&root, site, ("a.txt", false), identity).is_none());
    }

    #[test]
    fn while_nothing_changes_a_hit_takes_no_statx() {
        let (dir, root, site) = setup();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let p = dir.path().join("a/b/c.txt");
        std::fs::write(&p, "one").unwrap();
        let (f, m) = open(&root, "a/b/c.txt");
        keep(&root, site, ("a/b/c.txt", false), "a/b/c.txt", &f, &m);
        // The first use confirms the entry with a statx, the next ones trust the watches.
        assert!(lookup_checked(&root, site, "a/b/c.txt").1);
        assert!(
            trusted_soon(&root, site, "a/b/c.txt"),
            "an unchanged file is checked on every use"
        );
        // Any change is seen at once: appended to...
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"two")
            .unwrap();
        let (hit, checked) = lookup_checked(&root, site, "a/b/c.txt");
        assert!(checked);
        let hit = hit.expect("same inode");
        assert_eq!(hit.info.len, 6);
        // A small file's content comes along, as it is now.
        assert_eq!(hit.bytes.as_deref(), Some(&b"onetwo"[..]));
        assert!(trusted_soon(&root, site, "a/b/c.txt"));
        // ...a directory of its path replaced by another one...
        std::fs::create_dir_all(dir.path().join("new/b")).unwrap();
        std::fs::write(dir.path().join("new/b/c.txt"), "other").unwrap();
        std::fs::rename(dir.path().join("a"), dir.path().join("old")).unwrap();
        std::fs::rename(dir.path().join("new"), dir.path().join("a")).unwrap();
        assert!(lookup(&root, site, ("a/b/c.txt", false), identity).is_none());
        // ...or its times changed (the validators come from them).
        let (f, m) = open(&root, "a/b/c.txt");
        keep(&root, site, ("a/b/c.txt", false), "a/b/c.txt", &f, &m);
        let first = lookup(&root, site, ("a/b/c.txt", false), identity)
            .unwrap()
            .info;
        let then = SystemTime::now() - Duration::from_secs(3600);
        f.set_modified(then).unwrap();
        let (hit, checked) = lookup_checked(&root, site, "a/b/c.txt");
        assert!(checked);
        assert_ne!(hit.unwrap().info.modified, first.modified);
    }

    #[test]
    fn a_turn_asks_the_watcher_once_and_sees_what_changed_before_it() {
        let (dir, root, site) = setup();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "one").unwrap();
        let (f, m) = open(&root, "a.txt");
        keep(&root, site, ("a.txt", false), "a.txt", &f, &m);
        let checks = || WATCHER_CHECKS.with(|n| n.get());
        let before = checks();
        for _ in 0..3 {
            assert!(lookup(&root, site, ("a.txt", false), identity).is_some());
        }
        assert_eq!(checks() - before, 3, "without turns: a check per lookup");
        turn_begins();
        let before = checks();
        for _ in 0..3 {
            assert!(lookup(&root, site, ("a.txt", false), identity).is_some());
        }
        assert_eq!(checks() - before, 1, "one check for the turn");
        // Changed after that turn's check, before the next turn: seen in the next one.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"two")
            .unwrap();
        turn_begins();
        let (hit, checked) = lookup_checked(&root, site, "a.txt");
        assert!(checked, "the change makes the entry statx again");
        assert_eq!(hit.expect("same inode").info.len, 6);
        assert_eq!(hit_bytes(&root, site, "a.txt"), b"onetwo");
        TURN.with(|t| t.set(Turn::PerLookup));
    }

    fn hit_bytes(root: &Root, site: u64, rel: &str) -> Vec<u8> {
        let hit = lookup(root, site, (rel, false), identity).expect("cached");
        match hit.bytes {
            Some(b) => b.to_vec(),
            None => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; hit.info.len as usize];
                hit.file.read_exact_at(&mut buf, 0).unwrap();
                buf
            }
        }
    }

    #[test]
    fn watches_follow_a_directory_swapped_for_a_copy_of_it() {
        // `mv a a_old; cp -al a_old a` (what rsync --link-dest does): the path leads to the same
        // file, so the entry stays, but from then on the new directory must be the one watched.
        let (dir, root, site) = setup();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/c.txt"), "one").unwrap();
        let (f, m) = open(&root, "a/b/c.txt");
        keep(&root, site, ("a/b/c.txt", false), "a/b/c.txt", &f, &m);
        assert!(trusted_soon(&root, site, "a/b/c.txt"));
        std::fs::rename(d.join("a"), d.join("a_old")).unwrap();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::hard_link(d.join("a_old/b/c.txt"), d.join("a/b/c.txt")).unwrap();
        let (hit, checked) = lookup_checked(&root, site, "a/b/c.txt");
        assert!(checked && hit.is_some(), "same file, checked again");
        assert!(trusted_soon(&root, site, "a/b/c.txt"));
        // The new `a/b` moved aside (the file's own links untouched) and another put in its
        // place: only a watch on the new `a` sees it.
        std::fs::rename(d.join("a/b"), d.join("a/b_old")).unwrap();
        std::fs::create_dir(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/c.txt"), "two").unwrap();
        assert!(lookup(&root, site, ("a/b/c.txt", false), identity).is_none());
    }

    #[test]
    fn removed_watches_are_not_changes() {
        let event = |mask: u32, name_len: u32| {
            let mut e = Vec::new();
            for field in [1u32, mask, 0, name_len] {
                e.extend_from_slice(&field.to_ne_bytes());
            }
            e.resize(16 + name_len as usize, 0);
            e
        };
        let ignored = event(libc::IN_IGNORED, 0);
        let modified = event(libc::IN_MODIFY, 0);
        let created = event(libc::IN_CREATE, 16);
        assert!(only_dropped_watches(&ignored));
        assert!(only_dropped_watches(
            &[ignored.clone(), ignored.clone()].concat()
        ));
        assert!(!only_dropped_watches(&[ignored.clone(), modified].concat()));
        assert!(!only_dropped_watches(&[created, ignored.clone()].concat()));
        // Cut short: not understood, so a change.
        assert!(!only_dropped_watches(&ignored[..10]));
    }

    #[test]
    fn only_small_watched_files_are_kept_in_memory() {
        let (dir, root, site) = setup();
        let small = vec![b's'; BYTES as usize];
        let large = vec![b'l'; BYTES as usize + 1];
        std::fs::write(dir.path().join("small"), &small).unwrap();
        std::fs::write(dir.path().join("large"), &large).unwrap();
        for name in ["small", "large"] {
            let (f, m) = open(&root, name);
            keep(&root, site, (name, false), name, &f, &m);
        }
        let hit = lookup(&root, site, ("small", false), identity).unwrap();
        assert_eq!(hit.bytes.as_deref(), Some(&small[..]));
        assert!(lookup(&root, site, ("large", false), identity)
            .unwrap()
            .bytes
            .is_none());
        // Rewritten in place with the same length: the next hit has the new bytes.
        std::fs::write(dir.path().join("small"), vec![b'S'; BYTES as usize]).unwrap();
        let hit = lookup(&root, site, ("small", false), identity).unwrap();
        assert_eq!(hit.bytes.as_deref(), Some(&vec![b'S'; BYTES as usize][..]));
    }

    #[test]
    fn bytes_read_after_an_in_place_write_never_carry_the_old_validators() {
        let (dir, root, _) = setup();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old!").unwrap();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let settle = || {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(hour_ago).unwrap();
        };
        settle();
        let (f, m) = open(&root, "f");
        let mut rep = Rep::new(CString::new("f").unwrap(), &f, &m);
        let old = rep.hit(false, "", CT).validators;
        assert!(
            old.validators.etag.is_some(),
            "the settled version has an ETag"
        );
        // Rewritten in place, same length, after the metadata was taken and before the bytes
        // are read: the window of a write concurrent with a request.
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(b"new!")
            .unwrap();
        let hit = rep.hit(true, "", CT);
        assert!(hit.bytes.is_none(), "bytes of another version kept");
        assert_ne!(hit.info, m_info(&m), "the answer takes the metadata of now");
        assert!(hit.validators.validators.etag.is_none());
        // Once settled, the file's bytes are kept again, with validators of their own.
        let mut rep = Rep::new(CString::new("f").unwrap(), &f, &m);
        settle();
        rep.info = FileInfo::from_metadata(&f.metadata().unwrap());
        let hit = rep.hit(true, "", CT);
        assert_eq!(hit.bytes.as_deref(), Some(&b"new!"[..]));
        assert!(hit.validators.validators.etag.is_some());
        assert_ne!(hit.validators.validators.etag, old.validators.etag);
    }

    fn m_info(m: &std::fs::Metadata) -> FileInfo {
        FileInfo::from_metadata(m)
    }

    #[test]
    fn a_path_through_a_symlink_is_not_cached() {
        let (dir, root, site) = setup();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/c.txt"), "one").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let (f, m) = open(&root, "link/c.txt");
        keep(&root, site, ("link/c.txt", false), "link/c.txt", &f, &m);
        assert!(lookup(&root, site, ("link/c.txt", false), identity).is_none());
    }

    #[test]
    fn a_directory_moved_out_and_linked_back_is_a_miss() {
        // Seen with the churn property (tests/props, `Churn`): `d/c` cached; `d` moved out of
        // the root and a symlink `d -> ../outside/d` put in its place. A statx of `d/c` follows
        // it to the same inode, which must not be served: opening `d/c` beneath the root fails.
        let base = tempfile::tempdir().unwrap();
        let (rootp, outside) = (base.path().join("root"), base.path().join("outside"));
        std::fs::create_dir_all(rootp.join("d")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(rootp.join("d/c"), "one").unwrap();
        let root = Root::open_dir(&rootp).unwrap();
        let site = NEXT_SITE.fetch_add(1, Ordering::Relaxed);
        let (f, m) = open(&root, "d/c");
        keep(&root, site, ("d/c", false), "d/c", &f, &m);
        assert!(lookup(&root, site, ("d/c", false), identity).is_some());
        std::fs::rename(rootp.join("d"), outside.join("d")).unwrap();
        std::os::unix::fs::symlink("../outside/d", rootp.join("d")).unwrap();
        assert!(
            root.open("d/c").is_err(),
            "the fixture: no longer beneath the root"
        );
        assert!(lookup(&root, site, ("d/c", false), identity).is_none());
    }

    #[test]
    fn keys_are_per_site_and_per_form() {
        let (dir, root, site) = setup();
        std::fs::write(dir.path().join("index.html"), "<p>").unwrap();
        let (f, m) = open(&root, "index.html");
        keep(&root, site, ("", true), "index.html", &f, &m);
        assert!(lookup(&root, site, ("", true), identity).is_some());
        assert!(lookup(&root, site, ("", false), identity).is_none());
        assert!(lookup(&root, site + 1, ("", true), identity).is_none());
    }

    fn pick(coding: Coding) -> impl FnOnce(Available) -> Choice {
        move |available| {
            if available[coding.index()] {
                Choice::Coded(coding)
            } else {
                Choice::Identity
            }
        }
    }

    #[test]
    fn variants_are_served_and_their_changes_noticed() {
        let (dir, root, site) = setup();
        let d = dir.path();
        std::fs::write(d.join("app.js"), "plain").unwrap();
        std::fs::write(d.join("app.js.gz"), "gz-1").unwrap();
        let (f, m) = open(&root, "app.js");
        keep(&root, site, ("app.js", false), "app.js", &f, &m);
        let hit = lookup(&root, site, ("app.js", false), pick(Coding::Gzip)).unwrap();
        assert_eq!(
            (hit.choice, hit.available),
            (Choice::Coded(Coding::Gzip), [false, true])
        );
        assert_eq!(hit.info.len, 4);
        let plain = lookup(&root, site, ("app.js", false), identity).unwrap();
        assert_eq!((plain.info.len, plain.available), (5, [false, true]));
        // Rewritten in place (same inode): the new length, once trusted the new bytes.
        std::fs::write(d.join("app.js.gz"), "gz-two").unwrap();
        let hit = lookup(&root, site, ("app.js", false), pick(Coding::Gzip)).unwrap();
        assert_eq!(hit.info.len, 6);
        assert!(trusted_soon(&root, site, "app.js"));
        let hit = lookup(&root, site, ("app.js", false), pick(Coding::Gzip)).unwrap();
        assert_eq!(hit.bytes.as_deref(), Some(&b"gz-two"[..]));
        // A variant added, or removed: the entry no longer stands for the path.
        std::fs::write(d.join("app.js.br"), "br").unwrap();
        assert!(lookup(&root, site, ("app.js", false), identity).is_none());
        let (f, m) = open(&root, "app.js");
        keep(&root, site, ("app.js", false), "app.js", &f, &m);
        let hit = lookup(&root, site, ("app.js", false), pick(Coding::Br)).unwrap();
        assert_eq!((hit.info.len, hit.available), (2, [true, true]));
        std::fs::remove_file(d.join("app.js.gz")).unwrap();
        assert!(lookup(&root, site, ("app.js", false), identity).is_none());
        // Replaced by rename: another inode.
        let (f, m) = open(&root, "app.js");
        keep(&root, site, ("app.js", false), "app.js", &f, &m);
        std::fs::write(d.join("tmp"), "br-2").unwrap();
        std::fs::rename(d.join("tmp"), d.join("app.js.br")).unwrap();
        assert!(lookup(&root, site, ("app.js", false), identity).is_none());
    }

    #[test]
    fn a_variant_that_is_not_a_file_is_never_served() {
        let (dir, root, site) = setup();
        std::fs::write(dir.path().join("a.css"), "a{}").unwrap();
        std::fs::create_dir(dir.path().join("a.css.gz")).unwrap();
        let (f, m) = open(&root, "a.css");
        keep(&root, site, ("a.css", false), "a.css", &f, &m);
        let hit = lookup(&root, site, ("a.css", false), pick(Coding::Gzip)).unwrap();
        assert_eq!(
            (hit.choice, hit.available),
            (Choice::Identity, [false, false])
        );
        // The directory made a file: noticed.
        std::fs::remove_dir(dir.path().join("a.css.gz")).unwrap();
        std::fs::write(dir.path().join("a.css.gz"), "gz").unwrap();
        assert!(lookup(&root, site, ("a.css", false), identity).is_none());
        // Precompressed files asked for by name have no variants of their own.
        assert!(matches!(
            variants::probe(&root, "a.css.gz"),
            [Probe::Skipped, Probe::Skipped]
        ));
    }

    #[test]
    fn capacity_is_bounded() {
        let (dir, root, site) = setup();
        for i in 0..CAPACITY + 10 {
            let name = format!("f{i}");
            std::fs::write(dir.path().join(&name), "x").unwrap();
            let (f, m) = open(&root, &name);
            keep(&root, site, (&name, false), &name, &f, &m);
        }
        CACHE.with(|c| assert_eq!(c.borrow().files.len(), CAPACITY.min(budget())));
    }
}
