//! Limits and timeouts: request line (414), head size and field count (431) at the defaults and with `--max-line/--max-head/--max-headers`, the header-read timeout (408), the idle timeout, `--max-requests`.

use super::harness::*;
use std::time::Duration;

/// `GET /<n x 'a'> HTTP/1.1`: a request line of about `n` + 15 bytes.
fn long_target(n: usize) -> String {
    format!("/{}", "a".repeat(n))
}

/// A request with `count` fields in total (Host included), each `X-Fill-i: <pad>`.
fn with_fields(count: usize, pad: usize) -> Vec<u8> {
    let mut s = String::from("GET /a.txt HTTP/1.1\r\nHost: localhost\r\n");
    for i in 1..count {
        s.push_str(&format!("X-Fill-{i}: {}\r\n", "v".repeat(pad)));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

#[test]
fn request_line_over_default_limit_is_414() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let request = req("GET", &long_target(9000), &[]);
        expect_error_and_close(&srv, &request, 414);
        // Well under 8 KiB: an ordinary 404.
        let r = srv.exchange(&req("GET", &long_target(8000), &["Connection: close"]));
        assert_eq!(
            r.status,
            404,
            "8 KB request line (under the 8 KiB limit): {}",
            r.summary()
        );
    });
}

#[test]
fn request_line_limit_is_configurable() {
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--max-line", "100"]);
        expect_error_and_close(&srv, &req("GET", &long_target(200), &[]), 414);
        let r = srv.exchange(&req("GET", &long_target(40), &["Connection: close"]));
        assert_eq!(
            r.status,
            404,
            "--max-line 100, 60-byte line: {}",
            r.summary()
        );
    });
}

#[test]
fn head_over_default_size_is_431() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        // 40 fields of ~1 KB: about 40 KB > 32 KiB, with the field count under 100.
        expect_error_and_close(&srv, &with_fields(40, 1000), 431);
        // 20 fields of ~1 KB: about 20 KB, accepted.
        let r = srv.exchange(&with_fields(20, 1000));
        assert_eq!(r.status, 200, "20 KB head (under 32 KiB): {}", r.summary());
        assert_eq!(r.body_text(), A_TXT);
    });
}

#[test]
fn field_count_over_default_limit_is_431() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        expect_error_and_close(&srv, &with_fields(101, 4), 431);
        let r = srv.exchange(&with_fields(100, 4));
        assert_eq!(
            r.status,
            200,
            "exactly 100 header fields (the limit): {}",
            r.summary()
        );
    });
}

#[test]
fn head_limits_are_configurable() {
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(
            arch,
            &[
                "--max-line",
                "512",
                "--max-head",
                "1024",
                "--max-headers",
                "5",
            ],
        );
        expect_error_and_close(&srv, &with_fields(3, 600), 431);
        expect_error_and_close(&srv, &with_fields(6, 2), 431);
        let r = srv.exchange(&with_fields(5, 2));
        assert_eq!(
            r.status,
            200,
            "5 fields with --max-headers 5: {}",
            r.summary()
        );
        let r = srv.exchange(&with_fields(2, 300));
        assert_eq!(
            r.status,
            200,
            "~400-byte head with --max-head 1024: {}",
            r.summary()
        );
    });
}

#[test]
fn partial_head_times_out_with_408() {
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--header-timeout", "1"]);
        for partial in ["GET /a.txt HTTP/1.1\r\nHost: localhost\r\n", "GET /a.tx"] {
            let mut c = srv.connect();
            c.send(partial.as_bytes());
            let r = c.response();
            let what = format!("partial head {} left hanging", show(partial.as_bytes()));
            assert_eq!(r.status, 408, "{what}: {}", r.summary());
            check_common(&r, &what);
            assert!(r.says_close(), "{what}: 408 must say Connection: close");
            c.assert_closed(&what);
        }
        // A slow-but-complete request inside the timeout is served normally.
        let mut c = srv.connect();
        c.send(b"GET /a.txt HTTP/1.1\r\n");
        std::thread::sleep(Duration::from_millis(100));
        c.send(b"Host: localhost\r\n\r\n");
        let r = c.response();
        assert_eq!(
            r.status,
            200,
            "request completed in two writes: {}",
            r.summary()
        );
    });
}

#[test]
fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--idle-timeout", "1"]);
        let mut c = srv.connect();
        let request = req("GET", "/a.txt", &[]);
        c.send(&request);
        let r = c.response_for(&request);
        assert_eq!(r.status, 200, "{}", r.summary());
        // Nothing more is sent: the server closes (within the 5 s read timeout).
        let rest = c
            .read_to_close()
            .unwrap_or_else(|e| panic!("--idle-timeout 1: idle connection not closed: {e}"));
        if !rest.is_empty() {
            let rs = parse_all(&rest).unwrap_or_else(|e| panic!("idle close sent garbage: {e}"));
            for r in rs {
                assert!(
                    r.status == 408,
                    "idle close may send at most a 408, got {}",
                    r.summary()
                );
            }
        }
    });
}

#[test]
fn max_requests_per_connection_closes_after_the_last() {
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--max-requests", "2"]);
        let mut c = srv.connect();
        let mut both = req("GET", "/a.txt", &[]);
        both.extend(req("GET", "/style.css", &[]));
        both.extend(req("GET", "/index.html", &[]));
        c.send(&both);
        let r1 = c.response();
        assert_eq!(r1.status, 200, "{}", r1.summary());
        assert!(r1.says_keep_alive(), "request 1 of 2: {}", r1.summary());
        let r2 = c.response();
        assert_eq!(r2.body_text(), STYLE_CSS);
        assert!(
            r2.says_close(),
            "request 2 of --max-requests 2 must say Connection: close: {}",
            r2.summary()
        );
        c.assert_closed("after --max-requests 2 requests");
    });
}

#[test]
fn header_timeout_bounds_the_whole_head_not_each_read() {
    // Slowloris: a header line every 250 ms keeps each read short, but the head as a whole must
    // still time out (`--header-timeout`: "seconds a request head may take to arrive").
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--header-timeout", "1"]);
        let mut c = srv.connect();
        c.send(b"GET /a.txt HTTP/1.1\r\nHost: localhost\r\n");
        let mut answered = false;
        for i in 0..32 {
            // Up to 8 s of dribbling against a 1 s limit.
            if !c.is_open_and_quiet(Duration::from_millis(250)) {
                answered = true;
                break;
            }
            c.send(format!("X-Drip-{i}: x\r\n").as_bytes());
        }
        assert!(
            answered,
            "a head dribbled for 8 s was never timed out (--header-timeout 1)"
        );
        let r = c.response();
        assert_eq!(r.status, 408, "slow head: {}", r.summary());
        c.assert_closed("after the 408");
    });
}
