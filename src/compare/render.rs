//! The report's sections written out: `report.md` (charts linked as PNG) and `report.html`, one
//! self-contained page (styles inline, charts inline as SVG, no script, nothing fetched), which
//! is the natural way to read a run in a browser.
use std::fmt::Write as _;
use std::path::Path;

use super::plan::Params;
use super::report::{num, Setup};
use super::tables::{Section, Table};

/// The setup as (key, value) rows; values may hold Markdown code spans.
fn setup_rows(setup: &Setup) -> Vec<(String, String)> {
    let m = &setup.machine;
    let p = &setup.params;
    let mut rows = vec![
        (
            "machine".to_string(),
            format!(
                "{} ({} CPUs, {}), {} MiB memory, Linux {}",
                m.host, m.cpus, m.cpu_model, m.memory_mib, m.kernel
            ),
        ),
        (
            "load average at start".into(),
            format!(
                "{} (1 min): other work competing for the {} CPUs",
                num(m.load_1m),
                m.cpus
            ),
        ),
        (
            "git commit".into(),
            setup
                .git
                .clone()
                .unwrap_or_else(|| "unknown (not run in a git work tree)".into()),
        ),
        (
            "versions".into(),
            std::iter::once(format!(
                "archserve {} ({} build)",
                setup.archserve, setup.build
            ))
            .chain(setup.versions.iter().cloned())
            .collect::<Vec<_>>()
            .join("; "),
        ),
        ("command".into(), format!("`{}`", setup.command)),
        (
            "servers".into(),
            format!(
                "{} (workers: {} unless a server runs exactly one)",
                p.servers.join(", "),
                p.workers
            ),
        ),
        (
            "rounds".into(),
            format!(
                "{}, interleaved: each round starts every server afresh, in turn",
                p.repeat
            ),
        ),
        ("workloads".into(), p.workloads.join(", ")),
    ];
    rows.extend(param_rows(p));
    rows.push((
        "wall time".into(),
        format!(
            "{:.0} s (estimated {:.0} s)",
            setup.wall_s, setup.estimated_s
        ),
    ));
    rows
}

/// The workload parameters as (key, value) rows.
fn param_rows(p: &Params) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let runs = |w: &str| p.workloads.iter().any(|x| x == w);
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    if runs("cpu") {
        rows.push((
            "cpu".into(),
            format!(
                "`GET /cpu?n={}` ({} ms of one core, timed before the run), clients {}",
                p.cpu_n,
                num(p.cpu_request_ms),
                list(&p.clients)
            ),
        ));
    }
    if runs("io") {
        rows.push((
            "io".into(),
            format!(
                "`GET /io?ms={}` (the seed waited 1000), clients {}",
                p.io_ms,
                list(&p.clients)
            ),
        ));
    }
    rows.push(("timed points".into(), format!("{} s each after a warm-up; static connections {}, close {}, big {}; {} load thread(s); small file `{}`", num(p.duration_s), list(&p.static_conns), p.close_conns, p.big_conns, p.client_threads, p.static_path)));
    rows.push((
        "idle, io-burst, syscalls, loadgen".into(),
        format!(
            "{} connections held; {} clients on `/io?ms={}`; {} connections",
            p.idle_conns, p.burst_clients, p.burst_ms, p.load_conns
        ),
    ));
    if runs("upgrade") {
        rows.push((
            "upgrade".into(),
            format!(
                "`archserve load` for {} s on {} connections per mode, {} upgrades",
                num(p.upgrade_duration_s),
                p.load_conns,
                p.upgrades
            ),
        ));
    }
    rows.push((
        "document root".into(),
        format!(
            "a copy of `{}`, with the 1 MiB file and the freshness check's file added",
            p.root
        ),
    ));
    rows
}

const PREAMBLE: &str = "Every cell is the median of the rounds, with the minimum–maximum in \
    parentheses. Every number comes from `raw.csv` beside this file; the baselines' \
    configurations and every server's log are in `servers/`.";

