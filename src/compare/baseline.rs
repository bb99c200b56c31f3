//! The baselines' configurations, the only ones in the project: nginx (plain, and with
//! `listen ... deferred`) and lighttpd (with mod_cgi for the cgi workload), set up as a careful
//! operator would for static files and as close to archserve's defaults as each allows, and
//! the command lines that run them in the foreground.
//!
//! What every server gets, archserve included: loopback, the same document root, the same
//! worker count (lighttpd is one process: it has no worker processes to match), a listen
//! backlog of 1024, keep-alive for 75 s and 1,000 requests per connection, no access log,
//! sendfile, room for 16,384 connections, and the same Content-Type for every extension (the
//! map below is generated from archserve's own, charset included). Not enabled: nginx's
//! `open_file_cache`, which would serve a replaced file's old descriptor until its validity
//! runs out, while the freshness check is part of the comparison.
//!
//! The configuration goes to `<out>/servers/<name>/` rather than a temporary directory: it is
//! part of what was measured, so it stays beside the results.
//!
//! nginx runs in the foreground (`daemon off`) for every workload but `upgrade`: nginx ignores
//! `USR2` while its master's parent is the process that started it (the old and the new binary
//! could not be told apart), so for an upgrade it starts as a daemon, as in production, and is
//! found through its pid file ([`nginx_pid_file`]).
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::plan::Baseline;
use super::tls::TlsFiles;
use crate::site::mime::content_type;

/// The listen backlog every baseline gets (archserve's default).
const BACKLOG: u32 = 1024;
/// Connections a server must be able to hold (the idle workload opens 10,000).
const MAX_CONNS: u32 = 16_384;
/// Extensions whose Content-Type the baselines are told, as archserve answers them.
const EXTENSIONS: &[&str] = &[
    "html", "htm", "css", "js", "json", "txt", "xml", "svg", "png", "jpg", "jpeg", "gif", "ico",
    "webp", "woff", "woff2", "pdf", "wasm", "mp4",
];

/// A free loopback port: bind port 0, read it, let it go. Another process could take it
/// before the baseline binds it (then the baseline fails to start and the run says so); ours
/// avoid the race by binding port 0 themselves.
pub fn free_port() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Where the nginx configured in `dir` writes its master's pid (and, during an upgrade, where
/// the new master writes its own while the old one's moves to `nginx.pid.oldbin`).
pub fn nginx_pid_file(dir: &Path) -> PathBuf {
    dir.join("nginx.pid")
}

/// How a baseline runs: in the foreground, a child of compare; or (nginx, for `upgrade`) as a
/// daemon whose launcher exits once the master is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Foreground,
    Daemon,
}

/// Writes the configuration into `dir` and returns the command that serves `root` on `addr`
/// (over HTTPS with `tls`'s certificate and key: nginx only).
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    b: Baseline,
    bin: &Path,
    dir: &Path,
    root: &Path,
    addr: SocketAddr,
    workers: usize,
    mode: Mode,
    tls: Option<&TlsFiles>,
) -> io::Result<Command> {
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    // Absolute: nginx takes a relative root from its prefix (-p), not from where it started.
    let root = &std::fs::canonicalize(root)?;
    let conf = dir.join(format!("{}.conf", b.program()));
    let text = match b {
        Baseline::Nginx | Baseline::NginxDeferred => {
            let deferred = b == Baseline::NginxDeferred;
            let daemon = mode == Mode::Daemon;
            let conf = nginx_conf(
                &dir,
                root,
                addr,
                workers,
                deferred,
                daemon,
                running_as_root(),
            );
            match tls {
                Some(t) => nginx_tls(&conf, t),
                None => conf,
            }
        }
        Baseline::Lighttpd if tls.is_some() => {
            return Err(io::Error::other(
                "lighttpd is not configured for HTTPS here",
            ))
        }
        Baseline::Lighttpd => lighttpd_conf(&dir, root, addr),
    };
    std::fs::write(&conf, text)?;
    let mut cmd = Command::new(bin);
    match b {
        Baseline::Nginx | Baseline::NginxDeferred => {
            // -e: errors before the config's error_log is read go here too, not to /var/log.
            cmd.arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.join("error.log"));
        }
        Baseline::Lighttpd => {
            cmd.arg("-D").arg("-f").arg(&conf);
        }
    }
    Ok(cmd)
}

