//! Directory listings (`--dir-listing`, off by default): the entries of a directory that has no
//! `index.html`, as an HTML page or, for `Accept: application/json`, as JSON.
//!
//! What is listed: entries that do not start with `.`, that are (or lead by symlinks that stay
//! beneath the root to) a directory or a regular file. Directories first, then files, each
//! sorted by name (bytewise). At most [`MAX_ENTRIES`]: a directory holding more is read no
//! further (the page says so), so a huge directory costs bounded time and memory. Names are
//! HTML-escaped for display (invalid UTF-8 shown as U+FFFD) and percent-encoded byte for byte in
//! links; a name that is not UTF-8 is listed, but the server refuses such paths (400), as it
//! refuses every target that does not decode to UTF-8.
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::headers::HeaderRules;
use super::mime::{self, ContentType};
use super::resolve::Root;
use super::{Body, Ctx, Reply};
use crate::http::response::HeadWriter;

/// The most entries a listing shows.
pub const MAX_ENTRIES: usize = 10_000;

const JSON: ContentType = ContentType {
    essence: "application/json",
    utf8: false,
};

/// One listed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
    pub dir: bool,
    pub size: u64,
    pub modified: SystemTime,
}

/// A directory's listed entries, sorted, and whether more were left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub truncated: bool,
}

/// Reads the directory `dir`, opened at `rel` beneath the root, keeping at most `cap` entries.
pub fn read(root: &Root, rel: &str, dir: &File, cap: usize) -> io::Result<Listing> {
    // The directory as opened (beneath the root), not its path again.
    let entries = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?;
    let mut listing = Listing::default();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_bytes().starts_with(b".") {
            continue;
        }
        let meta = if entry.file_type()?.is_symlink() {
            // Followed only while it stays beneath the root; out of it or dangling: not listed.
            let mut path = rel.as_bytes().to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(name.as_bytes());
            match root.stat_beneath(&path) {
                Ok(meta) => meta,
                Err(_) => continue,
            }
        } else {
            match entry.metadata() {
                Ok(meta) => meta,
                Err(_) => continue, // removed meanwhile
            }
        };
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        if listing.entries.len() == cap {
            listing.truncated = true;
            break;
        }
        listing.entries.push(Entry {
            name,
            dir: meta.is_dir(),
            size: if meta.is_dir() { 0 } else { meta.len() },
            modified: meta.modified().unwrap_or(UNIX_EPOCH),
        });
    }
    listing
        .entries
        .sort_by(|a, b| (!a.dir, a.name.as_bytes()).cmp(&(!b.dir, b.name.as_bytes())));
    Ok(listing)
}

/// True when the client prefers JSON: `application/json` named with a weight at least that of
/// `text/html` (or `text/*`), which browsers always name; `*/*` alone means HTML.
pub fn wants_json(accept: Option<&str>) -> bool {
    let (mut json, mut html) = (0, 0);
    for (range, q) in super::encoding::weighted_list(accept.unwrap_or("")) {
        let q = q.unwrap_or(0);
        if range.eq_ignore_ascii_case("application/json") {
            json = json.max(q);
        } else if range.eq_ignore_ascii_case("text/html") || range.eq_ignore_ascii_case("text/*") {
            html = html.max(q);
        }
    }
    json > 0 && json >= html
}

/// The listing reply for the directory at `rel` (`rules`: the header rules, matched against
/// `/rel/`).
pub fn reply(
    listing: &Listing,
    rel: &str,
    json: bool,
    rules: &HeaderRules,
    ctx: Ctx,
    head_only: bool,
) -> Reply {
    let path = if rel.is_empty() {
        "/".to_owned()
    } else {
        format!("/{rel}/")
    };
    let (body, ctype) = if json {
        (to_json(&path, listing), JSON)
    } else {
        (to_html(&path, listing), mime::TEXT_HTML)
    };
    let mut head = Vec::with_capacity(300 + rules.room());
    let mut w = HeadWriter::new(&mut head, 200, ctx.date);
    w.field("Content-Type", ctype);
    w.field("Content-Length", body.len());
    // The same URL answers HTML or JSON by Accept.
    w.field("Vary", "Accept");
    rules.write(&mut w, &path);
    Reply {
        status: 200,
        head,
        body: if head_only {
            Body::Empty
        } else {
            Body::Bytes(body)
        },
    }
}

/// The HTML page. `path` is the decoded request path (`/a b/`).
pub fn to_html(path: &str, listing: &Listing) -> Vec<u8> {
    let title = escape_html(path);
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\
         <style>td{{padding:0 1em 0 0}}td.n{{text-align:right}}</style></head>\n\
         <body><h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n"
    );
    if path != "/" {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in &listing.entries {
        let slash = if e.dir { "/" } else { "" };
        let href = escape_href(e.name.as_bytes());
        let name = escape_html(&e.name.to_string_lossy());
        let size = if e.dir {
            "-".to_owned()
        } else {
            e.size.to_string()
        };
        let modified = httpdate::fmt_http_date(e.modified);
        out.push_str(&format!(
            "<tr><td><a href=\"{href}{slash}\">{name}{slash}</a></td>\
             <td class=\"n\">{size}</td><td>{modified}</td></tr>\n"
        ));
    }
    out.push_str("</table>\n");
    if listing.truncated {
        out.push_str(&format!(
            "<p>Only {} entries are listed; this directory holds more.</p>\n",
            listing.entries.len()
        ));
    }
    out.push_str("</body></html>\n");
    out.into_bytes()
}

