//! Listeners (`--listen`, repeatable, IPv6), on every architecture: serving over `[::1]` to raw bytes, curl and the Rust clients; two listeners answering at once, also with `--reuseport`, after an in-place upgrade and from sockets handed over as systemd does; the access log's IPv6 peers; bad `--listen` values refused with one line.
//!
//! Tests that need IPv6 skip, saying why, where the machine has no IPv6 loopback; the ones that
//! only need two addresses use 127.0.0.2 there instead.

use super::clients::{curl, have_curl};
use super::harness::*;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Whether `[::1]` can be bound here; says why not when it cannot.
fn ipv6_loopback() -> bool {
    match TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("no IPv6 loopback on this machine ([::1]: {e}): skipping the IPv6 checks");
            false
        }
    }
}

/// A second loopback address for the two-listener tests: `[::1]`, or 127.0.0.2 without IPv6.
fn second_loopback() -> &'static str {
    if ipv6_loopback() {
        "[::1]:0"
    } else {
        "127.0.0.2:0"
    }
}

/// A `GET path` with keep-alive on a new connection to `addr`: the answer's body.
fn get_on(addr: &SocketAddr, arch: &str, path: &str) -> String {
    let mut c = Conn::open(&addr.to_string(), arch);
    c.send(&req("GET", path, &["Connection: close"]));
    let r = c.response();
    assert_eq!(
        r.status,
        200,
        "[{arch}] GET {path} on {addr}: {}",
        r.summary()
    );
    r.body_text()
}

/// Waits until a stdout line starting with each of `prefixes` has come (in any order: a
/// successor prints its listening line before its predecessor says it was upgraded); returns
/// the first line for each prefix.
fn lines_starting(srv: &ArchServer, prefixes: &[&str]) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while found.iter().any(Option::is_none) && Instant::now() < deadline {
        let Some(line) = srv.next_line(Duration::from_millis(200)) else {
            continue;
        };
        for (p, f) in prefixes.iter().zip(found.iter_mut()) {
            if f.is_none() && line.starts_with(p) {
                *f = Some(line.clone());
            }
        }
    }
    found
        .into_iter()
        .zip(prefixes)
        .map(|(f, p)| {
            f.unwrap_or_else(|| {
                panic!(
                    "[{}] no `{p}` line; stderr: {}",
                    srv.arch,
                    srv.stderr_text()
                )
            })
        })
        .collect()
}

#[test]
fn serves_over_ipv6_loopback_to_raw_bytes_curl_and_the_rust_clients() {
    if !ipv6_loopback() {
        return;
    }
    let curl_here = have_curl();
    for_each_arch(|arch| {
        let srv = ArchServer::start_listening(arch, &["[::1]:0"], &[]);
        let port = srv.port;
        assert_eq!(
            srv.addrs,
            [SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port))]
        );
        assert_eq!(srv.first_line, format!("Server listening on [::1]:{port}"));
        let worker = srv.next_line(STARTUP_TIMEOUT).expect("worker line");
        let prefix = format!("Starting connection worker for [::1]:{port}, pid: ");
        assert!(worker.starts_with(&prefix), "{worker:?}");

        assert_eq!(srv.get("/a.txt").body_text(), A_TXT);
        if curl_here {
            let body = if super::tls::tls_mode() {
                // The test certificate names localhost: resolve it to [::1].
                let to = format!("localhost:{port}:[::1]");
                curl(&["--resolve", &to, &format!("https://localhost:{port}/a.txt")])
            } else {
                curl(&["-g", &format!("http://[::1]:{port}/a.txt")])
            };
            assert_eq!(String::from_utf8_lossy(&body), A_TXT, "curl");
        }
        if super::tls::tls_mode() {
            return; // `archserve send`, `load` and ureq speak plain HTTP
        }
        let p = port.to_string();
        let out = run([
            "send",
            "::1",
            &p,
            "GET /a.txt HTTP/1.1\\r\\nConnection: close",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "archserve send ::1: {text}");
        assert!(
            text.starts_with("HTTP/1.1 200 ") && text.ends_with(A_TXT),
            "{text}"
        );
        let url = format!("http://[::1]:{port}/a.txt");
        let out = run([
            "load",
            "-n",
            "40",
            "-c",
            "4",
            "--expect-status",
            "200",
            &url,
        ]);
        assert!(
            out.status.success(),
            "archserve load {url}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let body = ureq::get(&url)
            .call()
            .unwrap_or_else(|e| panic!("ureq {url}: {e}"))
            .into_string()
            .unwrap();
        assert_eq!(body, A_TXT, "ureq");
    });
}

