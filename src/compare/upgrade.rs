//! `upgrade`: a server replaced [`UPGRADES`] times in a row while `archserve load` drives it,
//! once with keep-alive connections and once with a new connection per request, each on a
//! fresh server. Ours: `USR2` to the process serving, whose `Upgraded:` line names the
//! successor, which is followed. nginx (started as a daemon, see baseline.rs): `USR2`, the new
//! master's pid in the pid file, `QUIT` to the old master, its exit. What is kept per mode:
//! requests answered, failed requests by kind, refused connections (connect errors), upgrades
//! completed.
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::client::report::Report;

use super::plan::{Baseline, Kind, Plan, Point, ServerSpec};
use super::report::Sample;
use super::server::{self, read_pid, stopped, Running, Start};

/// Upgrades per run of the load generator.
pub const UPGRADES: u32 = 5;
/// The two modes: the metric prefix and whether connections are kept alive.
pub const MODES: [(&str, bool); 2] = [("ka", true), ("close", false)];
/// Ways a request fails other than a refused connection, as the metrics name them: the load
/// generator's error kinds, then `status`, an answer that is not 2xx.
pub const FAILURES: [&str; 5] = ["timeout", "reset", "closed", "bad_response", "status"];
/// How long one upgrade may take (ours give a successor 10 s to start serving).
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an `Upgraded:` line may take to reach compare after its process exited.
const LINE_GRACE: Duration = Duration::from_secs(1);
/// What the load generator gets past its duration and request timeout before it is killed.
const LOAD_GRACE: Duration = Duration::from_secs(10);

/// `Upgraded: process NEW is serving; process OLD drains and exits` → (NEW, OLD).
pub fn parse_upgraded(line: &str) -> Option<(i32, i32)> {
    let rest = line.trim_end().strip_prefix("Upgraded: process ")?;
    let (new, rest) = rest.split_once(" is serving; process ")?;
    let old = rest.strip_suffix(" drains and exits")?;
    let (new, old) = (new.parse().ok()?, old.parse().ok()?);
    (new > 0 && old > 0).then_some((new, old))
}

/// One mode's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Requests answered with a 2xx status.
    pub answered: u64,
    /// Connections that could not be made.
    pub refused: u64,
    /// Failed requests, by [`FAILURES`] kind (in that order).
    pub failed: [u64; FAILURES.len()],
    pub upgrades: u32,
}

impl Outcome {
    /// From `archserve load --json`'s report and the upgrades completed during it.
    pub fn new(report: &Report, upgrades: u32) -> Outcome {
        let answered: u64 = report
            .status
            .iter()
            .filter(|(code, _)| code.starts_with('2'))
            .map(|(_, n)| n)
            .sum();
        let error = |kind: &str| report.errors.get(kind).copied().unwrap_or(0);
        let mut failed = [0; FAILURES.len()];
        for (slot, kind) in failed.iter_mut().zip(FAILURES) {
            *slot = match kind {
                "status" => report.non_2xx,
                _ => error(kind),
            };
        }
        Outcome {
            answered,
            refused: error("connect"),
            failed,
            upgrades,
        }
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.iter().sum()
    }

    /// `(metric, value, unit)` rows, each metric prefixed with the mode (`ka.answered`).
    pub fn rows(&self, mode: &str) -> Vec<(String, f64, &'static str)> {
        let mut rows = vec![
            (
                format!("{mode}.upgrades"),
                f64::from(self.upgrades),
                "upgrades",
            ),
            (format!("{mode}.answered"), self.answered as f64, "requests"),
            (
                format!("{mode}.failed"),
                self.failed_total() as f64,
                "requests",
            ),
            (format!("{mode}.refused"), self.refused as f64, "conns"),
        ];
        for (kind, n) in FAILURES.iter().zip(self.failed) {
            rows.push((format!("{mode}.failed.{kind}"), n as f64, "requests"));
        }
        rows
    }
}

/// Takes the `upgrade` point: both modes, each on a server of its own, started here and
/// stopped at the end. `say` prints a line beside the progress bar.
pub fn measure(
    plan: &Plan,
    spec: &ServerSpec,
    point: Point,
    say: &dyn Fn(&str),
) -> anyhow::Result<Vec<Sample>> {
    let mut rows = Vec::new();
    for (mode, keep_alive) in MODES {
        if stopped() {
            bail!("interrupted");
        }
        let mut server = Running::start_as(plan, spec, Start::Upgradable)?;
        say(&format!(
            "round {}: {} ({} workers) on {}, {UPGRADES} upgrades under {} load",
            point.repeat,
            spec.name,
            spec.workers,
            server.addr,
            if keep_alive {
                "keep-alive"
            } else {
                "connection-per-request"
            }
        ));
        let outcome = under_load(plan, spec, &mut server, keep_alive, say)?;
        if let Some(line) = server.stop() {
            say(&line);
        }
        let (ok, errors) = (outcome.answered, outcome.failed_total() + outcome.refused);
        rows.extend(
            outcome
                .rows(mode)
                .into_iter()
                .map(|(metric, value, unit)| Sample {
                    server: spec.name.clone(),
                    workers: spec.workers,
                    workload: point.workload.name().to_string(),
                    x: point.x,
                    repeat: point.repeat,
                    metric,
                    value,
                    unit: unit.to_string(),
                    ok,
                    errors,
                }),
        );
    }
    Ok(rows)
}