/// /proc/self belongs to the effective user of the process reading it.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn quote(p: &Path) -> String {
    format!("\"{}\"", p.display().to_string().replace('"', "\\\""))
}

/// `(extension, full Content-Type)` as archserve answers it.
fn mime_map() -> Vec<(&'static str, String)> {
    EXTENSIONS
        .iter()
        .map(|e| (*e, content_type(&format!("x.{e}")).to_string()))
        .collect()
}

fn nginx_conf(
    dir: &Path,
    root: &Path,
    addr: SocketAddr,
    workers: usize,
    deferred: bool,
    daemon: bool,
    root_user: bool,
) -> String {
    let d = |name: &str| quote(&dir.join(name));
    // As root, nginx would run its workers as `nobody`, who may not be able to read the root;
    // our servers run as the caller, so nginx does too.
    let user = if root_user { "user root;\n" } else { "" };
    // nginx adds the charset itself (`charset`), to the types listed in `charset_types`.
    let mut types = String::new();
    let mut charset_types: Vec<String> = Vec::new();
    for (ext, full) in mime_map() {
        let essence = full.split(';').next().unwrap_or(&full).to_string();
        if full.contains("charset") && !charset_types.contains(&essence) {
            charset_types.push(essence.clone());
        }
        types += &format!("        {essence} {ext};\n");
    }
    format!(
        "# Generated by archserve compare (src/compare/baseline.rs).
worker_processes {workers};
daemon {daemon};
master_process on;
pid {pid};
error_log {err} warn;
{user}worker_rlimit_nofile 20000;
events {{ worker_connections {MAX_CONNS}; }}
http {{
    access_log off;
    client_body_temp_path {body};
    proxy_temp_path {proxy};
    fastcgi_temp_path {fastcgi};
    uwsgi_temp_path {uwsgi};
    scgi_temp_path {scgi};
    types {{
{types}    }}
    default_type application/octet-stream;
    charset utf-8;
    charset_types {charset_types};
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000;
    server {{
        listen {addr} backlog={BACKLOG}{deferred};
        root {root};
        index index.html;
    }}
}}
",
        daemon = if daemon { "on" } else { "off" },
        pid = quote(&nginx_pid_file(dir)),
        err = d("error.log"),
        body = d("body"),
        proxy = d("proxy"),
        fastcgi = d("fastcgi"),
        uwsgi = d("uwsgi"),
        scgi = d("scgi"),
        charset_types = charset_types.join(" "),
        deferred = if deferred { " deferred" } else { "" },
        root = quote(root),
    )
}

/// nginx over HTTPS, as an operator sets it up for speed and as archserve serves it: the same
/// certificate and key, nginx's defaults for protocols (TLS 1.2 and 1.3) and ciphers, HTTP/1.1
/// only, session tickets on (their key made by the master at start, so every worker accepts
/// every other's tickets, as archserve's do), and no shared session-ID cache (archserve has
/// none across workers either; TLS 1.3 clients resume with tickets).
fn nginx_tls(conf: &str, t: &TlsFiles) -> String {
    let tls = format!(
        "        ssl_certificate {};
        ssl_certificate_key {};
        ssl_session_tickets on;
        ssl_session_timeout 6h;
",
        quote(&t.cert),
        quote(&t.key)
    );
    conf.replacen(" backlog=", " ssl backlog=", 1).replacen(
        "        root ",
        &format!("{tls}        root "),
        1,
    )
}

