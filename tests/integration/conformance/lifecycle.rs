//! Process lifecycle: the startup lines, `--help` listing every architecture, startup errors (one `error:` line, non-zero exit), SIGTERM/SIGINT graceful shutdown with an /io request in flight, bounded grace with idle keep-alive connections, and the port freed afterwards.

use super::harness::*;
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::thread;
use std::time::Duration;

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn registry_lists_threads() {
    let names: Vec<&str> = archserve::arch::REGISTRY.iter().map(|a| a.name).collect();
    assert!(
        names.contains(&"threads"),
        "REGISTRY must contain `threads`: {names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        names.len(),
        "duplicate architecture names: {names:?}"
    );
}

#[test]
fn startup_prints_address_then_one_line_per_worker() {
    for_each_arch(|arch| {
        let (srv, workers) = if single_worker(arch) {
            (ArchServer::start(arch), 1)
        } else {
            (ArchServer::start_with(arch, &["-w", "3"]), 3)
        };
        let prefix = format!(
            "Starting connection worker for 127.0.0.1:{}, pid: ",
            srv.port
        );
        for i in 0..workers {
            let line = srv
                .next_line(Duration::from_secs(5))
                .unwrap_or_else(|| panic!("worker line #{i} of {workers} missing"));
            let rest = line.strip_prefix(&prefix).unwrap_or_else(|| {
                panic!("worker line #{i}: {line:?} does not start with {prefix:?}")
            });
            let (pid, tid) = rest
                .split_once(", tid: ")
                .unwrap_or_else(|| panic!("worker line #{i}: {line:?} lacks `, tid: N`"));
            assert!(pid.parse::<u32>().is_ok(), "worker line #{i}: pid {pid:?}");
            assert!(tid.parse::<u64>().is_ok(), "worker line #{i}: tid {tid:?}");
        }
        assert!(srv.is_running(), "server exited after its startup lines");
        // And it serves.
        assert_eq!(srv.get("/a.txt").body_text(), A_TXT);
    });
}

