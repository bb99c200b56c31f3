//! Starting the built `archserve` in tests: one-shot runs, processes and servers on port 0 (the address read from their first stdout line), signalled, waited for with a timeout, killed with their process group on drop, their stderr kept for failure messages.
//!
//! Every test that runs the binary goes through this module. Deadlines here only turn a hang
//! into a failure; nothing asserts on time.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// The built server binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_archserve");
/// How long a server gets to print its `Server listening on` line.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a one-shot run (`send`, `load`, `compare`, `--help`) may take.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);
/// How long the output pipes may stay open after the process exited (a child holding them).
const PIPE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// `archserve ARGS` with stdin closed, stdout and stderr piped, in a process group of its own
/// (so that dropping the [`Process`] also kills the workers of multi-process architectures).
pub fn command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    cmd
}

/// `archserve serve --port 0 ARGS`.
pub fn serve_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = command(["serve", "--port", "0"]);
    cmd.args(args);
    cmd
}

/// Runs `archserve ARGS` to its end (failing after [`RUN_LIMIT`]); its exit status and output.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_command(command(args))
}

/// Runs a prepared command (from [`command`] or [`serve_command`]) to its end, as [`run`].
pub fn run_command(cmd: Command) -> Output {
    Process::spawn(cmd).finish(RUN_LIMIT)
}

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

/// A port with nothing listening on it (bound, then released): for a refused connection, or a
/// second port a server is told to bind.
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Binds `127.0.0.1:PORT` and releases it: Ok when no socket holds the port any more.
pub fn rebind(port: u16) -> io::Result<()> {
    TcpListener::bind(("127.0.0.1", port)).map(drop)
}

// ---------------------------------------------------------------------------------------------
// Output pipes
// ---------------------------------------------------------------------------------------------

/// What a reader thread collected from one output pipe of the child. The thread keeps the pipe
/// drained, so the child never blocks on a full pipe.
struct Pipe {
    bytes: Arc<Mutex<Vec<u8>>>,
    /// Disconnected once the reader thread has stopped (end of file, or after the first line).
    done: Mutex<Receiver<()>>,
}

