//! `archserve compare` end to end: a tiny sweep of two architectures produces every file (the
//! CSV with the expected rows, JSON that parses, the reports, valid SVG and PNG charts) and
//! leaves no server behind; report.html loads in headless Chromium without a console error and
//! with every chart drawn; Ctrl-C in the middle stops the run and its servers. No timing
//! assertions: only shapes and processes.
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::server::{command, run_command, Process, Signal};

/// A document root with a small file. The servers get a copy of it under the run's --out
/// directory, whose unique path is on every server's command line, so /proc tells whether any
/// of them is still running.
fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>compare</h1>\n").unwrap();
    dir
}

/// Processes (other than the test itself) whose command line mentions `needle`.
fn processes_mentioning(needle: &Path) -> Vec<(i32, String)> {
    let needle = needle.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if pid != me && cmd.contains(&needle) && cmd.contains(" serve ") {
            found.push((pid, cmd));
        }
    }
    found
}

/// The addresses the run reported for its servers ("NAME (N workers) on ADDR").
fn server_addrs(stderr: &str) -> Vec<SocketAddr> {
    stderr
        .lines()
        .filter_map(|l| l.split(" on ").nth(1))
        .filter_map(|a| a.split(',').next()?.trim().parse().ok())
        .collect()
}

/// `archserve compare --root ROOT --out OUT EXTRA...`.
fn compare_command(root: &Path, out: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = command(["compare", "--root"]);
    cmd.arg(root).arg("--out").arg(out).args(extra);
    cmd
}

/// Runs `archserve compare --root ROOT --out OUT EXTRA...` to its end.
fn compare(root: &Path, out: &Path, extra: &[&str]) -> Output {
    run_command(compare_command(root, out, extra))
}

fn check_svg(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.trim_start();
    assert!(
        start.starts_with("<svg") || start.starts_with("<?xml"),
        "{}",
        path.display()
    );
    assert!(text.trim_end().ends_with("</svg>"), "{}", path.display());
}

fn check_png(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let (w, h) = (reader.info().width, reader.info().height);
    assert!(w > 0 && h > 0, "{}", path.display());
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).unwrap();
    assert!(buf.iter().any(|&b| b != 255), "{} is blank", path.display());
}

/// The tiny sweep's raw.csv: the header, then per server 2 cpu + 2 io + 2×4 static + 5 idle
/// rows, each with the workers started and a numeric value.
fn check_raw_csv(out: &Path) {
    let csv = std::fs::read_to_string(out.join("raw.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("server,workers,workload,x,repeat,metric,value,unit,ok,errors")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 34, "{csv}");
    assert!(rows.iter().all(|r| r.len() == 10));
    let count = |server: &str, workload: &str| {
        rows.iter()
            .filter(|r| r[0] == server && r[2] == workload)
            .count()
    };
    for server in ["threads", "async"] {
        assert_eq!(count(server, "cpu"), 2);
        assert_eq!(count(server, "io"), 2);
        assert_eq!(count(server, "static"), 8);
        assert_eq!(count(server, "idle"), 5);
    }
    // Workers as started: the seed's 5 for threads, exactly one for async.
    assert!(rows
        .iter()
        .all(|r| r[1] == if r[0] == "threads" { "5" } else { "1" }));
    // Every value is a number, and cpu/io answered every client.
    for r in &rows {
        r[6].parse::<f64>().unwrap();
        if r[2] == "cpu" || r[2] == "io" {
            assert_eq!((r[8], r[9]), (r[3], "0"), "{r:?}");
        }
    }
}

/// The tiny sweep's summary.json, report.md, self-contained report.html and the four charts;
/// the scratch root removed.
fn check_summary_and_reports(out: &Path) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 34);
    assert_eq!(json["setup"]["params"]["io_ms"], 10);
    assert!(json["setup"]["command"]
        .as_str()
        .unwrap()
        .contains("--arch threads,async"));

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for heading in [
        "## Setup",
        "## CPU Bound Task",
        "## I/O Bound Task",
        "## Static file",
        "## Memory per idle",
    ] {
        assert!(report.contains(heading), "{heading} missing:\n{report}");
    }
    assert!(report.contains("| git commit |"), "{report}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<table id=\"table-static\">"));
    // Self-contained: nothing to fetch (no script, stylesheet link or external source).
    for fetch in ["<script", "<link", " src=", "url("] {
        assert!(!html.contains(fetch), "report.html has {fetch}");
    }
    for chart in ["cpu", "io", "static", "idle"] {
        check_svg(&out.join(format!("{chart}.svg")));
        check_png(&out.join(format!("{chart}.png")));
        assert!(
            html.contains(&format!("id=\"chart-{chart}\"><svg")),
            "{chart}"
        );
    }
    // The scratch root is gone.
    assert!(!out.join("www.tmp").exists());
}

