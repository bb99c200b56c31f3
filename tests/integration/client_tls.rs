//! `archserve send` and `archserve load` over HTTPS, against the real server serving the test
//! certificate (made at test time, `conformance::tls::test_cert`): trust by `--cacert`, session
//! resumption across worker processes as the client sees it, and the failures (an untrusted
//! certificate, a plain-HTTP port) as one `error:` line and exit status 1. Counts only, never
//! timing.
use serde_json::Value;

use crate::client::{errors, load_json, n};
use crate::conformance::tls::test_cert;
use crate::server::{run, Server};

const INDEX: &str = "<!DOCTYPE html><title>t</title><p>client TLS tests</p>\n";

/// The real server over HTTPS with the test certificate: `hybrid` with two worker processes,
/// so connections (and the tickets they present) land on both.
fn https_server() -> Server {
    let c = test_cert();
    Server::with_index(
        INDEX,
        &[
            "--log-level",
            "error",
            "--arch",
            "hybrid",
            "-w",
            "2",
            "--tls-cert",
            c.cert.to_str().unwrap(),
            "--tls-key",
            c.key.to_str().unwrap(),
        ],
    )
}

fn url(srv: &Server) -> String {
    format!("https://localhost:{}/index.html", srv.port)
}

fn cacert() -> &'static str {
    test_cert().cert.to_str().unwrap()
}

/// A certificate of another, unrelated CA (not the server's; a name of its own, so it is not
/// even a candidate issuer).
fn other_ca() -> (tempfile::TempDir, String) {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "another CA");
    let other = params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.pem");
    std::fs::write(&path, other.pem()).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

fn handshakes(r: &Value) -> (u64, u64) {
    (n(r, "/tls/full"), n(r, "/tls/resumed"))
}

#[test]
fn send_speaks_https_with_cacert() {
    let srv = https_server();
    let port = srv.port.to_string();
    let out = run([
        "send",
        "--tls",
        "--cacert",
        cacert(),
        "localhost",
        &port,
        "GET /index.html HTTP/1.1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with(INDEX), "{text}");
    // --insecure trusts any certificate, here through an address (no SNI).
    let out = run(["send", "--tls", "-k", "127.0.0.1", &port, "HEAD / HTTP/1.1"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.starts_with(b"HTTP/1.1 200 OK\r\n"), "{out:?}");
}

#[test]
fn send_tls_failures_are_one_line_and_non_zero() {
    let srv = https_server();
    let plain = Server::with_index(INDEX, &["--log-level", "error"]);
    let (_dir, other) = other_ca();
    let tls_port = srv.port.to_string();
    let plain_port = plain.port.to_string();
    for (args, want) in [
        (
            vec!["--cacert", other.as_str(), "localhost", &tls_port],
            "not signed by a trusted CA",
        ),
        (vec!["-k", "localhost", &plain_port], "plain-HTTP"),
    ] {
        let mut all = vec!["send", "--tls", "--timeout", "5"];
        all.extend(args);
        all.push("GET / HTTP/1.1");
        let out = run(&all);
        assert_eq!(out.status.code(), Some(1), "{want}: {out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: TLS handshake with localhost:") && err.contains(want),
            "{want}: {err}"
        );
        assert!(out.stdout.is_empty(), "{want}: {err}");
    }
}

#[test]
fn load_keep_alive_over_https_does_one_handshake_per_connection() {
    let srv = https_server();
    let (r, code) = load_json(&["-c", "3", "-n", "300", "--cacert", cacert(), &url(&srv)]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(errors(&r), [0; 7], "{r}");
    assert_eq!(n(&r, "/responses"), 300, "{r}");
    assert_eq!(n(&r, "/status/200"), 300, "{r}");
    // One handshake per connection made: full for the first, and a later one may resume a
    // ticket an earlier connection already got (the client shares its session cache). On a
    // loaded machine the 300 requests can be done before the third connection is up.
    let (full, resumed) = handshakes(&r);
    let connects = n(&r, "/connects");
    assert!((1..=3).contains(&connects), "{r}");
    assert!(full >= 1 && full + resumed == connects, "{r}");
    assert_eq!(
        n(&r, "/bytes") % 300,
        0,
        "every response the same size: {r}"
    );
}

#[test]
fn load_resumes_sessions_across_worker_processes_unless_told_not_to() {
    let srv = https_server();
    let base = ["--no-keepalive", "-c", "2", "-t", "1", "-n", "60"];
    let mut args = base.to_vec();
    args.extend(["--cacert", cacert()]);
    let target = url(&srv);
    args.push(&target);
    let (r, code) = load_json(&args);
    assert_eq!(code, 0, "{r}");
    assert_eq!(errors(&r), [0; 7], "{r}");
    assert_eq!(n(&r, "/responses"), 60, "{r}");
    // Each connection's first handshake is full (no ticket yet); every later one offers a
    // ticket from an earlier connection, issued by either worker, and must be resumed.
    let (full, resumed) = handshakes(&r);
    assert!(full <= 2, "{r}");
    assert_eq!(full + resumed, 60, "{r}");
    assert_eq!(r.pointer("/tls/resume"), Some(&Value::Bool(true)), "{r}");
    args.insert(0, "--no-resume");
    let (r, code) = load_json(&args);
    assert_eq!(code, 0, "{r}");
    assert_eq!(handshakes(&r), (60, 0), "{r}");
    assert_eq!(r.pointer("/tls/resume"), Some(&Value::Bool(false)), "{r}");
}

#[test]
fn load_tls_failures_are_counted_and_end_with_one_error_line() {
    let srv = https_server();
    let plain = Server::with_index(INDEX, &["--log-level", "error"]);
    let (_dir, other) = other_ca();
    let plain_url = format!("https://localhost:{}/", plain.port);
    for (args, want) in [
        (
            vec!["--cacert", other.as_str(), &url(&srv)],
            "not signed by a trusted CA",
        ),
        (vec!["-k", plain_url.as_str()], "plain-HTTP"),
    ] {
        let mut all = vec!["load", "--json", "-q", "-c", "2", "-n", "10"];
        all.extend(args);
        let out = run(&all);
        assert_eq!(out.status.code(), Some(1), "{want}: {out:?}");
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(errors(&r), [0, 0, 0, 0, 0, 0, 10], "{r}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: TLS handshake with https://localhost:") && err.contains(want),
            "{want}: {err}"
        );
        assert!(
            r.pointer("/tls/error")
                .and_then(Value::as_str)
                .is_some_and(|e| e.contains(want)),
            "{r}"
        );
    }
}
