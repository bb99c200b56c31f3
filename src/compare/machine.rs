//! What the report says about where it ran and what it ran: CPUs, memory, kernel, host, load,
//! the git commit of the working tree, the version of every program involved, and the command
//! line quoted so it can be pasted back into a shell. Read from /proc and the programs
//! themselves, never assumed.
use std::path::Path;

/// The machine facts of the setup section.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Machine {
    pub host: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
    pub kernel: String,
    /// /proc/loadavg's 1-minute figure when the run started: other work on the machine
    /// competes with the servers and the load generator, and this says how much there was.
    pub load_1m: f64,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(path)).unwrap_or_default()
}

pub fn machine() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    Machine {
        host: read("/proc/sys/kernel/hostname").trim().to_string(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        memory_mib: meminfo_kib(&read("/proc/meminfo"), "MemTotal").unwrap_or(0) / 1024,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        load_1m: read("/proc/loadavg")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN),
    }
}

/// A `Name:   1234 kB` field of /proc/meminfo or /proc/PID/status, in KiB.
pub fn meminfo_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// `rustc -V` if a compiler is on PATH (the binary itself does not know which built it).
pub fn rustc() -> Option<String> {
    let out = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// The first non-empty line a program prints for `args` (stdout, then stderr: `nginx -v`
/// writes to stderr), or `NAME: version unknown`.
pub fn program_version(bin: &Path, args: &[&str]) -> String {
    let name = bin
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let text = std::process::Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map(|o| {
            format!(
                "{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    match line {
        Some(l) if l.to_lowercase().contains(&name.to_lowercase()) => l.to_string(),
        Some(l) => format!("{name} {l}"),
        None => format!("{name}: version unknown"),
    }
}

/// The commit of the git working tree compare runs in, with ` (dirty)` when tracked files have
/// uncommitted changes; None outside a work tree or without git.
pub fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let status = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Some(if status.is_empty() {
        head
    } else {
        format!("{head} (dirty)")
    })
}

/// The command line, each word quoted for a POSIX shell when it needs to be.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    args.into_iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./,=:@%+".contains(&b));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo_fields() {
        let t = "MemTotal:       24684000 kB\nMemFree: 1 kB\nVmRSS:\t    5120 kB\n";
        assert_eq!(meminfo_kib(t, "MemTotal"), Some(24_684_000));
        assert_eq!(meminfo_kib(t, "VmRSS"), Some(5120));
        assert_eq!(meminfo_kib(t, "Mem"), None);
    }

    #[test]
    fn quotes_only_what_needs_it() {
        let words = [
            "archserve",
            "compare",
            "--arch",
            "threads,async",
            "a b",
            "it's",
        ];
        assert_eq!(
            command_line(words.map(String::from)),
            "archserve compare --arch threads,async 'a b' 'it'\\''s'"
        );
    }

    #[test]
    fn versions_name_their_program() {
        let v = program_version(Path::new("/bin/sh"), &["-c", "echo 1.2.3"]);
        assert_eq!(v, "sh 1.2.3");
        let v = program_version(Path::new("/nonexistent/prog"), &["-v"]);
        assert_eq!(v, "prog: version unknown");
    }

    #[test]
    fn this_machine_has_a_cpu_and_memory() {
        let m = machine();
        assert!(m.cpus >= 1);
        assert!(m.memory_mib > 0);
        assert!(!m.kernel.is_empty());
        assert!(m.load_1m >= 0.0);
    }
}
