//! CGI/1.1 (RFC 3875), the site's part: which requests run a script (executable files in the
//! `--cgi-dir` folder under the root), the script to run and its meta-variables, the cap on
//! scripts running at once, and ([`output`]) what its output becomes. No process is started
//! here: the executors spawn it and move bytes through its pipes, each in its own I/O style.
//!
//! The environment holds the meta-variables and a fixed `PATH` only, never the server's own
//! variables. Request bodies are held in memory (up to `max_body`) before the script starts, as
//! nginx buffers a body before passing it upstream; its output is streamed.
pub mod output;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::resolve::{self, Reject, Root};
use crate::http::{Method, Request, Version};

/// The `PATH` a script gets: the system's programs, nothing of the server's environment.
pub const SAFE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// `serve` flags of CGI, checked at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiOptions {
    /// The folder, relative to the root, normalized (`cgi-bin`).
    pub dir: String,
    /// A script still running this long after it started is killed: 504 (or, its answer
    /// begun, the connection closes).
    pub timeout: Duration,
    /// Bytes of body a script may print; beyond them it is killed and the connection closed.
    pub max_output: u64,
    /// The largest request body a script is given (413 beyond).
    pub max_body: u64,
    /// Scripts running at once in one server process (503 beyond).
    pub max_scripts: usize,
}

impl CgiOptions {
    /// The options for `--cgi-dir DIR` (checked: a relative path under the root, no dot
    /// segments) with the defaults for the rest.
    pub fn new(dir: &str) -> Result<CgiOptions, String> {
        let norm = resolve::normalize(&format!("/{dir}"))
            .map_err(|_| format!("--cgi-dir {dir}: not a folder name under the root"))?;
        if norm.rel.is_empty() || dir.starts_with('/') {
            return Err(format!(
                "--cgi-dir {dir}: must name a folder under the root, e.g. cgi-bin"
            ));
        }
        Ok(CgiOptions {
            dir: norm.rel,
            timeout: Duration::from_secs(30),
            max_output: 1 << 30,
            max_body: 1 << 20,
            max_scripts: 64,
        })
    }
}

/// A script to run for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// Absolute path of the executable.
    pub program: PathBuf,
    /// Its folder: the working directory (RFC 3875 §7.2 leaves it to the server; Apache and
    /// lighttpd use the script's folder).
    pub cwd: PathBuf,
    /// The meta-variables known from the request; [`Script::env`] adds the connection's.
    vars: Vec<(String, OsString)>,
    /// HEAD: the script runs, its body is not sent.
    pub head_only: bool,
    /// The client speaks HTTP/1.0 (no chunked encoding).
    pub http10: bool,
    pub timeout: Duration,
    pub max_output: u64,
}

/// What the executor knows of the connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub https: bool,
}

impl Script {
    /// The whole environment: the request's meta-variables, the connection's, and `PATH`.
    pub fn env(&self, peer: Peer) -> Vec<(String, OsString)> {
        let mut env = self.vars.clone();
        let mut set = |k: &str, v: String| env.push((k.to_owned(), v.into()));
        if let Some(remote) = peer.remote {
            set("REMOTE_ADDR", remote.ip().to_string());
            set("REMOTE_PORT", remote.port().to_string());
        }
        if let Some(local) = peer.local {
            set("SERVER_ADDR", local.ip().to_string());
            set("SERVER_PORT", local.port().to_string());
            if !self.vars.iter().any(|(k, _)| k == "SERVER_NAME") {
                set("SERVER_NAME", local.ip().to_string());
            }
        }
        if peer.https {
            set("HTTPS", "on".into());
        }
        env
    }
}

/// What a request under the CGI folder leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    Script(Box<Script>),
    /// 400, 403 (the folder itself, a file not executable), 404.
    Status(u16),
}

/// The script `req` names, if its path is under the CGI folder (`None`: not a CGI request).
/// `root_abs`: the root as an absolute path (the program is executed by path).
pub fn find(
    opts: &CgiOptions,
    root: &Root,
    root_abs: &std::path::Path,
    req: &Request,
) -> Option<Found> {
    let (path, query) = resolve::split_target(&req.target)?;
    let norm = match resolve::normalize(path) {
        Ok(n) => n,
        Err(Reject::Bad(_)) => return under(path, &opts.dir).then_some(Found::Status(400)),
        Err(Reject::Hidden) => return under(path, &opts.dir).then_some(Found::Status(404)),
    };
    let rest = norm.rel.strip_prefix(opts.dir.as_str())?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        return Some(Found::Status(403));
    }
    let (name, info) = match rest.split_once('/') {
        Some((name, info)) => (name, format!("/{info}")),
        None => (rest, String::new()),
    };
    let rel = format!("{}/{name}", opts.dir);
    let meta = match root.open(&rel).and_then(|f| f.metadata()) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Some(Found::Status(403))
        }
        Err(_) => return Some(Found::Status(404)),
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Some(Found::Status(403));
    }
    let script_name = format!("/{rel}");
    let program = root_abs.join(&rel);
    let cwd = root_abs.join(&opts.dir);
    let vars = request_vars(req, query, &script_name, &info, &program, root_abs);
    Some(Found::Script(Box::new(Script {
        program,
        cwd,
        vars,
        head_only: req.method == Method::Head,
        http10: req.version == Version::Http10,
        timeout: opts.timeout,
        max_output: opts.max_output,
    })))
}