#[test]
fn two_listeners_answer_at_once() {
    let second = second_loopback();
    for_each_arch(|arch| {
        let srv = ArchServer::start_listening(arch, &["127.0.0.1:0", second], &[]);
        assert_eq!(srv.addrs.len(), 2, "{}", srv.first_line);
        let named = format!("{}, {}", srv.addrs[0], srv.addrs[1]);
        assert_eq!(srv.first_line, format!("Server listening on {named}"));
        let worker = srv.next_line(STARTUP_TIMEOUT).expect("worker line");
        assert!(
            worker.starts_with(&format!("Starting connection worker for {named}, pid: ")),
            "{worker:?}"
        );
        // A connection open on each address at once, each answered twice (keep-alive).
        let mut conns: Vec<Conn> = srv
            .addrs
            .iter()
            .map(|a| Conn::open(&a.to_string(), arch))
            .collect();
        for round in 0..2 {
            for (c, addr) in conns.iter_mut().zip(&srv.addrs) {
                c.send(&req("GET", "/a.txt", &[]));
                let r = c.response();
                assert_eq!(r.status, 200, "[{arch}] round {round} on {addr}");
                assert_eq!(r.body_text(), A_TXT);
            }
        }
        drop(conns);
        // New connections to either, in turn.
        for i in 0..6 {
            let addr = &srv.addrs[i % 2];
            assert_eq!(get_on(addr, arch, "/a.txt"), A_TXT);
        }
    });
}

#[test]
fn several_listeners_survive_an_upgrade_and_reuseport() {
    let second = second_loopback();
    for_each_arch(|arch| {
        let multi = archserve::arch::find(arch).is_some_and(|a| a.multi_process);
        let extra: &[&str] = if multi { &["--reuseport"] } else { &[] };
        let srv = ArchServer::start_listening(arch, &["127.0.0.1:0", second], extra);
        let addrs = srv.addrs.clone();
        // Several connections to each address (with --reuseport, the kernel spreads them over
        // each address's group of sockets).
        for i in 0..8 {
            assert_eq!(get_on(&addrs[i % 2], arch, "/a.txt"), A_TXT);
        }
        srv.signal(Signal::SIGUSR2);
        let lines = lines_starting(&srv, &["Upgraded: process ", "Server listening on "]);
        let upgraded = &lines[0];
        // The successor took every socket over: it names the same addresses.
        let named = format!("Server listening on {}, {}", addrs[0], addrs[1]);
        assert_eq!(lines[1], named, "[{arch}] after {upgraded:?}");
        assert!(
            srv.wait_exit(EXIT_TIMEOUT).is_some(),
            "[{arch}] the old server did not exit after {upgraded:?}"
        );
        for i in 0..8 {
            assert_eq!(get_on(&addrs[i % 2], arch, "/a.txt"), A_TXT);
        }
    });
}

