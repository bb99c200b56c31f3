//! `archserve reliability` end to end, short: the crash scenario on `processes` (a worker
//! killed and replaced) and a 30 s soak of `async` with a sample a second. Checks the files and
//! their shapes (raw.csv rows, run.json, report.md, soak.csv, the chart) and that no server is
//! left behind; no timing assertion.
use std::path::Path;

use crate::server::{command, run_command};

fn root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>reliability</h1>\n").unwrap();
    dir
}

fn reliability(root: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = command(["reliability", "--root"]);
    cmd.arg(root).arg("--out").arg(out).args(extra);
    run_command(cmd)
}

/// The raw.csv rows of one metric: (server, value).
fn metric(out: &Path, workload: &str, name: &str) -> Vec<(String, f64)> {
    let raw = std::fs::read_to_string(out.join("raw.csv")).unwrap();
    raw.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2] == workload && f[5] == name).then(|| (f[0].to_string(), f[6].parse().unwrap()))
        })
        .collect()
}

fn no_server_left(out: &Path) {
    let needle = out.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(
            !(cmd.contains(&needle) && cmd.contains(" serve ")),
            "left running: {cmd}"
        );
    }
}

#[test]
fn crash_kills_a_worker_and_sees_it_replaced() {
    let (root, out) = (root(), tempfile::tempdir().unwrap());
    let o = reliability(
        root.path(),
        out.path(),
        &["--scenario", "crash", "--arch", "processes,async"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // async runs one process: the crash scenario leaves it out.
    let replaced = metric(out.path(), "crash", "replaced_ms");
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_eq!(replaced[0].0, "processes");
    assert!(replaced[0].1.is_finite(), "no replacement worker seen");
    assert!(metric(out.path(), "crash", "responses")[0].1 > 0.0);
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("## crash\n"), "{report}");
    assert!(report.contains("| processes |"), "{report}");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("run.json")).unwrap())
            .unwrap();
    assert_eq!(run["failures"], serde_json::json!([]));
    assert!(run["machine"]["load_1m"].is_number());
    no_server_left(out.path());
}

#[test]
fn a_short_soak_writes_its_samples_and_chart() {
    let (root, out) = (root(), tempfile::tempdir().unwrap());
    let o = reliability(
        root.path(),
        out.path(),
        &[
            "--scenario",
            "soak",
            "--arch",
            "async",
            "--minutes",
            "0.5",
            "--sample-every",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let csv = std::fs::read_to_string(out.path().join("soak.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "server,t_s,rss_kib,fds,socket_fds,threads,processes,fds_floor,fds_max,\
             non_socket_fds,non_socket_floor,non_socket_max,pipes_floor,pipes_max,\
             changing_floor,changing_max,held,connections,held_sockets,looks"
        )
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| {
            let mut f = l.split(',');
            assert_eq!(f.next(), Some("async"));
            f.map(|v| v.parse().unwrap()).collect()
        })
        .collect();
    // One sample a second over 30 s: the first at 0 s, the last before 30 s.
    assert_eq!(rows.len(), 30, "{csv}");
    for r in &rows {
        assert!(
            r[1] > 0.0 && r[2] > 0.0 && r[4] >= 1.0 && r[5] == 1.0,
            "{r:?}"
        );
        assert!(r[3] <= r[2], "{r:?}");
        // Each sample is a burst of 51 looks: floor <= instant <= most, for all descriptors
        // (fds 2, floor 6, max 7) and those not sockets (8, 9, 10); what is held is within
        // the floor and includes at least the listener (held_sockets 17).
        assert_eq!(r[18], 51.0, "{r:?}");
        assert!(r[6] <= r[2] && r[2] <= r[7], "{r:?}");
        assert!(r[9] <= r[8] && r[8] <= r[10], "{r:?}");
        assert!(r[9] <= r[6] && r[11] <= r[12] && r[13] <= r[14], "{r:?}");
        assert!(r[17] >= 1.0 && r[15] >= r[17] && r[15] <= r[6], "{r:?}");
    }
    // A floor log is written (empty when nothing moved) beside the end's descriptor listing.
    for file in ["fd-floor-async.txt", "descriptors-async.txt"] {
        assert!(out.path().join(file).exists(), "{file}");
    }
    for m in [
        "fds.held_max_dev_pct",
        "fds.floor_max_dev_pct",
        "sampler.cpu_pct",
    ] {
        assert!(metric(out.path(), "soak", m)[0].1 >= 0.0, "{m}");
    }
    for file in ["soak.svg", "soak.png"] {
        assert!(
            out.path().join(file).metadata().unwrap().len() > 0,
            "{file}"
        );
    }
    for m in [
        "keepalive.responses",
        "not_modified.responses",
        "range.responses",
    ] {
        assert!(metric(out.path(), "soak", m)[0].1 > 0.0, "{m}");
    }
    // The level the rest is held to is a sample from the second half of the run (< 2 min).
    let at = metric(out.path(), "soak", "ref_t_s")[0].1;
    let i = rows
        .iter()
        .position(|r| (r[0] - at).abs() < 0.05)
        .expect("ref is a sample");
    assert!(i >= rows.len() / 2 - 1, "{at}");
    no_server_left(out.path());
}
