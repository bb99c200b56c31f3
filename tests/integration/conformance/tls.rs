//! The TLS mode of the suite and the HTTPS-only tests. `ARCHSERVE_TEST_TLS=1` makes every server
//! the suite starts serve HTTPS with a certificate made at test time (rcgen; no private key is
//! committed), every `Conn` speak through a rustls client that trusts only that certificate,
//! and `ArchServer::url` an https URL for curl (`--cacert`). `the_whole_suite_passes_over_tls` runs
//! this binary's conformance tests again in that mode, so a plain `cargo test` covers both.
//! Tests that drive a raw socket by hand (a second writer thread, byte floods) check
//! `tls_mode()` and run plain only.
use super::harness::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Whether this run of the suite speaks HTTPS.
pub fn tls_mode() -> bool {
    std::env::var_os("ARCHSERVE_TEST_TLS").is_some_and(|v| v == "1")
}

/// The test certificate (for `localhost` and 127.0.0.1), its files, and a client that trusts it.
pub struct TestCert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

/// Made once per test process.
pub fn test_cert() -> &'static TestCert {
    static CERT: OnceLock<TestCert> = OnceLock::new();
    CERT.get_or_init(|| {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).expect("generate certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.key_pair.serialize_pem()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(made.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        TestCert {
            cert,
            key,
            client: Arc::new(client),
            _dir: dir,
        }
    })
}

/// The flags that make a server serve HTTPS with the test certificate (none in plain mode).
pub fn serve_args() -> Vec<String> {
    if !tls_mode() {
        return Vec::new();
    }
    let c = test_cert();
    vec![
        "--tls-cert".into(),
        c.cert.display().to_string(),
        "--tls-key".into(),
        c.key.display().to_string(),
    ]
}

/// A client session for a new `Conn` (None in plain mode).
pub fn client_session() -> Option<Box<rustls::ClientConnection>> {
    tls_mode().then(|| Box::new(new_session(&test_cert().client)))
}

fn new_session(config: &Arc<rustls::ClientConfig>) -> rustls::ClientConnection {
    let name = "localhost".try_into().unwrap();
    rustls::ClientConnection::new(Arc::clone(config), name).expect("client session")
}

/// Starts `arch` serving HTTPS with the test certificate, whatever the mode.
fn https_server(arch: &str, extra: &[&str]) -> ArchServer {
    let c = test_cert();
    let mut args = vec![
        "--tls-cert",
        c.cert.to_str().unwrap(),
        "--tls-key",
        c.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    if tls_mode() {
        // serve_args() adds the same pair already.
        args.drain(..4);
    }
    ArchServer::start_with(arch, &args)
}

/// One request over a fresh TLS connection with `config`; returns the session (for what was
/// negotiated) and the raw answer (the server closes after it).
fn https_get(
    addr: &str,
    config: &Arc<rustls::ClientConfig>,
    target: &str,
) -> (rustls::ClientConnection, Vec<u8>) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut session = new_session(config);
    let mut out = Vec::new();
    {
        let mut s = rustls::Stream::new(&mut session, &mut sock);
        s.write_all(&req("GET", target, &["Connection: close"]))
            .unwrap();
        // The server sends close_notify before closing: a clean end.
        s.read_to_end(&mut out)
            .expect("read the answer to a clean close");
    }
    (session, out)
}

