//! Command-line definitions (clap derive). `serve`'s flags become a validated [`Config`];
//! the architecture choices and their help come from the registry.
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::{Args, Parser, Subcommand};

use crate::arch;
use crate::client::load::LoadArgs;
use crate::client::send::SendArgs;
use crate::config::{Config, ConnLimits};
use crate::http::conn::Rules;
use crate::http::request::MAX_HEADERS_CAP;
use crate::http::Limits;
use crate::site::headers::{HeaderRules, Rule};
use crate::site::SiteOptions;

#[derive(Debug, Parser)]
#[command(
    name = "archserve",
    version,
    about = "An HTTP/1.1 static-file server whose concurrency architecture is chosen at start-up, \
             with the tools to measure how the architectures compare."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Diagnostics level on stderr (error, warn, info, debug, trace); RUST_LOG overrides.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
}

// Parsed once per run: the size of the larger variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory over HTTP/1.1 with the chosen architecture.
    // A flag given twice takes its last value, so the command line overrides `--config`.
    #[command(args_override_self = true)]
    Serve(ServeArgs),
    /// Send one raw request and print the exact bytes of the answer.
    Send(SendArgs),
    /// Generate load: the seed's test_my_server (-c|-i [-nc N] HOST PORT) or a load generator
    /// (`archserve load --help` shows both).
    Load(LoadArgs),
    /// Start every architecture in turn, measure them under the seed's workloads and more,
    /// and write tables, charts and a report.
    Compare(crate::compare::CompareArgs),
    /// Slow clients, a killed worker, a stop under load, descriptors running out, files
    /// rewritten under load, and the soak: what clients see, on fresh servers.
    Reliability(crate::compare::reliability::ReliabilityArgs),
}

/// `--arch` values and their help, from the registry (shared by `serve` and `compare`).
pub fn arch_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(
        arch::REGISTRY
            .iter()
            .map(|a| PossibleValue::new(a.name).help(a.about)),
    )
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Document root.
    #[arg(long, default_value = "www")]
    pub root: PathBuf,
    /// Address to listen on [default: 127.0.0.1]. Not with --listen.
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on (0 picks a free one; the first line printed gives it) [default: 2000].
    /// Not with --listen.
    #[arg(long)]
    pub port: Option<u16>,
    /// Listen on ADDR:PORT, an IP address and a port (repeatable, IPv6 in brackets):
    /// --listen 127.0.0.1:8080 --listen '[::1]:8080'. It replaces --host and --port, which
    /// cannot be given with it. Every architecture accepts on all of them; the first line
    /// printed names them all (port 0: each its own free port).
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub listens: Vec<String>,
    /// Concurrency architecture.
    #[arg(long, default_value = arch::DEFAULT, value_parser = arch_parser())]
    pub arch: String,
    /// Workers (threads, processes or event loops); default depends on the architecture.
    #[arg(short = 'w', long, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: Option<u32>,
    /// Seconds a request head may take to arrive (then 408 and close).
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub header_timeout: Duration,
    /// Seconds an idle keep-alive connection is kept [default: 5 for blocking architectures,
    /// 75 for event loops].
    #[arg(long, value_parser = seconds)]
    pub idle_timeout: Option<Duration>,
    /// Seconds a write may make no progress before the connection is dropped.
    #[arg(long, default_value = "30", value_parser = seconds)]
    pub write_timeout: Duration,
    /// Requests served on one connection before it is closed.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_requests: u64,
    /// Open connections per event loop (event-loop architectures); at the cap, idle keep-alive
    /// connections are closed first, then accepting pauses until below. Default: the open-file
    /// limit less an eighth (the open-file cache) and 64, so the cap comes before EMFILE.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_conns: Option<u32>,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value = "10", value_parser = seconds)]
    pub grace: Duration,
    /// Longest request line in bytes (414 beyond).
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u32).range(64..=1_048_576))]
    pub max_line: u32,
    /// Largest request head in bytes (431 beyond).
    #[arg(long, default_value_t = 32768, value_parser = clap::value_parser!(u32).range(256..=4_194_304))]
    pub max_head: u32,
    /// Most header fields in a request (431 beyond).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=MAX_HEADERS_CAP as i64))]
    pub max_headers: u32,
    /// Listen backlog.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub backlog: u32,
    /// Write an access log (Combined Log Format) to this file, or `-` for stdout. Off by default.
    #[arg(long, value_name = "PATH|-")]
    pub access_log: Option<PathBuf>,
    /// Multi-process architectures: a listening socket per worker (SO_REUSEPORT) instead of one
    /// shared socket.
    #[arg(long)]
    pub reuseport: bool,
    /// Hand a connection to a worker as soon as the handshake is done, not when its request
    /// arrives (TCP_DEFER_ACCEPT is on by default, as nginx's `listen ... deferred`).
    #[arg(long)]
    pub no_defer_accept: bool,
    /// Add a response header to the 200, 206 and 304 answers of files whose path matches GLOB
    /// (repeatable; for one field the last matching rule wins). A GLOB without `/` matches the
    /// file name anywhere (`*.css`), one with `/` the path from the root (`/assets/**`). E.g.
    /// --header '*.html: Cache-Control: no-cache'. /cpu and /io always send
    /// `Cache-Control: no-store`.
    #[arg(long = "header", value_name = "GLOB: NAME: VALUE")]
    pub headers: Vec<Rule>,
    /// List the entries of directories that have no index.html (HTML, or JSON for
    /// `Accept: application/json`); without it they are 404. Dotfiles and symlinks out of the
    /// root are never listed.
    #[arg(long)]
    pub dir_listing: bool,
    /// Run the executable files of this folder (under the root) as CGI/1.1 scripts, e.g.
    /// `--cgi-dir cgi-bin`: `/cgi-bin/NAME/PATH?QUERY` runs `ROOT/cgi-bin/NAME` with PATH_INFO
    /// `/PATH`, whatever the method. Off by default.
    #[arg(long, value_name = "DIR")]
    pub cgi_dir: Option<String>,
    /// A CGI script still running this many seconds after it started is killed (504, or the
    /// connection closes if its answer had begun).
    #[arg(long, default_value = "30", value_parser = seconds, value_name = "SECONDS")]
    pub cgi_timeout: Duration,
    /// Bytes of body a CGI script may print; beyond them it is killed and the connection
    /// closed (502 if nothing was sent yet).
    #[arg(long, default_value_t = 1 << 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub cgi_max_output: u64,
    /// The largest request body handed to a CGI script (held in memory until it starts; 413
    /// beyond).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    pub cgi_max_body: u64,
    /// CGI scripts running at once per server process (503 beyond).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub cgi_max_scripts: u32,
    /// Read serve flags from a TOML file first: each key is a flag without its dashes
    /// (`port = 8080`, `dir-listing = true`, `header = ["*.css: Cache-Control: no-cache"]`).
    /// Flags on the command line override it; a bad file is refused with its line and column.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve HTTPS: the certificate chain (PEM, leaf first). Needs --tls-key.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// Serve HTTPS: the private key (PEM: PKCS#8, PKCS#1 or SEC1). Needs --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// With HTTPS: also listen for plain HTTP on this port (on the first listening address's
    /// host) and answer every request with a 301 to the same path on the HTTPS port.
    #[arg(long, value_name = "PORT")]
    pub redirect_http: Option<u16>,
}

