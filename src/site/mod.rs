//! What to answer: turns a validated request into a reply plan (head bytes + body source) or a
//! workload to run first. No sockets here; files are opened, never read (the connection loop
//! streams them).
//!
//! Pipeline for GET/HEAD: method → target split → workload? → normalize → the thread's open-file
//! cache, if the path still leads to the file it holds ([`open_files`]) → else open beneath
//! root → directory? (301 / index.html) → precompressed variants ([`variants`]) → coding by
//! Accept-Encoding ([`encoding`]) → validators → conditional (304) → range (206/416) → 200
//! ([`file`]), with the header rules ([`headers`]); a directory without `index.html` is listed
//! when asked to ([`listing`]). Before all of it, a path under the CGI folder names a script
//! to run, whatever the method ([`cgi`]).
pub mod cgi;
pub mod conditional;
pub mod encoding;
pub mod file;
pub mod headers;
pub mod listing;
pub mod mime;
pub mod open_files;
pub mod range;
pub mod reply;
pub mod resolve;
pub mod variants;
pub mod workload;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::http::response::HeadWriter;
use crate::http::{Method, Request};
use encoding::Choice;
use file::FileRep;
use headers::HeaderRules;
use mime::ContentType;
use open_files::{FileInfo, Opened, Validated};
pub use reply::{Body, Part, Reply, SMALL_FILE};
use resolve::{Normalized, Reject, Root};
use variants::Probe;
pub use workload::Work;

/// Methods the site allows, for `Allow` on 405 and OPTIONS.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// What the connection loop does next for a request.
#[derive(Debug)]
pub enum Plan {
    Reply(Reply),
    /// Run the work, then call [`Site::after_work`].
    Work(Work),
    /// Run the CGI script (its body, if any, kept: see `http::conn::Conn::keep_body`).
    Cgi(Box<cgi::Script>),
}

/// Per-request facts the connection loop knows and the site does not.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The current `Date` value.
    pub date: &'a str,
}

/// What a site does beyond serving files as they are (`serve` flags, checked at start-up).
#[derive(Debug, Clone, Default)]
pub struct SiteOptions {
    /// Extra response fields by path pattern (`--header`).
    pub headers: HeaderRules,
    /// List directories without an `index.html` (`--dir-listing`); else they are 404.
    pub dir_listing: bool,
    /// Run the executable files of this folder as CGI scripts (`--cgi-dir`).
    pub cgi: Option<cgi::CgiOptions>,
}

