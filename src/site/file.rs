//! Answering a regular file once it is chosen: 304, 206 (one range or multipart/byteranges),
//! 416 or 200, with the fields of its representation (validators, `Content-Encoding` and
//! `Vary` of a precompressed variant, the header rules), and 406 when no coding is acceptable.
use std::fs::File;
use std::sync::Arc;

use super::conditional::Validators;
use super::encoding::Coding;
use super::headers::HeaderRules;
use super::mime::ContentType;
use super::open_files::FileInfo;
use super::range::{self, Ranges};
use super::{bytes_reply, mime, Body, Ctx, Part, Reply, SMALL_FILE};
use crate::http::response::HeadWriter;
use crate::http::Request;

/// One representation of a file, ready to answer with: the file itself or a precompressed
/// variant, its metadata of now, and what its answers carry.
#[derive(Debug)]
pub struct FileRep<'a> {
    pub file: Arc<File>,
    /// The whole content, when the open-file cache holds it (then a single range or the whole
    /// file goes out behind the head, without reading the file).
    pub bytes: Option<Arc<[u8]>>,
    pub info: FileInfo,
    /// The type of the file itself (a variant's too).
    pub ctype: ContentType,
    pub validators: &'a Validators,
    pub last_modified: Option<&'a str>,
    /// The coding of a precompressed variant.
    pub coding: Option<Coding>,
    /// `Vary: Accept-Encoding`: precompressed variants exist, so the choice depended on that
    /// field, for the identity answer too (a shared cache must not hand the plain file to a
    /// client that accepts a coding, nor the reverse).
    pub vary: bool,
    /// The header rules and the path (from the root, with a leading `/`) they match against.
    pub rules: (&'a HeaderRules, &'a str),
}

/// Room for a file reply's head fields (status line, Date, Server, Content-Type, Content-Length,
/// Last-Modified, ETag, Accept-Ranges, Content-Encoding, Vary: about 330 bytes), and the
/// `Connection` field and blank line the state machine adds; header rules add their own length.
const HEAD_ROOM: usize = 400;

/// The answer to a GET or HEAD of `rep`.
pub fn serve(req: &Request, rep: FileRep, ctx: Ctx, head_only: bool) -> Reply {
    let v = rep.validators;
    if v.not_modified(
        req.if_none_match.as_deref(),
        req.if_modified_since.as_deref(),
    ) {
        return not_modified(&rep, ctx);
    }
    let len = rep.info.len;
    let ranges = match (&req.range, req.if_range()) {
        (Some(r), None) => range::parse(r, len),
        (Some(r), Some(ir)) if v.if_range_matches(ir) => range::parse(r, len),
        _ => Ranges::Full,
    };
    match ranges {
        Ranges::Full => single_part(200, (0, len), rep, ctx, head_only),
        Ranges::Unsatisfiable => unsatisfiable(&rep, ctx),
        Ranges::Partial(list) if list.len() == 1 => {
            let (first, last) = list[0];
            single_part(206, (first, last - first + 1), rep, ctx, head_only)
        }
        Ranges::Partial(list) => multipart(req, rep, &list, ctx, head_only),
    }
}

/// 406: the client accepts neither the file as it is nor any coding it has.
pub fn not_acceptable(vary: bool, ctx: Ctx, head_only: bool) -> Reply {
    let body = b"None of the content codings of this file is acceptable.\n".to_vec();
    let extra: &[(&str, &str)] = if vary {
        &[("Vary", "Accept-Encoding")]
    } else {
        &[]
    };
    bytes_reply(406, body, mime::TEXT_PLAIN, ctx, head_only, extra)
}

fn not_modified(rep: &FileRep, ctx: Ctx) -> Reply {
    let mut head = Vec::with_capacity(HEAD_ROOM + rep.rules.0.room());
    let mut w = HeadWriter::new(&mut head, 304, ctx.date);
    if let Some(etag) = &rep.validators.etag {
        w.field("ETag", etag);
    }
    if let Some(lm) = rep.last_modified {
        w.field("Last-Modified", lm);
    }
    if rep.vary {
        w.field("Vary", "Accept-Encoding");
    }
    rep.rules.0.write(&mut w, rep.rules.1);
    Reply {
        status: 304,
        head,
        body: Body::Empty,
    }
}

