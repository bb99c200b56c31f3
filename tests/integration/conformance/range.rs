//! Range requests: single ranges (`a-b`, `a-`, `-n`, clamped ends) → 206 + Content-Range, multiple ranges → multipart/byteranges, unsatisfiable → 416 `bytes */len`, malformed → 200 full, If-Range.

use super::harness::*;

/// `GET target` with `Range: value` (and extra headers) on a fresh connection.
fn get_range(srv: &ArchServer, target: &str, value: &str, extra: &[&str]) -> Response {
    let mut headers = vec![format!("Range: {value}")];
    headers.extend(extra.iter().map(|s| s.to_string()));
    headers.push("Connection: close".into());
    let hs: Vec<&str> = headers.iter().map(|s| s.as_str()).collect();
    srv.exchange(&req("GET", target, &hs))
}

/// Checks a 206 for `data.bin` bytes `a..=b`.
fn expect_206(srv: &ArchServer, value: &str, a: usize, b: usize) {
    let data = data_bin();
    let r = get_range(srv, "/data.bin", value, &[]);
    let what = format!("Range: {value}");
    assert_eq!(r.status, 206, "{what}: {}", r.summary());
    check_common(&r, &what);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {a}-{b}/{DATA_LEN}").as_str()),
        "{what}: {}",
        r.summary()
    );
    assert_eq!(r.must("content-length"), (b - a + 1).to_string(), "{what}");
    assert!(
        r.body == data[a..=b],
        "{what}: body is not bytes {a}-{b} of the file"
    );
    assert_eq!(r.must("content-type"), "application/octet-stream", "{what}");
}

#[test]
fn single_ranges_are_206_with_exact_bytes() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let last = DATA_LEN - 1;
        expect_206(&srv, "bytes=0-99", 0, 99);
        expect_206(&srv, "bytes=0-0", 0, 0);
        expect_206(&srv, "bytes=1000-1999", 1000, 1999);
        expect_206(&srv, "bytes=100-", 100, last);
        expect_206(&srv, "bytes=-500", DATA_LEN - 500, last);
        expect_206(&srv, "bytes=-1", last, last);
        expect_206(&srv, &format!("bytes={last}-"), last, last);
        // End past the file is clamped; a suffix longer than the file is the whole file.
        expect_206(&srv, "bytes=102000-999999", 102000, last);
        expect_206(&srv, "bytes=-999999", 0, last);
        expect_206(&srv, "bytes=0-", 0, last);
    });
}

#[test]
fn range_on_a_large_file_streams_the_right_slice() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let big = big_bin();
        let (a, b) = (1_000_003usize, 2_500_000usize);
        let r = get_range(&srv, "/big.bin", &format!("bytes={a}-{b}"), &[]);
        assert_eq!(r.status, 206, "{}", r.summary());
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {a}-{b}/{BIG_LEN}").as_str())
        );
        assert!(r.body == big[a..=b], "big.bin range bytes differ");
    });
}

#[test]
fn unsatisfiable_range_is_416() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for (target, value, len) in [
            ("/data.bin", format!("bytes={DATA_LEN}-"), DATA_LEN),
            ("/data.bin", "bytes=200000-200010".to_string(), DATA_LEN),
            (
                "/data.bin",
                format!("bytes={DATA_LEN}-{}", DATA_LEN + 5),
                DATA_LEN,
            ),
            ("/empty.txt", "bytes=0-0".to_string(), 0),
            ("/a.txt", "bytes=1000-".to_string(), A_TXT.len()),
        ] {
            let r = get_range(&srv, target, &value, &[]);
            let what = format!("GET {target} Range: {value}");
            assert_eq!(r.status, 416, "{what}: {}", r.summary());
            check_common(&r, &what);
            assert_eq!(
                r.header("content-range"),
                Some(format!("bytes */{len}").as_str()),
                "{what}: {}",
                r.summary()
            );
        }
    });
}

#[test]
fn malformed_range_is_ignored() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let data = data_bin();
        for value in [
            "bytes=x-y",
            "items=0-1",
            "bytes=",
            "bytes",
            "bytes=--1",
            "bytes=1-2-3",
        ] {
            let r = get_range(&srv, "/data.bin", value, &[]);
            let what = format!("Range: {value}");
            assert_eq!(r.status, 200, "{what}: {}", r.summary());
            assert!(
                r.header("content-range").is_none(),
                "{what}: {}",
                r.summary()
            );
            assert!(r.body == data, "{what}: full body expected");
        }
    });
}

/// One part of a multipart/byteranges body.
struct Part {
    content_type: String,
    content_range: String,
    data: Vec<u8>,
}

/// Parses `multipart/byteranges` using each part's Content-Range for its length.
fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let mut pos = body
        .windows(delim.len())
        .position(|w| w == delim.as_bytes())
        .ok_or("no first boundary")?;
    let mut parts = Vec::new();
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(format!("boundary not followed by CRLF at {pos}"));
        }
        pos += 2;
        let head_end = body[pos..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or("part head not terminated")?;
        let head = std::str::from_utf8(&body[pos..pos + head_end]).map_err(|e| e.to_string())?;
        let mut ct = String::new();
        let mut cr = String::new();
        for line in head.split("\r\n") {
            let (n, v) = line
                .split_once(':')
                .ok_or(format!("bad part header {line:?}"))?;
            if n.eq_ignore_ascii_case("content-type") {
                ct = v.trim().to_string();
            } else if n.eq_ignore_ascii_case("content-range") {
                cr = v.trim().to_string();
            }
        }
        pos += head_end + 4;
        let (a, b) = cr
            .strip_prefix("bytes ")
            .and_then(|s| s.split_once('/'))
            .and_then(|(r, _)| r.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .ok_or(format!("bad part Content-Range {cr:?}"))?;
        let len = b + 1 - a;
        if body.len() < pos + len + 2 {
            return Err("part data truncated".into());
        }
        let data = body[pos..pos + len].to_vec();
        pos += len;
        if !body[pos..].starts_with(b"\r\n") {
            return Err("part data not followed by CRLF".into());
        }
        pos += 2;
        if !body[pos..].starts_with(delim.as_bytes()) {
            return Err("part not followed by the boundary".into());
        }
        parts.push(Part {
            content_type: ct,
            content_range: cr,
            data,
        });
    }
}

