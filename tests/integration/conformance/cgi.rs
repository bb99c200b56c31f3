//! CGI (`--cgi-dir`): scripts get the RFC 3875 meta-variables and nothing of the server's
//! environment, request bodies on stdin, their heads checked (`Status`, `Location`, invalid →
//! 502), bodies chunked / sized / close-delimited, HEAD without a body; and the bad scripts
//! (exit early, hang, print forever, print a head forever, too many at once) each get a clean
//! status while the server keeps serving and leaves no zombie. Raw bytes, curl and ureq.

use super::clients::{curl, have_curl};
use super::harness::*;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// The scripts of the fixture's `cgi-bin/` (POSIX sh, as `www/cgi-bin/hello.sh`).
const SCRIPTS: &[(&str, &str)] = &[
    (
        "env.sh",
        "printf 'Content-Type: text/plain\\r\\nX-Script: env\\r\\n\\r\\n'\n\
         for v in GATEWAY_INTERFACE REQUEST_METHOD QUERY_STRING PATH_INFO SCRIPT_NAME \
         CONTENT_LENGTH CONTENT_TYPE REMOTE_ADDR SERVER_NAME SERVER_PORT SERVER_PROTOCOL \
         SERVER_SOFTWARE HTTP_X_TEST HTTP_PROXY PATH ARCHSERVE_SECRET HOME; do\n\
         eval \"printf '%s=%s\\n' $v \\\"\\${$v-(unset)}\\\"\"\n\
         done\n\
         if [ -n \"${CONTENT_LENGTH-}\" ]; then printf 'BODY='; head -c \"$CONTENT_LENGTH\"; printf '\\n'; fi\n",
    ),
    ("status.sh", "printf 'Status: 404 Not Here\\nContent-Type: text/plain\\n\\nmissing\\n'\n"),
    ("redirect.sh", "printf 'Location: http://example.com/elsewhere\\n\\n'\n"),
    ("sized.sh", "printf 'Content-Type: text/plain\\nContent-Length: 6\\n\\nsized\\n'\n"),
    ("notype.sh", "printf 'X-A: b\\n\\nuntyped\\n'\n"),
    ("bad.sh", "printf 'this is not a header\\n\\nbody\\n'\n"),
    ("fail.sh", "echo 'failing on purpose' >&2\nexit 3\n"),
    ("hang.sh", "echo $$ > \"$DOCUMENT_ROOT/hang.pid\"\nexec sleep 60\n"),
    ("stall.sh", "printf 'Content-Type: text/plain\\n\\nstarted\\n'\nexec sleep 60\n"),
    ("forever.sh", "printf 'Content-Type: text/plain\\n\\n'\nexec yes 0123456789abcdef\n"),
    ("headforever.sh", "exec yes 'X-Long: header'\n"),
];

