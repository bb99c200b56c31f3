//! `loadgen`: `archserve load` against h2load and wrk (where installed), each driving the same
//! server with keep-alive on the same connections for the same time: the requests/s each
//! reports, the CPU time each used itself per request (from `wait4`'s resource usage, every
//! thread counted), and the server's CPU per request under each.
use std::io::{self, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::measure::Probe;
use super::plan::Plan;
use super::server;

/// How a generator's output is read: (requests/s, requests done, requests answered 2xx).
type Parse = fn(&str) -> Option<(f64, u64, u64)>;

/// `(metric, value, unit)` rows: `<generator>.req_per_s`, `.cpu_us`, `.server_cpu_us`,
/// `.failed`, for each generator.
pub fn measure(
    plan: &Plan,
    probe: &Probe,
    conns: u32,
) -> io::Result<Vec<(String, f64, &'static str)>> {
    let url = probe.url(&plan.p.static_path);
    let secs = plan.duration().as_secs().max(1).to_string();
    let c = conns.to_string();
    let mut gens: Vec<(&str, Command, Parse)> = Vec::new();
    if let Some(h2load) = &plan.tools.h2load {
        let mut cmd = Command::new(h2load);
        cmd.args(["--h1", "-c", &c, "-D", &secs, &url]);
        gens.push(("h2load", cmd, parse_h2load));
    }
    if let Some(wrk) = &plan.tools.wrk {
        let mut cmd = Command::new(wrk);
        cmd.args(["-c", &c, "-t2", "-d", &format!("{secs}s"), &url]);
        gens.push(("wrk -t2", cmd, parse_wrk));
    }
    for t in ["1", "2"] {
        let mut cmd = Command::new(&plan.server_bin);
        cmd.args(["load", "-c", &c, "-d", &secs, "-t", t, "--json", "-q", &url]);
        gens.push((
            if t == "1" {
                "archserve load -t1"
            } else {
                "archserve load -t2"
            },
            cmd,
            parse_archserve,
        ));
    }
    let limit = plan.duration() + Duration::from_secs(60);
    let mut rows = Vec::new();
    for (name, mut cmd, parse) in gens {
        let server_before = probe.cpu_s()?;
        let (out, cpu) = run_measured(&mut cmd, limit)?;
        let server_cpu = probe.cpu_s()? - server_before;
        let (rps, done, ok) = parse(&out)
            .ok_or_else(|| io::Error::other(format!("could not read {name}'s output:\n{out}")))?;
        let per = |s: f64| {
            if done > 0 {
                s * 1e6 / done as f64
            } else {
                f64::NAN
            }
        };
        rows.push((format!("{name}.req_per_s"), rps, "1/s"));
        rows.push((format!("{name}.cpu_us"), per(cpu), "µs"));
        rows.push((format!("{name}.server_cpu_us"), per(server_cpu), "µs"));
        rows.push((
            format!("{name}.failed"),
            (done - ok.min(done)) as f64,
            "requests",
        ));
    }
    Ok(rows)
}

/// Runs `cmd` to its end (killed after `limit`); returns its stdout and the CPU seconds it and
/// all its threads used.
fn run_measured(cmd: &mut Command, limit: Duration) -> io::Result<(String, f64)> {
    server::own_group(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let pid = child.id() as i32;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // The child is reaped only below, so its pid cannot be reused before the watchdog is told.
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    });
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout.read_to_string(&mut out)?;
    }
    let mut status = 0;
    // SAFETY: plain struct of integers, filled by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers; std's Child is not waited again.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let _ = done_tx.send(());
    let _ = watchdog.join();
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other(format!(
            "{} failed (wait status {status}):\n{out}",
            Path::new(cmd.get_program()).display()
        )));
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((out, tv(usage.ru_utime) + tv(usage.ru_stime)))
}

/// The number after `key` in `text` (`key` then spaces, then digits, dots and commas).
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let num: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

/// The number before `key` on the line that has it (`310228 succeeded`).
fn number_before(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(key))?;
    let head = &line[..line.find(key)?];
    head.split([' ', ','])
        .rfind(|w| !w.is_empty())?
        .parse()
        .ok()
}

fn parse_h2load(out: &str) -> Option<(f64, u64, u64)> {
    let line = out.lines().find(|l| l.starts_with("finished in"))?;
    let rps = number_before(line, " req/s")?;
    let done = number_before(out, " done,")? as u64;
    let ok = number_before(out, " 2xx")? as u64;
    Some((rps, done, ok))
}

fn parse_wrk(out: &str) -> Option<(f64, u64, u64)> {
    let rps = number_after(out, "Requests/sec:")?;
    let done = number_before(out, " requests in ")? as u64;
    let bad = number_after(out, "Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
    let socket: u64 = ["connect", "read", "write", "timeout"]
        .iter()
        .filter_map(|k| number_after(out.lines().find(|l| l.contains("Socket errors"))?, k))
        .map(|v| v as u64)
        .sum();
    Some((rps, done, done.saturating_sub(bad + socket)))
}

fn parse_archserve(out: &str) -> Option<(f64, u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(out.trim()).ok()?;
    let ok = v["status"]
        .as_object()?
        .iter()
        .filter(|(k, _)| k.starts_with('2'))
        .filter_map(|(_, n)| n.as_u64())
        .sum();
    Some((v["requests_per_s"].as_f64()?, v["requests"].as_u64()?, ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_h2load() {
        let out = "finished in 3.00s, 103409.33 req/s, 55.12MB/s
requests: 310228 total, 310292 started, 310228 done, 310200 succeeded, 28 failed, 0 errored, 0 timeout
status codes: 310200 2xx, 0 3xx, 0 4xx, 0 5xx
";
        assert_eq!(parse_h2load(out), Some((103409.33, 310228, 310200)));
    }

    #[test]
    fn reads_wrk() {
        let out = "Running 5s test @ http://127.0.0.1:1/
  2 threads and 64 connections
  159099 requests in 5.00s, 100.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  31593.55
";
        assert_eq!(parse_wrk(out), Some((31593.55, 159099, 159092)));
    }

    #[test]
    fn reads_archserve_load() {
        let out = r#"{"requests_per_s": 5.5, "requests": 12, "status": {"200": 10, "404": 1}}"#;
        assert_eq!(parse_archserve(out), Some((5.5, 12, 10)));
        assert_eq!(parse_archserve("nope"), None);
    }
}
