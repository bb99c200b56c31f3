//! The results on disk: every measurement as a row of `raw.csv` (appended as it is taken, so an
//! interrupted run keeps what it measured), their summary per point (median, min, max) as
//! `summary.json`, and `report.md`: the setup, then one table per workload like the seed's sheet.
//! Everything after raw.csv is computed from raw.csv's rows.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use super::plan::Workload;

/// The columns of raw.csv, in order.
pub const CSV_HEADER: &str = "server,workers,workload,x,repeat,metric,value,unit,ok,errors";

/// One measured number: a metric of one server at one point of one workload, one repeat.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub server: String,
    pub workers: usize,
    pub workload: String,
    /// The swept parameter: clients (cpu, io) or connections (static, idle).
    pub x: u32,
    pub repeat: u32,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    /// Requests answered with a 2xx status in this measurement.
    pub ok: u64,
    /// Requests that failed (connect, timeout, reset, bad response) or got another status.
    pub errors: u64,
}

impl Sample {
    /// The CSV line (names are registry words and fixed metric names: no quoting needed).
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{}",
            self.server,
            self.workers,
            self.workload,
            self.x,
            self.repeat,
            self.metric,
            self.value,
            self.unit,
            self.ok,
            self.errors
        )
    }
}

/// Parses raw.csv back (the charts and the summary are drawn from it).
pub fn parse_csv(text: &str) -> Result<Vec<Sample>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim() == CSV_HEADER => {}
        _ => return Err(format!("raw.csv must start with `{CSV_HEADER}`")),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        let bad = || format!("raw.csv line {}: `{line}`", i + 1);
        if f.len() != 10 {
            return Err(bad());
        }
        out.push(Sample {
            server: f[0].to_string(),
            workers: f[1].parse().map_err(|_| bad())?,
            workload: f[2].to_string(),
            x: f[3].parse().map_err(|_| bad())?,
            repeat: f[4].parse().map_err(|_| bad())?,
            metric: f[5].to_string(),
            value: f[6].parse().map_err(|_| bad())?,
            unit: f[7].to_string(),
            ok: f[8].parse().map_err(|_| bad())?,
            errors: f[9].parse().map_err(|_| bad())?,
        });
    }
    Ok(out)
}

/// raw.csv, written row by row and flushed, so it survives an interrupted run.
pub struct CsvWriter {
    out: BufWriter<File>,
}

impl CsvWriter {
    pub fn create(path: &Path) -> io::Result<CsvWriter> {
        let mut out = BufWriter::new(File::create(path)?);
        writeln!(out, "{CSV_HEADER}")?;
        out.flush()?;
        Ok(CsvWriter { out })
    }

    pub fn write(&mut self, samples: &[Sample]) -> io::Result<()> {
        for s in samples {
            writeln!(self.out, "{}", s.csv())?;
        }
        self.out.flush()
    }
}

/// The median of a non-empty list (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One point of one metric over its repeats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointSummary {
    pub server: String,
    pub workers: usize,
    pub workload: String,
    pub x: u32,
    pub metric: String,
    pub unit: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Repeats measured.
    pub n: usize,
    /// Summed over the repeats.
    pub ok: u64,
    pub errors: u64,
}

/// Groups samples by (server, workload, x, metric), in the order they were first measured.
pub fn summarize(samples: &[Sample]) -> Vec<PointSummary> {
    let mut order: Vec<(String, String, u32, String)> = Vec::new();
    let mut groups: HashMap<(String, String, u32, String), Vec<&Sample>> = HashMap::new();
    for s in samples {
        let key = (s.server.clone(), s.workload.clone(), s.x, s.metric.clone());
        let g = groups.entry(key.clone()).or_default();
        if g.is_empty() {
            order.push(key);
        }
        g.push(s);
    }
    order
        .into_iter()
        .map(|key| {
            let g = &groups[&key];
            let values: Vec<f64> = g.iter().map(|s| s.value).collect();
            PointSummary {
                server: key.0,
                workers: g[0].workers,
                workload: key.1,
                x: key.2,
                metric: key.3,
                unit: g[0].unit.clone(),
                median: median(&values),
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                n: values.len(),
                ok: g.iter().map(|s| s.ok).sum(),
                errors: g.iter().map(|s| s.errors).sum(),
            }
        })
        .collect()
}

