//! The architectures under test (`archserve::arch::REGISTRY`, narrowed by `ARCHSERVE_TEST_ARCH`) and a server of one of them on a fresh fixture, started through `crate::server`.

use super::fixture::Fixture;
use crate::server::{command, serve_command, Server};
use std::ops::Deref;
use std::path::Path;
use std::process::Command;

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
        .collect()
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

/// Architectures that run exactly one worker refuse `-w` other than 1; the suite runs the
/// others with `-w 2`, enough for concurrency without slowing parallel tests.
pub fn single_worker(arch: &str) -> bool {
    archserve::arch::REGISTRY
        .iter()
        .any(|a| a.name == arch && a.workers == archserve::arch::Workers::One)
}

/// The command line `archserve serve --port 0 --arch NAME --root ROOT [-w 2] [TLS] EXTRA...`
/// (TLS: the test certificate's flags in the TLS mode).
pub fn arch_command(arch: &str, root: &Path, extra: &[&str]) -> Command {
    let mut cmd = serve_command(["--arch", arch, "--root"]);
    cmd.arg(root);
    with_arch_args(cmd, arch, extra)
}

/// As [`arch_command`], but listening on `addrs` (`--listen` each) instead of `--port 0`.
pub fn arch_listen_command(arch: &str, root: &Path, addrs: &[&str], extra: &[&str]) -> Command {
    let mut cmd = command(["serve", "--arch", arch, "--root"]);
    cmd.arg(root);
    for addr in addrs {
        cmd.args(["--listen", addr]);
    }
    with_arch_args(cmd, arch, extra)
}

/// `[-w 2] [TLS] EXTRA...` after the command's own arguments.
pub fn with_arch_args(mut cmd: Command, arch: &str, extra: &[&str]) -> Command {
    if !extra.iter().any(|a| *a == "-w" || *a == "--workers") && !single_worker(arch) {
        cmd.args(["-w", "2"]);
    }
    cmd.args(super::tls::serve_args());
    cmd.args(extra);
    cmd
}

/// A running server of one architecture on a fresh [`Fixture`]; a [`Server`] otherwise.
pub struct ArchServer {
    server: Server,
    pub arch: String,
    pub fixture: Fixture,
}

impl ArchServer {
    pub fn start(arch: &str) -> ArchServer {
        ArchServer::start_with(arch, &[])
    }

    pub fn start_with(arch: &str, extra: &[&str]) -> ArchServer {
        ArchServer::start_full(arch, extra, true)
    }

    /// Starts the server; `with_404` controls whether `ROOT/404.html` exists.
    pub fn start_full(arch: &str, extra: &[&str], with_404: bool) -> ArchServer {
        let fixture = Fixture::new(with_404);
        let cmd = arch_command(arch, &fixture.root, extra);
        ArchServer::from_command(arch, cmd, fixture)
    }

    /// Starts the server listening on `addrs` (`--listen` each, e.g. `[::1]:0`).
    pub fn start_listening(arch: &str, addrs: &[&str], extra: &[&str]) -> ArchServer {
        let fixture = Fixture::new(true);
        let cmd = arch_listen_command(arch, &fixture.root, addrs, extra);
        ArchServer::from_command(arch, cmd, fixture)
    }

    /// Starts a prepared command (normally from [`arch_command`], e.g. with a `pre_exec` added)
    /// serving `fixture`.
    pub fn from_command(arch: &str, cmd: Command, fixture: Fixture) -> ArchServer {
        ArchServer {
            server: Server::spawn(cmd),
            arch: arch.to_string(),
            fixture,
        }
    }

    /// The URL of `path` (https://localhost:PORT in the TLS mode: the test certificate's name).
    pub fn url(&self, path: &str) -> String {
        if super::tls::tls_mode() {
            format!("https://localhost:{}{}", self.port, path)
        } else {
            self.server.url(path)
        }
    }
}

impl Deref for ArchServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}
