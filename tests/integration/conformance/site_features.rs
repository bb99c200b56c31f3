//! What a site needs beyond plain files: precompressed variants chosen by Accept-Encoding (raw bytes and curl `--compressed`), header rules (`--header`) and `no-store` on the workloads, validators that never stand for two versions, and directory listings (`--dir-listing`, HTML and JSON, escaping, hiding, capping).

use super::harness::*;
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Writes `ROOT/rel` with the fixture's old mtime (so its validators are settled and strong).
fn put(srv: &ArchServer, rel: &str, content: &[u8]) {
    let path = srv.fixture.root.join(rel);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(&path, content).unwrap();
    set_mtime(&path, UNIX_EPOCH + Duration::from_secs(MTIME_SECS));
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn get(srv: &ArchServer, target: &str, headers: &[&str]) -> Response {
    let mut all = vec!["Connection: close"];
    all.extend_from_slice(headers);
    srv.exchange(&req("GET", target, &all))
}

// ---------------------------------------------------------------------------------------------
// gzip without a compressor: one stored deflate block, so curl can really decode it
// ---------------------------------------------------------------------------------------------

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip member holding `data` uncompressed (at most 65535 bytes).
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let len = data.len() as u16;
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    out.push(1); // BFINAL, stored
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

const APP_JS: &str = "console.log('APP-PLAIN');\n";
/// Not real brotli: the server never decodes, and raw-byte checks only compare bytes.
const APP_BR: &[u8] = b"BR-BYTES-OF-APP";

use super::clients::{curl, have_curl};

// ---------------------------------------------------------------------------------------------
// Precompressed files
// ---------------------------------------------------------------------------------------------

fn with_app(srv: &ArchServer) -> Vec<u8> {
    let gz = gzip_stored(APP_JS.as_bytes());
    put(srv, "app.js", APP_JS.as_bytes());
    put(srv, "app.js.gz", &gz);
    put(srv, "app.js.br", APP_BR);
    gz
}

#[test]
fn precompressed_variants_follow_accept_encoding() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let gz = with_app(&srv);
        let plain = get(&srv, "/app.js", &[]);
        let what = "GET /app.js without Accept-Encoding";
        assert_eq!(plain.status, 200, "{what}: {}", plain.summary());
        assert_eq!(plain.body_text(), APP_JS, "{what}");
        assert_eq!(plain.header("content-encoding"), None, "{what}");
        // Variants exist, so even the identity answer depended on Accept-Encoding.
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"), "{what}");
        let ctype = plain.must("content-type").to_string();
        let plain_tag = plain.must("etag").to_string();

        for (ae, body, coding) in [
            ("gzip", &gz[..], "gzip"),
            ("x-gzip", &gz[..], "gzip"),
            ("gzip, deflate, br", APP_BR, "br"),
            ("br;q=0.5, gzip", &gz[..], "gzip"),
            ("br;q=0, *", &gz[..], "gzip"),
            ("*", APP_BR, "br"),
        ] {
            let r = get(&srv, "/app.js", &[&format!("Accept-Encoding: {ae}")]);
            let what = format!("GET /app.js with Accept-Encoding: {ae}");
            assert_eq!(r.status, 200, "{what}: {}", r.summary());
            check_common(&r, &what);
            assert_eq!(r.body, body, "{what}: {}", r.summary());
            assert_eq!(r.header("content-encoding"), Some(coding), "{what}");
            assert_eq!(r.must("content-length"), body.len().to_string(), "{what}");
            assert_eq!(r.must("content-type"), ctype, "{what}: the original's type");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{what}");
            let tag = r.must("etag");
            assert_ne!(tag, plain_tag, "{what}: one ETag per encoding");
            assert!(
                tag.ends_with(&format!("-{}\"", &coding[..2])),
                "{what}: {tag}"
            );
        }
        for ae in [
            "identity",
            "gzip;q=0.5, identity",
            "deflate",
            "",
            "br;q=0, gzip;q=0",
        ] {
            let r = get(&srv, "/app.js", &[&format!("Accept-Encoding: {ae}")]);
            let what = format!("GET /app.js with Accept-Encoding: {ae:?}");
            assert_eq!(r.body_text(), APP_JS, "{what}: {}", r.summary());
            assert_eq!(r.header("content-encoding"), None, "{what}");
            assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{what}");
        }
        // Identity refused and nothing else acceptable: 406.
        let r = get(&srv, "/app.js", &["Accept-Encoding: zstd, identity;q=0"]);
        assert_eq!(r.status, 406, "identity;q=0: {}", r.summary());
        assert_eq!(r.reason, "Not Acceptable");
        let r = get(&srv, "/a.txt", &["Accept-Encoding: *;q=0"]);
        assert_eq!(
            r.status,
            406,
            "*;q=0 on a file without variants: {}",
            r.summary()
        );
        assert_eq!(r.header("vary"), None, "no variant, nothing varies");
        // A file without variants: identity, and no Vary.
        let r = get(&srv, "/a.txt", &["Accept-Encoding: gzip, br"]);
        assert_eq!(r.body_text(), A_TXT);
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.header("vary"), None, "{}", r.summary());
        // Variants asked for by name are plain files.
        let r = get(&srv, "/app.js.gz", &["Accept-Encoding: gzip"]);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(r.body, gz);
        assert_eq!(r.header("content-encoding"), None, "{}", r.summary());
        assert_eq!(r.header("vary"), None, "{}", r.summary());
    });
}