#[test]
fn the_whole_suite_passes_over_tls() {
    if tls_mode() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .env("ARCHSERVE_TEST_TLS", "1")
        // The conformance tests only: the other modules of this binary start no server in the
        // TLS mode.
        .args([
            "conformance::",
            "--skip",
            "the_whole_suite_passes_over_tls",
            "--test-threads",
            "4",
        ])
        .output()
        .expect("run the suite again");
    assert!(
        out.status.success(),
        "the suite over TLS failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_rustls_client_negotiates_http11_and_resumes_its_session() {
    for_each_arch(|arch| {
        let srv = https_server(arch, &[]);
        // One client config: rustls keeps the tickets it was given there.
        let mut config = (*test_cert().client).clone();
        config.resumption = rustls::client::Resumption::in_memory_sessions(8);
        let config = Arc::new(config);
        let (first, body) = https_get(&srv.addr(), &config, "/a.txt");
        assert!(
            body.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "[{arch}] {}",
            show(&body)
        );
        assert!(body.ends_with(A_TXT.as_bytes()), "[{arch}] {}", show(&body));
        assert_eq!(first.alpn_protocol(), Some(&b"http/1.1"[..]), "[{arch}]");
        assert_eq!(first.handshake_kind(), Some(rustls::HandshakeKind::Full));
        // Fresh connections, each with a ticket from an earlier one: with `processes` and
        // `hybrid` (two workers here) the kernel spreads them over the workers, so tickets
        // issued by one worker are presented to the other; every one must resume.
        for k in 1..=12 {
            let (again, body) = https_get(&srv.addr(), &config, "/a.txt");
            assert!(
                body.starts_with(b"HTTP/1.1 200 OK\r\n"),
                "[{arch}] {}",
                show(&body)
            );
            assert_eq!(
                again.handshake_kind(),
                Some(rustls::HandshakeKind::Resumed),
                "[{arch}] connection {k} did not resume"
            );
        }
    });
}

/// Writes `bytes` raw to the HTTPS port and reads until the server closes; returns what came.
fn raw_exchange(srv: &ArchServer, bytes: &[u8], then_wait: bool) -> Vec<u8> {
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    if !then_wait {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => out,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => out,
        Err(e) => panic!("[{}] no close: {e}; got {}", srv.first_line, show(&out)),
    }
}

#[test]
fn bad_input_on_the_https_port_gets_an_alert_or_a_close_never_a_crash() {
    for_each_arch(|arch| {
        let srv = https_server(arch, &["--header-timeout", "1"]);
        // Plain HTTP: not a TLS record; rustls answers with an alert or nothing, then we close.
        let out = raw_exchange(&srv, &req("GET", "/a.txt", &[]), true);
        assert!(
            out.is_empty() || out[0] == 0x15,
            "[{arch}] plain HTTP got {}",
            show(&out)
        );
        // Garbage that claims to be a handshake record.
        let mut garbage = vec![0x16, 0x03, 0x01, 0x00, 0x40];
        garbage.extend((0..64u8).map(|i| i.wrapping_mul(37)));
        let out = raw_exchange(&srv, &garbage, true);
        assert!(
            out.is_empty() || out[0] == 0x15,
            "[{arch}] garbage got {}",
            show(&out)
        );
        // A truncated record (the header promises 512 bytes, 10 come, then the client stops):
        // the header timeout closes it.
        let out = raw_exchange(&srv, &[0x16, 0x03, 0x01, 0x02, 0x00, 1, 2, 3, 4, 5], true);
        assert!(
            out.is_empty() || out[0] == 0x15,
            "[{arch}] truncated got {}",
            show(&out)
        );
        // The same, half-closed: the end of stream closes it at once.
        let out = raw_exchange(&srv, &[0x16, 0x03, 0x01, 0x02, 0x00, 1, 2, 3], false);
        assert!(
            out.is_empty() || out[0] == 0x15,
            "[{arch}] half-closed got {}",
            show(&out)
        );
        // The server still serves.
        let (_, body) = https_get(&srv.addr(), &test_cert().client, "/a.txt");
        assert!(
            body.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "[{arch}] after bad input"
        );
        assert!(srv.is_running(), "[{arch}] the server died");
    });
}

#[test]
fn a_client_that_stops_mid_handshake_is_closed_by_the_header_timeout() {
    for_each_arch(|arch| {
        let srv = https_server(arch, &["--header-timeout", "1"]);
        let mut sock = TcpStream::connect(srv.addr()).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // A real ClientHello, then silence: the server answers it and waits for the client's
        // Finished, which never comes.
        let mut session = new_session(&test_cert().client);
        session.write_tls(&mut sock).unwrap();
        let started = Instant::now();
        let mut out = Vec::new();
        let _ = sock.read_to_end(&mut out);
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "[{arch}] not closed before the client's own 10 s read timeout"
        );
        assert!(!out.is_empty(), "[{arch}] the ServerHello never came");
    });
}

#[test]
fn curl_with_cacert_gets_files_over_https() {
    if Command::new("curl").arg("--version").output().is_err() {
        return eprintln!("curl not installed: skipping");
    }
    for_each_arch(|arch| {
        let srv = https_server(arch, &[]);
        let url = format!("https://localhost:{}/big.bin", srv.port);
        let cacert = test_cert().cert.to_str().unwrap();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert", cacert, &url, &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "[{arch}] curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut both = big_bin();
        both.extend(big_bin());
        assert!(
            out.stdout == both,
            "[{arch}] big.bin twice over one connection differs"
        );
        // Without the CA, curl refuses the certificate.
        let refused = Command::new("curl")
            .args(["-sS", "--max-time", "20", &url])
            .output()
            .unwrap();
        assert!(
            !refused.status.success(),
            "[{arch}] curl trusted an unknown CA"
        );
    });
}

#[test]
fn redirect_http_answers_301_to_the_https_port() {
    for_each_arch(|arch| {
        let port = closed_port();
        let port_arg = port.to_string();
        let srv = https_server(arch, &["--redirect-http", &port_arg]);
        let line = srv.next_line(Duration::from_secs(10)).unwrap_or_default();
        assert!(line.starts_with("Redirecting HTTP on"), "[{arch}] {line:?}");
        let mut c = Conn::plain(&format!("127.0.0.1:{port}"), arch);
        let request = req("GET", "/sub/x?y=1", &[]);
        c.send(&request);
        let r = c.response_for(&request);
        assert_eq!(r.status, 301, "[{arch}]");
        let expect = format!("https://localhost:{}/sub/x?y=1", srv.port);
        assert_eq!(r.header("location"), Some(expect.as_str()), "[{arch}]");
    });
}

#[test]
fn missing_or_mismatched_certificates_are_refused_at_startup() {
    let c = test_cert();
    let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other_key = dir.path().join("other.pem");
    std::fs::write(&other_key, other.key_pair.serialize_pem()).unwrap();
    let cert = c.cert.to_str().unwrap();
    for args in [
        vec!["--tls-cert", cert],
        vec![
            "--tls-cert",
            "/nonexistent.pem",
            "--tls-key",
            "/nonexistent.pem",
        ],
        vec!["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()],
        vec!["--tls-cert", cert, "--tls-key", cert],
    ] {
        let out = run_command(serve_command(&args));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}
