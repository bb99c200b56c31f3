//! Supervisor tests for the multi-process architectures (processes, hybrid, uring): a killed worker is
//! replaced and the service stays up; SIGTERM drains and reaps every worker, exits 0, and frees
//! the port; a killed master takes its workers with it; --reuseport serves too.
//!
//! No timing assertions: the deadlines below only turn a hang into a failure.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const HANG: Duration = Duration::from_secs(20);

struct Server {
    child: Child,
    lines: Receiver<String>,
    port: u16,
    workers: Vec<i32>,
    _root: tempfile::TempDir,
}

impl Server {
    fn start(arch: &str, extra: &[&str]) -> Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("index.html"), "hello from the root\n").unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_archserve"))
            .args([
                "serve", "--arch", arch, "--port", "0", "-w", "2", "--grace", "5",
            ])
            .arg("--root")
            .arg(root.path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(HANG).expect("no first line");
        let port = first
            .strip_prefix("Server listening on 127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .unwrap();
        let mut server = Server {
            child,
            lines,
            port,
            workers: Vec::new(),
            _root: root,
        };
        for _ in 0..2 {
            let pid = server.next_worker();
            server.workers.push(pid);
        }
        server
    }

    /// Waits for the next `Starting connection worker ... pid: N` line; returns N.
    fn next_worker(&self) -> i32 {
        let line = self.lines.recv_timeout(HANG).expect("no worker line");
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

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for the master to exit; returns its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "master did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        let server = Server::start(arch, &[]);
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
        assert!(alive(server.child.id() as i32), "[{arch}] master died");
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_reaps_workers_and_frees_the_port() {
    for arch in multi() {
        let mut server = Server::start(arch, &[]);
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
        assert_eq!(server.wait_exit(), Some(0), "[{arch}] exit code");
        for &pid in &server.workers {
            wait_gone(pid);
        }
        TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("[{arch}] port {port} not free: {e}"));
    }
}

#[test]
fn sigint_stops_every_architecture_with_exit_0() {
    for arch in archserve::arch::REGISTRY.iter().map(|a| a.name) {
        if !runnable(arch) {
            continue;
        }
        let extra: &[&str] = &[];
        let mut child = Command::new(env!("CARGO_BIN_EXE_archserve"))
            .args(["serve", "--arch", arch, "--port", "0", "--root", "www"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // stdout is dropped after the first line: regression test for a server that panicked on
        // EPIPE when printing its worker lines (async exited 101).
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(
            first.starts_with("Server listening on"),
            "[{arch}] {first:?}"
        );
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        let deadline = Instant::now() + HANG;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "[{arch}] did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "[{arch}]");
    }
}

#[test]
fn a_killed_master_takes_its_workers_with_it() {
    for arch in multi() {
        let mut server = Server::start(arch, &[]);
        server.signal(Signal::SIGKILL);
        server.wait_exit();
        for &pid in &server.workers {
            wait_gone(pid);
        }
    }
}

#[test]
fn reuseport_serves_and_survives_a_killed_worker() {
    for arch in multi() {
        let server = Server::start(arch, &["--reuseport"]);
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
