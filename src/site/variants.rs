//! Precompressed variants of a file (`FILE.br`, `FILE.gz` beside `FILE`): looking for them when
//! the file is opened, and what the open-file cache keeps of them, checked as the file itself is
//! (an added, removed, replaced or rewritten variant is noticed like any change to the file).
//!
//! A variant is opened beneath the root like any file (a symlink out of the root is absent),
//! must be a regular file, and is served as it is: nothing checks that it still matches `FILE`
//! (nginx's `gzip_static` does not either). `FILE.br` and `FILE.gz` asked for by name are plain
//! files, and have no variants of their own.
use std::ffi::CString;
use std::fs::{File, Metadata};
use std::io;
use std::sync::Arc;

use super::encoding::{Available, Coding};
use super::open_files::{statx, Identity, Rep};
use super::resolve::Root;

/// What was found at `FILE` + a coding's suffix when `FILE` was opened.
#[derive(Debug)]
pub enum Probe {
    /// Not looked for: `FILE` is itself a precompressed file.
    Skipped,
    /// Nothing there (or a symlink out of the root).
    Absent,
    /// Something that is not served (a directory, a FIFO): known so that it is not looked for on
    /// every use.
    Other(Metadata),
    /// Something that could not be opened or examined (permissions, out of descriptors): not
    /// served, and the file is not cached (it would be looked for again on every use anyway).
    Unknown,
    /// A regular file: served when the client accepts its coding.
    Present(Arc<File>, Metadata),
}

impl Probe {
    pub fn is_present(&self) -> bool {
        matches!(self, Probe::Present(..))
    }
}

/// Looks for the precompressed variants of the file at `path` (relative to the root), in
/// [`Coding::ALL`] order.
pub fn probe(root: &Root, path: &str) -> [Probe; 2] {
    if Coding::ALL.iter().any(|c| path.ends_with(c.suffix())) {
        return [Probe::Skipped, Probe::Skipped];
    }
    Coding::ALL.map(|coding| {
        let opened = root
            .open(&format!("{path}{}", coding.suffix()))
            .and_then(|f| {
                let meta = f.metadata()?;
                Ok((f, meta))
            });
        match opened {
            Ok((f, meta)) if meta.is_file() => Probe::Present(Arc::new(f), meta),
            Ok((_, meta)) => Probe::Other(meta),
            Err(e) if absent(&e) => Probe::Absent,
            Err(_) => Probe::Unknown,
        }
    })
}

/// Which codings have a file, from a probe.
pub fn available(probes: &[Probe; 2]) -> Available {
    [probes[0].is_present(), probes[1].is_present()]
}

/// Errors that mean "no file there": what opening it answers 404 for.
fn absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            Some(libc::ENOTDIR) | Some(libc::ELOOP) | Some(libc::ENAMETOOLONG)
        )
}

/// What a cache entry knows of one variant.
#[derive(Debug)]
pub enum Variant {
    Skipped,
    /// Nothing at `path` when last checked.
    Absent(CString),
    /// Something not served at `path`, with this identity.
    Other(CString, Identity),
    Present(Box<Rep>),
}

impl Variant {
    /// The cache's record of `probe` for the file at `path`; `None` for [`Probe::Unknown`].
    pub fn from_probe(path: &str, coding: Coding, probe: &Probe) -> Option<Variant> {
        let cpath = || CString::new(format!("{path}{}", coding.suffix())).ok();
        Some(match probe {
            Probe::Skipped => Variant::Skipped,
            Probe::Absent => Variant::Absent(cpath()?),
            Probe::Other(meta) => Variant::Other(cpath()?, Identity::of(meta)),
            Probe::Present(file, meta) => {
                Variant::Present(Box::new(Rep::new(cpath()?, file, meta)))
            }
            Probe::Unknown => return None,
        })
    }

    pub fn rep(&self) -> Option<&Rep> {
        match self {
            Variant::Present(rep) => Some(rep),
            _ => None,
        }
    }

    /// Checks with a `statx` that the variant's path still holds what the entry says; on a
    /// present file, takes in its metadata of now (as [`Rep::recheck`]).
    pub fn recheck(&mut self, root: &Root) -> bool {
        match self {
            Variant::Skipped => true,
            Variant::Absent(path) => matches!(statx(root, path), Err(e) if absent(&e)),
            Variant::Other(path, id) => matches!(statx(root, path), Ok((now, _)) if now == *id),
            Variant::Present(rep) => rep.recheck(root),
        }
    }
}

/// Which codings an entry's variants have a file for.
pub fn cached_available(variants: &[Variant; 2]) -> Available {
    [variants[0].rep().is_some(), variants[1].rep().is_some()]
}
