//! The five scenarios, each on a fresh server of its own: slowloris, crash, sigterm, emfile,
//! files. Each returns its figures; what each measures is said on its function.
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::super::plan::{Plan, ServerSpec};
use super::super::procfs;
use super::super::server::{Running, Start};
use super::traffic::{figures, get_status, slowloris, Figures, Stream};
use super::Scenario;

/// Runs `s` on a fresh `spec`; `quick` shortens slowloris's loads to 3 s.
pub fn measure(
    plan: &Plan,
    spec: &ServerSpec,
    s: Scenario,
    quick: bool,
) -> anyhow::Result<Figures> {
    match s {
        Scenario::Slowloris => slow_clients(plan, spec, quick),
        Scenario::Crash => crash(plan, spec),
        Scenario::Sigterm => sigterm(plan, spec),
        Scenario::Emfile => emfile(plan, spec),
        Scenario::Files => files(plan, spec),
        Scenario::Soak => bail!("the soak runs every server at once (soak.rs)"),
    }
}

fn joined<T>(h: std::thread::JoinHandle<std::io::Result<T>>) -> anyhow::Result<T> {
    h.join()
        .map_err(|_| anyhow!("a load thread panicked"))?
        .context("load")
}

/// Slowloris: 16 keep-alive clients for 5 s alone, then 2,000 connections that trickle a
/// request head a byte a second and the same 16 clients for 5 s beside them (ours with
/// `--header-timeout 30`, so no slow connection is timed out during the run).
fn slow_clients(plan: &Plan, spec: &ServerSpec, quick: bool) -> anyhow::Result<Figures> {
    let server = Running::start_with(plan, spec, Start::Measured, &["--header-timeout", "30"])?;
    let d = Duration::from_secs(if quick { 3 } else { 5 });
    let alone = Stream::closed("/index.html", 16, d).run(server.addr)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, flag) = (server.addr, stop.clone());
    let slow = std::thread::spawn(move || slowloris(addr, 2000, &flag));
    std::thread::sleep(Duration::from_millis(1500));
    let mut under = Stream::closed("/index.html", 16, d);
    under.timeout = Duration::from_secs(5);
    let under = under.run(server.addr);
    stop.store(true, Ordering::SeqCst);
    let opened = slow.join().map_err(|_| anyhow!("slowloris thread"))?;
    let mut out = figures("alone", &alone);
    out.extend(figures("under", &under?));
    out.push(("slow_conns".into(), opened as f64, "conns"));
    Ok(out)
}