#[test]
fn help_lists_every_architecture() {
    let out = run(["serve", "--help"]);
    assert!(
        out.status.success(),
        "serve --help exit status {:?}",
        out.status
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for arch in archserve::arch::REGISTRY {
        assert!(
            text.contains(arch.name),
            "`archserve serve --help` does not mention architecture `{}`:\n{text}",
            arch.name
        );
    }
}

/// Runs `archserve serve ARGS` expecting a startup failure; returns its output.
fn run_failing(args: &[&str]) -> Output {
    let mut cmd = command(["serve"]);
    cmd.args(args);
    Process::spawn(cmd).finish(EXIT_TIMEOUT)
}

/// A startup error: non-zero exit, no listening line, stderr's first line starts `error:`;
/// `one_line` also requires it to be the only line.
fn check_startup_error(args: &[&str], one_line: bool) {
    let out = run_failing(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "`serve {args:?}` exited 0; stderr: {stderr}"
    );
    assert!(
        !stdout.contains("Server listening"),
        "`serve {args:?}` printed a listening line: {stdout}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("error:")),
        "`serve {args:?}`: stderr must start with `error:`, got {stderr:?}"
    );
    if one_line {
        assert_eq!(
            lines.len(),
            1,
            "`serve {args:?}`: startup error must be one line, got {stderr:?}"
        );
    }
}

#[test]
fn startup_errors_are_one_line_and_non_zero() {
    for arch in arch_names() {
        let fx = Fixture::new(true);
        let root = fx.root.to_str().expect("utf-8 temp path").to_string();
        // Port in use.
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().unwrap().port().to_string();
        check_startup_error(&["--arch", arch, "--root", &root, "--port", &port], true);
        drop(taken);
        // Missing root, root that is a file.
        let missing = fx.parent.path().join("does-not-exist");
        check_startup_error(
            &[
                "--arch",
                arch,
                "--port",
                "0",
                "--root",
                missing.to_str().unwrap(),
            ],
            true,
        );
        let file = fx.root.join("a.txt");
        check_startup_error(
            &[
                "--arch",
                arch,
                "--port",
                "0",
                "--root",
                file.to_str().unwrap(),
            ],
            true,
        );
    }
}

#[test]
fn bad_flag_values_are_rejected() {
    let fx = Fixture::new(true);
    let root = fx.root.to_str().unwrap().to_string();
    for bad in [
        &["-w", "0"][..],
        &["-w", "abc"],
        &["--port", "70000"],
        &["--arch", "no-such-architecture"],
        &["--max-line", "0"],
        &["--max-headers", "0"],
        &["--no-such-flag"],
    ] {
        let mut args = vec!["--root", root.as_str()];
        if !bad.contains(&"--port") {
            args.extend(["--port", "0"]);
        }
        args.extend_from_slice(bad);
        // Flag parsing errors may carry a usage hint after the `error:` line.
        check_startup_error(&args, false);
    }
}

fn graceful_with(sig: Signal, group: bool) {
    for_each_arch(|arch| {
        let srv = ArchServer::start_with(arch, &["--grace", "10"]);
        let port = srv.port;
        let mut c = srv.connect();
        // A first answer proves the connection was accepted and is being served (not waiting
        // in the backlog), so the /io below is truly in flight when the signal lands.
        let warm = req("GET", "/a.txt", &[]);
        c.send(&warm);
        assert_eq!(c.response_for(&warm).status, 200);
        let request = req("GET", "/io?ms=1500", &[]);
        c.send(&request);
        // Give the server time to read the request it is already waiting for.
        thread::sleep(Duration::from_millis(300));
        assert!(srv.is_running(), "server died before the signal");
        if group {
            srv.signal_group(sig);
        } else {
            srv.signal(sig);
        }
        let r = c.response_for(&request);
        assert_eq!(
            r.status,
            200,
            "in-flight /io during shutdown (signal {sig}): {}",
            r.summary()
        );
        let status = srv
            .wait_exit(EXIT_TIMEOUT)
            .unwrap_or_else(|| panic!("server still running {EXIT_TIMEOUT:?} after signal {sig}"));
        assert!(
            status.success(),
            "exit status after signal {sig}: {status:?}; stderr: {}",
            srv.stderr_text()
        );
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still accepts connections after exit"
        );
        if let Err(e) = rebind(port) {
            panic!("port {port} not freed after exit: {e}");
        }
    });
}

#[test]
fn sigterm_finishes_the_in_flight_request_and_exits_0() {
    graceful_with(Signal::SIGTERM, false);
}

#[test]
fn sigint_to_the_process_group_is_graceful_too() {
    graceful_with(Signal::SIGINT, true);
}

#[test]
fn idle_keep_alive_connections_do_not_block_shutdown() {
    for_each_arch(|arch| {
        // Without deferred accept, so the silent connection below is accepted and waiting for
        // its first request when the signal comes (the `stopping` notice's case).
        let srv = ArchServer::start_with(arch, &["--grace", "2", "--no-defer-accept"]);
        let mut c = srv.connect();
        let request = req("GET", "/a.txt", &[]);
        c.send(&request);
        assert_eq!(c.response_for(&request).status, 200);
        // `c` stays open and idle, as does a connection that never sent a byte.
        let _silent = srv.connect();
        srv.signal(Signal::SIGTERM);
        let status = srv.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "idle keep-alive connections kept the server alive {EXIT_TIMEOUT:?} after SIGTERM"
            )
        });
        assert!(
            status.success(),
            "exit status: {status:?}; stderr: {}",
            srv.stderr_text()
        );
        // The idle connection was closed, not left dangling.
        let rest = c.read_to_close();
        assert!(
            rest.is_ok(),
            "idle connection not closed at shutdown: {rest:?}"
        );
    });
}