#[test]
fn a_tiny_sweep_writes_every_file_and_leaves_no_server() {
    let root = root();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("results");
    let res = compare(
        root.path(),
        &out,
        &[
            "--arch",
            "threads,async",
            "--clients",
            "1,2",
            "--workload",
            "cpu,io,static,idle",
            "--repeat",
            "1",
            "--cpu-n",
            "20000",
            "--io-ms",
            "10",
            "--static-conns",
            "1,3",
            "--duration",
            "100ms",
            "--idle-conns",
            "20",
        ],
    );
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(res.status.success(), "{res:?}");
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("estimated"), "{stdout}");

    check_raw_csv(&out);
    check_summary_and_reports(&out);

    // Nothing left: no process with our run on its command line, nothing on the ports.
    assert_eq!(processes_mentioning(&out), vec![]);
    let addrs = server_addrs(&stderr);
    assert_eq!(addrs.len(), 4, "{stderr}"); // each: one server for cpu..static, one for idle
    for a in addrs {
        assert!(TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_err());
    }
}

#[test]
fn ctrl_c_stops_the_run_and_every_server() {
    let root = root();
    let out = tempfile::tempdir().unwrap();
    let out: PathBuf = out.path().join("results");
    // Long enough that the signal lands mid-sweep; `processes` forks workers, whose whole
    // group must go.
    let compare = Process::spawn(compare_command(
        root.path(),
        &out,
        &[
            "--arch",
            "processes,threads",
            "--workload",
            "io",
            "--io-ms",
            "500",
            "--clients",
            "1-10",
        ],
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_mentioning(&out).len() < 2 {
        assert!(Instant::now() < deadline, "no server started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(700));
    compare.signal(Signal::SIGINT);
    let status = compare
        .wait_exit(deadline.saturating_duration_since(Instant::now()))
        .expect("compare did not stop");
    assert_eq!(status.code(), Some(130));
    assert_eq!(processes_mentioning(&out), vec![]);
    // What was measured before the signal is written, and says it was interrupted.
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Interrupted"), "{report}");
    assert!(std::fs::read_to_string(out.join("raw.csv"))
        .unwrap()
        .starts_with("server,"));
}

/// Whether `name` is an installed program (PATH, then the sbin directories).
fn installed(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .any(|d| d.join(name).is_file())
}

#[test]
fn baselines_run_beside_ours_when_installed_and_are_named_when_not() {
    let root = root();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("results");
    let res = compare(
        root.path(),
        &out,
        &[
            "--arch",
            "async",
            "--workload",
            "static",
            "--static-conns",
            "1",
            "--duration",
            "100ms",
            "--repeat",
            "1",
            "--baseline",
            "nginx,lighttpd",
        ],
    );
    assert!(res.status.success(), "{res:?}");
    let stdout = String::from_utf8_lossy(&res.stdout);
    let csv = std::fs::read_to_string(out.join("raw.csv")).unwrap();
    for b in ["nginx", "lighttpd"] {
        let rows = csv
            .lines()
            .filter(|l| l.starts_with(&format!("{b},")))
            .count();
        if installed(b) {
            assert_eq!(rows, 4, "{b}: {csv}");
            // Every request answered with a 2xx by the generated configuration.
            for l in csv.lines().filter(|l| l.starts_with(&format!("{b},"))) {
                assert!(l.ends_with(",0"), "{l}");
            }
        } else {
            assert_eq!(rows, 0);
            assert!(
                stdout.contains(&format!("{b} is not installed")),
                "{stdout}"
            );
        }
    }
    // The baselines' processes carry their configuration's path (under --out): none is left.
    let needle = out.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !cmd.contains(&needle) || cmd.contains(" compare "),
                "left behind: {cmd}"
            );
        }
    }
}

/// report.html as a browser sees it: loaded by headless Chromium (scripts/install-test-deps
/// installs it), no console message, and every chart of the run an `<svg>` drawn in the page.
/// A page that logs an error is loaded first, so the check is known to see console errors.
#[test]
fn report_html_loads_in_chromium_with_every_chart_and_no_console_error() {
    use archserve::compare::browser;
    assert!(
        browser::find().is_some(),
        "chromium is not installed: run scripts/install-test-deps"
    );
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary.html");
    std::fs::write(
        &canary,
        "<!DOCTYPE html><p>x</p><script>console.error('canary-error')</script>",
    )
    .unwrap();
    let seen = browser::load(&canary).unwrap();
    assert!(
        seen.console.iter().any(|l| l.contains("canary-error")),
        "{seen:?}"
    );

    let root = root();
    let out = dir.path().join("results");
    let res = compare(
        root.path(),
        &out,
        &[
            "--arch",
            "threads,async",
            "--clients",
            "1,2",
            "--workload",
            "cpu,static,fresh,idle",
            "--repeat",
            "2",
            "--cpu-n",
            "20000",
            "--static-conns",
            "1,3",
            "--duration",
            "100ms",
            "--idle-conns",
            "20",
        ],
    );
    assert!(res.status.success(), "{res:?}");
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("report.html"), "{stdout}");
    let page = browser::load(&out.join("report.html")).unwrap();
    assert_eq!(page.console, Vec::<String>::new());
    for chart in ["cpu", "static", "idle"] {
        let at = page
            .dom
            .find(&format!("id=\"chart-{chart}\""))
            .unwrap_or_else(|| panic!("no {chart} chart in the page"));
        let figure = &page.dom[at..at + page.dom[at..].find("</figure>").unwrap()];
        assert!(
            figure.contains("<svg") && figure.contains("</svg>"),
            "{chart}"
        );
        assert!(
            figure.contains("<rect") || figure.contains("<polyline"),
            "{chart} is empty"
        );
    }
    // Every table of the report made it into the page.
    for table in ["cpu", "static", "fresh", "idle"] {
        assert!(
            page.dom.contains(&format!("id=\"table-{table}\"")),
            "{table}"
        );
    }
    // compare drew the page too, as report.png beside it.
    check_png(&out.join("report.png"));
}

