//! What a reliability run leaves besides raw.csv: run.json (machine, load average at the start
//! and the end, commit, command, versions, failures) and report.md (the setup, then a table per
//! scenario: a row per server, a column per figure, errors by kind in one column).
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::super::machine::{self, Machine};
use super::super::plan::{self, Kind, Plan};
use super::super::report::{cell, summarize, PointSummary, Sample};
use super::ReliabilityArgs;

#[derive(Debug, Serialize)]
struct RunFile<'a> {
    date: String,
    git: Option<String>,
    command: String,
    machine: Machine,
    load_1m_at_end: f64,
    workers: u32,
    servers: &'a [String],
    versions: Vec<String>,
    wall_s: f64,
    failures: &'a [String],
    interrupted: bool,
}

/// Writes run.json and report.md into `out`; `at_start` is the machine and the commit when
/// the run started.
pub fn finish(
    out: &Path,
    plan: &Plan,
    args: &ReliabilityArgs,
    samples: &[Sample],
    failures: &[String],
    at_start: (Machine, Option<String>),
    started: Instant,
) -> anyhow::Result<()> {
    let mut versions: Vec<String> = machine::rustc().into_iter().collect();
    for s in &plan.servers {
        if let Kind::Baseline(_, bin) = &s.kind {
            versions.push(machine::program_version(bin, &["-v"]));
        }
    }
    let run = RunFile {
        date: plan::today(),
        git: at_start.1,
        command: machine::command_line(std::env::args()),
        load_1m_at_end: machine::machine().load_1m,
        machine: at_start.0,
        workers: args.workers,
        servers: &plan.p.servers,
        versions,
        wall_s: started.elapsed().as_secs_f64(),
        failures,
        interrupted: super::super::server::stopped(),
    };
    std::fs::write(
        out.join("run.json"),
        serde_json::to_string_pretty(&run)? + "\n",
    )?;
    std::fs::write(out.join("report.md"), markdown(&run, samples))?;
    Ok(())
}

fn markdown(run: &RunFile, samples: &[Sample]) -> String {
    let m = &run.machine;
    let mut s = format!(
        "# archserve reliability run, {}\n\n- commit: {}\n- machine: {}, {} CPUs ({}), {} MiB, \
         kernel {}\n- load average (1 min): {:.2} at the start, {:.2} at the end\n- command: \
         `{}`\n- workers: {}\n",
        run.date,
        run.git.as_deref().unwrap_or("unknown"),
        m.host,
        m.cpus,
        m.cpu_model,
        m.memory_mib,
        m.kernel,
        m.load_1m,
        run.load_1m_at_end,
        run.command,
        run.workers
    );
    for v in &run.versions {
        s += &format!("- {v}\n");
    }
    for f in run.failures {
        s += &format!("- failed: {f}\n");
    }
    let points = summarize(samples);
    let mut scenarios: Vec<&str> = Vec::new();
    for p in &points {
        if !scenarios.contains(&p.workload.as_str()) {
            scenarios.push(&p.workload);
        }
    }
    for w in scenarios {
        let rows: Vec<&PointSummary> = points.iter().filter(|p| p.workload == w).collect();
        s += &format!("\n## {w}\n\n{}", table(&rows));
    }
    s
}

/// Whether `metric` is one error kind's count (`under.errors.reset`): those go in one column.
fn error_kind(metric: &str) -> Option<(&str, &str)> {
    let (prefix, kind) = metric.rsplit_once("errors.")?;
    Some((prefix.trim_end_matches('.'), kind))
}

/// A row per server, a column per figure in the order measured, then errors by kind; turned
/// a quarter (a row per figure, a column per server) when there are more than
/// [`WIDE`] figures.
pub fn table(rows: &[&PointSummary]) -> String {
    let mut servers: Vec<&str> = Vec::new();
    let mut metrics: Vec<&str> = Vec::new();
    for p in rows {
        if !servers.contains(&p.server.as_str()) {
            servers.push(&p.server);
        }
        if error_kind(&p.metric).is_none() && !metrics.contains(&p.metric.as_str()) {
            metrics.push(&p.metric);
        }
    }
    let cell_of = |server: &str, m: &str| {
        rows.iter()
            .find(|p| p.server == server && p.metric == m)
            .map_or("–".into(), |p| cell(p))
    };
    let mut grid: Vec<Vec<String>> = servers
        .iter()
        .map(|&server| {
            let mut row = vec![server.to_string()];
            row.extend(metrics.iter().map(|m| cell_of(server, m)));
            row.push(kinds(rows, server));
            row
        })
        .collect();
    let mut head = vec!["server".to_string()];
    head.extend(metrics.iter().map(|m| m.to_string()));
    head.push("errors by kind".into());
    if metrics.len() > WIDE {
        let mut turned = vec![vec!["figure".to_string()]];
        turned[0].extend(servers.iter().map(|s| s.to_string()));
        for (i, name) in head.iter().enumerate().skip(1) {
            let mut row = vec![name.clone()];
            row.extend(grid.iter().map(|r| r[i].clone()));
            turned.push(row);
        }
        head = turned.remove(0);
        grid = turned;
    }
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let mut s = line(&head);
    s += &format!("|{}\n", "---|".repeat(head.len()));
    for row in &grid {
        s += &line(row);
    }
    s
}

/// Beyond this many figures a table is turned a quarter.
const WIDE: usize = 12;

/// A server's errors by kind, those not zero: `under reset 3, closed 1`, or `–`.
fn kinds(rows: &[&PointSummary], server: &str) -> String {
    let kinds: Vec<String> = rows
        .iter()
        .filter(|p| p.server == server && p.max > 0.0)
        .filter_map(|p| {
            let (prefix, kind) = error_kind(&p.metric)?;
            let at = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix} ")
            };
            Some(format!("{at}{kind} {}", cell(p)))
        })
        .collect();
    if kinds.is_empty() {
        "–".to_string()
    } else {
        kinds.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(server: &str, metric: &str, v: f64) -> PointSummary {
        PointSummary {
            server: server.into(),
            workers: 2,
            workload: "crash".into(),
            x: 0,
            metric: metric.into(),
            unit: "u".into(),
            median: v,
            min: v,
            max: v,
            n: 1,
            ok: 0,
            errors: 0,
        }
    }

    #[test]
    fn error_kinds_share_one_column_and_zeros_are_left_out() {
        let rows = [
            p("hybrid", "responses", 1000.0),
            p("hybrid", "errors", 18.0),
            p("hybrid", "errors.reset", 18.0),
            p("hybrid", "errors.closed", 0.0),
            p("nginx", "responses", 900.0),
            p("nginx", "errors", 0.0),
            p("nginx", "under.errors.timeout", 0.0),
        ];
        let refs: Vec<&PointSummary> = rows.iter().collect();
        let t = table(&refs);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "| server | responses | errors | errors by kind |");
        assert_eq!(lines[2], "| hybrid | 1000 | 18 | reset 18 |");
        assert_eq!(lines[3], "| nginx | 900 | 0 | – |");
        assert_eq!(error_kind("under.errors.reset"), Some(("under", "reset")));
        assert_eq!(error_kind("errors"), None);
    }
}