/// The static site: a document root and what to do with it.
#[derive(Debug)]
pub struct Site {
    root: Root,
    /// Tells this site's entries in the per-thread open-file cache from another site's.
    id: u64,
    opts: Arc<SiteOptions>,
    /// The root as an absolute path (CGI scripts are executed by path).
    root_abs: Arc<std::path::PathBuf>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Site {
    /// Opens the document root (fails if missing or not a directory).
    pub fn new(root: &Path) -> io::Result<Site> {
        Site::with_options(root, SiteOptions::default())
    }

    /// Opens the document root, to be served with `opts`.
    pub fn with_options(root: &Path, opts: SiteOptions) -> io::Result<Site> {
        Ok(Site {
            root: Root::open_dir(root)?,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            opts: Arc::new(opts),
            root_abs: Arc::new(std::path::absolute(root)?),
        })
    }

    /// A second handle on the same site (the same directory, so the same cache entries).
    pub fn try_clone(&self) -> io::Result<Site> {
        Ok(Site {
            root: self.root.try_clone()?,
            id: self.id,
            opts: Arc::clone(&self.opts),
            root_abs: Arc::clone(&self.root_abs),
        })
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The CGI options, when a CGI folder is served.
    pub fn cgi(&self) -> Option<&cgi::CgiOptions> {
        self.opts.cgi.as_ref()
    }

    /// An error page with `status` (a CGI script's failure: 502, 503, 504).
    pub fn error_page(&self, status: u16, ctx: Ctx, head_only: bool) -> Reply {
        self.error(status, ctx, head_only)
    }

    /// Decides the answer to `req`.
    pub fn plan(&self, req: &Request, ctx: Ctx) -> Plan {
        if let Some(opts) = &self.opts.cgi {
            let head_only = req.method == Method::Head;
            match cgi::find(opts, &self.root, &self.root_abs, req) {
                Some(cgi::Found::Script(script)) => return Plan::Cgi(script),
                Some(cgi::Found::Status(status)) => {
                    return Plan::Reply(self.status_page(status, ctx, head_only))
                }
                None => {}
            }
        }
        match req.method {
            Method::Get | Method::Head => {}
            Method::Options => {
                let mut head = Vec::with_capacity(160);
                let mut w = HeadWriter::new(&mut head, 204, ctx.date);
                w.field("Allow", ALLOW);
                return Plan::Reply(Reply {
                    status: 204,
                    head,
                    body: Body::Empty,
                });
            }
            Method::NotAllowed => return Plan::Reply(self.error(405, ctx, false)),
            Method::Unknown => return Plan::Reply(self.error(501, ctx, false)),
        }
        let head_only = req.method == Method::Head;

        let Some((path, query)) = resolve::split_target(&req.target) else {
            return Plan::Reply(self.error(400, ctx, head_only));
        };
        match workload::from_request(path, query) {
            Some(Ok(work)) => return Plan::Work(work),
            Some(Err(msg)) => {
                return Plan::Reply(workload_reply(400, msg.into_bytes(), ctx, head_only));
            }
            None => {}
        }
        let norm = match resolve::normalize(path) {
            Ok(n) => n,
            Err(Reject::Bad(_)) => return Plan::Reply(self.error(400, ctx, head_only)),
            Err(Reject::Hidden) => return Plan::Reply(self.not_found(ctx, head_only)),
        };
        Plan::Reply(self.serve_path(req, &norm, ctx, head_only))
    }

    /// The answer for a normalized path: a file (from the open-file cache or opened now), a
    /// redirect, or an error page.
    fn serve_path(&self, req: &Request, norm: &Normalized, ctx: Ctx, head_only: bool) -> Reply {
        // A file this thread served for the same path, if the path still leads to it: one
        // statx instead of openat2 + fstat + close per file opened (twice for `/`), and while
        // inotify reports no change not even that, nor a read for a small file. Measured
        // (h2load --h1 -c64, GET /): 3 syscalls per request with the cache (recvfrom, the
        // watcher's ioctl, sendto), 9 without; see docs/BENCHMARKS.md.
        let ae = req.accept_encoding();
        let key = (norm.rel.as_str(), norm.dir_form);
        if let Some(hit) = open_files::lookup(&self.root, self.id, key, |available| {
            encoding::choose(ae, available)
        }) {
            let v = &hit.validators;
            let path = self.rules_path(&norm.rel, norm.dir_form);
            let rep = FileRep {
                file: hit.file,
                bytes: hit.bytes,
                info: hit.info,
                ctype: hit.ctype,
                validators: &v.validators,
                last_modified: v.last_modified.as_deref(),
                coding: coded(hit.choice),
                vary: hit.available.contains(&true),
                rules: (&self.opts.headers, &path),
            };
            return self.answer_file(req, hit.choice, rep, ctx, head_only);
        }
        let (file, meta, name) = match self.open_target(norm) {
            Ok(x) => x,
            Err(unopened) => return self.answer_unopened(req, unopened, norm, ctx, head_only),
        };
        let file = Arc::new(file);
        let ctype = mime::content_type(&name);
        let probes = variants::probe(&self.root, &name);
        let opened = Opened {
            path: &name,
            file: &file,
            meta: &meta,
            ctype,
            variants: &probes,
        };
        open_files::remember(&self.root, self.id, key, opened);
        let choice = encoding::choose(ae, variants::available(&probes));
        let (file, meta, tag) = match (choice, &probes) {
            (Choice::Coded(c), probes) => match &probes[c.index()] {
                Probe::Present(f, m) => (Arc::clone(f), m, c.etag_tag()),
                _ => (file, &meta, ""),
            },
            _ => (file, &meta, ""),
        };
        let info = FileInfo::from_metadata(meta);
        let v = Validated::new(&info, tag);
        let path = self.rules_path(&name, false);
        let rep = FileRep {
            file,
            bytes: None,
            info,
            ctype,
            validators: &v.validators,
            last_modified: v.last_modified.as_deref(),
            coding: coded(choice),
            vary: probes.iter().any(Probe::is_present),
            rules: (&self.opts.headers, &path),
        };
        self.answer_file(req, choice, rep, ctx, head_only)
    }

    /// Opens what a normalized path names: a regular file, or a directory's `index.html`.
    fn open_target(
        &self,
        norm: &Normalized,
    ) -> Result<(File, std::fs::Metadata, String), Unopened> {
        let (file, meta) = self.open(&norm.rel).map_err(Unopened::Status)?;
        if meta.is_dir() {
            if !norm.dir_form {
                return Err(Unopened::Redirect);
            }
            let index = if norm.rel.is_empty() {
                "index.html".to_owned()
            } else {
                format!("{}/index.html", norm.rel)
            };
            match self.open(&index) {
                Ok((f, m)) if m.is_file() => Ok((f, m, index)),
                Ok(_) | Err(404) => Err(Unopened::NoIndex(file)),
                Err(status) => Err(Unopened::Status(status)),
            }
        } else if meta.is_file() {
            Ok((file, meta, norm.rel.clone()))
        } else {
            // FIFOs, sockets, devices: nothing a static site should stream.
            Err(Unopened::Status(404))
        }
    }

    /// The answer when [`Site::open_target`] found no file to serve.
    fn answer_unopened(
        &self,
        req: &Request,
        unopened: Unopened,
        norm: &Normalized,
        ctx: Ctx,
        head_only: bool,
    ) -> Reply {
        match unopened {
            Unopened::Redirect => redirect_to_dir(&norm.rel, ctx, head_only),
            Unopened::NoIndex(dir) if self.opts.dir_listing => {
                match listing::read(&self.root, &norm.rel, &dir, listing::MAX_ENTRIES) {
                    Ok(l) => {
                        let json = listing::wants_json(req.accept());
                        let rules = &self.opts.headers;
                        listing::reply(&l, &norm.rel, json, rules, ctx, head_only)
                    }
                    Err(e) => self.status_page(io_status(&e), ctx, head_only),
                }
            }
            Unopened::NoIndex(_) => self.not_found(ctx, head_only),
            Unopened::Status(status) => self.status_page(status, ctx, head_only),
        }
    }

    /// The path header rules match: the file served, from the root (`/sub/index.html` for
    /// `/sub/`). Built only when there are rules: no allocation per request otherwise.
    fn rules_path(&self, rel: &str, dir_form: bool) -> String {
        if self.opts.headers.is_empty() {
            return String::new();
        }
        let mut path = String::with_capacity(rel.len() + 12);
        path.push('/');
        path.push_str(rel);
        if dir_form {
            if !rel.is_empty() {
                path.push('/');
            }
            path.push_str("index.html");
        }
        path
    }

    fn answer_file(
        &self,
        req: &Request,
        choice: Choice,
        rep: FileRep,
        ctx: Ctx,
        head_only: bool,
    ) -> Reply {
        if choice == Choice::NotAcceptable {
            return file::not_acceptable(rep.vary, ctx, head_only);
        }
        file::serve(req, rep, ctx, head_only)
    }

    /// The reply once a workload has run. `primes` is the count for [`Work::Primes`].
    pub fn after_work(&self, req: &Request, work: Work, primes: Option<u64>, ctx: Ctx) -> Reply {
        let body = workload::describe(work, primes).into_bytes();
        workload_reply(200, body, ctx, req.method == Method::Head)
    }

    /// The reply to a request the parser refused (always closes).
    pub fn refuse(&self, status: u16, date: &str) -> Reply {
        self.error(status, Ctx { date }, false)
    }

    fn open(&self, rel: &str) -> Result<(File, std::fs::Metadata), u16> {
        let file = self.root.open(rel).map_err(|e| io_status(&e))?;
        let meta = file.metadata().map_err(|e| io_status(&e))?;
        Ok((file, meta))
    }

    fn status_page(&self, status: u16, ctx: Ctx, head_only: bool) -> Reply {
        if status == 404 {
            self.not_found(ctx, head_only)
        } else {
            self.error(status, ctx, head_only)
        }
    }

    /// 404, with `ROOT/404.html` as the body when it exists (read at the time, so edits show).
    fn not_found(&self, ctx: Ctx, head_only: bool) -> Reply {
        let page = self
            .root
            .open("404.html")
            .and_then(|mut f| {
                use std::io::Read;
                let mut page = Vec::new();
                // Bounded: a huge 404.html must not become a memory sink per request.
                (&mut f).take(1 << 20).read_to_end(&mut page)?;
                Ok(page)
            })
            .ok();
        match page {
            Some(page) => bytes_reply(404, page, mime::TEXT_HTML, ctx, head_only, &[]),
            None => self.error(404, ctx, head_only),
        }
    }

    fn error(&self, status: u16, ctx: Ctx, head_only: bool) -> Reply {
        let reason = crate::http::response::reason(status);
        let page = format!(
            "<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>\
             <body><h1>{status} {reason}</h1></body></html>\n"
        );
        let extra: &[(&str, &str)] = if status == 405 {
            &[("Allow", ALLOW)]
        } else {
            &[]
        };
        bytes_reply(
            status,
            page.into_bytes(),
            mime::TEXT_HTML,
            ctx,
            head_only,
            extra,
        )
    }
}

/// Maps a file-system error to a status: absent (or outside the root) is 404, unreadable 403.
/// Out of descriptors or memory is the server's momentary state, not the file's: 503, so a
/// client may try again (near the connection cap, connections that each stream a different file
/// hold two descriptors).
fn io_status(e: &io::Error) -> u16 {
    match e.kind() {
        io::ErrorKind::PermissionDenied => 403,
        io::ErrorKind::NotFound => 404,
        _ => match e.raw_os_error() {
            Some(libc::ENOTDIR) | Some(libc::ELOOP) | Some(libc::ENAMETOOLONG) => 404,
            Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOMEM) | Some(libc::ENOBUFS) => {
                503
            }
            _ => 500,
        },
    }
}

/// The answer of a workload endpoint (`/cpu`, `/io`): never stored by a cache, whatever the
/// header rules say, or a proxy in front would answer the benchmark itself.
fn workload_reply(status: u16, body: Vec<u8>, ctx: Ctx, head_only: bool) -> Reply {
    let no_store = [("Cache-Control", "no-store")];
    bytes_reply(status, body, mime::TEXT_PLAIN, ctx, head_only, &no_store)
}

pub(crate) fn bytes_reply(
    status: u16,
    body: Vec<u8>,
    ctype: ContentType,
    ctx: Ctx,
    head_only: bool,
    extra: &[(&str, &str)],
) -> Reply {
    let mut head = Vec::with_capacity(200);
    let mut w = HeadWriter::new(&mut head, status, ctx.date);
    w.field("Content-Type", ctype);
    w.field("Content-Length", body.len());
    for (name, value) in extra {
        w.field(name, value);
    }
    Reply {
        status,
        head,
        body: if head_only {
            Body::Empty
        } else {
            Body::Bytes(body)
        },
    }
}

/// `/dir` → 301 `/dir/`. The Location is rebuilt from the normalized path (percent-encoded),
/// never echoed from the request: `//evil.example` must not become an open redirect.
fn redirect_to_dir(rel: &str, ctx: Ctx, head_only: bool) -> Reply {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const SEGMENT: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'?')
        .add(b'<')
        .add(b'>')
        .add(b'\\')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    let mut location = String::from("/");
    for segment in rel.split('/').filter(|s| !s.is_empty()) {
        location.extend(utf8_percent_encode(segment, SEGMENT));
        location.push('/');
    }
    let body = format!("Moved to {location}\n").into_bytes();
    let loc = location.as_str();
    bytes_reply(
        301,
        body,
        mime::TEXT_PLAIN,
        ctx,
        head_only,
        &[("Location", loc)],
    )
}

/// Why a path led to no file to serve.
#[derive(Debug)]
enum Unopened {
    /// A directory named without its `/`: 301 to the form with it.
    Redirect,
    /// A directory (opened) without an `index.html`.
    NoIndex(File),
    /// Absent (404), unreadable (403), ...
    Status(u16),
}

/// The coding a choice serves, if any.
fn coded(choice: Choice) -> Option<encoding::Coding> {
    match choice {
        Choice::Coded(c) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_failures_map_to_statuses() {
        let os = |code| io_status(&io::Error::from_raw_os_error(code));
        assert_eq!(os(libc::EACCES), 403);
        assert_eq!(os(libc::ENOENT), 404);
        assert_eq!(os(libc::ENOTDIR), 404);
        assert_eq!(os(libc::ELOOP), 404);
        // The server's own momentary shortage: try again.
        assert_eq!(os(libc::EMFILE), 503);
        assert_eq!(os(libc::ENFILE), 503);
        assert_eq!(os(libc::ENOMEM), 503);
        assert_eq!(os(libc::EIO), 500);
    }
}
