//! `syscalls`: system calls per small-file request, keep-alive and connection-per-request,
//! summed over every process and thread of the server. Counted with `perf stat` on the syscall
//! tracepoints where it works (exact counts, little overhead), else with `strace -c -f`
//! attached to every thread (slower server, exact counts). The tracer's own output is kept in
//! `<out>/servers/` beside the server's log.
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::measure::{closed_loop, ok_errors, Probe};
use super::plan::{Plan, WARM_UP};
use super::{procfs, server};

/// The calls counted one by one (the total counts every call).
const CALLS: &[&str] = &[
    "read",
    "recvfrom",
    "write",
    "writev",
    "sendto",
    "sendfile64",
    "openat",
    "openat2",
    "statx",
    "newfstatat",
    "fstat",
    "close",
    "pread64",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "accept4",
    "setsockopt",
    "shutdown",
    "ioctl",
];
/// A call made less often than this per request is left out of the rows.
const MIN_PER_REQUEST: f64 = 0.01;

/// The tool used: perf when it can read the tracepoints here, else strace.
pub fn tracer(plan: &Plan) -> Option<(&'static str, PathBuf)> {
    static PERF_WORKS: OnceLock<bool> = OnceLock::new();
    if let Some(perf) = &plan.tools.perf {
        let works = *PERF_WORKS.get_or_init(|| {
            Command::new(perf)
                .args(["stat", "-e", "raw_syscalls:sys_enter", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if works {
            return Some(("perf", perf.clone()));
        }
    }
    plan.tools.strace.clone().map(|s| ("strace", s))
}

/// `(metric, calls per request)`: `ka.total`, `ka.<call>`, `close.total`, `close.<call>`.
pub fn measure(
    plan: &Plan,
    probe: &Probe,
    name: &str,
    conns: u32,
) -> io::Result<Vec<(String, f64)>> {
    let (tool, bin) =
        tracer(plan).ok_or_else(|| io::Error::other("neither perf nor strace works"))?;
    let mut rows = Vec::new();
    for (mode, keep_alive) in [("ka", true), ("close", false)] {
        let load = |d| {
            let threads = plan.p.client_threads;
            closed_loop(
                probe.addr,
                &plan.p.static_path,
                conns,
                d,
                threads,
                keep_alive,
                plan.timeout,
            )
        };
        load(WARM_UP)?;
        let out = plan
            .out
            .join("servers")
            .join(format!("{name}.syscalls-{mode}.txt"));
        let mut child = start(tool, &bin, probe.pgid, &out)?;
        // Attaching takes a moment (strace: every thread in turn).
        std::thread::sleep(Duration::from_secs(1));
        let stats = load(plan.duration());
        std::thread::sleep(Duration::from_millis(300));
        stop(&mut child);
        let (ok, _) = ok_errors(&stats?);
        let text = std::fs::read_to_string(&out)?;
        let (total, calls) = if tool == "perf" {
            parse_perf(&text)
        } else {
            parse_strace(&text)
        };
        if ok == 0 || total == 0 {
            return Err(io::Error::other(format!(
                "{tool} counted nothing ({})",
                out.display()
            )));
        }
        let per = |n: u64| n as f64 / ok as f64;
        rows.push((format!("{mode}.total"), per(total)));
        for (call, n) in calls {
            if per(n) >= MIN_PER_REQUEST {
                rows.push((format!("{mode}.{call}"), per(n)));
            }
        }
    }
    Ok(rows)
}

fn start(tool: &str, bin: &Path, pgid: i32, out: &Path) -> io::Result<Child> {
    let pids = procfs::group_pids(pgid)?;
    let mut cmd = Command::new(bin);
    if tool == "perf" {
        let mut events = vec!["raw_syscalls:sys_enter".to_string()];
        for c in CALLS {
            if Path::new(&format!(
                "/sys/kernel/tracing/events/syscalls/sys_enter_{c}"
            ))
            .exists()
            {
                events.push(format!("syscalls:sys_enter_{c}"));
            }
        }
        let pids: Vec<String> = pids.iter().map(i32::to_string).collect();
        cmd.args([
            "stat",
            "-x,",
            "-e",
            &events.join(","),
            "-p",
            &pids.join(","),
            "-o",
        ])
        .arg(out);
    } else {
        cmd.args(["-c", "-f", "-o"]).arg(out);
        for pid in pids {
            for tid in procfs::threads(pid) {
                cmd.arg("-p").arg(tid.to_string());
            }
        }
    }
    server::own_group(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// SIGINT (both tools then write their counts and exit); SIGKILL if that takes too long.
fn stop(child: &mut Child) {
    let pid = Pid::from_raw(child.id() as i32);
    let _ = kill(pid, Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `perf stat -x,`: `count,,event,...` per line. (total, per call).
fn parse_perf(text: &str) -> (u64, Vec<(String, u64)>) {
    let mut total = 0;
    let mut calls = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        let (Some(n), Some(event)) = (f.first().and_then(|n| n.parse::<u64>().ok()), f.get(2))
        else {
            continue;
        };
        match event.rsplit(':').next().unwrap_or(event) {
            "sys_enter" => total = n,
            e => calls.push((e.trim_start_matches("sys_enter_").to_string(), n)),
        }
    }
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    (total, calls)
}

/// `strace -c`: `% time  seconds  usecs/call  calls  [errors]  syscall` per call, then a total
/// line (not read: the calls are summed).
fn parse_strace(text: &str) -> (u64, Vec<(String, u64)>) {
    let mut calls = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f.last() == Some(&"total") {
            continue;
        }
        if let (Ok(_), Ok(n)) = (f[0].parse::<f64>(), f[3].parse::<u64>()) {
            calls.push((f[f.len() - 1].to_string(), n));
        }
    }
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    (calls.iter().map(|c| c.1).sum(), calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_perf_counts() {
        let text = "# started on x\n\n3000,,raw_syscalls:sys_enter,1,100.00,,\n1000,,syscalls:sys_enter_sendto,1,100.00,,\n2000,,syscalls:sys_enter_recvfrom,1,100.00,,\n";
        let (total, calls) = parse_perf(text);
        assert_eq!(total, 3000);
        assert_eq!(
            calls,
            [("recvfrom".to_string(), 2000), ("sendto".to_string(), 1000)]
        );
    }

    #[test]
    fn reads_strace_counts() {
        let text = "% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.000006           0        20         4 recvfrom
 40.00    0.000004           0        10           sendto
------ ----------- ----------- --------- --------- ----------------
100.00    0.000010           0        30         4 total
";
        let (total, calls) = parse_strace(text);
        assert_eq!(total, 30);
        assert_eq!(calls[0], ("recvfrom".to_string(), 20));
    }
}
