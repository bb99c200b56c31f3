//! `archserve load`: the command line of both faces (the seed's test_my_server and the load
//! generator), the progress bar, and the report.
//!
//! Both faces share the word `-c`: in the seed it is a flag (the `/cpu` task), in wrk, h2load
//! and oha it is the connection count. The seed face is recognised by its shape (`-i`, `-nc`,
//! or a `-c` not followed by a number, see [`seed::is_seed_face`]); everything else is the load
//! generator. So the outer clap definition only collects the words, and each face has its own
//! parser with its own complete `--help`.
use std::ffi::OsString;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser};
use indicatif::{ProgressBar, ProgressStyle};

use super::engine::{self, Limit, Plan, Progress};
use super::report::Report;
use super::seed::{self, SeedCli};
use super::target::{encode_request, parse_header, Target};
use super::tls::{ClientTls, TlsArgs};

/// Generate load: the seed's test_my_server (`-c|-i [-nc N] HOST PORT`) or a keep-alive load
/// generator (`archserve load --help` lists the options of both).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct LoadArgs {
    /// Options and target (see `archserve load --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "ARGS")]
    pub args: Vec<OsString>,
}

const SEED_FACE: &str = "\
Seed face (the seed's test_my_server, same output):
  archserve load -c|-i [-nc N] [--timeout S] HOST PORT
  -c is GET /cpu and -i is GET /io when -c is not followed by a number; N clients (default 1)
  each open a connection and send one request; a line per request as it finishes, then
  `Total time taken X ms`. `./test_my_server` at the repo root runs this.

Errors are counted by kind: connect, timeout, reset, closed (the server closed before the
response was complete), bad_response (invalid status line, headers or framing, bytes beyond
the response, or bytes on an idle connection: those are also shown as `unrequested`, and end
no request), unexpected_status (with --expect-status, a response of another status).
Responses whose status is not 2xx have their own line (`non-2xx`, JSON `non_2xx`).
Latency counts valid responses only, from the request's start (closed loop) or from its
scheduled time (--rate: coordinated omission corrected, as wrk2 does).
Exit status: 0 when at least one valid response arrived and, with --expect-status, no response
had another status; 1 otherwise (after the report); 2 for bad options.

Examples:
  archserve load -c 64 -n 400000 http://127.0.0.1:8080/index.html
  archserve load -c 16 -d 10s --rate 2000 --json 127.0.0.1 2000 /io?ms=5
  archserve load --cacert cert.pem --no-keepalive -c 8 -d 5s https://localhost:8443/

HTTPS (an https:// URL, or --tls with HOST PORT): the report's `tls` line (JSON `tls`) counts
full and resumed handshakes and their times, from the connect call to the handshake's end.
Sessions are resumed by default (every connection offers a ticket an earlier one received, as
h2load does); --no-resume makes every handshake a full one. A failed handshake is a `tls`
error; when no response arrived, the first one is the `error:` line.";

/// The load generator's options.
#[derive(Debug, Parser)]
#[command(
    name = "archserve load",
    about = "Generate HTTP/1.1 load and report throughput, latency percentiles, statuses and \
             errors.",
    after_help = SEED_FACE
)]
struct GenCli {
    /// Target: URL (http://host:port/path), or HOST PORT [PATH].
    #[arg(required = true, num_args = 1..=3, value_name = "URL | HOST PORT [PATH]")]
    target: Vec<String>,
    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,
    /// Total requests (each ends as a response or an error).
    #[arg(short = 'n', long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,
    /// Run length (e.g. 10, 10s, 500ms, 1m); default 10 s unless -n is given.
    #[arg(short = 'd', long, value_parser = super::seconds)]
    duration: Option<Duration>,
    /// Threads, each with its own event loop [default: CPUs, at most the connections].
    #[arg(short = 't', long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// Open loop: send R requests per second on schedule, whatever the latency.
    #[arg(short = 'R', long, value_name = "R", value_parser = rate)]
    rate: Option<f64>,
    /// A new connection for every request (Connection: close) instead of keep-alive.
    #[arg(long, alias = "disable-keepalive")]
    no_keepalive: bool,
    /// Request method (HEAD responses are framed without a body).
    #[arg(short = 'm', long, default_value = "GET", value_parser = method)]
    method: String,
    /// Extra request header "Name: value" (repeatable; a Host given here replaces ours).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Statuses that count as responses (repeatable, or a comma list); any other status is an
    /// `unexpected_status` error, and the exit status is then 1.
    #[arg(long, value_name = "STATUS[,STATUS]", value_delimiter = ',', value_parser = status)]
    expect_status: Vec<u16>,
    /// Seconds one request may take, from its (scheduled) start to its last byte.
    #[arg(long, default_value = "10", value_parser = super::seconds)]
    timeout: Duration,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// HTTPS: offer no saved session, so every handshake is a full one.
    #[arg(long)]
    no_resume: bool,
    /// No progress bar.
    #[arg(short = 'q', long)]
    quiet: bool,
}

fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e8 => Ok(r),
        _ => Err(format!(
            "`{s}` is not a rate in (0, 1e8] requests per second"
        )),
    }
}

fn status(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(code) if (100..=599).contains(&code) => Ok(code),
        _ => Err(format!("`{s}` is not an HTTP status (100-599)")),
    }
}

fn method(s: &str) -> Result<String, String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !s.is_empty() && s.bytes().all(token) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not a method token"))
    }
}

pub fn run(args: LoadArgs) -> anyhow::Result<i32> {
    let words: Vec<String> = args
        .args
        .into_iter()
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
        .map_err(|a| anyhow::anyhow!("argument {a:?} is not UTF-8"))?;
    let bin = "archserve load".to_string();
    if seed::is_seed_face(&words) {
        let argv = std::iter::once(bin).chain(seed::normalise(&words));
        return match SeedCli::try_parse_from(argv) {
            Ok(cli) => seed::run(cli),
            Err(e) => clap_exit(e),
        };
    }
    match GenCli::try_parse_from(std::iter::once(bin).chain(words)) {
        Ok(cli) => generate(cli),
        Err(e) => clap_exit(e),
    }
}

/// Prints clap's message (help, version or error) and returns its exit status.
fn clap_exit(e: clap::Error) -> anyhow::Result<i32> {
    e.print()?;
    Ok(e.exit_code())
}

fn generate(cli: GenCli) -> anyhow::Result<i32> {
    let target = match cli.target.as_slice() {
        [url] => Target::from_url(url),
        [host, port, rest @ ..] => {
            let port: u16 = port
                .parse()
                .with_context(|| format!("{port:?} is not a port number"))?;
            Target::new(host, port, rest.first().map_or("/", String::as_str))
        }
        [] => unreachable!("clap requires a target"),
    }
    .map_err(anyhow::Error::msg)?;
    let mut target = target;
    target.tls |= cli.tls.tls;
    let tls = match target.tls {
        true => Some(
            ClientTls::new(&cli.tls, &target.host, !cli.no_resume).map_err(anyhow::Error::msg)?,
        ),
        false => None,
    };
    let connections = cli.connections as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cli.threads.map_or(cpus, |t| t as usize).min(connections);
    let limit = match (cli.requests, cli.duration) {
        (Some(n), _) => Limit::Requests(n),
        (None, Some(d)) => Limit::Duration(d),
        (None, None) => Limit::Duration(Duration::from_secs(10)),
    };
    let plan = Plan {
        addr: target.addr,
        request: encode_request(&cli.method, &target, &cli.headers, cli.no_keepalive),
        head_request: cli.method.eq_ignore_ascii_case("HEAD"),
        connections,
        threads,
        limit,
        rate: cli.rate,
        keep_alive: !cli.no_keepalive,
        timeout: cli.timeout,
        tls,
    };
    let show_bar = !cli.quiet && std::io::stderr().is_terminal();
    let stats = run_with_progress(&plan, &cli.expect_status, show_bar)?;
    let report = Report::new(&plan, &target.url(), &stats, &cli.expect_status);
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.human(&plan));
    }
    if let (0, Some(e)) = (report.responses, &stats.tls_error) {
        bail!("TLS handshake with {} failed: {e}", target.url());
    }
    if report.responses == 0 {
        bail!(
            "no valid response from {} ({} errors)",
            target.url(),
            report.error_total()
        );
    }
    if report.unexpected() > 0 {
        let expected: Vec<String> = cli.expect_status.iter().map(u16::to_string).collect();
        bail!(
            "{} of {} requests answered with a status other than {}",
            report.unexpected(),
            report.requests,
            expected.join(", ")
        );
    }
    Ok(0)
}

