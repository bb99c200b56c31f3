//! A small per-thread cache of open files, re-validated on every use: a file asked for again
//! costs one `statx` of its path instead of `openat2` + `fstat` + `close` (three for `/`'s
//! directory and three more for its `index.html`), and it is still served as it is on disk now.
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
//!
//! What it costs: at most [`CAPACITY`] open files per thread, and all threads of a process
//! together at most an eighth of its open-file limit (so 64 `threads` workers cannot starve
//! accept() of descriptors); a file deleted or replaced stays open, its space not freed, until
//! its path is asked for again or its entry is evicted. One difference with opening every
//! time, for a server that does not run as root: taking read permission away from a *directory*
//! on the path (keeping search permission) is noticed only for files not yet cached, since a
//! file's own `statx` needs search permission only.
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::conditional::Validators;
use super::mime::ContentType;
use super::resolve::Root;

/// Open files kept per thread.
pub const CAPACITY: usize = 64;

/// Cached open files in this process, all threads together, and the most allowed.
static CACHED: AtomicUsize = AtomicUsize::new(0);
static BUDGET: OnceLock<usize> = OnceLock::new();

fn budget() -> usize {
    *BUDGET.get_or_init(|| {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        usize::try_from(soft / 8).unwrap_or(usize::MAX)
    })
}

/// What answering a file needs from its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    pub len: u64,
    pub modified: SystemTime,
}

impl FileInfo {
    pub fn from_metadata(meta: &std::fs::Metadata) -> FileInfo {
        FileInfo {
            len: meta.len(),
            modified: meta.modified().unwrap_or(UNIX_EPOCH),
        }
    }
}

/// A cache hit: the open file, its metadata as of now, its type, and its validators for that
/// metadata.
#[derive(Debug)]
pub struct Hit {
    pub file: Arc<File>,
    pub info: FileInfo,
    pub ctype: ContentType,
    pub validators: Rc<Validated>,
}

/// The validators of a file and the `Last-Modified` text, kept with the entry for the size and
/// modification time they were made from: formatting them (an `ETag` in hex, an IMF-fixdate)
/// was 8% of a keep-alive request's user-space instructions. Made again whenever the size or
/// the time changes.
#[derive(Debug)]
pub struct Validated {
    pub validators: Validators,
    pub last_modified: String,
}

impl Validated {
    pub fn new(info: FileInfo) -> Validated {
        let validators = Validators::new(info.modified, info.len);
        let last_modified = validators.last_modified();
        Validated {
            validators,
            last_modified,
        }
    }
}

/// What must not have changed for an open file to stand for its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
struct Entry {
    /// The path the file was opened at (for a directory request, its `index.html`).
    path: CString,
    file: Arc<File>,
    id: Identity,
    ctype: ContentType,
    /// The validators last made for this file, and the metadata they were made from.
    validated: Option<(FileInfo, Rc<Validated>)>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        CACHED.fetch_sub(1, Ordering::Relaxed);
    }
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
/// still leads to it.
pub fn lookup(root: &Root, site: u64, rel: &str, dir_form: bool) -> Option<Hit> {
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
        match statx(root, &entry.path) {
            Ok((id, info)) if id == entry.id => {
                let validators = match &entry.validated {
                    Some((made_from, v)) if *made_from == info => Rc::clone(v),
                    _ => {
                        let v = Rc::new(Validated::new(info));
                        entry.validated = Some((info, Rc::clone(&v)));
                        v
                    }
                };
                Some(Hit {
                    file: Arc::clone(&entry.file),
                    info,
                    ctype: entry.ctype,
                    validators,
                })
            }
            _ => {
                map.remove(rel);
                None
            }
        }
    })
}

/// Remembers that the request path `rel` was answered with `file`, opened at `path`.
pub fn remember(
    site: u64,
    rel: &str,
    dir_form: bool,
    path: &str,
    file: &Arc<File>,
    meta: &std::fs::Metadata,
    ctype: ContentType,
) {
    if NO_STATX.load(Ordering::Relaxed) {
        return;
    }
    let Ok(path) = CString::new(if path.is_empty() { "." } else { path }) else {
        return;
    };
    CACHED.fetch_add(1, Ordering::Relaxed);
    let entry = Entry {
        path,
        file: Arc::clone(file),
        id: Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        },
        ctype,
        validated: None,
    };
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

