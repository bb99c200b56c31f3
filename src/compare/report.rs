//! The results on disk: every measurement as a row of `raw.csv` (appended as it is taken, so an
//! interrupted run keeps what it measured), their summary per point (median, min, max) as
//! `summary.json`, and the reports (`report.md`, `report.html`) that [`super::tables`] lays out
//! and [`super::render`] writes. Everything after raw.csv is computed from raw.csv's rows.
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use super::plan::Params;
use super::render;

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
    /// The git commit of the working tree compare ran in, `(dirty)` with uncommitted changes.
    pub git: Option<String>,
    pub archserve: String,
    /// "release" or "debug" (the build of the compare binary; the servers are the same binary
    /// unless --server-bin says otherwise).
    pub build: String,
    /// rustc, every baseline, every generator and tracer used.
    pub versions: Vec<String>,
    pub command: String,
    pub params: Params,
    /// Lines worth knowing (what was skipped and why, an interruption, a failed server).
    pub notes: Vec<String>,
    pub estimated_s: f64,
    /// Filled in when the run ends.
    pub wall_s: f64,
    pub interrupted: bool,
}

#[derive(Debug, Serialize)]
struct SummaryFile<'a> {
    setup: &'a Setup,
    points: &'a [PointSummary],
}

/// Writes summary.json, report.md and report.html from the samples (as read back from
/// raw.csv); the charts must already be in `dir` (report.html carries them inline).
pub fn write(dir: &Path, setup: &Setup, samples: &[Sample]) -> io::Result<()> {
    let points = summarize(samples);
    let json = serde_json::to_string_pretty(&SummaryFile {
        setup,
        points: &points,
    })
    .map_err(io::Error::other)?;
    std::fs::write(dir.join("summary.json"), json + "\n")?;
    let sections = super::tables::sections(Some(setup), samples);
    std::fs::write(dir.join("report.md"), render::markdown(setup, &sections))?;
    std::fs::write(dir.join("report.html"), render::html(setup, &sections, dir))
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

/// `median (min–max)`, or the median alone when every repeat gave the same; `†` when
/// requests failed.
pub fn cell(p: &PointSummary) -> String {
    scaled_cell(p, 1.0)
}

/// [`cell`] with every value multiplied by `k` (KiB shown as bytes).
pub fn scaled_cell(p: &PointSummary, k: f64) -> String {
    let (lo, mid, hi) = (num(p.min * k), num(p.median * k), num(p.max * k));
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
