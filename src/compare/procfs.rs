//! A server's processes as /proc shows them: every process of its process group (the server,
//! its workers), their memory (VmRSS) and CPU time (utime + stime), summed. Each server runs in
//! a process group of its own (led by the process compare started, or by a daemon's first
//! master), so the group is the server.
use std::io;
use std::path::Path;

use super::machine::meminfo_kib;

/// The pids of the processes in the group led by `pgid`.
pub fn group_pids(pgid: i32) -> io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may exit between listing and reading: skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if stat_field(&stat, 5) == Some(pgid as u64) {
            out.push(pid);
        }
    }
    if out.is_empty() {
        return Err(io::Error::other(format!("no process in group {pgid}")));
    }
    Ok(out)
}

/// VmRSS summed over every process in the group, in KiB.
pub fn group_rss_kib(pgid: i32) -> io::Result<u64> {
    let mut total = 0;
    for pid in group_pids(pgid)? {
        let status = Path::new("/proc").join(pid.to_string()).join("status");
        if let Ok(text) = std::fs::read_to_string(status) {
            total += meminfo_kib(&text, "VmRSS").unwrap_or(0);
        }
    }
    Ok(total)
}

/// CPU time (user + system, every thread) summed over every process in the group, in seconds.
pub fn group_cpu_s(pgid: i32) -> io::Result<f64> {
    let mut ticks = 0;
    for pid in group_pids(pgid)? {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            ticks += stat_field(&stat, 14).unwrap_or(0) + stat_field(&stat, 15).unwrap_or(0);
        }
    }
    Ok(ticks as f64 / clock_ticks())
}

/// The thread ids of a process (strace attaches to each).
pub fn threads(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is a live process (not a zombie) of the group `pgid`. A process that is no
/// longer anyone's child to reap shows as a zombie until init reaps it; a pid reused by a
/// process outside the group is not this one.
pub fn alive_in_group(pid: i32, pgid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let live = stat_state(&stat).is_some_and(|s| !matches!(s, 'Z' | 'X' | 'x'));
    live && stat_field(&stat, 5) == Some(pgid as u64)
}

/// The state letter of /proc/PID/stat (field 3).
fn stat_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Clock ticks per second, the unit of /proc/PID/stat's times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the C library; no memory is passed.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        t if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// Field `n` (1-based, as proc(5) numbers them) of /proc/PID/stat. The second field, `(comm)`,
/// may itself contain spaces and parentheses, so fields are counted after the last `)`.
fn stat_field(stat: &str, n: usize) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stat_fields_after_the_command() {
        let stat = "7 (a) b (c) R 1 42 7 0 -1 0 0 0 0 0 250 31 0 0";
        assert_eq!(stat_field(stat, 5), Some(42));
        assert_eq!(stat_field(stat, 14), Some(250));
        assert_eq!(stat_field(stat, 15), Some(31));
        assert_eq!(stat_field("garbage", 5), None);
        assert_eq!(stat_state(stat), Some('R'));
        assert_eq!(stat_state("9 (x) Z 1 9 9"), Some('Z'));
    }

    #[test]
    fn this_process_group_has_memory_and_cpu_time() {
        let me = nix::unistd::getpgrp().as_raw();
        assert!(group_rss_kib(me).unwrap() > 0);
        let t = std::time::Instant::now();
        while t.elapsed().as_millis() < 30 {
            std::hint::black_box(crate::site::workload::count_primes(2000));
        }
        assert!(group_cpu_s(me).unwrap() > 0.0);
        assert!(threads(std::process::id() as i32).contains(&(std::process::id() as i32)));
        let pid = std::process::id() as i32;
        assert!(alive_in_group(pid, me));
        assert!(!alive_in_group(pid, me + 1));
    }

    #[test]
    fn an_exited_child_is_not_alive_before_or_after_it_is_reaped() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let me = nix::unistd::getpgrp().as_raw();
        let t = std::time::Instant::now();
        while alive_in_group(pid, me) {
            assert!(t.elapsed().as_secs() < 10, "`true` did not exit");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert!(!alive_in_group(pid, me));
    }
}