fn unsatisfiable(rep: &FileRep, ctx: Ctx) -> Reply {
    let mut head = Vec::with_capacity(HEAD_ROOM);
    let mut w = HeadWriter::new(&mut head, 416, ctx.date);
    w.field("Content-Range", format_args!("bytes */{}", rep.info.len));
    w.field("Content-Length", 0u64);
    if rep.vary {
        w.field("Vary", "Accept-Encoding");
    }
    Reply {
        status: 416,
        head,
        body: Body::Empty,
    }
}

/// 200 (the whole file) or 206 with one range: `len` bytes from `offset`.
///
/// The head buffer is allocated once, where its size is known: the head fields, plus the body
/// for a single part the connection loop will inline (a 304 or a HEAD answer carries none).
fn single_part(
    status: u16,
    (offset, len): (u64, u64),
    rep: FileRep,
    ctx: Ctx,
    head_only: bool,
) -> Reply {
    // Room for the head and for a body the executor will append to it
    // ([`Reply::inline_small_body`]: one part of at most [`SMALL_FILE`]): no reallocation.
    let inlined = if !head_only && len <= SMALL_FILE {
        len as usize
    } else {
        0
    };
    let mut head = Vec::with_capacity(HEAD_ROOM + rep.rules.0.room() + inlined);
    let mut w = HeadWriter::new(&mut head, status, ctx.date);
    if status == 206 {
        let total = rep.info.len;
        let last = offset + len - 1;
        w.field(
            "Content-Range",
            format_args!("bytes {offset}-{last}/{total}"),
        );
    }
    w.field("Content-Type", rep.ctype);
    finish_head(w, len, &rep);
    if let (Some(bytes), false) = (&rep.bytes, head_only) {
        if let Some(body) = bytes.get(offset as usize..(offset + len) as usize) {
            // A copy (not appended to the head here): the access log takes the body's length
            // from the reply, and the connection loop appends small bodies to the head anyway.
            return Reply {
                status,
                head,
                body: Body::Bytes(body.to_vec()),
            };
        }
    }
    let parts = vec![Part::File { offset, len }];
    file_reply(status, head, rep.file, parts, len, head_only)
}

/// 206 with several ranges: `multipart/byteranges`, each part with its own head.
fn multipart(req: &Request, rep: FileRep, list: &[(u64, u64)], ctx: Ctx, head_only: bool) -> Reply {
    let etag = rep.validators.etag.as_deref().unwrap_or("");
    let boundary = boundary(etag, req.range.as_deref().unwrap_or(""));
    let (ctype, len) = (rep.ctype, rep.info.len);
    let mut parts = Vec::with_capacity(list.len() * 2 + 1);
    let mut total = 0u64;
    for &(first, last) in list {
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
    let mut head = Vec::with_capacity(HEAD_ROOM + rep.rules.0.room());
    let mut w = HeadWriter::new(&mut head, 206, ctx.date);
    w.field(
        "Content-Type",
        format_args!("multipart/byteranges; boundary={boundary}"),
    );
    finish_head(w, total, &rep);
    file_reply(206, head, rep.file, parts, total, head_only)
}

/// The fields after the type: length, validators, ranges, coding, rules.
fn finish_head(mut w: HeadWriter, len: u64, rep: &FileRep) {
    w.field("Content-Length", len);
    if let Some(lm) = rep.last_modified {
        w.field("Last-Modified", lm);
    }
    if let Some(etag) = &rep.validators.etag {
        w.field("ETag", etag);
    }
    w.field("Accept-Ranges", "bytes");
    if let Some(coding) = rep.coding {
        w.field("Content-Encoding", coding.token());
    }
    if rep.vary {
        w.field("Vary", "Accept-Encoding");
    }
    rep.rules.0.write(&mut w, rep.rules.1);
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
