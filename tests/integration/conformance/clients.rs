//! Real clients against the server: curl (run via std::process::Command when installed; CI installs it) and the ureq Rust client, for plain GETs, HEAD, ranges, conditionals, redirects, keep-alive reuse, large downloads and traversal with `--path-as-is`.

use super::harness::*;
use std::io::Read;
use std::process::Command;
use std::time::Duration;

pub fn have_curl() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("curl not installed: skipping the curl checks");
    }
    ok
}

/// Runs curl with `args` and returns stdout (asserting it ran); trusts the test certificate
/// when the suite runs over TLS.
pub fn curl(args: &[&str]) -> Vec<u8> {
    let mut cmd = Command::new("curl");
    if super::tls::tls_mode() {
        cmd.arg("--cacert").arg(&super::tls::test_cert().cert);
    }
    let out = cmd
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn curl_get_head_range_and_conditional() {
    if !have_curl() {
        return;
    }
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        // GET with the head shown.
        let out = curl(&["-i", &srv.url("/a.txt")]);
        let rs = parse_all(&out).unwrap_or_else(|e| panic!("curl -i /a.txt: {e}"));
        assert_eq!(rs.len(), 1);
        assert_eq!(rs[0].status, 200, "{}", rs[0].summary());
        assert_eq!(rs[0].body_text(), A_TXT);
        check_common(&rs[0], "curl -i /a.txt");

        // HEAD.
        let out = curl(&["-I", &srv.url("/style.css")]);
        let (h, _) = parse_response(&out, true, true)
            .unwrap_or_else(|e| panic!("curl -I: {e}"))
            .expect("curl -I output");
        assert_eq!(h.status, 200);
        assert_eq!(h.must("content-length"), STYLE_CSS.len().to_string());
        assert_eq!(h.must("content-type"), "text/css; charset=utf-8");

        // Range.
        let body = curl(&["-r", "10-19", &srv.url("/data.bin")]);
        assert!(body == data_bin()[10..20], "curl -r 10-19: wrong bytes");

        // Conditional: status code only.
        let etag = srv.fixture.etag("a.txt");
        let code = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("If-None-Match: {etag}"),
            &srv.url("/a.txt"),
        ]);
        assert_eq!(String::from_utf8_lossy(&code), "304", "curl If-None-Match");

        // HTTP/1.0.
        let body = curl(&["--http1.0", &srv.url("/a.txt")]);
        assert_eq!(String::from_utf8_lossy(&body), A_TXT, "curl --http1.0");

        // Redirect followed.
        let body = curl(&["-L", &srv.url("/sub")]);
        assert_eq!(
            String::from_utf8_lossy(&body),
            SUB_INDEX_HTML,
            "curl -L /sub"
        );
    });
}

#[test]
fn curl_reuses_the_connection_and_downloads_big_files_exactly() {
    if !have_curl() {
        return;
    }
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        // Several URLs in one curl run share a keep-alive connection.
        let out = curl(&[
            "-i",
            &srv.url("/a.txt"),
            &srv.url("/style.css"),
            &srv.url("/nope"),
            &srv.url("/cpu?n=100"),
        ]);
        let rs = parse_all(&out).unwrap_or_else(|e| panic!("curl several URLs: {e}"));
        let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200, 404, 200], "curl several URLs");
        assert_eq!(rs[0].body_text(), A_TXT);
        assert_eq!(rs[1].body_text(), STYLE_CSS);
        assert!(numbers_in(&rs[3].body_text()).iter().any(|x| x == "25"));

        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("big.bin");
        curl(&["-o", dest.to_str().unwrap(), &srv.url("/big.bin")]);
        let got = std::fs::read(&dest).unwrap();
        assert_eq!(got.len(), BIG_LEN, "curl big.bin length");
        assert!(got == big_bin(), "curl big.bin bytes differ");
    });
}