impl Pipe {
    /// Reads `r` to its end in a thread. With `lines`, each complete line (without `\n` or
    /// `\r\n`) is also sent there; with `first_line_only`, the pipe is closed after the first.
    fn read(
        mut r: impl Read + Send + 'static,
        lines: Option<Sender<String>>,
        first_line_only: bool,
    ) -> Pipe {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done) = mpsc::channel::<()>();
        let all = bytes.clone();
        thread::spawn(move || {
            let _done = done_tx;
            let mut chunk = [0u8; 4096];
            let mut line = Vec::new();
            loop {
                let n = match r.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                all.lock().unwrap().extend_from_slice(&chunk[..n]);
                let Some(tx) = &lines else { continue };
                for &b in &chunk[..n] {
                    if b != b'\n' {
                        line.push(b);
                        continue;
                    }
                    let text = line.strip_suffix(b"\r").unwrap_or(&line);
                    let _ = tx.send(String::from_utf8_lossy(text).into_owned());
                    line.clear();
                    if first_line_only {
                        return;
                    }
                }
            }
        });
        Pipe {
            bytes,
            done: Mutex::new(done),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// True once the reader has stopped, waiting at most `timeout`.
    fn wait_done(&self, timeout: Duration) -> bool {
        matches!(
            self.done.lock().unwrap().recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A running `archserve` with its output collected; killed with its process group on drop.
pub struct Process {
    pid: i32,
    /// The command line, for failure messages.
    shown: String,
    child: Mutex<Child>,
    lines: Mutex<Receiver<String>>,
    stdout: Pipe,
    stderr: Pipe,
}

impl Process {
    /// Spawns `cmd` (normally from [`command`] or [`serve_command`]).
    pub fn spawn(cmd: Command) -> Process {
        Process::spawn_reading(cmd, false)
    }

    /// Spawns `cmd`; with `first_line_only`, its stdout is closed after the first line.
    fn spawn_reading(mut cmd: Command, first_line_only: bool) -> Process {
        let shown = format!("{:?}", cmd.get_args().collect::<Vec<_>>());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {BIN} {shown}: {e}"));
        let (tx, lines) = mpsc::channel();
        let stdout = Pipe::read(
            child.stdout.take().expect("stdout"),
            Some(tx),
            first_line_only,
        );
        let stderr = Pipe::read(child.stderr.take().expect("stderr"), None, false);
        Process {
            pid: child.id() as i32,
            shown,
            child: Mutex::new(child),
            lines: Mutex::new(lines),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid), sig).expect("kill");
    }

    /// Sends `sig` to the process group (the process and the workers it forked).
    pub fn signal_group(&self, sig: Signal) {
        kill(Pid::from_raw(-self.pid), sig).expect("kill");
    }

    /// True while the process has not exited.
    pub fn is_running(&self) -> bool {
        matches!(self.child.lock().unwrap().try_wait(), Ok(None))
    }

    /// Waits (bounded) for the process to exit; `None` if it still runs after `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
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

    /// The next stdout line not yet taken, if one comes within `timeout`.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.lock().unwrap().recv_timeout(timeout).ok()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// Waits for the exit (failing after `limit`) and for both output pipes to close; returns
    /// the exit status and everything the process wrote.
    pub fn finish(self, limit: Duration) -> Output {
        let status = self.wait_exit(limit).unwrap_or_else(|| {
            panic!(
                "archserve {} did not finish within {limit:?}; stdout: {}; stderr: {}",
                self.shown,
                self.stdout.text(),
                self.stderr.text()
            )
        });
        for (name, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            assert!(
                pipe.wait_done(PIPE_CLOSE_TIMEOUT),
                "archserve {} exited but its {name} stayed open (a child of it holds the pipe)",
                self.shown
            );
        }
        Output {
            status,
            stdout: self.stdout.bytes(),
            stderr: self.stderr.bytes(),
        }
    }
}

/// How much of a server's stderr a failing test prints.
const STDERR_TAIL: usize = 4096;

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed while this process ran: what it said is the first clue.
            let text = self.stderr.text();
            let tail = &text[text.floor_char_boundary(text.len().saturating_sub(STDERR_TAIL))..];
            if !tail.trim().is_empty() {
                eprintln!(
                    "--- stderr of archserve (pid {}), last {STDERR_TAIL} B ---\n{tail}",
                    self.pid
                );
            }
        }
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        // The whole process group: workers of multi-process architectures die with the leader
        // (also when the leader is already gone).
        let _ = kill(Pid::from_raw(-self.pid), Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// The addresses in `Server listening on 127.0.0.1:PORT[, [::1]:PORT...]`, the first line a
/// server prints.
pub fn listening_addrs(line: &str) -> Option<Vec<SocketAddr>> {
    line.strip_prefix("Server listening on ")?
        .split(", ")
        .map(|a| a.trim().parse().ok())
        .collect()
}

/// A running `archserve serve` whose addresses are known; a [`Process`] otherwise.
pub struct Server {
    process: Process,
    /// Every address it listens on, as its first line names them.
    pub addrs: Vec<SocketAddr>,
    /// The first address's port.
    pub port: u16,
    /// The `Server listening on` line.
    pub first_line: String,
    /// The temporary root of [`Server::with_index`], removed after the server is killed.
    _root: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `archserve serve --port 0 --root ROOT ARGS` on a new temporary root holding only
    /// `index.html` with `index`; the root lives as long as the server.
    pub fn with_index(index: &str, args: &[&str]) -> Server {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("index.html"), index).expect("write index.html");
        let mut cmd = serve_command(["--root".as_ref(), root.path().as_os_str()]);
        cmd.args(args);
        let mut server = Server::spawn(cmd);
        server._root = Some(root);
        server
    }

    /// Starts a prepared command (normally from [`serve_command`], e.g. with a `pre_exec`
    /// added) and waits for its `Server listening on` line.
    pub fn spawn(cmd: Command) -> Server {
        Server::from_process(Process::spawn_reading(cmd, false))
    }

    /// As [`Server::spawn`], but the server's stdout is closed once the address is read, so
    /// whatever it prints after that meets a closed pipe.
    pub fn spawn_closing_stdout(cmd: Command) -> Server {
        Server::from_process(Process::spawn_reading(cmd, true))
    }

    fn from_process(process: Process) -> Server {
        let shown = &process.shown;
        let first = match process.lines.lock().unwrap().recv_timeout(STARTUP_TIMEOUT) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!(
                "no `Server listening on` line within {STARTUP_TIMEOUT:?} (args {shown}); stderr: {}",
                process.stderr_text()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = process.wait_exit(STARTUP_TIMEOUT);
                panic!(
                    "server exited before printing its address (status {status:?}, args {shown}); stderr: {}",
                    process.stderr_text()
                )
            }
        };
        let addrs = listening_addrs(&first)
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| {
                panic!("first stdout line is not `Server listening on ADDR:PORT[, ADDR:PORT...]`: {first:?} (args {shown})")
            });
        assert!(
            addrs.iter().all(|a| a.port() != 0),
            "server printed port 0 instead of the real port: {first:?} (args {shown})"
        );
        Server {
            process,
            port: addrs[0].port(),
            addrs,
            first_line: first,
            _root: None,
        }
    }

    /// The first address (`127.0.0.1:PORT`, `[::1]:PORT`).
    pub fn addr(&self) -> String {
        self.addrs[0].to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addrs[0], path)
    }
}

impl Deref for Server {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.process
    }
}