/// Runs the load generator on `server` and upgrades it [`UPGRADES`] times, spread over the
/// first four fifths of the run (so the last server serves a while too). An upgrade that fails
/// is reported and ends the upgrades; the load runs to its end.
fn under_load(
    plan: &Plan,
    spec: &ServerSpec,
    server: &mut Running,
    keep_alive: bool,
    say: &dyn Fn(&str),
) -> anyhow::Result<Outcome> {
    let duration = Duration::from_secs_f64(plan.p.upgrade_duration_s);
    let mut load = Load::start(plan, server.addr, duration, keep_alive)?;
    let (lead, gap) = (duration / 10, duration * 4 / 5 / UPGRADES);
    let mut done = 0;
    for i in 0..UPGRADES {
        if !load.wait_until(load.started + lead + gap * i)? {
            say(&format!(
                "{}: the load ended after {done} of {UPGRADES} upgrades",
                spec.name
            ));
            break;
        }
        let step = match spec.kind {
            Kind::Arch(..) => upgrade_ours(server),
            Kind::Baseline(Baseline::Nginx, _) => upgrade_nginx(server),
            Kind::Baseline(b, _) => Err(anyhow!("{} has no upgrade", b.name())),
        };
        match step {
            Ok(()) => done += 1,
            Err(e) => {
                say(&format!("{}: upgrade {} failed: {e:#}", spec.name, i + 1));
                break;
            }
        }
    }
    Ok(Outcome::new(&load.finish()?, done))
}

