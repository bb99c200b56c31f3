//! The `archserve` binary: parse the command line, run the subcommand, map errors to exit codes.
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use archserve::arch::{self, Server};
use archserve::cli::{Cli, Command, ServeArgs};
use archserve::shutdown::Signals;
use archserve::site::Site;

fn main() -> ExitCode {
    let args = match archserve::config_file::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let cli = Cli::parse_from(args);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve(args).map(|()| 0),
        Command::Send(args) => archserve::client::send::run(args),
        Command::Load(args) => archserve::client::load::run(args),
        Command::Compare(args) => archserve::compare::run(args),
        Command::Reliability(args) => archserve::compare::reliability::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // First, before any thread or child exists, so all of them inherit the blocked mask.
    let signals = Signals::block().context("blocking termination signals")?;
    // Sockets handed over by the server this one replaces, or by systemd (also before any
    // thread: it edits the environment).
    let inherited = archserve::upgrade::inherited_listeners().context("inherited sockets")?;
    let inherited_redirect =
        archserve::upgrade::inherited_redirect().context("inherited redirect socket")?;
    // Before the configuration, whose connection cap derives from the raised limit.
    archserve::descriptors::raise_nofile_limit();
    let config = args.config().map_err(anyhow::Error::msg)?;
    let arch = arch::find(&args.arch).context("unknown architecture")?;
    let site = Site::with_options(&config.root, config.site.clone())
        .with_context(|| format!("document root {}", config.root.display()))?;
    if let Some(path) = &args.access_log {
        archserve::access_log::open(path)
            .with_context(|| format!("access log {}", path.display()))?;
    }
    let listeners = match inherited {
        Some(sockets) => sockets,
        None => archserve::listener::bind_all(&config.addrs, config.listen)?,
    };
    arch::say(format_args!(
        "Server listening on {}",
        archserve::listener::describe(&listeners)?
    ));
    let redirect = match config.redirect_http {
        Some(addr) => {
            let plain = match inherited_redirect {
                Some(plain) => plain,
                None => archserve::listener::bind(addr, archserve::listener::Listen::default())
                    .with_context(|| format!("cannot listen on {addr}"))?,
            };
            archserve::upgrade::keep_redirect(&plain).context("redirect socket")?;
            arch::say(format_args!(
                "Redirecting HTTP on {} to HTTPS",
                plain.local_addr()?
            ));
            let rules = config.conn.rules;
            Some(archserve::redirect::spawn(
                plain,
                listeners[0].local_addr()?.port(),
                rules.head,
                rules.header_timeout,
            )?)
        }
        None => None,
    };
    tracing::info!(
        "arch {}, {} workers, root {}",
        arch.name,
        config.workers,
        site.root().display()
    );
    // Everything that can fail at start-up has passed: a predecessor may stop accepting now
    // (the kernel queues connections on the shared socket until the workers take them).
    archserve::upgrade::notify_ready();
    let result = (arch.run)(Server {
        listeners,
        config,
        site,
        signals,
    })
    .with_context(|| format!("architecture {}", arch.name));
    if let Some(redirect) = redirect {
        redirect.stop();
    }
    result
}

/// mimalloc instead of glibc's malloc: an idle keep-alive connection is two 128-byte-aligned
/// allocations (tokio's task cell and I/O registration), and glibc's `memalign` leaves pieces
/// around each that nothing reuses. `archserve compare --workload idle` measures what an idle
/// connection costs; docs/BENCHMARKS.md quotes the committed run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