#[test]
fn ranges_conditionals_and_head_apply_to_the_encoded_bytes() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let gz = with_app(&srv);
        let ae = "Accept-Encoding: gzip";
        let full = get(&srv, "/app.js", &[ae]);
        let tag = full.must("etag").to_string();
        let plain_tag = get(&srv, "/app.js", &[]).must("etag").to_string();

        let r = get(&srv, "/app.js", &[ae, "Range: bytes=2-5"]);
        assert_eq!(r.status, 206, "{}", r.summary());
        assert_eq!(r.body, &gz[2..6]);
        assert_eq!(
            r.must("content-range"),
            format!("bytes 2-5/{}", gz.len()),
            "ranges count encoded bytes"
        );
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        // If-Range with the gzip tag: the range; with the plain file's tag: the whole.
        let r = get(
            &srv,
            "/app.js",
            &[ae, "Range: bytes=0-0", &format!("If-Range: {tag}")],
        );
        assert_eq!((r.status, &r.body[..]), (206, &gz[..1]), "{}", r.summary());
        let stale = format!("If-Range: {plain_tag}");
        let r = get(&srv, "/app.js", &[ae, "Range: bytes=0-0", &stale]);
        assert_eq!((r.status, &r.body[..]), (200, &gz[..]), "{}", r.summary());
        let r = get(&srv, "/app.js", &[ae, "Range: bytes=9999-"]);
        assert_eq!(r.status, 416, "{}", r.summary());
        assert_eq!(r.must("content-range"), format!("bytes */{}", gz.len()));

        // 304 for the tag of the variant the request selects, not for another's.
        let mut c = srv.connect();
        let inm = format!("If-None-Match: {tag}");
        let request = req("GET", "/app.js", &[ae, &inm]);
        c.send(&request);
        let r = c.response_for(&request);
        assert_eq!(r.status, 304, "{}", r.summary());
        assert_eq!(r.header("etag"), Some(tag.as_str()));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        let request = req("GET", "/app.js", &[&inm]);
        c.send(&request);
        let r = c.response_for(&request);
        assert_eq!((r.status, r.body_text()), (200, APP_JS.to_string()));
        // HEAD: the variant's head, no body.
        let request = req("HEAD", "/app.js", &[ae, "Connection: close"]);
        c.send(&request);
        let r = c.response_for(&request);
        assert_eq!(r.status, 200);
        assert!(r.body.is_empty());
        assert_eq!(r.must("content-length"), gz.len().to_string());
        assert_eq!(r.header("content-encoding"), Some("gzip"));

        // A directory's index has variants too.
        let sub_gz = gzip_stored(SUB_INDEX_HTML.as_bytes());
        put(&srv, "sub/index.html.gz", &sub_gz);
        let r = get(&srv, "/sub/", &[ae]);
        assert_eq!(r.body, sub_gz, "{}", r.summary());
        assert_eq!(r.must("content-type"), "text/html; charset=utf-8");
    });
}

