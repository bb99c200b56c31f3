//! Starting the built `archserve serve` on a fresh root and port 0 for each registered architecture, reading its address, signalling it, and killing its process group on drop.

use crate::conformance::fixture::Fixture;
use crate::conformance::harness::{req, Conn, Response};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The built server binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_archserve");
/// How long the server gets to print its `Server listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Architectures
// ---------------------------------------------------------------------------------------------

/// The registered architecture names; `ARCHSERVE_TEST_ARCH=name` narrows the run to one.
pub fn arch_names() -> Vec<&'static str> {
    let only = std::env::var("ARCHSERVE_TEST_ARCH").ok();
    archserve::arch::REGISTRY
        .iter()
        .map(|a| a.name)
        .filter(|n| only.as_deref().is_none_or(|o| o == *n))
        .filter(|n| match archserve::arch::unavailable(n) {
            Some(why) => {
                eprintln!("skipping architecture {n}: {why}");
                false
            }
            None => true,
        })
        .filter(|n| {
            let tls = crate::conformance::tls::tls_mode()
                && !archserve::arch::find(n).is_some_and(|a| a.serves_tls);
            if tls {
                eprintln!("skipping architecture {n} over TLS: it does not serve HTTPS");
            }
            !tls
        })
        .collect()
}

/// Runs `test` once per registered architecture that serves HTTPS (the others refuse
/// `--tls-cert` at start-up).
pub fn for_each_tls_arch(test: impl Fn(&str)) {
    for_each_arch(|arch| {
        if archserve::arch::find(arch).is_some_and(|a| a.serves_tls) {
            test(arch)
        } else {
            eprintln!("skipping architecture {arch}: it does not serve HTTPS");
        }
    })
}

/// Runs `test` once per registered architecture; a failure names the architecture.
pub fn for_each_arch(test: impl Fn(&str)) {
    let names = arch_names();
    assert!(
        !names.is_empty(),
        "no architecture to test (REGISTRY empty or ARCHSERVE_TEST_ARCH matches none)"
    );
    for name in names {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(name)));
        if let Err(payload) = outcome {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".to_string());
            panic!("[arch `{name}`] {msg}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------------

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
pub const SIGINT: i32 = 2;
pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

/// Sends `sig` to `pid` (a negative pid names a process group).
pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        kill(pid, sig);
    }
}

/// Collects a child's stderr in the background (it is shown in failure messages).
fn drain_to_buffer(mut r: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => b.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    });
    buf
}

/// Sends each stdout line through a channel (the reader keeps the pipe drained).
fn lines_to_channel(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

/// A running `archserve serve` on a fresh temporary root; killed (with its process group) on drop.
pub struct Server {
    pub arch: String,
    pub port: u16,
    pub fixture: Fixture,
    pub first_line: String,
    pid: i32,
    child: Mutex<Child>,
    lines: Mutex<Receiver<String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// Architectures that run exactly one worker refuse `-w` other than 1; the suite runs the
/// others with `-w 2`, enough for concurrency without slowing parallel tests.
pub fn single_worker(arch: &str) -> bool {
    archserve::arch::REGISTRY
        .iter()
        .any(|a| a.name == arch && a.workers == archserve::arch::Workers::One)
}

/// The command line `archserve serve --arch NAME --port 0 --root ROOT [-w 2] EXTRA...`.
pub fn serve_command(arch: &str, root: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(["--arch", arch, "--port", "0", "--root"])
        .arg(root);
    if !extra.iter().any(|a| *a == "-w" || *a == "--workers") && !single_worker(arch) {
        cmd.args(["-w", "2"]);
    }
    cmd.args(crate::conformance::tls::serve_args());
    cmd.args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group: Drop kills workers of multi-process architectures too.
        .process_group(0);
    cmd
}

impl Server {
    pub fn start(arch: &str) -> Server {
        Server::start_with(arch, &[])
    }

    pub fn start_with(arch: &str, extra: &[&str]) -> Server {
        Server::start_full(arch, extra, true)
    }

    /// Starts the server; `with_404` controls whether `ROOT/404.html` exists.
    pub fn start_full(arch: &str, extra: &[&str], with_404: bool) -> Server {
        let fixture = Fixture::new(with_404);
        let cmd = serve_command(arch, &fixture.root, extra);
        Server::from_command(arch, cmd, fixture)
    }

    /// Starts a prepared command (normally from [`serve_command`], e.g. with a `pre_exec` added)
    /// serving `fixture`, and waits for its `Server listening on` line.
    pub fn from_command(arch: &str, mut cmd: Command, fixture: Fixture) -> Server {
        let shown = format!("{:?}", cmd.get_args().collect::<Vec<_>>());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("[{arch}] cannot spawn {BIN}: {e}"));
        let lines = Mutex::new(lines_to_channel(child.stdout.take().expect("stdout")));
        let stderr = drain_to_buffer(child.stderr.take().expect("stderr"));
        let mut server = Server {
            arch: arch.to_string(),
            port: 0,
            fixture,
            first_line: String::new(),
            pid: child.id() as i32,
            child: Mutex::new(child),
            lines,
            stderr,
        };
        let first = match server.lines.lock().unwrap().recv_timeout(STARTUP_TIMEOUT) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!(
                "[{arch}] no `Server listening on` line within {STARTUP_TIMEOUT:?} (args {shown}); stderr: {}",
                server.stderr_text()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = server.child.lock().unwrap().wait().ok();
                panic!(
                    "[{arch}] server exited before printing its address (status {status:?}, args {shown}); stderr: {}",
                    server.stderr_text()
                )
            }
        };
        let port = first
            .strip_prefix("Server listening on 127.0.0.1:")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .unwrap_or_else(|| {
                panic!("[{arch}] first stdout line is not `Server listening on 127.0.0.1:PORT`: {first:?}")
            });
        assert_ne!(
            port, 0,
            "[{arch}] server printed port 0 instead of the real port"
        );
        server.port = port;
        server.first_line = first;
        server
    }

    /// True while the server process has not exited.
    pub fn is_running(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The URL of `path` (https://localhost:PORT in the TLS mode: the test certificate's name).
    pub fn url(&self, path: &str) -> String {
        if crate::conformance::tls::tls_mode() {
            format!("https://localhost:{}{}", self.port, path)
        } else {
            format!("http://127.0.0.1:{}{}", self.port, path)
        }
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// The next stdout line after the first, if one comes within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.lock().unwrap().recv_timeout(timeout).ok()
    }

    /// Waits (bounded) for the server to exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.lock().unwrap().try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new raw connection to the server.
    pub fn connect(&self) -> Conn {
        Conn::open(&self.addr(), &self.arch)
    }

    /// One request on a fresh connection, first response returned.
    pub fn exchange(&self, request: &[u8]) -> Response {
        let mut c = self.connect();
        c.send(request);
        c.response_for(request)
    }

    /// `GET target` (HTTP/1.1, `Connection: close`) on a fresh connection.
    pub fn get(&self, target: &str) -> Response {
        self.exchange(&req("GET", target, &["Connection: close"]))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.pid;
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        // The whole process group: workers of multi-process architectures die with the leader
        // (also when the leader is already gone).
        send_signal(-pid, SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}
