//! The seed face of `archserve load`: `-c|-i [-nc N] HOST PORT`, the seed's test_my_server.
//! N clients at once, each one GET of `/cpu` or `/io` on its own connection, one line per
//! request as it finishes, then the total, in the seed's exact words. It runs on the same
//! engine as the load generator (N connections, N requests, no keep-alive) and only prints
//! differently.
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::{ArgGroup, Parser};

use super::engine::{self, Limit, Plan, Progress};
use super::stats::ErrorKind;
use super::target::{encode_request, Target};

#[derive(Debug, Parser)]
#[command(
    name = "archserve load",
    about = "The seed's test_my_server: N concurrent clients, one GET of /cpu or /io each.",
    group(ArgGroup::new("work").required(true).args(["cpu", "io"])),
    after_help = "Prints `http://HOST:PORT/io - Status Code: 200, took 1072.60 ms` per request \
                  (in the order they finish) and `Total time taken 2216.14 ms`. Exit status 0 \
                  when every request got a response."
)]
pub struct SeedCli {
    /// CPU-bound task: GET /cpu.
    #[arg(short = 'c', long = "cpu")]
    pub cpu: bool,
    /// I/O-bound task: GET /io.
    #[arg(short = 'i', long = "io")]
    pub io: bool,
    /// Number of concurrent clients (the seed spells it -nc).
    #[arg(long = "nc", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub nc: u32,
    pub host: String,
    pub port: u16,
    /// Seconds each request may take (the seed waited forever; we stop eventually).
    #[arg(long, default_value = "600", value_parser = super::seconds)]
    pub timeout: Duration,
}

/// True when the arguments are the seed's: `-i`, `-nc`, or a `-c` that is not followed by a
/// number (the load generator's `-c` always takes one: `-c 64`).
pub fn is_seed_face(args: &[String]) -> bool {
    args.iter().enumerate().any(|(i, a)| match a.as_str() {
        "-i" | "-nc" | "--nc" | "--cpu" | "--io" => true,
        "-c" => args.get(i + 1).is_none_or(|v| v.parse::<u64>().is_err()),
        _ => false,
    })
}

/// The seed spells the long option with one dash; clap needs two.
pub fn normalise(args: &[String]) -> Vec<String> {
    args.iter()
        .map(|a| {
            if a == "-nc" {
                "--nc".to_string()
            } else {
                a.clone()
            }
        })
        .collect()
}

pub fn run(cli: SeedCli) -> anyhow::Result<i32> {
    let path = if cli.cpu { "/cpu" } else { "/io" };
    let target = Target::new(&cli.host, cli.port, path).map_err(anyhow::Error::msg)?;
    let n = cli.nc as usize;
    let plan = Plan {
        addr: target.addr,
        request: encode_request("GET", &target, &[], true),
        head_request: false,
        connections: n,
        threads: 1,
        limit: Limit::Requests(n as u64),
        rate: None,
        keep_alive: false,
        timeout: cli.timeout,
        tls: None,
    };
    let url = target.url();
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    let progress = Progress::new(1);
    let stats = std::thread::scope(|scope| {
        let engine = scope.spawn(|| engine::run(&plan, &progress, Some(tx)));
        let mut out = std::io::stdout().lock();
        // Ends when the engine returns and drops its senders.
        for outcome in rx {
            let _ = writeln!(
                out,
                "{}",
                line(&url, outcome.result, outcome.latency.as_secs_f64() * 1e3)
            );
            let _ = out.flush();
        }
        engine
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the load thread panicked")))
    })?;
    println!(
        "Total time taken {:.2} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(if stats.total_errors() == 0 { 0 } else { 1 })
}

/// One request's line, the seed's words for a response and the same shape for an error.
pub fn line(url: &str, result: Result<u16, ErrorKind>, ms: f64) -> String {
    match result {
        Ok(status) => format!("{url} - Status Code: {status}, took {ms:.2} ms"),
        Err(kind) => format!("{url} - Error: {}, took {ms:.2} ms", describe(kind)),
    }
}

fn describe(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connect => "could not connect",
        ErrorKind::Timeout => "timed out",
        ErrorKind::Reset => "connection reset",
        ErrorKind::Closed => "connection closed before the response was complete",
        ErrorKind::BadResponse => "invalid HTTP response",
        ErrorKind::UnexpectedStatus => "unexpected status",
        ErrorKind::Tls => "TLS failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn recognises_the_seed_face() {
        for seed in [
            "-i 127.0.0.1 2000",
            "-c 127.0.0.1 2000",
            "-c -nc 4 localhost 2000",
            "-nc 4 -i h 1",
            "-c",
        ] {
            assert!(is_seed_face(&v(seed)), "{seed}");
        }
        for gen in [
            "-c 64 -n 1000 http://127.0.0.1:8080/",
            "-c64 127.0.0.1 8080",
            "-n 5 --json http://x/",
            "--connections 8 h 1 /io",
        ] {
            assert!(!is_seed_face(&v(gen)), "{gen}");
        }
    }

    #[test]
    fn parses_like_the_seed() {
        let parse = |s: &str| {
            let mut argv = vec!["archserve load".to_string()];
            argv.extend(normalise(&v(s)));
            SeedCli::try_parse_from(argv)
        };
        let c = parse("-i -nc 4 127.0.0.1 2000").unwrap();
        assert!(c.io && !c.cpu);
        assert_eq!((c.nc, c.host.as_str(), c.port), (4, "127.0.0.1", 2000));
        assert_eq!(parse("-c 127.0.0.1 2000").unwrap().nc, 1);
        // Exactly one of -c / -i, as in the seed.
        assert!(parse("-c -i 127.0.0.1 2000").is_err());
        assert!(parse("-nc 2 127.0.0.1 2000").is_err());
        assert!(parse("-i -nc 0 127.0.0.1 2000").is_err());
    }

    #[test]
    fn lines_match_the_seed() {
        assert_eq!(
            line("http://127.0.0.1:2000/io", Ok(200), 1072.6),
            "http://127.0.0.1:2000/io - Status Code: 200, took 1072.60 ms"
        );
        assert_eq!(
            line("http://h:1/cpu", Err(ErrorKind::Connect), 0.126),
            "http://h:1/cpu - Error: could not connect, took 0.13 ms"
        );
    }
}