/// The machine, versions and parameters of a run: the report's setup section.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub date: String,
    /// Host, CPUs, memory, kernel, load average at the start (flattened into summary.json).
    #[serde(flatten)]
    pub machine: super::machine::Machine,
    pub archserve: String,
    /// "release" or "debug" (the build of the compare binary; the servers are the same binary
    /// unless --server-bin says otherwise).
    pub build: String,
    pub rustc: Option<String>,
    /// `name: version` of each baseline measured.
    pub baselines: Vec<String>,
    pub command: String,
    pub params: Params,
    /// Lines worth knowing (baselines not installed, an interruption).
    pub notes: Vec<String>,
    pub estimated_s: f64,
    /// Filled in when the run ends.
    pub wall_s: f64,
    pub interrupted: bool,
}

/// The workload parameters, as run.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub servers: Vec<String>,
    pub workers: u32,
    pub workloads: Vec<String>,
    pub repeat: u32,
    pub clients: Vec<u32>,
    pub cpu_n: u64,
    /// One `/cpu` request's work timed in the compare process before the run.
    pub cpu_request_ms: f64,
    pub io_ms: u64,
    pub static_conns: Vec<u32>,
    pub static_duration_s: f64,
    pub static_path: String,
    pub idle_conns: u32,
    pub client_threads: usize,
    pub root: String,
}

#[derive(Debug, Serialize)]
struct SummaryFile<'a> {
    setup: &'a Setup,
    points: &'a [PointSummary],
}

/// Writes summary.json and report.md from the samples (as read back from raw.csv).
pub fn write(dir: &Path, setup: &Setup, samples: &[Sample]) -> io::Result<()> {
    let points = summarize(samples);
    let json = serde_json::to_string_pretty(&SummaryFile {
        setup,
        points: &points,
    })
    .map_err(io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    std::fs::write(dir.join("report.md"), markdown(setup, &points))
}

/// Formats a number for a table: fewer decimals as it grows.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "–".to_string()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `median (min–max)`, or the median alone when every repeat gave the same.
fn cell(p: &PointSummary) -> String {
    let (lo, mid, hi) = (num(p.min), num(p.median), num(p.max));
    let mut s = if lo == hi {
        mid
    } else {
        format!("{mid} ({lo}–{hi})")
    };
    if p.errors > 0 {
        s += " †";
    }
    s
}

fn servers_of(points: &[PointSummary], workload: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for p in points.iter().filter(|p| p.workload == workload) {
        if !v.contains(&p.server) {
            v.push(p.server.clone());
        }
    }
    v
}

fn xs_of(points: &[PointSummary], workload: &str) -> Vec<u32> {
    let mut v: Vec<u32> = points
        .iter()
        .filter(|p| p.workload == workload)
        .map(|p| p.x)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn find<'a>(
    points: &'a [PointSummary],
    server: &str,
    workload: &str,
    x: u32,
    metric: &str,
) -> Option<&'a PointSummary> {
    points
        .iter()
        .find(|p| p.server == server && p.workload == workload && p.x == x && p.metric == metric)
}

