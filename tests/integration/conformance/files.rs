//! Static files: the 200 head (Date, Server, Content-Type per extension, Content-Length, Last-Modified, ETag, Accept-Ranges), empty and large files, `/` and directory mapping, 301 for `/dir`, 404 page, query/fragment and percent-decoded names.

use super::harness::*;

/// Asserts a 200 for `rel` with exact body and the full file head of the contract.
fn check_file(srv: &ArchServer, target: &str, rel: &str, content_type: &str) {
    let r = srv.get(target);
    let what = format!("GET {target}");
    assert_eq!(r.status, 200, "{what}: {}", r.summary());
    check_common(&r, &what);
    let expected = srv.fixture.read(rel);
    assert!(
        r.body == expected,
        "{what}: body differs from ROOT/{rel} ({} bytes vs {} bytes)",
        r.body.len(),
        expected.len()
    );
    assert_eq!(
        r.must("content-length"),
        expected.len().to_string(),
        "{what}: Content-Length"
    );
    assert_eq!(
        r.must("content-type"),
        content_type,
        "{what}: Content-Type: {}",
        r.summary()
    );
    assert_eq!(
        r.must("last-modified"),
        http_date(MTIME_SECS),
        "{what}: Last-Modified must be the file's mtime"
    );
    assert_eq!(
        r.must("etag").to_ascii_lowercase(),
        srv.fixture.etag(rel),
        "{what}: ETag must be \"<inode>-<mtime ns>-<ctime ns>-<len>\" (hex)"
    );
    assert_eq!(r.must("accept-ranges"), "bytes", "{what}: Accept-Ranges");
}

#[test]
fn get_files_have_the_full_head_and_content_type_per_extension() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        check_file(
            &srv,
            "/index.html",
            "index.html",
            "text/html; charset=utf-8",
        );
        check_file(&srv, "/a.txt", "a.txt", "text/plain; charset=utf-8");
        check_file(&srv, "/style.css", "style.css", "text/css; charset=utf-8");
        check_file(&srv, "/img.png", "img.png", "image/png");
        check_file(
            &srv,
            "/blob.qqqunknown",
            "blob.qqqunknown",
            "application/octet-stream",
        );
        check_file(
            &srv,
            "/sub/page.txt",
            "sub/page.txt",
            "text/plain; charset=utf-8",
        );
    });
}

#[test]
fn keep_alive_response_says_keep_alive() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let mut c = srv.connect();
        let request = req("GET", "/a.txt", &[]);
        c.send(&request);
        let r = c.response_for(&request);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert!(
            r.says_keep_alive(),
            "HTTP/1.1 without Connection: close must answer `Connection: keep-alive`: {}",
            r.summary()
        );
    });
}

#[test]
fn root_maps_to_index_html() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let r = srv.get("/");
        assert_eq!(r.status, 200, "GET /: {}", r.summary());
        check_common(&r, "GET /");
        assert_eq!(r.body_text(), INDEX_HTML, "GET / must serve index.html");
        assert_eq!(r.must("content-type"), "text/html; charset=utf-8");
        assert_eq!(
            r.must("etag").to_ascii_lowercase(),
            srv.fixture.etag("index.html")
        );
    });
}

#[test]
fn empty_file_is_200_with_zero_length() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let r = srv.get("/empty.txt");
        assert_eq!(r.status, 200, "GET /empty.txt: {}", r.summary());
        check_common(&r, "GET /empty.txt");
        assert_eq!(r.must("content-length"), "0");
        assert!(r.body.is_empty());
        assert_eq!(
            r.must("etag").to_ascii_lowercase(),
            srv.fixture.etag("empty.txt")
        );
    });
}

#[test]
fn big_file_is_streamed_byte_exact() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let mut c = srv.connect();
        // Twice on one connection: the second answer proves the first ended exactly.
        c.send(&req("GET", "/big.bin", &[]));
        c.send(&req("GET", "/a.txt", &["Connection: close"]));
        let r = c.response();
        assert_eq!(r.status, 200, "GET /big.bin: {}", r.summary());
        assert_eq!(r.must("content-length"), BIG_LEN.to_string());
        assert_eq!(r.body.len(), BIG_LEN);
        assert!(
            r.body == big_bin(),
            "GET /big.bin: bytes differ from the file"
        );
        let r2 = c.response();
        assert_eq!(r2.status, 200, "GET /a.txt after big.bin: {}", r2.summary());
        assert_eq!(r2.body_text(), A_TXT);
        c.assert_closed("after Connection: close");
    });
}

