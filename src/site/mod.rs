//! What to answer: turns a validated request into a reply plan (head bytes + body source) or a
//! workload to run first. No sockets here; files are opened, never read (the connection loop
//! streams them).
//!
//! Pipeline for GET/HEAD: method → target split → workload? → normalize → the thread's open-file
//! cache, if the path still leads to the file it holds ([`open_files`]) → else open beneath
//! root → directory? (301 / index.html) → validators → conditional (304) → range (206/416) → 200.
pub mod conditional;
pub mod mime;
pub mod open_files;
pub mod range;
pub mod reply;
pub mod resolve;
pub mod workload;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::http::response::HeadWriter;
use crate::http::{Method, Request};
use conditional::Validators;
use mime::ContentType;
use open_files::FileInfo;
use range::Ranges;
pub use reply::{Body, Part, Reply, SMALL_FILE};
use resolve::{Reject, Root};
pub use workload::Work;

/// Methods the site allows, for `Allow` on 405 and OPTIONS.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// What the connection loop does next for a request.
#[derive(Debug)]
pub enum Plan {
    Reply(Reply),
    /// Run the work, then call [`Site::after_work`].
    Work(Work),
}

/// Per-request facts the connection loop knows and the site does not.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The current `Date` value.
    pub date: &'a str,
}