#[test]
fn variants_added_changed_and_removed_are_noticed() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        put(&srv, "lib.css", b"a{color:red}\n");
        let gz_path = srv.fixture.root.join("lib.css.gz");
        // One connection: the same worker, so the same open-file cache, every time.
        let mut c = srv.connect();
        let mut ask = |what: &str| {
            let request = req("GET", "/lib.css", &["Accept-Encoding: gzip"]);
            c.send(&request);
            let r = c.response_for(&request);
            assert_eq!(r.status, 200, "{what}: {}", r.summary());
            r
        };
        let r = ask("before any variant");
        assert_eq!(
            (r.body_text().as_str(), r.header("vary")),
            ("a{color:red}\n", None)
        );
        put(&srv, "lib.css.gz", b"GZ-ONE");
        let r = ask("a variant added");
        assert_eq!(r.body, b"GZ-ONE", "{}", r.summary());
        let first_tag = r.must("etag").to_string();
        // Rewritten in place with the same length and mtime: other bytes, another tag.
        put(&srv, "lib.css.gz", b"GZ-TWO");
        let r = ask("a variant rewritten");
        assert_eq!(r.body, b"GZ-TWO", "{}", r.summary());
        assert_ne!(r.must("etag"), first_tag, "same tag for other bytes");
        // Replaced by rename.
        put(&srv, "tmp.gz", b"GZ-THREE");
        fs::rename(srv.fixture.root.join("tmp.gz"), &gz_path).unwrap();
        assert_eq!(ask("a variant replaced").body, b"GZ-THREE");
        fs::remove_file(&gz_path).unwrap();
        let r = ask("the variant removed");
        assert_eq!(r.body_text(), "a{color:red}\n", "{}", r.summary());
        assert_eq!(r.header("content-encoding"), None);
        // A directory in its place is not served.
        fs::create_dir(&gz_path).unwrap();
        assert_eq!(ask("a directory as variant").body_text(), "a{color:red}\n");
    });
}

#[test]
fn curl_decodes_the_gzip_variant() {
    if !have_curl() {
        return;
    }
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let gz = with_app(&srv);
        fs::remove_file(srv.fixture.root.join("app.js.br")).unwrap();
        let url = srv.url("/app.js");
        assert_eq!(curl(&["--compressed", &url]), APP_JS.as_bytes());
        let raw = curl(&["-i", "-H", "Accept-Encoding: gzip", &url]);
        let rs = parse_all(&raw).unwrap_or_else(|e| panic!("curl -i: {e}"));
        assert_eq!(rs[0].body, gz);
        assert_eq!(rs[0].header("content-encoding"), Some("gzip"));
        assert_eq!(
            curl(&[&url]),
            APP_JS.as_bytes(),
            "curl without --compressed"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Header rules
// ---------------------------------------------------------------------------------------------

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[test]
fn header_rules_apply_to_200_206_and_304() {
    for_each_arch(|arch| {
        let rules = [
            "--header",
            "*: Cache-Control: public, max-age=60",
            "--header",
            "*.css: Cache-Control: public, max-age=31536000, immutable",
            "--header",
            "*.html: Cache-Control: no-cache",
            "--header",
            "/sub/**: X-Sub: yes",
        ];
        let srv = ArchServer::start_with(arch, &rules);
        let cc = |r: &Response| r.header("cache-control").map(str::to_string);
        let r = get(&srv, "/style.css", &[]);
        assert_eq!(cc(&r).as_deref(), Some(IMMUTABLE), "{}", r.summary());
        assert_eq!(r.header_count("cache-control"), 1, "the last rule wins");
        let r = get(&srv, "/style.css", &["Range: bytes=0-3"]);
        assert_eq!((r.status, cc(&r).as_deref()), (206, Some(IMMUTABLE)));
        let inm = format!("If-None-Match: {}", srv.fixture.etag("style.css"));
        let r = get(&srv, "/style.css", &[&inm]);
        assert_eq!((r.status, cc(&r).as_deref()), (304, Some(IMMUTABLE)));
        // `/` serves index.html, so *.html applies.
        let r = get(&srv, "/", &[]);
        assert_eq!(cc(&r).as_deref(), Some("no-cache"), "{}", r.summary());
        let r = get(&srv, "/sub/page.txt", &[]);
        assert_eq!(r.header("x-sub"), Some("yes"), "{}", r.summary());
        assert_eq!(cc(&r).as_deref(), Some("public, max-age=60"));
        assert_eq!(get(&srv, "/a.txt", &[]).header("x-sub"), None);
        // Not on errors or redirects.
        for target in ["/missing.css", "/sub"] {
            let r = get(&srv, target, &[]);
            assert_eq!(cc(&r), None, "GET {target}: {}", r.summary());
        }
        // The workloads are never stored, whatever the rules.
        for target in ["/cpu?n=10", "/io?ms=1", "/cpu?n=x"] {
            let r = get(&srv, target, &[]);
            assert_eq!(cc(&r).as_deref(), Some("no-store"), "GET {target}");
            assert_eq!(r.header_count("cache-control"), 1, "GET {target}");
        }
    });
}

#[test]
fn workloads_are_never_stored() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in ["/cpu?n=10", "/io?ms=1", "/io?ms=-1"] {
            let r = get(&srv, target, &[]);
            assert_eq!(r.header("cache-control"), Some("no-store"), "GET {target}");
        }
        assert_eq!(get(&srv, "/a.txt", &[]).header("cache-control"), None);
    });
}

