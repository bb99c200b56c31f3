//! Methods: HEAD (same head as GET, no body), OPTIONS (`*` and paths, 204 + Allow), 405 + Allow for the other standard methods (body discarded, connection kept), 501 for unknown tokens.

use super::harness::*;

const ALLOW: &str = "GET, HEAD, OPTIONS";

/// The head fields HEAD and GET must agree on (Date may tick between the two).
const SAME_HEAD: [&str; 7] = [
    "content-type",
    "content-length",
    "last-modified",
    "etag",
    "accept-ranges",
    "server",
    "connection",
];

#[test]
fn head_has_the_get_head_and_no_body() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in ["/a.txt", "/", "/big.bin", "/empty.txt", "/nope.txt", "/sub"] {
            let mut c = srv.connect();
            // HEAD, then GET on the same connection: if HEAD sent body bytes, the GET's answer
            // would not parse (or would start with them).
            c.send(&req("HEAD", target, &[]));
            c.send(&req("GET", target, &[]));
            let h = c.head_response();
            let g = c.response();
            let what = format!("HEAD {target}");
            check_common(&h, &what);
            assert_eq!(
                h.status,
                g.status,
                "{what} vs GET: {} / {}",
                h.summary(),
                g.summary()
            );
            for name in SAME_HEAD {
                assert_eq!(
                    h.header(name),
                    g.header(name),
                    "{what}: header {name} differs from GET's"
                );
            }
            assert_eq!(
                g.must("content-length"),
                g.body.len().to_string(),
                "GET {target} after HEAD: body length"
            );
        }
    });
}

#[test]
fn head_sends_no_body_bytes() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let mut c = srv.connect();
        let request = req("HEAD", "/a.txt", &["Connection: close"]);
        c.send(&request);
        let h = c.head_response();
        assert_eq!(h.status, 200, "{}", h.summary());
        assert_eq!(h.must("content-length"), A_TXT.len().to_string());
        let rest = c
            .read_to_close()
            .unwrap_or_else(|e| panic!("HEAD with Connection: close: {e}"));
        assert!(
            rest.is_empty(),
            "HEAD response carried body bytes: {}",
            show(&rest)
        );
    });
}

#[test]
fn options_answers_204_with_allow() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for target in ["*", "/", "/a.txt", "/nope.txt"] {
            let mut c = srv.connect();
            let request = req("OPTIONS", target, &[]);
            c.send(&request);
            c.send(&req("GET", "/a.txt", &[]));
            let r = c.response_for(&request);
            let what = format!("OPTIONS {target}");
            assert_eq!(r.status, 204, "{what}: {}", r.summary());
            check_common(&r, &what);
            assert_eq!(r.header("allow"), Some(ALLOW), "{what}: {}", r.summary());
            let g = c.response();
            assert_eq!(g.status, 200, "GET after {what}: {}", g.summary());
            assert_eq!(g.body_text(), A_TXT);
        }
    });
}

#[test]
fn other_standard_methods_get_405_with_allow_and_keep_the_connection() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for method in ["POST", "PUT", "DELETE", "PATCH", "CONNECT", "TRACE"] {
            let mut c = srv.connect();
            let request = req(method, "/a.txt", &[]);
            c.send(&request);
            c.send(&req("GET", "/style.css", &[]));
            let r = c.response_for(&request);
            let what = format!("{method} /a.txt");
            assert_eq!(r.status, 405, "{what}: {}", r.summary());
            check_common(&r, &what);
            assert_eq!(r.header("allow"), Some(ALLOW), "{what}: {}", r.summary());
            assert!(
                r.says_keep_alive(),
                "{what}: 405 keeps the connection: {}",
                r.summary()
            );
            let g = c.response();
            assert_eq!(g.status, 200, "GET after {what}: {}", g.summary());
            assert_eq!(g.body_text(), STYLE_CSS);
        }
    });
}

#[test]
fn post_body_is_discarded_before_the_next_request() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        // The body looks like a request: if the server parsed it as one, a third answer (for
        // /empty.txt) would come before the style.css one.
        let smuggled = "GET /empty.txt HTTP/1.1\r\nHost: x\r\n\r\n";
        for method in ["POST", "PUT", "PATCH"] {
            let mut c = srv.connect();
            let first = format!(
                "{method} /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            );
            c.send(first.as_bytes());
            c.send(&req("GET", "/style.css", &["Connection: close"]));
            let r = c.response();
            assert_eq!(r.status, 405, "{}: {}", show(first.as_bytes()), r.summary());
            let g = c.response();
            assert_eq!(
                g.status,
                200,
                "{method} with body then GET /style.css: {}",
                g.summary()
            );
            assert_eq!(
                g.body_text(),
                STYLE_CSS,
                "{method} body was not discarded: the next answer is not /style.css"
            );
            c.assert_closed("after Connection: close");
        }
    });
}

#[test]
fn connect_in_authority_form_is_405() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let request = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        let r = srv.exchange(request);
        assert_eq!(r.status, 405, "{}: {}", show(request), r.summary());
        assert_eq!(r.header("allow"), Some(ALLOW));
    });
}

#[test]
fn a_large_post_body_is_discarded_and_the_connection_kept() {
    // A raw socket written by hand (plaintext): plain mode only (see `super::tls`).
    if super::tls::tls_mode() {
        return;
    }
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let body = vec![b'x'; 1024 * 1024];
        let mut request = format!(
            "POST /a.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        request.extend(req("GET", "/a.txt", &["Connection: close"]));
        let mut c = srv.connect();
        let mut writer = c.stream.try_clone().expect("clone stream");
        let sender = std::thread::spawn(move || {
            use std::io::Write;
            let _ = writer.write_all(&request);
        });
        let r = c.response();
        assert_eq!(r.status, 405, "POST with a 1 MiB body: {}", r.summary());
        let g = c.response();
        assert_eq!(
            g.status,
            200,
            "GET after a 1 MiB POST body: {}",
            g.summary()
        );
        assert_eq!(g.body_text(), A_TXT);
        sender.join().expect("writer thread");
    });
}

#[test]
fn unknown_method_is_501() {
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for method in ["FOO", "BREW", "PROPFIND", "get"] {
            let request = req(method, "/a.txt", &["Connection: close"]);
            let r = srv.exchange(&request);
            let what = format!("{method} /a.txt");
            assert_eq!(r.status, 501, "{what}: {}", r.summary());
            check_common(&r, &what);
            assert!(
                !r.body_contains("Hello from a.txt"),
                "{what} served the file"
            );
        }
    });
}