/// Runs the engine on its own threads while this one draws the progress bar (if wanted).
fn run_with_progress(
    plan: &Plan,
    expect: &[u16],
    show_bar: bool,
) -> anyhow::Result<super::stats::Stats> {
    let progress = Progress::new(plan.threads);
    let stats = std::thread::scope(|scope| {
        let engine = scope.spawn(|| engine::run_expecting(plan, expect, &progress, None));
        if show_bar {
            let bar = progress_bar(plan);
            let start = std::time::Instant::now();
            while !engine.is_finished() {
                let done = progress.finished();
                match (plan.limit, plan.scheduled()) {
                    (_, Some(total)) | (Limit::Requests(total), None) => {
                        bar.set_length(total);
                        bar.set_position(done);
                    }
                    (Limit::Duration(d), None) => {
                        let pos = start.elapsed().min(d).as_millis() as u64;
                        bar.set_position(pos);
                        bar.set_message(format!("{done} requests"));
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        }
        engine
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the load thread panicked")))
    })?;
    Ok(stats)
}

fn progress_bar(plan: &Plan) -> ProgressBar {
    let bar = ProgressBar::new(0).with_finish(indicatif::ProgressFinish::AndClear);
    let template = match (plan.limit, plan.scheduled()) {
        (Limit::Duration(d), None) => {
            bar.set_length(d.as_millis() as u64);
            "{spinner} [{elapsed_precise}] {wide_bar} {msg}"
        }
        _ => "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} requests",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(s: &str) -> Result<GenCli, clap::Error> {
        GenCli::try_parse_from(std::iter::once("archserve load").chain(s.split_whitespace()))
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        GenCli::command().debug_assert();
        SeedCli::command().debug_assert();
    }

    #[test]
    fn generator_options() {
        let c = gen("-c 64 -n 1000 -t 2 -H X-A:1 -m HEAD http://127.0.0.1:8080/").unwrap();
        assert_eq!(
            (c.connections, c.requests, c.threads),
            (64, Some(1000), Some(2))
        );
        assert_eq!(c.headers, vec![("X-A".to_string(), "1".to_string())]);
        assert_eq!(c.method, "HEAD");
        let c = gen("-d 500ms --rate 100 --no-keepalive h 1 /x").unwrap();
        assert_eq!(c.duration, Some(Duration::from_millis(500)));
        assert_eq!(c.rate, Some(100.0));
        assert!(c.no_keepalive);
        assert_eq!(c.target, ["h", "1", "/x"]);
        assert!(c.expect_status.is_empty());
        let c = gen("--expect-status 200,204 --expect-status 304 http://x/").unwrap();
        assert_eq!(c.expect_status, [200, 204, 304]);
        for bad in [
            "--expect-status 2000 http://x/",
            "--expect-status ok http://x/",
            "--expect-status 99 http://x/",
            "-n 5 -d 1 http://x/",
            "-c 0 http://x/",
            "--rate 0 http://x/",
            "-m BAD\\ http://x/",
            "-H nocolon http://x/",
            "a b c d",
            "",
        ] {
            assert!(gen(bad).is_err(), "{bad}");
        }
    }
}