fn lighttpd_conf(dir: &Path, root: &Path, addr: SocketAddr) -> String {
    let types: Vec<String> = mime_map()
        .into_iter()
        .map(|(ext, full)| format!("    \".{ext}\" => \"{full}\""))
        .collect();
    format!(
        "# Generated by archserve compare (src/compare/baseline.rs).
# One process, one event loop: lighttpd's design (its multi-process mode is unsupported).
server.document-root = {root}
server.bind = \"{ip}\"
server.port = {port}
server.errorlog = {err}
server.max-fds = 20000
server.max-connections = {MAX_CONNS}
server.listen-backlog = {BACKLOG}
server.max-keep-alive-requests = 1000
server.max-keep-alive-idle = 75
server.network-backend = \"sendfile\"
index-file.names = (\"index.html\")
mimetype.assign = (
{types}
)
# The cgi workload: the executable files of /{cgi}/ run as CGI (mod_cgi forks per request),
# as archserve's --cgi-dir {cgi}.
server.modules += (\"mod_cgi\")
$HTTP[\"url\"] =~ \"^/{cgi}/\" {{
    cgi.assign = (\"\" => \"\")
}}
",
        cgi = crate::compare::scratch::CGI_DIR,
        root = quote(root),
        ip = addr.ip(),
        port = addr.port(),
        err = quote(&dir.join("error.log")),
        types = types.join(",\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_name_the_address_root_and_workers() {
        let addr: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let n = nginx_conf(
            Path::new("/t"),
            Path::new("/srv/www"),
            addr,
            5,
            false,
            false,
            true,
        );
        assert!(n.contains("worker_processes 5;"));
        assert!(n.contains("daemon off;"));
        assert!(n.contains("pid \"/t/nginx.pid\";"));
        assert!(n.contains("listen 127.0.0.1:4321 backlog=1024;"));
        assert!(n.contains("root \"/srv/www\";"));
        assert!(n.contains("user root;"));
        let n = nginx_conf(Path::new("/t"), Path::new("/r"), addr, 1, true, true, false);
        assert!(!n.contains("user"));
        assert!(n.contains("daemon on;"));
        assert!(n.contains("listen 127.0.0.1:4321 backlog=1024 deferred;"));
        let l = lighttpd_conf(Path::new("/t"), Path::new("/srv/www"), addr);
        assert!(l.contains("server.port = 4321"));
        assert!(l.contains("server.document-root = \"/srv/www\""));
        assert!(l.contains("server.listen-backlog = 1024"));
        assert!(l.contains("server.modules += (\"mod_cgi\")"));
        assert!(l.contains("$HTTP[\"url\"] =~ \"^/cgi-bin/\" {"));
    }

    #[test]
    fn a_relative_root_is_written_as_an_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let www = std::fs::canonicalize("www").unwrap();
        for b in [Baseline::Nginx, Baseline::Lighttpd] {
            let bin = Path::new("/nonexistent");
            prepare(
                b,
                bin,
                dir.path(),
                Path::new("www"),
                addr,
                1,
                Mode::Foreground,
                None,
            )
            .unwrap();
            let conf = dir.path().join(format!("{}.conf", b.program()));
            let text = std::fs::read_to_string(conf).unwrap();
            assert!(text.contains(&quote(&www)), "{text}");
        }
    }

    #[test]
    fn nginx_over_https_gets_the_certificate_and_tickets() {
        let addr: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let n = nginx_conf(
            Path::new("/t"),
            Path::new("/r"),
            addr,
            2,
            false,
            false,
            false,
        );
        let t = TlsFiles {
            cert: "/k/cert.pem".into(),
            key: "/k/key.pem".into(),
        };
        let n = nginx_tls(&n, &t);
        assert!(n.contains("listen 127.0.0.1:4321 ssl backlog=1024;"), "{n}");
        assert!(n.contains("ssl_certificate \"/k/cert.pem\";"), "{n}");
        assert!(n.contains("ssl_certificate_key \"/k/key.pem\";"), "{n}");
        assert!(n.contains("ssl_session_tickets on;"), "{n}");
    }

    #[test]
    fn baselines_answer_the_content_types_archserve_does() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let n = nginx_conf(
            Path::new("/t"),
            Path::new("/r"),
            addr,
            1,
            false,
            false,
            false,
        );
        assert!(n.contains("text/html html;"));
        assert!(n.contains("charset_types text/html text/css"));
        let l = lighttpd_conf(Path::new("/t"), Path::new("/r"), addr);
        assert!(l.contains("\".html\" => \"text/html; charset=utf-8\""));
        assert!(l.contains("\".png\" => \"image/png\""));
    }
}