#[test]
fn multiple_ranges_are_multipart_byteranges() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let data = data_bin();
        for (value, ranges) in [
            ("bytes=0-9,100-109", vec![(0usize, 9usize), (100, 109)]),
            (
                "bytes=0-0, 50000-50010, -5",
                vec![(0, 0), (50000, 50010), (DATA_LEN - 5, DATA_LEN - 1)],
            ),
        ] {
            let r = get_range(&srv, "/data.bin", value, &[]);
            let what = format!("Range: {value}");
            assert_eq!(r.status, 206, "{what}: {}", r.summary());
            check_common(&r, &what);
            let ct = r.must("content-type");
            let boundary = ct
                .strip_prefix("multipart/byteranges; boundary=")
                .unwrap_or_else(|| panic!("{what}: Content-Type {ct:?}"))
                .trim_matches('"')
                .to_string();
            assert!(!boundary.is_empty(), "{what}: empty boundary");
            let parts = parse_multipart(&r.body, &boundary)
                .unwrap_or_else(|e| panic!("{what}: bad multipart body: {e}"));
            assert_eq!(parts.len(), ranges.len(), "{what}: number of parts");
            for (p, (a, b)) in parts.iter().zip(ranges) {
                assert_eq!(
                    p.content_type, "application/octet-stream",
                    "{what}: part type"
                );
                assert_eq!(
                    p.content_range,
                    format!("bytes {a}-{b}/{DATA_LEN}"),
                    "{what}"
                );
                assert!(p.data == data[a..=b], "{what}: part {a}-{b} bytes differ");
            }
        }
    });
}

#[test]
fn if_range_matching_gives_206_otherwise_200() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let etag = srv.fixture.etag("data.bin");
        let r = get_range(
            &srv,
            "/data.bin",
            "bytes=0-9",
            &[&format!("If-Range: {etag}")],
        );
        assert_eq!(
            r.status,
            206,
            "If-Range with the current ETag: {}",
            r.summary()
        );
        assert!(r.body == data_bin()[..10]);
        let r = get_range(&srv, "/data.bin", "bytes=0-9", &["If-Range: \"stale-1\""]);
        assert_eq!(r.status, 200, "If-Range with a stale ETag: {}", r.summary());
        assert_eq!(
            r.body.len(),
            DATA_LEN,
            "If-Range mismatch must send the full file"
        );
    });
}

#[test]
fn partial_responses_keep_the_connection_in_sync() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let mut all = req("GET", "/data.bin", &["Range: bytes=10-19"]);
        all.extend(req("GET", "/data.bin", &["Range: bytes=0-1,5-6"]));
        all.extend(req("GET", "/data.bin", &["Range: bytes=999999-"]));
        all.extend(req("HEAD", "/data.bin", &["Range: bytes=0-9"]));
        all.extend(req("GET", "/a.txt", &["Connection: close"]));
        let mut c = srv.connect();
        c.send(&all);
        assert_eq!(c.response().status, 206);
        assert_eq!(c.response().status, 206);
        assert_eq!(c.response().status, 416);
        let h = c.head_response();
        assert!(
            h.status == 206 || h.status == 200,
            "HEAD with Range: {}",
            h.summary()
        );
        let r = c.response();
        assert_eq!(
            r.body_text(),
            A_TXT,
            "answer after the range answers: {}",
            r.summary()
        );
        c.assert_closed("after Connection: close");
    });
}

/// A small file asked for again is answered from the open-file cache (its bytes kept in memory
/// while unchanged): whole, as single ranges and as multipart, the bytes are the file's.
#[test]
fn repeated_ranges_of_a_small_cached_file_are_exact() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let a = super::fixture::A_TXT.as_bytes();
        let mut c = srv.connect();
        for round in 0..3 {
            c.send(&req("GET", "/a.txt", &[]));
            let r = c.response();
            assert_eq!(r.status, 200);
            assert_eq!(r.body, a, "round {round}: whole file");
            for (first, last) in [(0, 0), (6, 9), (a.len() - 5, a.len() - 1)] {
                let range = format!("Range: bytes={first}-{last}");
                c.send(&req("GET", "/a.txt", &[&range]));
                let r = c.response();
                assert_eq!(r.status, 206, "round {round}, {range}");
                assert_eq!(r.body, &a[first..=last], "round {round}, {range}");
            }
            c.send(&req("GET", "/a.txt", &["Range: bytes=0-1,4-5"]));
            let r = c.response();
            assert_eq!(r.status, 206);
            assert!(r.must("content-type").starts_with("multipart/byteranges"));
            assert!(r.body_contains("He") && r.body_contains("o "));
        }
    });
}