/// Footnote listing the points where requests failed.
fn error_note(points: &[PointSummary], workload: &str) -> String {
    let bad: Vec<String> = points
        .iter()
        .filter(|p| p.workload == workload && p.errors > 0)
        .map(|p| {
            format!(
                "{} at {}: {} failed of {}",
                p.server,
                p.x,
                p.errors,
                p.ok + p.errors
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if bad.is_empty() {
        String::new()
    } else {
        format!(
            "\n† requests failed (summed over repeats): {}.\n",
            bad.join("; ")
        )
    }
}

/// The seed's sheet: one row per client count, one column per server, total time in ms.
fn seed_table(out: &mut String, points: &[PointSummary], w: Workload) {
    let servers = servers_of(points, w.name());
    let _ = writeln!(out, "| {} | {} |", w.x_name(), servers.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(servers.len()));
    for x in xs_of(points, w.name()) {
        let cells: Vec<String> = servers
            .iter()
            .map(|s| find(points, s, w.name(), x, "total_ms").map_or("".into(), cell))
            .collect();
        let _ = writeln!(out, "| {x} | {} |", cells.join(" | "));
    }
    out.push_str(&error_note(points, w.name()));
}

fn static_table(out: &mut String, points: &[PointSummary]) {
    let w = Workload::Static.name();
    out.push_str("| server | workers | connections | requests/s | p50 ms | p99 ms |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for s in servers_of(points, w) {
        for x in xs_of(points, w) {
            let Some(rps) = find(points, &s, w, x, "req_per_s") else {
                continue;
            };
            let get = |m| find(points, &s, w, x, m).map_or(String::new(), cell);
            let _ = writeln!(
                out,
                "| {s} | {} | {x} | {} | {} | {} |",
                rps.workers,
                cell(rps),
                get("p50_ms"),
                get("p99_ms")
            );
        }
    }
    out.push_str(&error_note(points, w));
}

fn idle_table(out: &mut String, points: &[PointSummary]) {
    let w = Workload::Idle.name();
    out.push_str(
        "| server | workers | connections wanted | opened | held (answered) | RSS before KiB | \
         RSS after KiB | KiB per held connection |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for s in servers_of(points, w) {
        for x in xs_of(points, w) {
            let Some(per) = find(points, &s, w, x, "kib_per_conn") else {
                continue;
            };
            let get = |m| find(points, &s, w, x, m).map_or(String::new(), cell);
            let _ = writeln!(
                out,
                "| {s} | {} | {x} | {} | {} | {} | {} | {} |",
                per.workers,
                get("opened"),
                get("held"),
                get("rss_before_kib"),
                get("rss_after_kib"),
                cell(per)
            );
        }
    }
    out.push_str(&error_note(points, w));
}

/// report.md.
pub fn markdown(setup: &Setup, points: &[PointSummary]) -> String {
    let p = &setup.params;
    let m = &setup.machine;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# archserve compare: {} on {}\n",
        setup.date, setup.machine.host
    );
    if setup.interrupted {
        out.push_str("**Interrupted**: the run was stopped before the end; what follows is what was measured.\n\n");
    }
    out.push_str(
        "Every cell is the median of the repeats, with the minimum–maximum in parentheses. \
         Every number comes from `raw.csv` beside this file.\n\n",
    );
    out.push_str("## Setup\n\n| | |\n|---|---|\n");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "| {k} | {v} |");
    };
    row(
        "machine",
        format!(
            "{} CPUs ({}), {} MiB memory, Linux {}",
            m.cpus, m.cpu_model, m.memory_mib, m.kernel
        ),
    );
    row(
        "load average at start",
        format!(
            "{} (1 min): other work competing for the {} CPUs",
            num(m.load_1m),
            m.cpus
        ),
    );
    row(
        "versions",
        std::iter::once(format!(
            "archserve {} ({} build)",
            setup.archserve, setup.build
        ))
        .chain(setup.rustc.clone())
        .chain(setup.baselines.iter().cloned())
        .collect::<Vec<_>>()
        .join("; "),
    );
    row("command", format!("`{}`", setup.command));
    row(
        "servers",
        format!(
            "{} (workers: {} unless an architecture runs exactly one)",
            p.servers.join(", "),
            p.workers
        ),
    );
    row("repeats", p.repeat.to_string());
    let runs = |w: &str| p.workloads.iter().any(|x| x == w);
    if runs("cpu") {
        row(
        "cpu",
        format!(
            "GET /cpu?n={} (the primes in 1..={} by trial division; {} ms of one core, timed before the run), clients {}",
            p.cpu_n,
            p.cpu_n,
            num(p.cpu_request_ms),
            list(&p.clients)
        ),
    );
    }
    if runs("io") {
        row(
            "io",
            format!(
                "GET /io?ms={} (the server waits {} ms, the seed waited 1000), clients {}",
                p.io_ms,
                p.io_ms,
                list(&p.clients)
            ),
        );
    }
    if runs("static") {
        row(
            "static",
            format!(
            "GET {} on keep-alive connections, {} s per point, connections {}, {} load thread(s)",
            p.static_path,
            p.static_duration_s,
            list(&p.static_conns),
            p.client_threads
        ),
        );
    }
    if runs("idle") {
        row(
            "idle",
            format!(
                "{} keep-alive connections, each after one GET {}; a fresh server per repeat",
                p.idle_conns, p.static_path
            ),
        );
    }
    row("document root", format!("`{}`", p.root));
    row(
        "wall time",
        format!(
            "{:.0} s (estimated {:.0} s)",
            setup.wall_s, setup.estimated_s
        ),
    );
    for n in &setup.notes {
        let _ = writeln!(out, "\nNote: {n}");
    }

    if points.iter().any(|p| p.workload == "cpu") {
        out.push_str("\n## CPU Bound Task\n\n");
        out.push_str(
            "N clients at once, each one `GET /cpu` on a new connection; response time = total \
             wall time until the last of the N answered, in ms (the seed's measurement).\n\n\
             ![CPU Bound Task](cpu.png)\n\n",
        );
        seed_table(&mut out, points, Workload::Cpu);
    }
    if points.iter().any(|p| p.workload == "io") {
        out.push_str("\n## I/O Bound Task\n\n");
        out.push_str(
            "N clients at once, each one `GET /io` on a new connection; response time = total \
             wall time until the last of the N answered, in ms.\n\n\
             ![I/O Bound Task](io.png)\n\n",
        );
        seed_table(&mut out, points, Workload::Io);
    }
    if points.iter().any(|p| p.workload == "static") {
        out.push_str("\n## Static file, keep-alive\n\n");
        out.push_str(
            "Closed loop: each connection sends its next request when the previous answer is \
             complete. Latency from a request's start to its last byte.\n\n\
             ![Static file throughput](static.png)\n\n",
        );
        static_table(&mut out, points);
    }
    if points.iter().any(|p| p.workload == "idle") {
        out.push_str("\n## Memory per idle keep-alive connection\n\n");
        out.push_str(
            "Connections are opened 100 at a time, each sends one request, and each batch's \
             answers are awaited before the next; those answered are held open and idle. \
             Opening stops when a batch is not answered in full. RSS is VmRSS summed over the server's processes (from \
             /proc), before opening and after the answers; the difference is divided by the \
             connections held. Kernel socket buffers are not in RSS. A blocking architecture \
             holds at most one connection per worker: the rest of its first batch waits \
             unanswered in the listen backlog.\n\n\
             ![Memory per idle connection](idle.png)\n\n",
        );
        idle_table(&mut out, points);
    }
    out
}