/// A positive number of seconds, fractions allowed (`0.5`), at most a day.
fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("`{s}` is not a number of seconds in (0, 86400]")),
    }
}

impl ServeArgs {
    /// Checks what clap cannot and builds the config.
    pub fn config(&self) -> Result<Config, String> {
        let arch =
            arch::find(&self.arch).ok_or_else(|| format!("unknown architecture {}", self.arch))?;
        let addrs = self.addrs()?;
        if self.max_line as usize > self.max_head as usize {
            return Err("--max-line cannot exceed --max-head".into());
        }
        if arch.workers == arch::Workers::One && self.workers.is_some_and(|w| w != 1) {
            return Err(format!(
                "--arch {} runs exactly one worker; drop -w",
                arch.name
            ));
        }
        if self.reuseport && !arch.multi_process {
            return Err(format!(
                "--reuseport applies to multi-process architectures, not {}",
                arch.name
            ));
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::Tls::load(cert, key)?),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        if self.redirect_http.is_some() && tls.is_none() {
            return Err("--redirect-http needs --tls-cert and --tls-key".into());
        }
        let redirect_http = self
            .redirect_http
            .map(|port| SocketAddr::new(addrs[0].ip(), port));
        Ok(Config {
            tls,
            redirect_http,
            root: self.root.clone(),
            addrs,
            workers: self
                .workers
                .map(|w| w as usize)
                .unwrap_or_else(|| arch.workers.default_count()),
            conn: ConnLimits {
                rules: Rules {
                    head: Limits {
                        max_line: self.max_line as usize,
                        max_head: self.max_head as usize,
                        max_headers: self.max_headers as usize,
                        keep_fields: self.cgi_dir.is_some(),
                    },
                    header_timeout: self.header_timeout,
                    idle_timeout: self.idle_timeout.unwrap_or(arch.idle_timeout),
                    write_timeout: self.write_timeout,
                    max_requests: self.max_requests,
                    ..Rules::default()
                },
                max_conns: self
                    .max_conns
                    .map(|n| n as usize)
                    .unwrap_or_else(crate::descriptors::default_max_conns),
            },
            grace: self.grace,
            listen: crate::listener::Listen {
                backlog: self.backlog as i32,
                reuseport: self.reuseport,
                defer_accept: !self.no_defer_accept,
            },
            site: SiteOptions {
                headers: HeaderRules::new(self.headers.clone())?,
                dir_listing: self.dir_listing,
                cgi: self.cgi_options()?,
            },
        })
    }