/// The static site: a document root and what to do with it.
#[derive(Debug)]
pub struct Site {
    root: Root,
    /// Tells this site's entries in the per-thread open-file cache from another site's.
    id: u64,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Site {
    /// Opens the document root (fails if missing or not a directory).
    pub fn new(root: &Path) -> io::Result<Site> {
        Ok(Site {
            root: Root::open_dir(root)?,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// A second handle on the same site (the same directory, so the same cache entries).
    pub fn try_clone(&self) -> io::Result<Site> {
        Ok(Site {
            root: self.root.try_clone()?,
            id: self.id,
        })
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Decides the answer to `req`.
    pub fn plan(&self, req: &Request, ctx: Ctx) -> Plan {
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
                return Plan::Reply(text_reply(400, msg.into_bytes(), ctx, head_only));
            }
            None => {}
        }
        let norm = match resolve::normalize(path) {
            Ok(n) => n,
            Err(Reject::Bad(_)) => return Plan::Reply(self.error(400, ctx, head_only)),
            Err(Reject::Hidden) => return Plan::Reply(self.not_found(ctx, head_only)),
        };
        // A file this thread served for the same path, if the path still leads to it: one
        // statx instead of openat2 + fstat + close per file opened (twice for `/`), and while
        // inotify reports no change not even that, nor a read for a small file. Measured
        // (h2load --h1 -c64, GET /): 3 syscalls per request with the cache (recvfrom, the
        // watcher's ioctl, sendto), 9 without; see docs/BENCHMARKS.md.
        if let Some(hit) = open_files::lookup(&self.root, self.id, &norm.rel, norm.dir_form) {
            let v = &hit.validators;
            return Plan::Reply(serve_file(
                req,
                (hit.file, hit.bytes),
                hit.info,
                hit.ctype,
                (&v.validators, &v.last_modified),
                ctx,
                head_only,
            ));
        }
        let (file, meta) = match self.open(&norm.rel) {
            Ok(x) => x,
            Err(status) => return Plan::Reply(self.status_page(status, ctx, head_only)),
        };
        let (file, meta, name) = if meta.is_dir() {
            if !norm.dir_form {
                return Plan::Reply(redirect_to_dir(&norm.rel, ctx, head_only));
            }
            let index = if norm.rel.is_empty() {
                "index.html".to_owned()
            } else {
                format!("{}/index.html", norm.rel)
            };
            match self.open(&index) {
                Ok((f, m)) if m.is_file() => (f, m, index),
                Ok(_) => return Plan::Reply(self.not_found(ctx, head_only)),
                Err(status) => return Plan::Reply(self.status_page(status, ctx, head_only)),
            }
        } else if meta.is_file() {
            (file, meta, norm.rel.clone())
        } else {
            // FIFOs, sockets, devices: nothing a static site should stream.
            return Plan::Reply(self.not_found(ctx, head_only));
        };
        let file = Arc::new(file);
        let ctype = mime::content_type(&name);
        open_files::remember(
            &self.root,
            self.id,
            (&norm.rel, norm.dir_form),
            &name,
            &file,
            &meta,
            ctype,
        );
        let info = FileInfo::from_metadata(&meta);
        let v = open_files::Validated::new(info);
        Plan::Reply(serve_file(
            req,
            (file, None),
            info,
            ctype,
            (&v.validators, &v.last_modified),
            ctx,
            head_only,
        ))
    }

    /// The reply once a workload has run. `primes` is the count for [`Work::Primes`].
    pub fn after_work(&self, req: &Request, work: Work, primes: Option<u64>, ctx: Ctx) -> Reply {
        let body = workload::describe(work, primes).into_bytes();
        text_reply(200, body, ctx, req.method == Method::Head)
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

fn text_reply(status: u16, body: Vec<u8>, ctx: Ctx, head_only: bool) -> Reply {
    bytes_reply(status, body, mime::TEXT_PLAIN, ctx, head_only, &[])
}

fn bytes_reply(
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

/// A regular file: 304, 206 (one range or multipart/byteranges), 416 or 200. `bytes`: the
/// whole file, when the open-file cache holds it (then a single range or the whole file goes
/// out behind the head, without reading the file).
///
/// Each reply's head buffer is allocated once, where its size is known: `HEAD_ROOM` for the head
/// fields, plus the body for a single part the executor will inline (not for a 304 or a HEAD
/// answer, which carry no body).
fn serve_file(
    req: &Request,
    (file, bytes): (Arc<File>, Option<Arc<[u8]>>),
    info: FileInfo,
    ctype: ContentType,
    (validators, last_modified): (&Validators, &str),
    ctx: Ctx,
    head_only: bool,
) -> Reply {
    let len = info.len;

    if validators.not_modified(
        req.if_none_match.as_deref(),
        req.if_modified_since.as_deref(),
    ) {
        let mut head = Vec::with_capacity(HEAD_ROOM);
        let mut w = HeadWriter::new(&mut head, 304, ctx.date);
        w.field("ETag", &validators.etag);
        w.field("Last-Modified", last_modified);
        return Reply {
            status: 304,
            head,
            body: Body::Empty,
        };
    }

    let ranges = match (&req.range, &req.if_range) {
        (Some(r), None) => range::parse(r, len),
        (Some(r), Some(ir)) if validators.if_range_matches(ir) => range::parse(r, len),
        _ => Ranges::Full,
    };

    let (status, body_len, parts, content_range) = match ranges {
        Ranges::Full => (200, len, vec![Part::File { offset: 0, len }], None),
        Ranges::Unsatisfiable => {
            let mut head = Vec::with_capacity(HEAD_ROOM);
            let mut w = HeadWriter::new(&mut head, 416, ctx.date);
            w.field("Content-Range", format_args!("bytes */{len}"));
            w.field("Content-Length", 0u64);
            return Reply {
                status: 416,
                head,
                body: Body::Empty,
            };
        }
        Ranges::Partial(list) if list.len() == 1 => {
            let (first, last) = list[0];
            let part_len = last - first + 1;
            let parts = vec![Part::File {
                offset: first,
                len: part_len,
            }];
            (
                206,
                part_len,
                parts,
                Some(format!("bytes {first}-{last}/{len}")),
            )
        }
        Ranges::Partial(list) => {
            let boundary = boundary(&validators.etag, req.range.as_deref().unwrap_or(""));
            let mut parts = Vec::with_capacity(list.len() * 2 + 1);
            let mut total = 0u64;
            for (first, last) in list {
                let part_head = format!(
                    "\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {first}-{last}/{len}\r\n\r\n"
                )
                .into_bytes();
                total += part_head.len() as u64 + (last - first + 1);
                parts.push(Part::Bytes(part_head));
                parts.push(Part::File {
                    offset: first,
                    len: last - first + 1,
                });
            }
            let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
            total += tail.len() as u64;
            parts.push(Part::Bytes(tail));
            let mut head = Vec::with_capacity(HEAD_ROOM);
            let mut w = HeadWriter::new(&mut head, 206, ctx.date);
            w.field(
                "Content-Type",
                format_args!("multipart/byteranges; boundary={boundary}"),
            );
            finish_file_head(w, total, validators, last_modified);
            return file_reply(206, head, file, parts, total, head_only);
        }
    };
    // Room for the head and for a body the executor will append to it
    // ([`Reply::inline_small_body`]: one part of at most [`SMALL_FILE`]): no reallocation.
    let inlined = if !head_only && body_len <= SMALL_FILE {
        body_len as usize
    } else {
        0
    };
    let mut head = Vec::with_capacity(HEAD_ROOM + inlined);
    let mut w = HeadWriter::new(&mut head, status, ctx.date);
    if let Some(content_range) = content_range {
        w.field("Content-Range", content_range);
    }
    w.field("Content-Type", ctype);
    finish_file_head(w, body_len, validators, last_modified);
    if let (Some(bytes), [Part::File { offset, len }], false) = (bytes, &parts[..], head_only) {
        let range = *offset as usize..(*offset + *len) as usize;
        if let Some(body) = bytes.get(range) {
            // A copy (not appended to the head here): the access log takes the body's length
            // from the reply, and the connection loop appends small bodies to the head anyway.
            return Reply {
                status,
                head,
                body: Body::Bytes(body.to_vec()),
            };
        }
    }
    file_reply(status, head, file, parts, body_len, head_only)
}

/// Room for a file reply's head fields (status line, Date, Server, Content-Type, Content-Length,
/// Last-Modified, ETag, Accept-Ranges, Connection: about 250 bytes).
const HEAD_ROOM: usize = 320;

fn finish_file_head(mut w: HeadWriter, len: u64, validators: &Validators, last_modified: &str) {
    w.field("Content-Length", len);
    w.field("Last-Modified", last_modified);
    w.field("ETag", &validators.etag);
    w.field("Accept-Ranges", "bytes");
}

fn file_reply(
    status: u16,
    head: Vec<u8>,
    file: Arc<File>,
    parts: Vec<Part>,
    len: u64,
    head_only: bool,
) -> Reply {
    let body = if head_only || len == 0 {
        Body::Empty
    } else {
        Body::File { file, parts, len }
    };
    Reply { status, head, body }
}

/// A multipart boundary derived from the validator and the Range asked (FNV-1a): stable for the
/// same request, different across files and range sets.
fn boundary(etag: &str, range: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in etag.bytes().chain(range.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("archserve-{h:016x}")
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