fn list(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(server: &str, x: u32, repeat: u32, value: f64) -> Sample {
        Sample {
            server: server.into(),
            workers: 5,
            workload: "cpu".into(),
            x,
            repeat,
            metric: "total_ms".into(),
            value,
            unit: "ms".into(),
            ok: x as u64,
            errors: 0,
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn csv_round_trips() {
        let rows = vec![sample("threads", 1, 1, 61.5), sample("async", 10, 3, 612.0)];
        let mut text = format!("{CSV_HEADER}\n");
        for r in &rows {
            text += &(r.csv() + "\n");
        }
        assert_eq!(
            text.lines().nth(1),
            Some("threads,5,cpu,1,1,total_ms,61.5,ms,1,0")
        );
        assert_eq!(parse_csv(&text).unwrap(), rows);
        assert!(parse_csv("nope\n").is_err());
        assert!(parse_csv(&format!("{CSV_HEADER}\na,b\n")).is_err());
    }

    #[test]
    fn summaries_give_median_min_max_in_measured_order() {
        let mut rows = Vec::new();
        for (r, v) in [(1, 70.0), (2, 60.0), (3, 65.0)] {
            rows.push(sample("threads", 2, r, v));
            rows.push(sample("async", 2, r, v * 2.0));
        }
        rows[5].errors = 1;
        let s = summarize(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].server, "threads");
        assert_eq!(
            (s[0].median, s[0].min, s[0].max, s[0].n),
            (65.0, 60.0, 70.0, 3)
        );
        assert_eq!((s[1].median, s[1].errors, s[1].ok), (130.0, 1, 6));
        assert_eq!(cell(&s[0]), "65 (60–70)");
        assert_eq!(cell(&s[1]), "130 (120–140) †");
    }

    #[test]
    fn numbers_lose_decimals_as_they_grow() {
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1234.5), "1234");
        assert_eq!(num(5.0), "5");
        assert_eq!(num(f64::NAN), "–");
    }
}