#[test]
fn bad_header_rules_stop_the_start_with_one_error_line() {
    let root = tempfile::tempdir().unwrap();
    for rule in [
        "*.css",
        "*.css: Cache-Control",
        "*.css: Content-Length: 1",
        "/a/[: Cache-Control: x",
        "*.css: Bad Name: x",
    ] {
        let mut cmd = serve_command(["--root".as_ref(), root.path().as_os_str()]);
        cmd.args(["--header", rule]);
        let out = run_command(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--header {rule:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error:") && first.contains("--header"),
            "--header {rule:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "started anyway with {rule:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Validators that do not lie
// ---------------------------------------------------------------------------------------------

#[test]
fn a_file_changed_moments_ago_has_no_validators() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let path = srv.fixture.root.join("fresh.txt");
        fs::write(&path, "version one\n").unwrap();
        // An mtime in the future stands for "under 2 s old" without depending on how long the
        // request takes: either may still change without the timestamp moving.
        set_mtime(&path, SystemTime::now() + Duration::from_secs(3600));
        let r = get(&srv, "/fresh.txt", &[]);
        assert_eq!(r.body_text(), "version one\n");
        assert_eq!(r.header("etag"), None, "{}", r.summary());
        assert_eq!(r.header("last-modified"), None, "{}", r.summary());
        // Whatever date the client holds, the file may still change within its second: 200.
        let now = format!("If-Modified-Since: {}", http_date(now_secs()));
        let r = get(&srv, "/fresh.txt", &[&now]);
        assert_eq!(r.status, 200, "{}", r.summary());
        // Settled (its mtime long past): strong validators again.
        set_mtime(&path, SystemTime::now() - Duration::from_secs(60));
        let r = get(&srv, "/fresh.txt", &[]);
        assert!(r.must("etag").starts_with('"'), "{}", r.summary());
        let lm = format!("If-Modified-Since: {}", r.must("last-modified"));
        assert_eq!(get(&srv, "/fresh.txt", &[&lm]).status, 304);
    });
}

#[test]
fn a_rewrite_that_keeps_size_and_mtime_changes_the_etag() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        // `cp -p` or `rsync -t` in place: same inode, same length, mtime set back.
        let first = get(&srv, "/a.txt", &[]);
        let tag = first.must("etag").to_string();
        let lm = first.must("last-modified").to_string();
        put(&srv, "a.txt", "X".repeat(A_TXT.len()).as_bytes());
        let inm = format!("If-None-Match: {tag}");
        let ims = format!("If-Modified-Since: {lm}");
        let r = get(&srv, "/a.txt", &[&inm, &ims]);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(r.body_text(), "X".repeat(A_TXT.len()));
        assert_ne!(r.must("etag"), tag);
        assert_eq!(
            r.must("last-modified"),
            lm,
            "the date cannot tell them apart"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Directory listings
// ---------------------------------------------------------------------------------------------

#[test]
fn directories_without_an_index_are_404_unless_listings_are_on() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let r = get(&srv, "/nodir/", &[]);
        assert_eq!(r.status, 404, "{}", r.summary());
        assert!(r.body_contains("CUSTOM-404-PAGE"));
    });
}