/// The upgrade workload on one architecture: both modes, five upgrades each under load, with no
/// failed request and no refused connection, and no server process left. Self-contained (its
/// own root, run and process check).
#[test]
fn upgrade_workload_upgrades_five_times_under_load_without_an_error() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), "<h1>upgrade</h1>\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("results");
    let res = compare(
        root.path(),
        &out,
        &[
            "--arch",
            "async",
            "--workload",
            "upgrade",
            "--repeat",
            "1",
            "--upgrade-duration",
            "1s",
            "--load-conns",
            "8",
        ],
    );
    assert!(res.status.success(), "{res:?}");

    let csv = std::fs::read_to_string(out.join("raw.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let value = |metric: &str| -> f64 {
        let row = rows
            .iter()
            .find(|r| r[0] == "async" && r[2] == "upgrade" && r[5] == metric)
            .unwrap_or_else(|| panic!("no {metric} row:\n{csv}"));
        row[6].parse().unwrap()
    };
    for mode in ["ka", "close"] {
        assert_eq!(value(&format!("{mode}.upgrades")), 5.0, "{csv}");
        assert!(value(&format!("{mode}.answered")) > 0.0, "{csv}");
        assert_eq!(value(&format!("{mode}.failed")), 0.0, "{csv}");
        assert_eq!(value(&format!("{mode}.refused")), 0.0, "{csv}");
    }
    // Every row of the run is an upgrade row of async, with no error counted.
    assert!(!rows.is_empty());
    assert!(rows
        .iter()
        .all(|r| r[0] == "async" && r[2] == "upgrade" && r[9] == "0"));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let points = json["points"].as_array().unwrap();
    let upgrades: Vec<f64> = points
        .iter()
        .filter(|p| p["metric"].as_str().unwrap().ends_with(".upgrades"))
        .map(|p| p["median"].as_f64().unwrap())
        .collect();
    assert_eq!(upgrades, [5.0, 5.0]);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Upgrades under load"), "{report}");
    assert!(
        report.contains("| async | 1 | keep-alive | 5 |"),
        "{report}"
    );

    // Every process of every server (the first, its successors) is gone: none has the run's
    // directory on its command line any more.
    let needle = out.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            assert!(
                !cmd.contains(&needle) || cmd.contains(" compare "),
                "left behind: {cmd}"
            );
        }
    }
}

/// uring's upgrade race: a worker that stopped with its multishot accept still queued on the
/// shared socket took the wake-ups of connections arriving while its ring was torn down (the
/// socket wakes one waiting accept per connection), and when every kept-alive client of the
/// round reconnected in that moment, all of them waited for an answer until their timeout: 64 of
/// 64 in 1 round of 5 of `compare --workload upgrade --arch uring` before the fix
/// (docs/results/uring-upgrade-2026-11-29-repro). Two rounds of five upgrades under 64 connections,
/// both modes: every request answered, no connection refused.
#[test]
fn uring_upgrades_under_load_leave_no_connection_waiting() {
    if let Some(why) = archserve::arch::unavailable("uring") {
        return eprintln!("skipping architecture uring: {why}");
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("index.html"), "<h1>upgrade</h1>\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let out = out.path().join("results");
    let res = compare(
        root.path(),
        &out,
        &[
            "--arch",
            "uring",
            "--workload",
            "upgrade",
            "--repeat",
            "2",
            "--upgrade-duration",
            "2s",
            "--load-conns",
            "64",
            "--timeout",
            "10",
        ],
    );
    assert!(res.status.success(), "{res:?}");
    let csv = std::fs::read_to_string(out.join("raw.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    let metric = |suffix: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r[0] == "uring" && r[5].ends_with(suffix))
            .map(|r| r[6].parse().unwrap())
            .collect()
    };
    // Two rounds, two modes.
    assert_eq!(metric(".answered").len(), 4, "{csv}");
    assert!(metric(".answered").iter().all(|&n| n > 0.0), "{csv}");
    assert!(metric(".upgrades").iter().all(|&n| n >= 1.0), "{csv}");
    assert!(metric(".failed").iter().all(|&n| n == 0.0), "{csv}");
    assert!(metric(".refused").iter().all(|&n| n == 0.0), "{csv}");
}
