//! Conditional GET/HEAD: If-None-Match (exact, lists, weak comparison, `*`) and If-Modified-Since → 304 without a body and with the ETag; If-None-Match takes precedence; 304 keeps the connection in sync.

use super::harness::*;

/// Sends `GET /a.txt` with `headers` (then a pipelined GET, to prove a 304 carried no body) and
/// checks the status.
fn expect_status(srv: &ArchServer, headers: &[&str], status: u16) {
    let etag = srv.fixture.etag("a.txt");
    let mut c = srv.connect();
    let request = req("GET", "/a.txt", headers);
    c.send(&request);
    c.send(&req("GET", "/style.css", &["Connection: close"]));
    let r = c.response_for(&request);
    let what = format!("GET /a.txt with {headers:?}");
    assert_eq!(r.status, status, "{what}: {}", r.summary());
    check_common(&r, &what);
    if status == 304 {
        assert_eq!(
            r.header("etag").map(|e| e.to_ascii_lowercase()),
            Some(etag),
            "{what}: 304 must carry the ETag: {}",
            r.summary()
        );
    } else {
        assert_eq!(r.body_text(), A_TXT, "{what}: full body");
    }
    let next = c.response();
    assert_eq!(
        next.body_text(),
        STYLE_CSS,
        "{what}: the pipelined request after it was not answered cleanly: {}",
        next.summary()
    );
    c.assert_closed("after Connection: close");
}

#[test]
fn if_none_match_matching_is_304() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let etag = srv.fixture.etag("a.txt");
        let weak = format!("W/{etag}");
        let list = format!("\"nope\", {etag}, \"other\"");
        let list_tight = format!("\"nope\",{etag}");
        for value in [
            etag.as_str(),
            weak.as_str(),
            list.as_str(),
            list_tight.as_str(),
            "*",
        ] {
            expect_status(&srv, &[&format!("If-None-Match: {value}")], 304);
        }
    });
}

#[test]
fn if_none_match_not_matching_is_200() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let other = srv.fixture.etag("style.css");
        for value in [
            "\"nope\"",
            "W/\"nope\"",
            "\"nope\", \"other\"",
            other.as_str(),
        ] {
            expect_status(&srv, &[&format!("If-None-Match: {value}")], 200);
        }
    });
}

#[test]
fn if_modified_since_not_before_mtime_is_304() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let exact = http_date(MTIME_SECS);
        let later = http_date(MTIME_SECS + 86_400 * 365); // 2021, after the mtime, before now
        let future = http_date(now_secs() + 86_400);
        for value in [&exact, &later, &future] {
            expect_status(&srv, &[&format!("If-Modified-Since: {value}")], 304);
        }
    });
}

#[test]
fn if_modified_since_before_mtime_or_invalid_is_200() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let earlier = http_date(MTIME_SECS - 1);
        let old = http_date(784_111_777);
        for value in [earlier.as_str(), old.as_str(), "not a date", "yesterday"] {
            expect_status(&srv, &[&format!("If-Modified-Since: {value}")], 200);
        }
    });
}

#[test]
fn if_none_match_takes_precedence_over_if_modified_since() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let etag = srv.fixture.etag("a.txt");
        let future = http_date(now_secs() + 86_400);
        let old = http_date(784_111_777);
        // Non-matching INM + IMS that alone would give 304: INM decides, 200.
        expect_status(
            &srv,
            &[
                "If-None-Match: \"nope\"",
                &format!("If-Modified-Since: {future}"),
            ],
            200,
        );
        // Matching INM + IMS that alone would give 200: INM decides, 304.
        expect_status(
            &srv,
            &[
                &format!("If-None-Match: {etag}"),
                &format!("If-Modified-Since: {old}"),
            ],
            304,
        );
    });
}

#[test]
fn conditional_head_is_304() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let etag = srv.fixture.etag("a.txt");
        let mut c = srv.connect();
        let request = req("HEAD", "/a.txt", &[&format!("If-None-Match: {etag}")]);
        c.send(&request);
        let r = c.response_for(&request);
        assert_eq!(r.status, 304, "HEAD with matching INM: {}", r.summary());
        check_common(&r, "conditional HEAD");
    });
}

#[test]
fn etag_from_a_get_revalidates() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in ["/", "/index.html", "/data.bin", "/empty.txt", "/sub/"] {
            let first = srv.get(target);
            assert_eq!(first.status, 200, "GET {target}: {}", first.summary());
            let etag = first.must("etag").to_string();
            let lm = first.must("last-modified").to_string();
            let r = srv.exchange(&req(
                "GET",
                target,
                &[&format!("If-None-Match: {etag}"), "Connection: close"],
            ));
            assert_eq!(
                r.status,
                304,
                "GET {target} with its own ETag: {}",
                r.summary()
            );
            assert!(r.body.is_empty());
            let r = srv.exchange(&req(
                "GET",
                target,
                &[&format!("If-Modified-Since: {lm}"), "Connection: close"],
            ));
            assert_eq!(
                r.status,
                304,
                "GET {target} with its own Last-Modified: {}",
                r.summary()
            );
        }
    });
}

#[test]
fn if_modified_since_accepts_the_obsolete_date_formats() {
    // RFC 9110 §5.6.7: recipients MUST accept IMF-fixdate, RFC 850 and asctime dates.
    // 2021-01-01 (a Friday) is after the fixture mtime (2020-01-01) and before now.
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for value in ["Friday, 01-Jan-21 00:00:00 GMT", "Fri Jan  1 00:00:00 2021"] {
            expect_status(&srv, &[&format!("If-Modified-Since: {value}")], 304);
        }
        for value in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            expect_status(&srv, &[&format!("If-Modified-Since: {value}")], 200);
        }
    });
}

#[test]
fn conditional_is_evaluated_before_range() {
    // RFC 9110 §13.2.2: If-None-Match is evaluated before Range, so a match is a 304.
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let etag = srv.fixture.etag("a.txt");
        expect_status(
            &srv,
            &[&format!("If-None-Match: {etag}"), "Range: bytes=0-3"],
            304,
        );
    });
}