/// Whether a raw path (not normalizable) points into the CGI folder, so its refusal is ours.
fn under(path: &str, dir: &str) -> bool {
    path.trim_start_matches('/').starts_with(dir)
}

/// The meta-variables of RFC 3875 §4.1 the request decides, plus the common extras Apache and
/// lighttpd set (`REQUEST_URI`, `SCRIPT_FILENAME`, `DOCUMENT_ROOT`).
fn request_vars(
    req: &Request,
    query: &str,
    script_name: &str,
    path_info: &str,
    program: &std::path::Path,
    root: &std::path::Path,
) -> Vec<(String, OsString)> {
    let mut env: Vec<(String, OsString)> = Vec::with_capacity(24 + req.fields().len());
    let mut set = |k: &str, v: OsString| env.push((k.to_owned(), v));
    set("PATH", SAFE_PATH.into());
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set("SERVER_SOFTWARE", crate::http::response::SERVER.into());
    set("SERVER_PROTOCOL", req.version.as_str().into());
    set("REQUEST_METHOD", req.method_text.clone().into());
    set("QUERY_STRING", query.into());
    set("REQUEST_URI", req.target.clone().into());
    set("SCRIPT_NAME", script_name.into());
    set("SCRIPT_FILENAME", program.into());
    set("DOCUMENT_ROOT", root.into());
    if !path_info.is_empty() {
        set("PATH_INFO", path_info.into());
        set("PATH_TRANSLATED", root.join(&path_info[1..]).into());
    }
    if req.body_len > 0 {
        set("CONTENT_LENGTH", req.body_len.to_string().into());
    }
    for (name, value) in req.fields() {
        if name.eq_ignore_ascii_case("content-type") {
            set("CONTENT_TYPE", OsString::from_vec(value.clone()));
        } else if name.eq_ignore_ascii_case("host") {
            let host = String::from_utf8_lossy(value);
            let host = match host.rsplit_once(':') {
                Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h.to_owned(),
                _ => host.into_owned(),
            };
            set("SERVER_NAME", host.into());
        }
    }
    http_vars(req, &mut env);
    env
}

/// `HTTP_*` for each field (RFC 3875 §4.1.18), several lines of one field joined with `, `.
/// Left out: the body's fields (they are CONTENT_*), the connection's, `Proxy` (a client must
/// not set `HTTP_PROXY`, the "httpoxy" hole), and names with characters other than letters,
/// digits and `-` (`X_A` and `X-A` would be the same variable; nginx drops them too).
fn http_vars(req: &Request, env: &mut Vec<(String, OsString)>) {
    let skip = ["content-type", "content-length", "connection", "proxy"];
    for (name, value) in req.fields() {
        if skip.iter().any(|s| name.eq_ignore_ascii_case(s))
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            continue;
        }
        let var: String = std::iter::once("HTTP_".to_owned())
            .chain(name.chars().map(|c| match c {
                '-' => "_".to_owned(),
                c => c.to_ascii_uppercase().to_string(),
            }))
            .collect();
        match env.iter_mut().find(|(k, _)| *k == var) {
            Some((_, joined)) => {
                joined.push(", ");
                joined.push(OsString::from_vec(value.clone()));
            }
            None => env.push((var, OsString::from_vec(value.clone()))),
        }
    }
}

/// Scripts running in this process.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A place among the scripts running at once; given back when dropped.
#[derive(Debug)]
pub struct Running(());