/// The JSON document: `{"path", "truncated", "entries": [{"name", "href", "dir", "size",
/// "modified"}]}`, `modified` in seconds since the epoch, `href` the percent-encoded name
/// (exact where `name` had to replace bytes that are not UTF-8).
pub fn to_json(path: &str, listing: &Listing) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = listing
        .entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "name": e.name.to_string_lossy(),
                "href": escape_href(e.name.as_bytes()) + if e.dir { "/" } else { "" },
                "dir": e.dir,
                "size": e.size,
                "modified": e.modified.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "path": path,
        "truncated": listing.truncated,
        "entries": entries,
    });
    let mut out = serde_json::to_vec(&doc).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Text for HTML content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A name as a relative link: every byte but the unreserved ones percent-encoded, so no name
/// can read as a scheme (`javascript:`), a query, a fragment or another path segment.
pub fn escape_href(name: &[u8]) -> String {
    use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const ALL_BUT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encode(name, ALL_BUT_UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;
    use std::time::Duration;

    fn entry(name: &[u8], dir: bool) -> Entry {
        Entry {
            name: OsString::from_vec(name.to_vec()),
            dir,
            size: 1234,
            modified: UNIX_EPOCH + Duration::from_secs(1_577_836_800),
        }
    }

    #[test]
    fn names_are_escaped_for_text_and_for_links() {
        let listing = Listing {
            entries: vec![
                entry(b"<b>&\"x\"'", false),
                entry(b"100% sure.txt", false),
                entry(b"javascript:alert(1)", false),
                entry(b"bad\xff.txt", false),
                entry(b"caf\xc3\xa9", true),
            ],
            truncated: false,
        };
        let html = String::from_utf8(to_html("/a <b>/", &listing)).unwrap();
        assert!(
            html.contains("<title>Index of /a &lt;b&gt;/</title>"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"%3Cb%3E%26%22x%22%27\">&lt;b&gt;&amp;&quot;x&quot;&#39;</a>")
        );
        assert!(html.contains("<a href=\"100%25%20sure.txt\">100% sure.txt</a>"));
        assert!(html.contains("<a href=\"javascript%3Aalert%281%29\">"));
        assert!(html.contains("<a href=\"bad%FF.txt\">bad\u{fffd}.txt</a>"));
        assert!(html.contains("<a href=\"caf%C3%A9/\">café/</a>"));
        assert!(html.contains("<a href=\"../\">"));
        assert!(html.contains("<td class=\"n\">1234</td><td>Wed, 01 Jan 2020 00:00:00 GMT</td>"));
        assert!(!to_html("/", &listing).windows(6).any(|w| w == b"../\">."));
        // Nothing the names hold gets out as markup.
        assert!(!html.contains("<b>"));

        let json: serde_json::Value = serde_json::from_slice(&to_json("/a/", &listing)).unwrap();
        assert_eq!(json["path"], "/a/");
        assert_eq!(json["truncated"], false);
        assert_eq!(json["entries"][0]["name"], "<b>&\"x\"'");
        assert_eq!(json["entries"][3]["name"], "bad\u{fffd}.txt");
        assert_eq!(json["entries"][3]["href"], "bad%FF.txt");
        assert_eq!(json["entries"][4]["href"], "caf%C3%A9/");
        assert_eq!(json["entries"][4]["dir"], true);
        assert_eq!(json["entries"][0]["size"], 1234);
        assert_eq!(json["entries"][0]["modified"], 1_577_836_800);
    }

    #[test]
    fn json_only_when_preferred_to_html() {
        assert!(wants_json(Some("application/json")));
        assert!(wants_json(Some("application/json, text/html")));
        assert!(wants_json(Some("text/html;q=0.5, application/json")));
        assert!(!wants_json(None));
        assert!(!wants_json(Some("*/*")));
        assert!(!wants_json(Some(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!wants_json(Some("application/json;q=0.5, text/html")));
        assert!(!wants_json(Some("application/json;q=0")));
        assert!(!wants_json(Some("application/json;q=x")));
    }

    #[test]
    fn reads_sorted_hides_dotfiles_and_escapes_and_caps() {
        use std::os::unix::ffi::OsStrExt;
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub/zdir")).unwrap();
        std::fs::create_dir(d.join("sub/adir")).unwrap();
        for name in ["b.txt", "a.txt", ".hidden", "C.txt"] {
            std::fs::write(d.join("sub").join(name), name).unwrap();
        }
        std::fs::write(
            d.join("sub").join(std::ffi::OsStr::from_bytes(b"x\xfe")),
            "",
        )
        .unwrap();
        std::os::unix::fs::symlink("a.txt", d.join("sub/in-link")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.join("sub/out-link")).unwrap();
        std::os::unix::fs::symlink("nowhere", d.join("sub/dangling")).unwrap();
        std::os::unix::fs::symlink("../..", d.join("sub/up-link")).unwrap();
        nix::unistd::mkfifo(&d.join("sub/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let root = Root::open_dir(d).unwrap();
        let sub = root.open("sub").unwrap();
        let names = |l: &Listing| -> Vec<Vec<u8>> {
            l.entries
                .iter()
                .map(|e| e.name.as_bytes().to_vec())
                .collect()
        };
        let l = read(&root, "sub", &sub, MAX_ENTRIES).unwrap();
        let expected: Vec<&[u8]> = vec![
            b"adir", b"zdir", b"C.txt", b"a.txt", b"b.txt", b"in-link", b"x\xfe",
        ];
        assert_eq!(names(&l), expected);
        assert!(!l.truncated);
        assert_eq!(l.entries[3].size, 5);
        assert!(l.entries[0].dir && !l.entries[2].dir);
        // Capped: no more than asked, and said so.
        let l = read(&root, "sub", &sub, 3).unwrap();
        assert_eq!(l.entries.len(), 3);
        assert!(l.truncated);
        let page = String::from_utf8(to_html("/sub/", &l)).unwrap();
        assert!(page.contains("Only 3 entries are listed"), "{page}");
    }
}