/// Names that need escaping, in `ROOT/nodir/`, beside `file.txt`.
fn awkward_names(srv: &ArchServer) {
    use std::os::unix::ffi::OsStrExt;
    let d = srv.fixture.root.join("nodir");
    for name in [
        "<script>&x.txt",
        "q\"uote'.txt",
        "100%.txt",
        "javascript:alert(1)",
    ] {
        put(srv, &format!("nodir/{name}"), name.as_bytes());
    }
    fs::write(d.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")), "x").unwrap();
    fs::create_dir(d.join("with space")).unwrap();
    put(srv, "nodir/with space/inner.txt", b"INNER\n");
    put(srv, "nodir/.secret", b"TOP-SECRET dotfile\n");
    std::os::unix::fs::symlink(srv.fixture.outside.path(), d.join("out-dir")).unwrap();
    std::os::unix::fs::symlink("../../secret.txt", d.join("out-file")).unwrap();
    std::os::unix::fs::symlink("file.txt", d.join("in-link")).unwrap();
}

#[test]
fn listings_in_html_escape_names_and_hide_what_is_not_served() {
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--dir-listing"]);
        awkward_names(&srv);
        let r = get(&srv, "/nodir/", &[]);
        let what = "GET /nodir/ with --dir-listing";
        assert_eq!(r.status, 200, "{what}: {}", r.summary());
        check_common(&r, what);
        assert_eq!(r.must("content-type"), "text/html; charset=utf-8");
        assert_eq!(r.header("vary"), Some("Accept"));
        assert_eq!(r.header("etag"), None, "a listing has no validator");
        let page = r.body_text();
        for expected in [
            "<title>Index of /nodir/</title>",
            "<a href=\"../\">../</a>",
            "<a href=\"with%20space/\">with space/</a>",
            "<a href=\"file.txt\">file.txt</a>",
            "<a href=\"in-link\">in-link</a>",
            "<a href=\"%3Cscript%3E%26x.txt\">&lt;script&gt;&amp;x.txt</a>",
            "<a href=\"q%22uote%27.txt\">q&quot;uote&#39;.txt</a>",
            "<a href=\"100%25.txt\">100%.txt</a>",
            "<a href=\"javascript%3Aalert%281%29\">",
            "<a href=\"bad%FF.txt\">bad\u{fffd}.txt</a>",
            "<td class=\"n\">11</td>",
        ] {
            assert!(
                page.contains(expected),
                "{what}: no {expected:?} in\n{page}"
            );
        }
        for hidden in [".secret", "out-dir", "out-file", "<script>"] {
            assert!(!page.contains(hidden), "{what}: {hidden:?} listed:\n{page}");
        }
        assert!(!page.contains(SECRET), "{what}: {page}");
        // Directories first.
        assert!(page.find("with space/").unwrap() < page.find("100%.txt").unwrap());
        // The links lead where they say.
        assert_eq!(get(&srv, "/nodir/100%25.txt", &[]).body_text(), "100%.txt");
        let inner = get(&srv, "/nodir/with%20space/", &[]);
        assert!(
            inner.body_contains("<a href=\"inner.txt\">"),
            "{}",
            inner.summary()
        );
        // An index.html still wins; HEAD has the head only.
        let r = get(&srv, "/sub/", &[]);
        assert_eq!(r.body_text(), SUB_INDEX_HTML);
        let head = srv.exchange(&req("HEAD", "/nodir/", &["Connection: close"]));
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.must("content-length"), page.len().to_string());
        // A directory named without its slash still redirects.
        assert_eq!(get(&srv, "/nodir", &[]).status, 301);
    });
}