/// Crash: 32 keep-alive clients for 6 s; at 2 s one worker process gets SIGKILL; the time
/// until a new process appears in the server's group, polled every millisecond.
fn crash(plan: &Plan, spec: &ServerSpec) -> anyhow::Result<Figures> {
    let server = Running::start(plan, spec)?;
    let group = server.probe().pgid;
    let load = Stream::closed("/index.html", 32, Duration::from_secs(6)).spawn(server.addr);
    std::thread::sleep(Duration::from_secs(2));
    let before: BTreeSet<i32> = procfs::group_pids(group)?.into_iter().collect();
    let victim = *before
        .iter()
        .find(|&&p| p != server.serving().as_raw())
        .ok_or_else(|| anyhow!("no worker process to kill"))?;
    let t0 = Instant::now();
    kill(Pid::from_raw(victim), Signal::SIGKILL)?;
    let mut replaced = None;
    while t0.elapsed() < Duration::from_secs(5) {
        let now = procfs::group_pids(group).unwrap_or_default();
        if now.iter().any(|p| !before.contains(p)) {
            replaced = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let stats = joined(load)?;
    let mut out = figures("", &stats);
    out.push((
        "replaced_ms".into(),
        replaced.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        "ms",
    ));
    Ok(out)
}

/// SIGTERM under load: 32 keep-alive clients on /index.html and 8 on `/io?ms=500` for 4 s
/// (`--grace 5`); SIGTERM at 2 s; the exit code and the time from the signal to the exit.
fn sigterm(plan: &Plan, spec: &ServerSpec) -> anyhow::Result<Figures> {
    let mut server = Running::start_with(plan, spec, Start::Measured, &["--grace", "5"])?;
    let d = Duration::from_secs(4);
    let fast = Stream::closed("/index.html", 32, d).spawn(server.addr);
    let slow = Stream::closed("/io?ms=500", 8, d).spawn(server.addr);
    std::thread::sleep(Duration::from_secs(2));
    let pid = server.serving();
    let t0 = Instant::now();
    kill(pid, Signal::SIGTERM)?;
    while !server.gone(pid) {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("still running 30 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = t0.elapsed();
    let code = server
        .exit_status()
        .and_then(|s| s.code())
        .map_or(f64::NAN, f64::from);
    let mut out = figures("static", &joined(fast)?);
    out.extend(figures("io", &joined(slow)?));
    out.push(("exit_code".into(), code, "code"));
    out.push(("exit_ms".into(), took.as_secs_f64() * 1e3, "ms"));
    Ok(out)
}

/// Descriptor exhaustion: once the server runs, RLIMIT_NOFILE 64 (soft and hard) on each of
/// its processes (prlimit); 200 connections opened and held for 3 s; the server's CPU over
/// those 3 s, its "backing off" warnings, whether it is alive, and how long after the
/// connections close it answers 200 again.
fn emfile(plan: &Plan, spec: &ServerSpec) -> anyhow::Result<Figures> {
    let mut server = Running::start(plan, spec)?;
    let probe = server.probe();
    for pid in procfs::group_pids(probe.pgid)? {
        limit_nofile(pid, 64).with_context(|| format!("prlimit of {pid}"))?;
    }
    let warnings = || {
        std::fs::read_to_string(server_log(plan, spec))
            .unwrap_or_default()
            .matches("backing off")
            .count()
    };
    let warned_before = warnings();
    let socks: Vec<_> = (0..200)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&probe.addr, Duration::from_secs(2)).ok()
        })
        .collect();
    let c0 = probe.cpu_s()?;
    std::thread::sleep(Duration::from_secs(3));
    let cpu = (probe.cpu_s()? - c0) / 3.0;
    let held = socks.len();
    drop(socks);
    let t0 = Instant::now();
    let mut recovered = None;
    while t0.elapsed() < Duration::from_secs(10) {
        if get_status(probe.addr, "/index.html") == Some(200) {
            recovered = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive = !server.gone(server.serving());
    Ok(vec![
        ("held".into(), held as f64, "conns"),
        ("cpu_s_per_s".into(), cpu, "s/s"),
        (
            "backoff_warnings".into(),
            (warnings() - warned_before) as f64,
            "lines",
        ),
        ("alive".into(), f64::from(u8::from(alive)), "bool"),
        (
            "recovered_ms".into(),
            recovered.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
            "ms",
        ),
    ])
}

fn server_log(plan: &Plan, spec: &ServerSpec) -> std::path::PathBuf {
    plan.out.join("servers").join(format!("{}.log", spec.name))
}

/// `prlimit(2)` on another process: its open-file limit, soft and hard.
fn limit_nofile(pid: i32, n: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: a valid rlimit on the stack; the old value is not asked for (null).
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Files rewritten under load: 16 keep-alive clients on a 200 KiB file for 4 s while a writer
/// alternately truncates it in place and rewrites it longer, and replaces it by rename (what
/// deploy tools do), every ~2 ms, with sizes from 30 to 210 KiB.
fn files(plan: &Plan, spec: &ServerSpec) -> anyhow::Result<Figures> {
    let path = plan.serve_root.join("rewritten.bin");
    std::fs::write(&path, noise(200 * 1024, 1))?;
    let server = Running::start(plan, spec)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, file) = (stop.clone(), path.clone());
    let writer = std::thread::spawn(move || rewrite(&file, &flag));
    let stats = Stream::closed("/rewritten.bin", 16, Duration::from_secs(4)).run(server.addr);
    stop.store(true, Ordering::SeqCst);
    let rewrites = writer.join().map_err(|_| anyhow!("writer thread"))??;
    let mut out = figures("", &stats?);
    out.push(("rewrites".into(), rewrites as f64, "writes"));
    Ok(out)
}

/// The writer of [`files`]; returns how many times it changed the file.
fn rewrite(path: &std::path::Path, stop: &AtomicBool) -> std::io::Result<u64> {
    use std::io::{Seek, Write};
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let size = (i as usize % 7 + 1) * 30 * 1024;
        if i % 2 == 1 {
            let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.set_len(size as u64 / 3)?;
            f.rewind()?;
            f.write_all(&noise(size, i))?;
        } else {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, noise(size, i))?;
            std::fs::rename(&tmp, path)?;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(i)
}

/// `len` bytes of xorshift noise from `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