#[test]
fn directory_without_slash_redirects() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for (target, location) in [("/sub", "/sub/"), ("/nodir", "/nodir/")] {
            let r = srv.get(target);
            let what = format!("GET {target}");
            assert_eq!(r.status, 301, "{what}: {}", r.summary());
            check_common(&r, &what);
            assert_eq!(
                r.header("location"),
                Some(location),
                "{what}: {}",
                r.summary()
            );
        }
    });
}

#[test]
fn directory_with_slash_serves_its_index_or_404() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let r = srv.get("/sub/");
        assert_eq!(r.status, 200, "GET /sub/: {}", r.summary());
        assert_eq!(r.body_text(), SUB_INDEX_HTML);
        assert_eq!(r.must("content-type"), "text/html; charset=utf-8");
        let r = srv.get("/nodir/");
        assert_eq!(
            r.status,
            404,
            "GET /nodir/ (no index.html): {}",
            r.summary()
        );
        check_common(&r, "GET /nodir/");
        let r = srv.get("/nodir/file.txt");
        assert_eq!(r.status, 200, "GET /nodir/file.txt: {}", r.summary());
        assert_eq!(r.body_text(), "NODIR-FILE\n");
    });
}

#[test]
fn missing_file_gets_404_html_as_body() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in [
            "/nope.txt",
            "/sub/nope.html",
            "/nope/deeper/x.css",
            "/a.txt/x",
        ] {
            let r = srv.get(target);
            let what = format!("GET {target}");
            assert_eq!(r.status, 404, "{what}: {}", r.summary());
            check_common(&r, &what);
            assert_eq!(
                r.body_text(),
                NOT_FOUND_HTML,
                "{what}: 404 body must be ROOT/404.html"
            );
            assert_eq!(
                r.must("content-type"),
                "text/html; charset=utf-8",
                "{what}: 404 page type"
            );
        }
    });
}

#[test]
fn missing_file_without_404_html_is_still_404() {
    for_each_arch(|arch| {
        let srv = ArchServer::start_full(arch, &[], false);
        let r = srv.get("/nope.txt");
        assert_eq!(r.status, 404, "GET /nope.txt: {}", r.summary());
        check_common(&r, "GET /nope.txt without 404.html");
        assert_eq!(
            r.must("content-length"),
            r.body.len().to_string(),
            "Content-Length matches the body"
        );
        // And the keep-alive connection still works after it.
        let mut c = srv.connect();
        c.send(&req("GET", "/nope.txt", &[]));
        c.send(&req("GET", "/a.txt", &[]));
        assert_eq!(c.response().status, 404);
        let r = c.response();
        assert_eq!(r.status, 200, "request after a 404: {}", r.summary());
        assert_eq!(r.body_text(), A_TXT);
    });
}

#[test]
fn query_and_fragment_are_ignored() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for (target, body) in [
            ("/index.html?x=1", INDEX_HTML),
            ("/?x=1&y=2", INDEX_HTML),
            ("/a.txt?", A_TXT),
            ("/a.txt?download=../../secret.txt", A_TXT),
            ("/a.txt#frag", A_TXT),
            ("/a.txt?q=1#frag", A_TXT),
            ("/sub/?x=1", SUB_INDEX_HTML),
        ] {
            let r = srv.get(target);
            assert_eq!(r.status, 200, "GET {target}: {}", r.summary());
            assert_eq!(r.body_text(), body, "GET {target}");
        }
    });
}

#[test]
fn percent_encoded_names_are_decoded_once() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for (target, status, body) in [
            ("/with%20space.txt", 200, "SPACE-FILE\n"),
            ("/caf%C3%A9.txt", 200, "UTF8-FILE\n"),
            ("/caf%c3%a9.txt", 200, "UTF8-FILE\n"),
            ("/a%2etxt", 200, A_TXT),
            ("/%61.txt", 200, A_TXT),
            ("/sub/page%2Etxt", 200, "SUB-PAGE\n"),
            // Decoded once: `%252e` becomes the literal `%2e`, which names no file.
            ("/a%252etxt", 404, ""),
        ] {
            let r = srv.get(target);
            assert_eq!(r.status, status, "GET {target}: {}", r.summary());
            if status == 200 {
                assert_eq!(r.body_text(), body, "GET {target}");
            }
        }
    });
}

#[test]
fn server_header_names_archserve_and_its_version() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in ["/a.txt", "/nope", "/cpu?n=10"] {
            let r = srv.get(target);
            assert_eq!(
                r.header("server"),
                Some(concat!("archserve/", env!("CARGO_PKG_VERSION"))),
                "GET {target}: `Server: archserve/VERSION`, as nginx's `nginx/1.x`: {}",
                r.summary()
            );
        }
    });
}
