//! Supervisor tests for the multi-process architectures (processes, hybrid, uring): a killed worker is
//! replaced and the service stays up; SIGTERM drains and reaps every worker, exits 0, and frees
//! the port; a killed master takes its workers with it; --reuseport serves too.
//!
//! No timing assertions: the deadlines below only turn a hang into a failure.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::Deref;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::server::{rebind, serve_command, Server};

const HANG: Duration = Duration::from_secs(20);

/// A multi-process server (`-w 2`, `--grace 5`) with the pids of its two workers; a [`Server`]
/// otherwise.
struct Supervised {
    server: Server,
    workers: Vec<i32>,
}

impl Supervised {
    fn start(arch: &str, extra: &[&str]) -> Supervised {
        let mut args = vec!["--arch", arch, "-w", "2", "--grace", "5"];
        args.extend_from_slice(extra);
        let mut server = Supervised {
            server: Server::with_index("hello from the root\n", &args),
            workers: Vec::new(),
        };
        for _ in 0..2 {
            let pid = server.next_worker();
            server.workers.push(pid);
        }
        server
    }

    /// Waits for the next `Starting connection worker ... pid: N` line; returns N.
    fn next_worker(&self) -> i32 {
        let line = self.next_line(HANG).expect("no worker line");
        let pid = line
            .split("pid: ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("not a worker line: {line:?}"));
        pid.parse().unwrap()
    }

    fn get(&self, path: &str) -> String {
        get(self.port, path)
    }

    /// Waits for the master to exit; returns its exit code.
    fn wait_master(&self) -> Option<i32> {
        self.wait_exit(HANG).expect("master did not exit").code()
    }
}

impl Deref for Supervised {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

/// One GET on a new connection; the whole response as text.
fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// True while a process with this pid runs. A zombie counts as gone: once its parent (the
/// killed master) is gone, reaping it is init's job, not ours.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + HANG;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still alive");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The multi-process architectures this machine can run (`uring` is skipped, and says so,
/// where io_uring is unavailable).
fn multi() -> Vec<&'static str> {
    ["processes", "hybrid", "uring"]
        .into_iter()
        .filter(|&arch| runnable(arch))
        .collect()
}

fn runnable(arch: &str) -> bool {
    match archserve::arch::unavailable(arch) {
        Some(why) => {
            eprintln!("skipping architecture {arch}: {why}");
            false
        }
        None => true,
    }
}

#[test]
fn a_killed_worker_is_replaced_and_the_service_stays_up() {
    for arch in multi() {
        let server = Supervised::start(arch, &[]);
        assert!(server.get("/").starts_with("HTTP/1.1 200"), "[{arch}]");
        let victim = server.workers[0];
        kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
        let replacement = server.next_worker();
        assert_ne!(replacement, victim, "[{arch}]");
        assert!(!server.workers.contains(&replacement), "[{arch}]");
        for _ in 0..10 {
            let r = server.get("/");
            assert!(r.starts_with("HTTP/1.1 200"), "[{arch}] after kill: {r}");
            assert!(r.ends_with("hello from the root\n"), "[{arch}]");
        }
        assert!(alive(server.pid()), "[{arch}] master died");
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_reaps_workers_and_frees_the_port() {
    for arch in multi() {
        let server = Supervised::start(arch, &[]);
        let port = server.port;
        // A request in flight when SIGTERM arrives must still be answered.
        let in_flight = std::thread::spawn(move || get(port, "/io?ms=700"));
        std::thread::sleep(Duration::from_millis(200));
        server.signal(Signal::SIGTERM);
        let answer = in_flight.join().unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "[{arch}] in flight: {answer}"
        );
        assert!(answer.ends_with("waited 700 ms\n"), "[{arch}]");
        assert_eq!(server.wait_master(), Some(0), "[{arch}] exit code");
        for &pid in &server.workers {
            wait_gone(pid);
        }
        rebind(port).unwrap_or_else(|e| panic!("[{arch}] port {port} not free: {e}"));
    }
}

#[test]
fn sigint_stops_every_architecture_with_exit_0() {
    let root = tempfile::tempdir().unwrap();
    for arch in archserve::arch::REGISTRY.iter().map(|a| a.name) {
        if !runnable(arch) {
            continue;
        }
        let mut cmd = serve_command(["--arch", arch, "--root"]);
        cmd.arg(root.path());
        // stdout is closed after the first line: regression test for a server that panicked on
        // EPIPE when printing its worker lines (async exited 101).
        let server = Server::spawn_closing_stdout(cmd);
        server.signal(Signal::SIGINT);
        let status = server
            .wait_exit(HANG)
            .unwrap_or_else(|| panic!("[{arch}] did not stop on SIGINT"));
        assert_eq!(status.code(), Some(0), "[{arch}]");
    }
}

#[test]
fn a_killed_master_takes_its_workers_with_it() {
    for arch in multi() {
        let server = Supervised::start(arch, &[]);
        server.signal(Signal::SIGKILL);
        server.wait_master();
        for &pid in &server.workers {
            wait_gone(pid);
        }
    }
}

#[test]
fn reuseport_serves_and_survives_a_killed_worker() {
    for arch in multi() {
        let server = Supervised::start(arch, &["--reuseport"]);
        for _ in 0..10 {
            assert!(server.get("/").starts_with("HTTP/1.1 200"), "[{arch}]");
        }
        kill(Pid::from_raw(server.workers[1]), Signal::SIGKILL).unwrap();
        server.next_worker();
        // Every socket of the group has a worker again: no connection lands on an orphan queue.
        for _ in 0..20 {
            let r = server.get("/");
            assert!(r.starts_with("HTTP/1.1 200"), "[{arch}] {r}");
        }
    }
}