#[test]
fn curl_path_as_is_traversal_is_refused() {
    if !have_curl() {
        return;
    }
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        for path in [
            "/../secret.txt",
            "/../../../../../../../etc/passwd",
            "/%2e%2e/secret.txt",
            "/escape",
        ] {
            let out = curl(&["--path-as-is", "-i", &srv.url(path)]);
            let rs = parse_all(&out).unwrap_or_else(|e| panic!("curl {path}: {e}"));
            assert_eq!(rs.len(), 1, "curl {path}");
            assert!(
                rs[0].status == 400 || rs[0].status == 404,
                "curl --path-as-is {path}: {}",
                rs[0].summary()
            );
            assert!(
                !rs[0].body_contains(SECRET) && !rs[0].body_contains(PASSWD_MARKER),
                "curl --path-as-is {path} leaked a file outside the root"
            );
        }
    });
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .build()
}

/// The status and response of a ureq call, whether 2xx/3xx or an error status.
fn call(req: ureq::Request) -> ureq::Response {
    match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("ureq transport error: {e}"),
    }
}

#[test]
fn ureq_get_head_range_conditional_and_redirect() {
    // ureq is built without TLS here; the TLS mode's Rust client is the harness's own rustls.
    if super::tls::tls_mode() {
        return;
    }
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let a = agent();

        let r = call(a.get(&srv.url("/a.txt")));
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(
            r.header("etag").map(str::to_ascii_lowercase),
            Some(srv.fixture.etag("a.txt"))
        );
        assert_eq!(r.into_string().unwrap(), A_TXT);

        let r = call(a.head(&srv.url("/index.html")));
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.header("content-length"),
            Some(INDEX_HTML.len().to_string().as_str())
        );

        let r = call(a.get(&srv.url("/data.bin")).set("Range", "bytes=-100"));
        assert_eq!(r.status(), 206);
        let mut body = Vec::new();
        r.into_reader().read_to_end(&mut body).unwrap();
        assert!(
            body == data_bin()[DATA_LEN - 100..],
            "ureq Range: bytes=-100"
        );

        let etag = srv.fixture.etag("a.txt");
        let r = call(a.get(&srv.url("/a.txt")).set("If-None-Match", &etag));
        assert_eq!(r.status(), 304, "ureq If-None-Match");

        let r = call(a.get(&srv.url("/nope.txt")));
        assert_eq!(r.status(), 404);
        assert_eq!(r.into_string().unwrap(), NOT_FOUND_HTML);

        // ureq follows the 301 from /sub to /sub/.
        let r = call(a.get(&srv.url("/sub")));
        assert_eq!(r.status(), 200, "ureq /sub after redirect");
        assert_eq!(r.into_string().unwrap(), SUB_INDEX_HTML);

        let r = call(a.post(&srv.url("/a.txt")));
        assert_eq!(r.status(), 405);
        assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    });
}

#[test]
fn ureq_keep_alive_agent_big_file_and_workloads() {
    if super::tls::tls_mode() {
        return;
    }
    for_each_arch(|arch| {
        let srv = ArchServer::start(arch);
        let a = agent();
        // One agent, many requests: ureq pools the connection between them.
        for _ in 0..5 {
            let r = call(a.get(&srv.url("/style.css")));
            assert_eq!(r.status(), 200);
            assert_eq!(r.into_string().unwrap(), STYLE_CSS);
        }
        let r = call(a.get(&srv.url("/big.bin")));
        assert_eq!(r.status(), 200);
        let mut body = Vec::new();
        r.into_reader().read_to_end(&mut body).unwrap();
        assert_eq!(body.len(), BIG_LEN, "ureq big.bin length");
        assert!(body == big_bin(), "ureq big.bin bytes differ");

        let r = call(a.get(&srv.url("/cpu?n=100")));
        assert_eq!(r.status(), 200);
        let text = r.into_string().unwrap();
        assert!(
            numbers_in(&text).iter().any(|x| x == "25"),
            "ureq /cpu?n=100: {text:?}"
        );
        let r = call(a.get(&srv.url("/io?ms=50")));
        assert_eq!(r.status(), 200, "ureq /io?ms=50");
        let r = call(a.get(&srv.url("/cpu?n=0")));
        assert_eq!(r.status(), 400, "ureq /cpu?n=0");
    });
}