impl Running {
    /// A place, if fewer than `max` scripts run now (else the answer is 503).
    pub fn acquire(max: usize) -> Option<Running> {
        RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Running(()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse, Limits, Parsed};

    fn request(text: &str) -> Request {
        let limits = Limits {
            keep_fields: true,
            ..Limits::default()
        };
        match parse(text.as_bytes(), &limits) {
            Ok(Parsed::Complete(r, _)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn site() -> (tempfile::TempDir, Root, CgiOptions) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cgi-bin")).unwrap();
        for (name, mode) in [("run.sh", 0o755), ("plain.txt", 0o644)] {
            let p = dir.path().join("cgi-bin").join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let root = Root::open_dir(dir.path()).unwrap();
        (dir, root, CgiOptions::new("cgi-bin").unwrap())
    }

    fn var<'a>(env: &'a [(String, OsString)], k: &str) -> Option<&'a str> {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.to_str().unwrap())
    }

    #[test]
    fn a_script_gets_the_standard_meta_variables() {
        let (dir, root, opts) = site();
        let req = request(
            "POST /cgi-bin/run.sh/a%20b/c?x=1&y HTTP/1.1\r\nHost: ex.org:8080\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nX-Thing: 1\r\nx-thing: 2\r\nProxy: evil\r\nX_Under: no\r\n\r\n",
        );
        let Some(Found::Script(s)) = find(&opts, &root, dir.path(), &req) else {
            panic!("no script");
        };
        assert_eq!(s.program, dir.path().join("cgi-bin/run.sh"));
        let peer = Peer {
            remote: Some("10.0.0.1:5555".parse().unwrap()),
            local: Some("127.0.0.1:2000".parse().unwrap()),
            https: false,
        };
        let env = s.env(peer);
        for (k, v) in [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REQUEST_METHOD", "POST"),
            ("QUERY_STRING", "x=1&y"),
            ("SCRIPT_NAME", "/cgi-bin/run.sh"),
            ("PATH_INFO", "/a b/c"),
            ("CONTENT_LENGTH", "3"),
            ("CONTENT_TYPE", "text/plain"),
            ("SERVER_NAME", "ex.org"),
            ("SERVER_PORT", "2000"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REMOTE_ADDR", "10.0.0.1"),
            ("HTTP_HOST", "ex.org:8080"),
            ("HTTP_X_THING", "1, 2"),
            ("PATH", SAFE_PATH),
        ] {
            assert_eq!(var(&env, k), Some(v), "{k}");
        }
        for absent in [
            "HTTP_PROXY",
            "HTTP_X_UNDER",
            "HTTP_CONTENT_TYPE",
            "HTTPS",
            "HOME",
        ] {
            assert_eq!(var(&env, absent), None, "{absent}");
        }
    }

    #[test]
    fn a_bodyless_request_has_no_content_length_and_head_is_marked() {
        let (dir, root, opts) = site();
        let req = request("HEAD /cgi-bin/run.sh HTTP/1.0\r\n\r\n");
        let Some(Found::Script(s)) = find(&opts, &root, dir.path(), &req) else {
            panic!("no script");
        };
        assert!(s.head_only && s.http10);
        let env = s.env(Peer {
            remote: None,
            local: Some("127.0.0.1:80".parse().unwrap()),
            https: true,
        });
        assert_eq!(var(&env, "CONTENT_LENGTH"), None);
        assert_eq!(var(&env, "PATH_INFO"), None);
        assert_eq!(var(&env, "QUERY_STRING"), Some(""));
        assert_eq!(var(&env, "SERVER_NAME"), Some("127.0.0.1"));
        assert_eq!(var(&env, "HTTPS"), Some("on"));
    }

    #[test]
    fn only_executable_files_under_the_folder_run() {
        let (dir, root, opts) = site();
        let find = |t: &str| {
            find(&opts, &root, dir.path(), &request(t)).map(|f| match f {
                Found::Script(_) => 0,
                Found::Status(s) => s,
            })
        };
        let get = |p: &str| format!("GET {p} HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(find(&get("/cgi-bin/run.sh")), Some(0));
        assert_eq!(find(&get("/x/../cgi-bin/run.sh")), Some(0));
        assert_eq!(find(&get("/cgi-bin/plain.txt")), Some(403));
        assert_eq!(find(&get("/cgi-bin/")), Some(403));
        assert_eq!(find(&get("/cgi-bin")), Some(403));
        assert_eq!(find(&get("/cgi-bin/absent")), Some(404));
        assert_eq!(find(&get("/cgi-bin/.hidden")), Some(404));
        assert_eq!(find(&get("/cgi-bin/%00")), Some(400));
        assert_eq!(find(&get("/cgi-binx/run.sh")), None);
        assert_eq!(find(&get("/index.html")), None);
    }

    #[test]
    fn the_folder_must_be_under_the_root() {
        assert_eq!(CgiOptions::new("cgi-bin/").unwrap().dir, "cgi-bin");
        assert_eq!(CgiOptions::new("a/b").unwrap().dir, "a/b");
        for bad in ["", "/", "/etc", "..", "../x", ".hidden"] {
            assert!(CgiOptions::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cap_on_running_scripts_holds_and_frees() {
        let a = Running::acquire(2).unwrap();
        let b = Running::acquire(2);
        // Other tests may hold places too; the cap is what matters here.
        let held = Running::acquire(usize::MAX);
        assert!(Running::acquire(0).is_none());
        drop((a, b, held));
    }
}