#[test]
fn cgi_dir_refusals_are_clear() {
    let fixture = super::fixture::Fixture::new(true);
    std::fs::create_dir(fixture.root.join("cgi-bin")).unwrap();
    let root = fixture.root.to_str().unwrap();
    let cases = vec![
        (vec!["--cgi-dir", "absent"], "no such folder"),
        (
            vec!["--cgi-dir", "/etc"],
            "must name a folder under the root",
        ),
        (
            vec!["--cgi-dir", "../x"],
            "not a folder name under the root",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["serve", "--port", "0", "--root", root];
        all.extend(&args);
        let out = run(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}

/// A server of `arch` with the fixture's `cgi-bin/` (and `extra` flags).
fn cgi_server(arch: &str, extra: &[&str]) -> ArchServer {
    let fixture = super::fixture::Fixture::new(true);
    let dir = fixture.root.join("cgi-bin");
    std::fs::create_dir(&dir).unwrap();
    for (name, body) in SCRIPTS {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(dir.join("noexec.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let mut args = vec!["--cgi-dir", "cgi-bin"];
    args.extend_from_slice(extra);
    let mut cmd = super::arch::arch_command(arch, &fixture.root, &args);
    cmd.env("ARCHSERVE_SECRET", "leaked");
    ArchServer::from_command(arch, cmd, fixture)
}

/// The raw answer to one request sent with `Connection: close`: head fields, status, and the
/// body with any chunked encoding undone (`Err` when the chunks are malformed or cut).
struct Raw {
    status: u16,
    head: String,
    body: Result<Vec<u8>, String>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(self.body.as_ref().expect("a whole body")).into_owned()
    }
}

fn raw(srv: &ArchServer, request: &[u8]) -> Raw {
    let mut c = srv.connect();
    c.send(request);
    let bytes = c
        .read_to_close()
        .unwrap_or_else(|e| panic!("[{}] {}: {e}", srv.arch, show(request)));
    let end = find(&bytes, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("[{}] no head in {}", srv.arch, show(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head[9..12].parse().unwrap();
    let rest = &bytes[end + 4..];
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        Ok(rest.to_vec())
    };
    Raw { status, head, body }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Undoes chunked transfer-coding; an error if the last chunk never came.
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("cut inside a chunk size")?;
        let size = std::str::from_utf8(&rest[..line_end]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size, 16).map_err(|e| format!("{size:?}: {e}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return if rest == b"\r\n" {
                Ok(out)
            } else {
                Err(format!("bytes after the last chunk: {}", show(rest)))
            };
        }
        if rest.len() < size + 2 {
            return Err(format!("cut inside a chunk of {size}"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn get(srv: &ArchServer, target: &str) -> Raw {
    raw(srv, &req("GET", target, &["Connection: close"]))
}

/// Lines `NAME=value` of env.sh's output.
fn var<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

#[test]
fn cgi_meta_variables_and_a_clean_environment() {
    for_each_arch(|arch| {
        let srv = cgi_server(arch, &[]);
        let r = raw(
            &srv,
            &req(
                "GET",
                "/cgi-bin/env.sh/extra/p%20q?a=1&b",
                &["Connection: close", "X-Test: yes", "Proxy: http://evil/"],
            ),
        );
        assert_eq!(r.status, 200, "{}", r.head);
        assert_eq!(r.header("x-script"), Some("env"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        let text = r.text();
        let port = srv.addr().rsplit(':').next().unwrap().to_string();
        for (k, v) in [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REQUEST_METHOD", "GET"),
            ("QUERY_STRING", "a=1&b"),
            ("PATH_INFO", "/extra/p q"),
            ("SCRIPT_NAME", "/cgi-bin/env.sh"),
            ("CONTENT_LENGTH", "(unset)"),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("SERVER_PORT", port.as_str()),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("HTTP_X_TEST", "yes"),
            ("HTTP_PROXY", "(unset)"),
            ("PATH", "/usr/local/bin:/usr/bin:/bin"),
            ("ARCHSERVE_SECRET", "(unset)"),
            ("HOME", "(unset)"),
        ] {
            assert_eq!(var(&text, k), Some(v), "{k} in {text}");
        }
        assert!(var(&text, "SERVER_SOFTWARE")
            .unwrap()
            .starts_with("archserve/"));
    });
}

#[test]
fn cgi_request_bodies_reach_stdin_and_large_ones_are_refused() {
    for_each_arch(|arch| {
        let srv = cgi_server(arch, &["--cgi-max-body", "1000"]);
        let body = "x=1&y=two";
        let mut request = req(
            "POST",
            "/cgi-bin/env.sh",
            &[
                "Connection: close",
                "Content-Type: application/x-www-form-urlencoded",
                &format!("Content-Length: {}", body.len()),
            ],
        );
        request.extend_from_slice(body.as_bytes());
        let r = raw(&srv, &request);
        assert_eq!(r.status, 200, "{}", r.head);
        let text = r.text();
        assert_eq!(var(&text, "REQUEST_METHOD"), Some("POST"));
        assert_eq!(var(&text, "CONTENT_LENGTH"), Some("9"));
        assert_eq!(
            var(&text, "CONTENT_TYPE"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(var(&text, "BODY"), Some(body));

        // The head first, then the body a byte at a time: each piece is read on its own.
        let mut c = srv.connect();
        c.stream.set_nodelay(true).unwrap();
        let head = req(
            "POST",
            "/cgi-bin/env.sh",
            &[
                "Connection: close",
                &format!("Content-Length: {}", body.len()),
            ],
        );
        c.send(&head);
        for b in body.bytes() {
            std::thread::sleep(Duration::from_millis(5));
            c.send(&[b]);
        }
        let bytes = c.read_to_close().unwrap();
        let end = find(&bytes, b"\r\n\r\n").expect("a head");
        let text = String::from_utf8(dechunk(&bytes[end + 4..]).unwrap()).unwrap();
        assert_eq!(var(&text, "BODY"), Some(body), "{text}");

        // Over --cgi-max-body: 413 before any of it is read.
        let big = req(
            "POST",
            "/cgi-bin/env.sh",
            &["Connection: close", "Content-Length: 5000"],
        );
        let r = raw(&srv, &big);
        assert_eq!(r.status, 413, "{}", r.head);
        assert!(r.head.contains("Connection: close"));
    });
}

#[test]
fn cgi_heads_are_checked_and_framed() {
    for_each_arch(|arch| {
        let srv = cgi_server(arch, &[]);
        let r = get(&srv, "/cgi-bin/status.sh");
        assert_eq!(
            (r.status, r.text().as_str()),
            (404, "missing\n"),
            "{}",
            r.head
        );

        let r = get(&srv, "/cgi-bin/redirect.sh");
        assert_eq!(r.status, 302, "{}", r.head);
        assert_eq!(r.header("location"), Some("http://example.com/elsewhere"));

        let r = get(&srv, "/cgi-bin/sized.sh");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("6"));
        assert_eq!(r.header("transfer-encoding"), None);
        assert_eq!(r.text(), "sized\n");

        let r = get(&srv, "/cgi-bin/notype.sh");
        assert_eq!((r.status, r.header("content-type")), (200, None));
        assert_eq!(r.header("x-a"), Some("b"));
        assert_eq!(r.text(), "untyped\n");

        // HTTP/1.0: no chunked encoding; the close ends the body.
        let r = raw(&srv, b"GET /cgi-bin/notype.sh HTTP/1.0\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("transfer-encoding"), None);
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(r.text(), "untyped\n");

        // HEAD: the script's head, no body, and the connection goes on.
        let mut c = srv.connect();
        c.send(&req("HEAD", "/cgi-bin/env.sh", &[]));
        let h = c.head_response();
        assert_eq!(h.status, 200);
        assert_eq!(h.header("x-script"), Some("env"));
        c.send(&req("GET", "/a.txt", &[]));
        let next = c.response();
        assert_eq!(next.body_text(), A_TXT, "after a CGI HEAD");

        // Not a script: the folder itself and a file without the executable bit.
        assert_eq!(get(&srv, "/cgi-bin/").status, 403);
        assert_eq!(get(&srv, "/cgi-bin/noexec.sh").status, 403);
        assert_eq!(get(&srv, "/cgi-bin/absent.sh").status, 404);
    });
}

#[test]
fn cgi_chunked_answers_keep_the_connection() {
    // Read straight from the socket below: plain HTTP only (TLS is covered by the rest).
    if super::tls::tls_mode() {
        return;
    }
    for_each_arch(|arch| {
        let srv = cgi_server(arch, &[]);
        let mut c = srv.connect();
        for _ in 0..3 {
            c.send(&req("GET", "/cgi-bin/notype.sh", &[]));
            let mut got = Vec::new();
            // The harness reads Content-Length bodies only: take the chunked one by hand.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !got.ends_with(b"0\r\n\r\n") && Instant::now() < deadline {
                let mut buf = [0u8; 4096];
                use std::io::Read;
                match c.stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let end = find(&got, b"\r\n\r\n").expect("a head");
            let head = String::from_utf8_lossy(&got[..end]);
            assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
            assert!(head.contains("Connection: keep-alive"), "{head}");
            assert_eq!(dechunk(&got[end + 4..]).unwrap(), b"untyped\n");
        }
    });
}

#[test]
fn cgi_bad_scripts_get_clean_statuses_and_the_server_keeps_serving() {
    for_each_arch(|arch| {
        let srv = cgi_server(arch, &["--cgi-timeout", "1", "--cgi-max-output", "100000"]);
        assert_eq!(get(&srv, "/cgi-bin/bad.sh").status, 502, "invalid head");
        assert_eq!(
            get(&srv, "/cgi-bin/fail.sh").status,
            502,
            "exit 3, no output"
        );
        assert_eq!(
            get(&srv, "/cgi-bin/headforever.sh").status,
            502,
            "endless head"
        );
        assert_eq!(get(&srv, "/cgi-bin/hang.sh").status, 504, "hangs");
        // Printing forever: the answer is cut after --cgi-max-output (no last chunk).
        let r = get(&srv, "/cgi-bin/forever.sh");
        assert_eq!(r.status, 200);
        assert!(r.body.is_err(), "an endless body must not look complete");
        // Hanging after its head: cut at the timeout.
        let r = get(&srv, "/cgi-bin/stall.sh");
        assert_eq!(r.status, 200);
        assert!(r.body.is_err(), "a stalled body must not look complete");
        // The server still serves files and scripts.
        assert_eq!(get(&srv, "/a.txt").text(), A_TXT);
        assert_eq!(get(&srv, "/cgi-bin/sized.sh").text(), "sized\n");
        assert_no_zombies(&srv);
    });
}

#[test]
fn cgi_scripts_beyond_the_cap_get_503() {
    for_each_arch(|arch| {
        // The cap is per server process: each worker process of a multi-process architecture
        // counts its own, and which one takes a connection is the kernel's choice.
        if archserve::arch::find(arch).is_some_and(|a| a.multi_process) {
            eprintln!("skipping the cap on {arch}: one count per worker process");
            return;
        }
        let srv = cgi_server(arch, &["--cgi-max-scripts", "1", "--cgi-timeout", "3"]);
        let mut first = srv.connect();
        first.send(&req("GET", "/cgi-bin/hang.sh", &["Connection: close"]));
        // The first script runs once it has written its pid.
        let pid_file = srv.fixture.root.join("hang.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pid_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(pid_file.exists(), "the first script never started");
        let r = get(&srv, "/cgi-bin/sized.sh");
        assert_eq!(r.status, 503, "{}", r.head);
        assert_eq!(first.response().status, 504);
        assert_eq!(get(&srv, "/cgi-bin/sized.sh").status, 200, "a place again");
    });
}

#[test]
fn cgi_scripts_are_killed_at_shutdown() {
    for_each_arch(|arch| {
        let srv = cgi_server(arch, &["--grace", "5"]);
        let mut c = srv.connect();
        c.send(&req("GET", "/cgi-bin/hang.sh", &["Connection: close"]));
        let pid_file = srv.fixture.root.join("hang.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pid = None;
        while pid.is_none() && Instant::now() < deadline {
            pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = pid.expect("the script never started");
        srv.signal(nix::sys::signal::Signal::SIGTERM);
        let exited = srv.wait_exit(Duration::from_secs(20));
        assert!(exited.is_some(), "the server did not exit");
        let gone = (0..200).any(|_| {
            let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
                && proc_state(pid).is_none_or(|s| s != 'Z');
            if alive {
                std::thread::sleep(Duration::from_millis(50));
            }
            !alive
        });
        assert!(gone, "the script (pid {pid}) outlived the server");
    });
}

/// A client that goes away while its script runs: the script is killed at its deadline
/// (`--cgi-timeout`, the server does not watch the client meanwhile) and reaped, and the server
/// goes on serving.
#[test]
fn cgi_scripts_of_clients_gone_are_killed_and_reaped() {
    for_each_arch(|arch| {
        let srv = cgi_server(arch, &["--cgi-timeout", "1"]);
        let mut c = srv.connect();
        c.send(&req("GET", "/cgi-bin/hang.sh", &[]));
        let pid_file = srv.fixture.root.join("hang.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pid = None;
        while pid.is_none() && Instant::now() < deadline {
            pid = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok());
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = pid.expect("the script never started");
        drop(c);
        // Gone from /proc altogether: killed and reaped (an unreaped one stays as a zombie).
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "[{arch}] the script (pid {pid}) is still there: state {:?}",
            proc_state(pid)
        );
        assert_eq!(get(&srv, "/cgi-bin/sized.sh").text(), "sized\n");
        assert_no_zombies(&srv);
    });
}

#[test]
fn cgi_with_curl_and_ureq() {
    for_each_arch(|arch| {
        let srv = cgi_server(arch, &[]);
        if have_curl() {
            let out = curl(&["--data", "k=v", &srv.url("/cgi-bin/env.sh/c?q=1")]);
            let text = String::from_utf8_lossy(&out);
            assert_eq!(var(&text, "BODY"), Some("k=v"), "{text}");
            assert_eq!(var(&text, "PATH_INFO"), Some("/c"));
            let out = curl(&["-i", &srv.url("/cgi-bin/status.sh")]);
            let text = String::from_utf8_lossy(&out);
            assert!(text.starts_with("HTTP/1.1 404"), "{text}");
            assert!(text.ends_with("missing\n"), "{text}");
            let out = curl(&["-I", &srv.url("/cgi-bin/sized.sh")]);
            let text = String::from_utf8_lossy(&out);
            assert!(text.contains("Content-Length: 6"), "{text}");
        }
        // ureq is built without TLS (see clients.rs).
        if super::tls::tls_mode() {
            return;
        }
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(20))
            .redirects(0)
            .build();
        let r = agent.get(&srv.url("/cgi-bin/notype.sh")).call().unwrap();
        assert_eq!(r.into_string().unwrap(), "untyped\n");
        let r = agent
            .post(&srv.url("/cgi-bin/env.sh"))
            .set("Content-Type", "text/plain")
            .send_string("from ureq")
            .unwrap();
        let text = r.into_string().unwrap();
        assert_eq!(var(&text, "BODY"), Some("from ureq"), "{text}");
        let r = agent.get(&srv.url("/cgi-bin/redirect.sh")).call().unwrap();
        assert_eq!(r.status(), 302);
        match agent.get(&srv.url("/cgi-bin/bad.sh")).call() {
            Err(ureq::Error::Status(502, _)) => {}
            other => panic!("bad.sh: {other:?}"),
        }
    });
}

/// The state letter of `/proc/PID/stat`.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// The parent pid of `/proc/PID/stat`.
fn proc_parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

/// No zombie among the server's descendants (scripts are reaped), checked until it holds or
/// ten seconds pass (reaping after a kill is asynchronous on the event loops).
fn assert_no_zombies(srv: &ArchServer) {
    let root = srv.pid();
    let zombies = || -> Vec<i32> {
        let pids: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.into_iter()
            .filter(|&p| {
                let mut cur = p;
                for _ in 0..4 {
                    match proc_parent(cur) {
                        Some(pp) if pp == root => return proc_state(p) == Some('Z'),
                        Some(pp) if pp > 1 => cur = pp,
                        _ => return false,
                    }
                }
                false
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = zombies();
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        left = zombies();
    }
    assert!(left.is_empty(), "[{}] unreaped scripts: {left:?}", srv.arch);
}