    /// The addresses to listen on: every `--listen`, or the one of `--host` and `--port`.
    fn addrs(&self) -> Result<Vec<SocketAddr>, String> {
        if self.listens.is_empty() {
            let host = self.host.as_deref().unwrap_or("127.0.0.1");
            return Ok(vec![resolve(host, self.port.unwrap_or(2000))?]);
        }
        if self.host.is_some() || self.port.is_some() {
            return Err("--listen replaces --host and --port; give one or the other".into());
        }
        let mut addrs: Vec<SocketAddr> = Vec::with_capacity(self.listens.len());
        for text in &self.listens {
            let addr = parse_listen(text)?;
            if addrs.contains(&addr) {
                return Err(format!("--listen {text} is given twice"));
            }
            addrs.push(addr);
        }
        Ok(addrs)
    }
}

/// One `--listen` value: an IP address and a port, IPv6 in brackets (`[::1]:8080`).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    const FORM: &str = "ADDR:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("--listen {text}: no port ({FORM})"));
    }
    match text.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_err() => Err(format!(
            "--listen {text}: `{port}` is not a port 0-65535 ({FORM})"
        )),
        Some((host, _)) => Err(format!(
            "--listen {text}: `{host}` is not an IP address (a name is not resolved; {FORM})"
        )),
        None => Err(format!("--listen {text}: not {FORM}")),
    }
}

impl ServeArgs {
    fn cgi_options(&self) -> Result<Option<crate::site::cgi::CgiOptions>, String> {
        let Some(dir) = &self.cgi_dir else {
            return Ok(None);
        };
        let mut opts = crate::site::cgi::CgiOptions::new(dir)?;
        if !self.root.join(&opts.dir).is_dir() {
            return Err(format!(
                "--cgi-dir {dir}: no such folder under {}",
                self.root.display()
            ));
        }
        opts.timeout = self.cgi_timeout;
        opts.max_output = self.cgi_max_output;
        opts.max_body = self.cgi_max_body;
        opts.max_scripts = self.cgi_max_scripts as usize;
        Ok(Some(opts))
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("host {host} has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    fn serve(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["archserve", "serve"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Serve(s) => s.config(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = serve(&["--arch", "threads"]).unwrap();
        assert_eq!(c.addrs, ["127.0.0.1:2000".parse().unwrap()]);
        assert_eq!(c.root, PathBuf::from("www"));
        assert_eq!(c.workers, 5);
        assert_eq!(c.conn.rules.head, Limits::default());
    }

    #[test]
    fn listen_is_repeatable_and_replaces_host_and_port() {
        let c = serve(&["--listen", "127.0.0.1:8080", "--listen", "[::1]:8080"]).unwrap();
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:8080".parse().unwrap(),
            "[::1]:8080".parse().unwrap(),
        ];
        assert_eq!(c.addrs, want);
        let c = serve(&["--host", "::1", "--port", "0"]).unwrap();
        assert_eq!(c.addrs, ["[::1]:0".parse().unwrap()]);
    }

    #[test]
    fn bad_listen_values_say_what_is_wrong() {
        for (args, why) in [
            (&["--listen", "127.0.0.1"][..], "no port"),
            (&["--listen", "::1"], "no port"),
            (&["--listen", "[::1]"], "no port"),
            (&["--listen", "127.0.0.1:http"], "`http` is not a port"),
            (&["--listen", "[::1]:70000"], "`70000` is not a port"),
            (
                &["--listen", "localhost:80"],
                "`localhost` is not an IP address",
            ),
            (&["--listen", "1.2.3.999:80"], "is not an IP address"),
            (&["--listen", ""], "not ADDR:PORT"),
            (
                &["--listen", "[::1]:80", "--listen", "[::1]:80"],
                "given twice",
            ),
            (&["--listen", "[::1]:80", "--port", "80"], "replaces --host"),
            (
                &["--host", "::1", "--listen", "[::1]:80"],
                "replaces --host",
            ),
        ] {
            let err = serve(args).expect_err(&format!("{args:?} accepted"));
            assert!(err.contains(why), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{args:?}: {err}");
        }
    }

    #[test]
    fn listening_socket_options() {
        let c = serve(&[]).unwrap();
        assert_eq!(c.listen, crate::listener::Listen::default());
        assert!(c.listen.defer_accept);
        let c = serve(&["--no-defer-accept", "--reuseport", "--backlog", "7"]).unwrap();
        assert_eq!(
            c.listen,
            crate::listener::Listen {
                backlog: 7,
                reuseport: true,
                defer_accept: false,
            }
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            &["-w", "0"][..],
            &["--port", "70000"],
            &["--arch", "nope"],
            &["--idle-timeout", "-1"],
            &["--idle-timeout", "abc"],
            &["--max-headers", "100000"],
            &["--max-line", "9000", "--max-head", "4096"],
            &["--host", "no such host name.invalid"],
            &["--arch", "async", "-w", "3"],
            &["--arch", "threads", "--reuseport"],
            &["--header", "*.css"],
            &["--header", "*.css: Content-Length: 1"],
            &["--header", "/a/[: Cache-Control: no-cache"],
            &[
                "--arch",
                "uring",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
            &["--tls-cert", "cert.pem"],
            &["--tls-key", "key.pem"],
            &["--redirect-http", "8080"],
            &[
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
            ],
        ] {
            assert!(serve(bad).is_err(), "{bad:?} accepted");
        }
    }
}