/// report.md.
pub fn markdown(setup: &Setup, sections: &[Section]) -> String {
    let mut out = format!(
        "# archserve compare: {} on {}\n\n",
        setup.date, setup.machine.host
    );
    if setup.interrupted {
        out.push_str("**Interrupted**: the run was stopped before the end; what follows is what was measured.\n\n");
    }
    let _ = writeln!(out, "{PREAMBLE}\n\n## Setup\n\n| | |\n|---|---|");
    for (k, v) in setup_rows(setup) {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    for n in &setup.notes {
        let _ = writeln!(out, "\nNote: {n}");
    }
    for s in sections {
        let _ = write!(out, "\n## {}\n\n{}\n\n", s.heading, s.intro);
        if let Some(chart) = &s.chart {
            let _ = write!(out, "![{}]({chart}.png)\n\n", s.heading);
        }
        for t in &s.tables {
            out.push_str(&markdown_table(t));
        }
    }
    out
}

/// A table in Markdown, with its footnote under it.
pub fn markdown_table(t: &Table) -> String {
    let mut out = format!(
        "| {} |\n|{}\n",
        t.head.join(" | "),
        "---|".repeat(t.head.len())
    );
    for r in &t.rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    if !t.note.is_empty() {
        let _ = write!(out, "\n{}\n", t.note);
    }
    out
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;\
padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}\
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}code{background:#f3f3f3;\
padding:0 3px}figure{margin:1em 0}figure svg{max-width:100%;height:auto}\
.note{background:#fff8e0;padding:4px 8px}";

/// report.html: the same sections, the charts read from `dir` and inlined as SVG.
pub fn html(setup: &Setup, sections: &[Section], dir: &Path) -> String {
    let title = format!(
        "archserve compare: {} on {}",
        setup.date, setup.machine.host
    );
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    if setup.interrupted {
        out.push_str("<p class=\"note\"><b>Interrupted</b>: the run was stopped before the end; what follows is what was measured.</p>\n");
    }
    let _ = writeln!(out, "<p>{}</p>\n<h2>Setup</h2>\n<table>", inline(PREAMBLE));
    for (k, v) in setup_rows(setup) {
        let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), inline(&v));
    }
    out.push_str("</table>\n");
    for n in &setup.notes {
        let _ = writeln!(out, "<p class=\"note\">Note: {}</p>", inline(n));
    }
    for s in sections {
        let _ = writeln!(
            out,
            "<section>\n<h2>{}</h2>\n<p>{}</p>",
            inline(&s.heading),
            inline(&s.intro)
        );
        if let Some(chart) = &s.chart {
            let svg = std::fs::read_to_string(dir.join(format!("{chart}.svg"))).unwrap_or_default();
            let _ = writeln!(
                out,
                "<figure class=\"chart\" id=\"chart-{chart}\">{}</figure>",
                strip_prolog(&svg)
            );
        }
        for t in &s.tables {
            out.push_str(&html_table(t));
        }
        out.push_str("</section>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn html_table(t: &Table) -> String {
    let mut out = format!("<table id=\"table-{}\">\n<tr>", esc(&t.id));
    for h in &t.head {
        let _ = write!(out, "<th>{}</th>", inline(h));
    }
    out.push_str("</tr>\n");
    for r in &t.rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", inline(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    if !t.note.is_empty() {
        let _ = writeln!(out, "<p>{}</p>", inline(&t.note));
    }
    out
}

/// An SVG file's `<svg>` element alone (an `<?xml ...?>` prolog is not valid inside HTML).
fn strip_prolog(svg: &str) -> &str {
    svg.find("<svg").map_or("", |i| &svg[i..])
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Escaped text with the little Markdown the sections use: `code` and **bold**.
fn inline(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in esc(s).split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            for (j, bit) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    let _ = write!(out, "<b>{bit}</b>");
                } else {
                    out.push_str(bit);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markdown_becomes_escaped_html() {
        assert_eq!(
            inline("a `<b>` **c** & d"),
            "a <code>&lt;b&gt;</code> <b>c</b> &amp; d"
        );
        assert_eq!(strip_prolog("<?xml version=\"1.0\"?>\n<svg x>"), "<svg x>");
    }

    #[test]
    fn tables_render_in_both_forms() {
        let t = Table {
            id: "t".into(),
            head: vec!["a".into(), "b".into()],
            rows: vec![vec!["1".into(), "`x`".into()]],
            note: "† n".into(),
        };
        assert_eq!(
            markdown_table(&t),
            "| a | b |\n|---|---|\n| 1 | `x` |\n\n† n\n"
        );
        let h = html_table(&t);
        assert!(h.contains("<td><code>x</code></td>") && h.contains("id=\"table-t\""));
    }
}