/// Duplicates `fds` onto descriptors 3, 4, ... in the child, as systemd passes sockets.
fn pass_as_systemd(cmd: &mut Command, fds: Vec<i32>) {
    // SAFETY: between fork and exec only fcntl and dup2, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way of 3, 4, ...: one of `fds` may be 3 or 4 itself.
            let mut high = Vec::with_capacity(fds.len());
            for &fd in &fds {
                let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, &h) in high.iter().enumerate() {
                if libc::dup2(h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[test]
fn sockets_handed_over_as_systemd_does_are_all_served() {
    let second = if ipv6_loopback() { "::1" } else { "127.0.0.2" };
    for_each_arch(|arch| {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind((second, 0)).unwrap();
        let want = vec![a.local_addr().unwrap(), b.local_addr().unwrap()];
        let fixture = Fixture::new(true);
        // LISTEN_PID must be the server's pid: the shell's, which exec keeps.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "LISTEN_PID=$$ LISTEN_FDS=2 exec \"$0\" \"$@\"", BIN])
            .args(["serve", "--arch", arch, "--root"])
            .arg(&fixture.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut cmd = with_arch_args(cmd, arch, &[]);
        pass_as_systemd(&mut cmd, vec![a.as_raw_fd(), b.as_raw_fd()]);
        let srv = ArchServer::from_command(arch, cmd, fixture);
        drop((a, b)); // the server holds its own copies
        assert_eq!(srv.addrs, want, "{}", srv.first_line);
        for i in 0..4 {
            assert_eq!(get_on(&want[i % 2], arch, "/a.txt"), A_TXT);
        }
    });
}

#[test]
fn the_access_log_writes_ipv6_peers_bare() {
    if !ipv6_loopback() {
        return;
    }
    for_each_arch(|arch| {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        let log_arg = log.to_str().unwrap().to_string();
        let extra = ["--access-log", log_arg.as_str()];
        let srv = ArchServer::start_listening(arch, &["[::1]:0", "127.0.0.1:0"], &extra);
        for addr in &srv.addrs {
            get_on(addr, arch, "/a.txt");
        }
        srv.signal(Signal::SIGTERM);
        assert!(srv.wait_exit(EXIT_TIMEOUT).is_some(), "did not exit");
        let text = std::fs::read_to_string(&log).unwrap();
        let mut peers: Vec<&str> = text
            .lines()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        peers.sort();
        assert_eq!(peers, ["127.0.0.1", "::1"], "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("::1 - - [") && l.contains("\"GET /a.txt HTTP/1.1\" 200 ")),
            "{text}"
        );
    });
}

#[test]
fn the_config_file_takes_a_list_of_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("serve.toml");
    let second = second_loopback();
    std::fs::write(&file, format!("listen = [\"127.0.0.1:0\", \"{second}\"]\n")).unwrap();
    let arch = archserve::arch::DEFAULT;
    let srv = ArchServer::start_listening(arch, &[], &["--config", file.to_str().unwrap()]);
    assert_eq!(srv.addrs.len(), 2, "{}", srv.first_line);
    for addr in &srv.addrs {
        assert_eq!(get_on(addr, arch, "/a.txt"), A_TXT);
    }
}

/// `archserve serve ARGS` must fail at start-up with one `error:` line naming `why`.
fn refused(args: &[&str], why: &str) {
    let mut cmd = command(["serve"]);
    cmd.args(args);
    let out = Process::spawn(cmd).finish(EXIT_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} exited 0; stderr: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("Server listening"), "{args:?}: {stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {stderr:?}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(why),
        "{args:?}: {stderr:?} does not say {why:?}"
    );
}

#[test]
fn bad_listen_values_are_refused_with_one_line() {
    let fx = Fixture::new(true);
    let root = fx.root.to_str().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    for arch in arch_names() {
        let base = ["--arch", arch, "--root", root];
        for (bad, why) in [
            (&["--listen", "127.0.0.1"][..], "no port"),
            (&["--listen", "[::1]"], "no port"),
            (&["--listen", "127.0.0.1:"], "is not a port"),
            (&["--listen", "[::1]:99999"], "is not a port"),
            (&["--listen", "300.1.2.3:80"], "is not an IP address"),
            (&["--listen", "localhost:80"], "is not an IP address"),
            (
                &["--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"],
                "given twice",
            ),
            (
                &["--listen", "127.0.0.1:0", "--port", "0"],
                "replaces --host",
            ),
            (
                &["--listen", "127.0.0.1:0", "--listen", &taken],
                &format!("cannot listen on {taken}: "),
            ),
        ] {
            let mut args = base.to_vec();
            args.extend_from_slice(bad);
            refused(&args, why);
        }
    }
}

/// Whether `arch` runs event loops (which hold many connections under `--max-conns`).
fn evented(arch: &str) -> bool {
    archserve::arch::find(arch).is_some_and(|a| a.idle_timeout == archserve::arch::EVENTED_IDLE)
}

#[test]
fn the_connection_cap_counts_the_connections_of_every_listener() {
    let second = second_loopback();
    for_each_arch(|arch| {
        if !evented(arch) {
            return; // a blocking worker holds one connection: the worker count is the cap
        }
        let extra = ["--max-conns", "2", "-w", "1"];
        let srv = ArchServer::start_listening(arch, &["127.0.0.1:0", second], &extra);
        let mut idle: Vec<Conn> = (0..2)
            .map(|_| {
                let mut c = Conn::open(&srv.addrs[0].to_string(), arch);
                c.send(&req("GET", "/a.txt", &[]));
                assert_eq!(c.response().status, 200);
                c
            })
            .collect();
        // A client of the other address is served: an idle one of the first made room.
        assert_eq!(get_on(&srv.addrs[1], arch, "/a.txt"), A_TXT);
        let closed = idle
            .iter_mut()
            .map(|c| c.is_open_and_quiet(Duration::from_millis(200)))
            .filter(|open| !open)
            .count();
        assert!(
            closed >= 1,
            "[{arch}] no idle connection was closed at the cap"
        );
    });
}

#[test]
fn sigterm_finishes_in_flight_requests_and_frees_every_address() {
    let second = second_loopback();
    for_each_arch(|arch| {
        let srv = ArchServer::start_listening(arch, &["127.0.0.1:0", second], &["--grace", "10"]);
        let mut c = Conn::open(&srv.addrs[1].to_string(), arch);
        // A first answer proves the connection is being served, not waiting in the backlog.
        c.send(&req("GET", "/a.txt", &[]));
        assert_eq!(c.response().status, 200);
        c.send(&req("GET", "/io?ms=1500", &[]));
        // Time for the server to read the request it is waiting for (not an assertion).
        std::thread::sleep(Duration::from_millis(300));
        srv.signal(Signal::SIGTERM);
        assert_eq!(c.response().status, 200, "[{arch}] in-flight /io");
        let status = srv.wait_exit(EXIT_TIMEOUT).expect("exit after SIGTERM");
        assert!(
            status.success(),
            "[{arch}] {status:?}: {}",
            srv.stderr_text()
        );
        for addr in &srv.addrs {
            TcpListener::bind(addr)
                .unwrap_or_else(|e| panic!("[{arch}] {addr} not freed after exit: {e}"));
        }
    });
}

#[test]
fn https_and_the_redirect_work_on_several_listeners() {
    if !ipv6_loopback() || !have_curl() {
        return;
    }
    let cert = super::tls::test_cert();
    for_each_arch(|arch| {
        let redirect = closed_port().to_string();
        let extra = redirect_args(&redirect);
        let srv = ArchServer::start_listening(arch, &["[::1]:0", "127.0.0.1:0"], &extra);
        let line = srv.next_line(STARTUP_TIMEOUT).unwrap_or_default();
        // The redirect listens on the first address's host.
        assert_eq!(
            line,
            format!("Redirecting HTTP on [::1]:{redirect} to HTTPS")
        );
        for addr in &srv.addrs {
            let port = addr.port();
            let ip = match addr {
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
                SocketAddr::V4(a) => a.ip().to_string(),
            };
            let to = format!("localhost:{port}:{ip}");
            let url = format!("https://localhost:{port}/a.txt");
            let mut cmd = Command::new("curl");
            cmd.args(["-sS", "--max-time", "20", "--cacert"])
                .arg(&cert.cert)
                .args(["--resolve", &to, &url]);
            let out = cmd.output().expect("run curl");
            assert!(
                out.status.success(),
                "[{arch}] curl {url} via {addr}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                A_TXT,
                "[{arch}] {addr}"
            );
        }
        let mut c = Conn::plain(&format!("[::1]:{redirect}"), arch);
        c.send(&req("GET", "/sub/x?y=1", &[]));
        let r = c.response();
        assert_eq!(r.status, 301, "[{arch}]");
        let expect = format!("https://localhost:{}/sub/x?y=1", srv.port);
        assert_eq!(r.header("location"), Some(expect.as_str()), "[{arch}]");
    });
}

#[test]
fn the_redirect_listener_is_handed_over_in_an_upgrade() {
    for_each_arch(|arch| {
        let redirect = closed_port().to_string();
        let extra = redirect_args(&redirect);
        let srv = ArchServer::start_listening(arch, &["127.0.0.1:0"], &extra);
        let said = format!("Redirecting HTTP on 127.0.0.1:{redirect} to HTTPS");
        assert_eq!(srv.next_line(STARTUP_TIMEOUT).unwrap_or_default(), said);
        let moved = |when: &str| {
            let mut c = Conn::plain(&format!("127.0.0.1:{redirect}"), arch);
            c.send(&req("GET", "/a.txt", &[]));
            let r = c.response();
            assert_eq!(r.status, 301, "[{arch}] {when}");
        };
        moved("before the upgrade");
        srv.signal(Signal::SIGUSR2);
        let lines = lines_starting(&srv, &["Upgraded: process ", "Redirecting HTTP on "]);
        // The successor took the redirect's socket over rather than failing to bind its port.
        assert_eq!(lines[1], said, "[{arch}] after {:?}", lines[0]);
        assert!(
            srv.wait_exit(EXIT_TIMEOUT).is_some(),
            "[{arch}] the old server did not exit after {:?}",
            lines[0]
        );
        moved("after the upgrade");
    });
}

/// `--redirect-http PORT` with HTTPS on: the test certificate, unless the TLS mode of the suite
/// adds it already.
fn redirect_args(port: &str) -> Vec<&str> {
    let mut args = vec!["--redirect-http", port];
    if !super::tls::tls_mode() {
        let cert = super::tls::test_cert();
        args.extend([
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
        ]);
    }
    args
}