/// `USR2` to the process serving, then its `Upgraded:` line, whose new process serves next.
/// The old process may drain and exit before compare's reader has passed its line on, so its
/// exit ends the wait only after [`LINE_GRACE`] without the line.
fn upgrade_ours(server: &mut Running) -> anyhow::Result<()> {
    let old = server.serving();
    kill(old, Signal::SIGUSR2).with_context(|| format!("USR2 to {old}"))?;
    let mut deadline = Instant::now() + UPGRADE_TIMEOUT;
    let mut exited = false;
    loop {
        if stopped() {
            bail!("interrupted");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() && exited {
            bail!("process {old} exited without upgrading");
        }
        if left.is_zero() {
            bail!("no `Upgraded:` line from process {old} within {UPGRADE_TIMEOUT:?}");
        }
        match server.next_line(left.min(Duration::from_millis(100))) {
            Some(line) => match parse_upgraded(&line) {
                Some((new, from)) if from == old.as_raw() => {
                    server.follow(Pid::from_raw(new));
                    return Ok(());
                }
                _ => {}
            },
            None if !exited && server.gone(old) => {
                exited = true;
                deadline = deadline.min(Instant::now() + LINE_GRACE);
            }
            // Timed out, or every stdout closed (then the deadline ends the wait).
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// nginx's upgrade as its documentation gives it: `USR2` to the master (it renames its pid file
/// to `.oldbin` and starts the new binary, which writes its own), then `QUIT` to the old master
/// (its workers finish the requests in flight, close idle connections and exit).
fn upgrade_nginx(server: &mut Running) -> anyhow::Result<()> {
    let old = server.serving();
    kill(old, Signal::SIGUSR2).with_context(|| format!("USR2 to {old}"))?;
    let pid_file = server.pid_file();
    let deadline = Instant::now() + UPGRADE_TIMEOUT;
    let new = loop {
        match read_pid(&pid_file) {
            Some(pid) if pid != old => break pid,
            _ => {}
        }
        if stopped() {
            bail!("interrupted");
        }
        if Instant::now() > deadline {
            bail!("no new master in {} after USR2", pid_file.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    kill(old, Signal::SIGQUIT).with_context(|| format!("QUIT to {old}"))?;
    while !server.gone(old) {
        if stopped() {
            bail!("interrupted");
        }
        if Instant::now() > deadline {
            bail!("the old master {old} did not exit after QUIT");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    server.follow(new);
    Ok(())
}

/// `archserve load --json` running against the server, in a process group of its own (the
/// terminal's Ctrl-C reaches compare, which ends it); killed if dropped before it ends.
struct Load {
    child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
    started: Instant,
    /// When it is killed if still running.
    deadline: Instant,
}

impl Load {
    fn start(
        plan: &Plan,
        addr: SocketAddr,
        duration: Duration,
        keep_alive: bool,
    ) -> anyhow::Result<Load> {
        let conns = plan.p.load_conns;
        let threads = plan.p.client_threads.clamp(1, conns as usize);
        let mut cmd = Command::new(&plan.server_bin);
        cmd.arg("load")
            .args(["-c", &conns.to_string(), "-t", &threads.to_string()])
            .args(["-d", &format!("{}ms", duration.as_millis())])
            .args(["--timeout", &format!("{}ms", plan.timeout.as_millis())])
            .args(["--json", "-q"]);
        if !keep_alive {
            cmd.arg("--no-keepalive");
        }
        cmd.arg(format!("http://{addr}{}", plan.p.static_path));
        server::own_group(&mut cmd);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting archserve load")?;
        let started = Instant::now();
        let read_all = |mut r: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = r.read_to_string(&mut s);
                s
            })
        };
        let out = child.stdout.take().map(|o| read_all(Box::new(o)));
        let err = child.stderr.take().map(|e| read_all(Box::new(e)));
        Ok(Load {
            child,
            out,
            err,
            started,
            deadline: started + duration + plan.timeout + LOAD_GRACE,
        })
    }

    /// Waits until `at`: true then, false if the load ended before.
    fn wait_until(&mut self, at: Instant) -> anyhow::Result<bool> {
        loop {
            if stopped() {
                bail!("interrupted");
            }
            if self.child.try_wait()?.is_some() {
                return Ok(false);
            }
            let now = Instant::now();
            if now >= at {
                return Ok(true);
            }
            std::thread::sleep((at - now).min(Duration::from_millis(5)));
        }
    }

    /// Waits for its end and reads its report.
    fn finish(mut self) -> anyhow::Result<Report> {
        while self.child.try_wait()?.is_none() {
            if stopped() {
                bail!("interrupted");
            }
            if Instant::now() > self.deadline {
                bail!("archserve load did not finish in time: killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let text =
            |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        let (out, err) = (text(self.out.take()), text(self.err.take()));
        serde_json::from_str(out.trim())
            .map_err(|e| anyhow!("archserve load's report: {e}: {out}{err}"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn reads_the_upgraded_line() {
        let line = "Upgraded: process 4242 is serving; process 17 drains and exits\n";
        assert_eq!(parse_upgraded(line), Some((4242, 17)));
        for bad in [
            "Server listening on 127.0.0.1:1",
            "Upgraded: process x is serving; process 17 drains and exits",
            "Upgraded: process 4242 is serving; process 17",
            "Upgraded: process 0 is serving; process 17 drains and exits",
            "upgrade failed, still serving: successor did not start",
        ] {
            assert_eq!(parse_upgraded(bad), None, "{bad}");
        }
    }

    fn report(status: &[(&str, u64)], errors: &[(&str, u64)]) -> Report {
        let status: BTreeMap<String, u64> =
            status.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let errors: BTreeMap<String, u64> =
            errors.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let non_2xx: u64 = status
            .iter()
            .filter(|(code, _)| !code.starts_with('2'))
            .map(|(_, n)| n)
            .sum();
        let json = serde_json::json!({
            "url": "http://127.0.0.1:1/", "connections": 64, "threads": 1, "keep_alive": true,
            "rate": null, "requests": 0, "responses": status.values().sum::<u64>(),
            "errors": errors, "unrequested": 0, "status": status, "non_2xx": non_2xx,
            "expect_status": [], "elapsed_s": 3.0, "requests_per_s": 1.0,
            "bytes": 0, "bytes_per_s": 0.0, "connects": 64,
            "latency_us": {"min": 1, "mean": 1.0, "stdev": 0.0, "p50": 1, "p90": 1, "p99": 1,
                           "p999": 1, "max": 1},
            "littles_law_req_per_s": null,
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn failures_are_counted_by_kind_and_refusals_apart() {
        let r = report(
            &[("200", 1000), ("503", 2)],
            &[("connect", 3), ("closed", 4), ("reset", 1), ("timeout", 0)],
        );
        let o = Outcome::new(&r, 5);
        assert_eq!(o.answered, 1000);
        assert_eq!(o.refused, 3);
        assert_eq!(o.failed, [0, 1, 4, 0, 2]);
        assert_eq!(o.failed_total(), 7);
        let rows = o.rows("ka");
        let get = |m: &str| rows.iter().find(|r| r.0 == m).map(|r| r.1);
        assert_eq!(get("ka.upgrades"), Some(5.0));
        assert_eq!(get("ka.answered"), Some(1000.0));
        assert_eq!(get("ka.failed"), Some(7.0));
        assert_eq!(get("ka.refused"), Some(3.0));
        assert_eq!(get("ka.failed.closed"), Some(4.0));
        assert_eq!(get("ka.failed.status"), Some(2.0));
        assert_eq!(rows.len(), 4 + FAILURES.len());
    }
}