/// `statx` of `path` beneath the root's directory, following symlinks as the open did.
fn statx(root: &Root, path: &CString) -> std::io::Result<(Identity, FileInfo)> {
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
    let mtime = st.stx_mtime;
    let modified = if mtime.tv_sec >= 0 {
        UNIX_EPOCH + Duration::new(mtime.tv_sec as u64, mtime.tv_nsec)
    } else {
        UNIX_EPOCH
    };
    Ok((
        id,
        FileInfo {
            len: st.stx_size,
            modified,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::AtomicU64;

    static NEXT_SITE: AtomicU64 = AtomicU64::new(1 << 40);

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

    #[test]
    fn a_hit_has_the_metadata_of_now() {
        let (dir, root, site) = setup();
        std::fs::write(dir.path().join("a.txt"), "one").unwrap();
        let (f, m) = open(&root, "a.txt");
        remember(site, "a.txt", false, "a.txt", &f, &m, CT);
        let hit = lookup(&root, site, "a.txt", false).expect("cached");
        assert_eq!(hit.info.len, 3);
        assert!(hit.validators.validators.etag.ends_with("-3\""));
        // Rewritten in place: same inode, so still a hit, with the new length.
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(dir.path().join("a.txt"))
            .unwrap();
        w.write_all(b"twenty-two bytes long\n").unwrap();
        let hit = lookup(&root, site, "a.txt", false).expect("same inode");
        assert_eq!(hit.info.len, 22);
        // The validators follow the metadata, not the cache.
        assert!(hit.validators.validators.etag.ends_with("-16\""));
        let again = lookup(&root, site, "a.txt", false).expect("same inode");
        assert!(Rc::ptr_eq(&again.validators, &hit.validators));
        assert!(Arc::ptr_eq(&hit.file, &f));
    }

    #[test]
    fn a_replaced_deleted_or_chmoded_file_is_a_miss() {
        let (dir, root, site) = setup();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "one").unwrap();
        let (f, m) = open(&root, "a.txt");
        remember(site, "a.txt", false, "a.txt", &f, &m, CT);
        // Replaced by rename: another inode.
        std::fs::write(dir.path().join("b.txt"), "two").unwrap();
        std::fs::rename(dir.path().join("b.txt"), &p).unwrap();
        assert!(lookup(&root, site, "a.txt", false).is_none());
        // The miss dropped the entry.
        let (f, m) = open(&root, "a.txt");
        remember(site, "a.txt", false, "a.txt", &f, &m, CT);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(lookup(&root, site, "a.txt", false).is_none());
        let (f, m) = open(&root, "a.txt");
        remember(site, "a.txt", false, "a.txt", &f, &m, CT);
        std::fs::remove_file(&p).unwrap();
        assert!(lookup(&root, site, "a.txt", false).is_none());
    }

    #[test]
    fn keys_are_per_site_and_per_form() {
        let (dir, root, site) = setup();
        std::fs::write(dir.path().join("index.html"), "<p>").unwrap();
        let (f, m) = open(&root, "index.html");
        remember(site, "", true, "index.html", &f, &m, CT);
        assert!(lookup(&root, site, "", true).is_some());
        assert!(lookup(&root, site, "", false).is_none());
        assert!(lookup(&root, site + 1, "", true).is_none());
    }

    #[test]
    fn capacity_is_bounded() {
        let (dir, root, site) = setup();
        for i in 0..CAPACITY + 10 {
            let name = format!("f{i}");
            std::fs::write(dir.path().join(&name), "x").unwrap();
            let (f, m) = open(&root, &name);
            remember(site, &name, false, &name, &f, &m, CT);
        }
        CACHE.with(|c| assert_eq!(c.borrow().files.len(), CAPACITY.min(budget())));
    }
}