#[test]
fn listings_in_json_and_of_the_root() {
    for_each_arch(|arch| {
        let srv =
            ArchServer::start_with(arch, &["--dir-listing", "--header", "/nodir/: X-Dir: yes"]);
        awkward_names(&srv);
        let r = get(&srv, "/nodir/", &["Accept: application/json"]);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(r.must("content-type"), "application/json");
        assert_eq!(r.header("x-dir"), Some("yes"), "rules apply to listings");
        let doc: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("JSON listing: {e}: {}", r.body_text()));
        assert_eq!(doc["path"], "/nodir/");
        assert_eq!(doc["truncated"], false);
        let entries = doc["entries"].as_array().unwrap();
        let names: Vec<&str> = entries
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "with space",
                "100%.txt",
                "<script>&x.txt",
                "bad\u{fffd}.txt",
                "file.txt",
                "in-link",
                "javascript:alert(1)",
                "q\"uote'.txt",
            ]
        );
        assert_eq!(entries[0]["dir"], true);
        assert_eq!(entries[0]["href"], "with%20space/");
        assert_eq!(entries[3]["href"], "bad%FF.txt");
        assert_eq!(entries[4]["size"], 11);
        assert_eq!(entries[4]["modified"], MTIME_SECS);
        // A browser's Accept gets HTML.
        let html = "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let r = get(&srv, "/nodir/", &[html]);
        assert!(r.must("content-type").starts_with("text/html"));
        // The root without its index: no dotfile, no symlink out of the root.
        fs::remove_file(srv.fixture.root.join("index.html")).unwrap();
        let r = get(&srv, "/", &["Accept: application/json"]);
        let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let names: Vec<&str> = doc["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"sub") && names.contains(&"a.txt"),
            "{names:?}"
        );
        for hidden in [".env", ".git", "escape", "escdir", "rel-escape"] {
            assert!(!names.contains(&hidden), "{hidden} listed: {names:?}");
        }
    });
}

#[test]
fn huge_directories_are_listed_up_to_the_cap() {
    let cap = archserve::site::listing::MAX_ENTRIES;
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--dir-listing"]);
        let dir = srv.fixture.root.join("many");
        fs::create_dir(&dir).unwrap();
        for i in 0..cap + 5 {
            fs::File::create(dir.join(format!("f{i:05}"))).unwrap();
        }
        let r = get(&srv, "/many/", &["Accept: application/json"]);
        assert_eq!(r.status, 200, "{}", r.summary());
        let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(doc["entries"].as_array().unwrap().len(), cap);
        assert_eq!(doc["truncated"], true);
        let r = get(&srv, "/many/", &[]);
        assert!(r.body_contains(&format!("Only {cap} entries are listed")));
    });
}

#[test]
fn curl_reads_a_listing() {
    if !have_curl() {
        return;
    }
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--dir-listing"]);
        let page = String::from_utf8(curl(&[&srv.url("/nodir/")])).unwrap();
        assert!(page.contains("<a href=\"file.txt\">file.txt</a>"), "{page}");
        let json = curl(&["-H", "Accept: application/json", &srv.url("/nodir/")]);
        let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(doc["entries"][0]["name"], "file.txt");
    });
}

// ---------------------------------------------------------------------------------------------
// --config FILE
// ---------------------------------------------------------------------------------------------

#[test]
fn a_config_file_sets_flags_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("archserve.toml");
    // The root here would not start: the command line's --root (from the harness) must win.
    fs::write(
        &config,
        "root = \"/nonexistent-archserve-root\"\ndir-listing = true\n\
         header = [\"*.css: Cache-Control: from-config\"]\n",
    )
    .unwrap();
    let path = config.to_str().unwrap();
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--config", path]);
        let r = get(&srv, "/nodir/", &[]);
        assert_eq!(r.status, 200, "listing from the file: {}", r.summary());
        let r = get(&srv, "/style.css", &[]);
        assert_eq!(
            r.header("cache-control"),
            Some("from-config"),
            "{}",
            r.summary()
        );
    });
}

#[test]
fn a_bad_config_file_is_one_error_line_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    for (text, at) in [
        (
            "port = 8080\narch = \"nope\"\n",
            ":2:8: invalid value 'nope'",
        ),
        ("dir-listing = true\nport = [\n", ":2:9: unclosed array"),
        ("porte = 1\n", ":1:9: unknown key `porte`"),
    ] {
        let config = dir.path().join("bad.toml");
        fs::write(&config, text).unwrap();
        let mut cmd = serve_command(["--config"]);
        cmd.arg(&config);
        let out = run_command(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{text:?}: {stderr}");
        let expected = format!("error: config {}{at}", config.display());
        assert!(stderr.starts_with(&expected), "{text:?}: {stderr}");
        assert!(out.stdout.is_empty(), "started anyway with {text:?}");
    }
}
