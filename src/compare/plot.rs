//! The charts, as SVG and PNG, from raw.csv's rows: "CPU Bound Task" and "I/O Bound Task"
//! (response time against clients, one line per server, as the seed drew them), static-file
//! throughput (bars per connection count), memory per idle connection (a bar per server).
//! Each point is the median of its repeats with a whisker from min to max; a server keeps its
//! colour in every chart.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (`assets/fonts/`, its licence
//! beside it) and registered with plotters' ab_glyph backend, so no fontconfig or freetype is
//! needed at build or run time.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::types::{RangedCoordf64, RangedCoordu32};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::plan::Workload;
use super::report::{num, summarize, PointSummary, Sample};

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
pub(super) const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (900, 560);

/// Distinct colours (Tableau 10), one per server in order of first appearance.
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(super) fn register() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the embedded font is not a valid TrueType font".to_string())
    })
    .clone()
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws every chart the samples have data for, as NAME.svg and NAME.png in `dir`; returns
/// the files written.
pub fn draw_all(dir: &Path, samples: &[Sample]) -> Result<Vec<PathBuf>, String> {
    register()?;
    let points = summarize(samples);
    let mut servers: Vec<String> = Vec::new();
    for p in &points {
        if !servers.contains(&p.server) {
            servers.push(p.server.clone());
        }
    }
    let charts = [
        (Workload::Cpu, "total_ms", "CPU Bound Task"),
        (Workload::Io, "total_ms", "I/O Bound Task"),
        (
            Workload::Static,
            "req_per_s",
            "Static file throughput (keep-alive)",
        ),
        (
            Workload::Idle,
            "kib_per_conn",
            "Memory per idle keep-alive connection",
        ),
    ];
    let mut written = Vec::new();
    for (w, metric, title) in charts {
        let data: Vec<&PointSummary> = points
            .iter()
            .filter(|p| p.workload == w.name() && p.metric == metric)
            .collect();
        if data.is_empty() {
            continue;
        }
        let chart = Chart {
            workload: w,
            title,
            data: &data,
            servers: &servers,
            held: points
                .iter()
                .filter(|p| p.workload == w.name() && p.metric == "held")
                .collect(),
        };
        let svg = dir.join(format!("{}.svg", w.name()));
        chart.draw(SVGBackend::new(&svg, SIZE).into_drawing_area())?;
        let png = dir.join(format!("{}.png", w.name()));
        chart.draw(BitMapBackend::new(&png, SIZE).into_drawing_area())?;
        written.extend([svg, png]);
    }
    Ok(written)
}

struct Chart<'a> {
    workload: Workload,
    title: &'a str,
    data: &'a [&'a PointSummary],
    /// Every server of the run, for stable colours.
    servers: &'a [String],
    /// idle: the connections held per server, for the bar labels.
    held: Vec<&'a PointSummary>,
}

impl Chart<'_> {
    fn color(&self, server: &str) -> RGBColor {
        let i = self.servers.iter().position(|s| s == server).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    }

    /// The servers that have data in this chart, in run order.
    fn series(&self) -> Vec<&str> {
        self.servers
            .iter()
            .map(String::as_str)
            .filter(|s| self.data.iter().any(|p| p.server == *s))
            .collect()
    }

    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(err)?;
        match self.workload {
            Workload::Cpu | Workload::Io => self.lines(&root)?,
            Workload::Static => self.bars(&root, "Requests per second (median, min–max)")?,
            _ => self.bars(&root, "KiB of server RSS per held connection")?,
        }
        root.present().map_err(err)
    }

    /// Response time against clients, a line per server: the seed's two charts.
    fn lines<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let max_x = self.data.iter().map(|p| p.x).max().unwrap_or(1);
        let max_y = y_top(self.data.iter().map(|p| p.max));
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, (FAMILY, 26))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(0u32..max_x + 1, 0f64..max_y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("Number of clients")
            .y_desc("Response time (ms)")
            .x_labels((max_x + 2) as usize)
            .light_line_style(RGBColor(238, 238, 238))
            .y_label_formatter(&|v| axis_number(*v, max_y))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .draw()
            .map_err(err)?;
        let series = self.series();
        for (k, server) in series.iter().enumerate() {
            let color = self.color(server);
            let mut pts: Vec<&&PointSummary> =
                self.data.iter().filter(|p| p.server == *server).collect();
            pts.sort_by_key(|p| p.x);
            // Servers often coincide (the seed's I/O chart is two flat lines): earlier series
            // are drawn wider, so a later one on top leaves them visible as an outline, and
            // each has its own marker.
            let width = 2 + (series.len() - 1 - k) as u32;
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.x, p.median)),
                    color.stroke_width(width),
                ))
                .map_err(err)?
                .label(*server)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
            // Its own marker: circle, triangle, cross, square, ring, then again.
            let at = pts.iter().map(|p| (p.x, p.median));
            match k % 5 {
                0 => chart.draw_series(at.map(|c| Circle::new(c, 4, color.filled()))),
                1 => chart.draw_series(at.map(|c| TriangleMarker::new(c, 6, color.filled()))),
                2 => chart.draw_series(at.map(|c| Cross::new(c, 5, color.stroke_width(2)))),
                3 => chart.draw_series(at.map(|c| {
                    EmptyElement::at(c) + Rectangle::new([(-4, -4), (4, 4)], color.filled())
                })),
                _ => chart.draw_series(at.map(|c| Circle::new(c, 5, color.stroke_width(2)))),
            }
            .map_err(err)?;
            chart
                .draw_series(pts.iter().filter(|p| p.max > p.min).map(|p| {
                    ErrorBar::new_vertical(p.x, p.min, p.median, p.max, color.stroke_width(1), 8)
                }))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()
            .map_err(err)
    }

    /// The bar groups: static, one per connection count with a bar per server; idle, one bar
    /// per server. Each as (label, bars: (server, point)).
    fn groups(&self) -> Vec<Group<'_>> {
        let series = self.series();
        if self.workload != Workload::Static {
            return series
                .iter()
                .filter_map(|s| {
                    let p = self.data.iter().find(|p| p.server == *s)?;
                    Some((s.to_string(), vec![(*s, *p)]))
                })
                .collect();
        }
        let mut xs: Vec<u32> = self.data.iter().map(|p| p.x).collect();
        xs.sort_unstable();
        xs.dedup();
        xs.into_iter()
            .map(|x| {
                let bars = series
                    .iter()
                    .filter_map(|s| {
                        let p = self.data.iter().find(|p| p.server == *s && p.x == x)?;
                        Some((*s, *p))
                    })
                    .collect();
                let unit = if x == 1 { "connection" } else { "connections" };
                (format!("{x} {unit}"), bars)
            })
            .collect()
    }

    /// Grouped bars, each 2 units wide on an integer axis, so that group centres fall on ticks
    /// that carry the group's label. static has a legend; idle labels each bar with its value
    /// and the connections held.
    fn bars<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        y_desc: &str,
    ) -> Result<(), String> {
        let groups = self.groups();
        let per_group = groups.iter().map(|g| g.1.len()).max().unwrap_or(1) as u32;
        let width = 2 * per_group + 2;
        let span = width * groups.len() as u32;
        // Room above the bars for the legend (static) or the value labels (idle).
        let top = y_top(self.data.iter().map(|p| p.max)) * 1.2;
        let bottom = self
            .data
            .iter()
            .map(|p| p.min)
            .filter(|v| v.is_finite())
            .fold(0f64, f64::min)
            * 1.15;
        let labels: Vec<(u32, String)> = groups
            .iter()
            .enumerate()
            .map(|(g, (label, _))| (g as u32 * width + 1 + per_group, label.clone()))
            .collect();
        let mut chart = ChartBuilder::on(root)
            .caption(self.title, (FAMILY, 26))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(0u32..span, bottom..top)
            .map_err(err)?;
        let label_of = |v: &u32| {
            labels
                .iter()
                .find(|(c, _)| c == v)
                .map_or(String::new(), |(_, l)| l.clone())
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_labels(span as usize + 1)
            .x_label_formatter(&label_of)
            .y_desc(y_desc)
            .y_label_formatter(&|v| axis_number(*v, top))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .draw()
            .map_err(err)?;
        let mut legend_done: Vec<&str> = Vec::new();
        for (g, (_, bars)) in groups.iter().enumerate() {
            let offset = per_group - bars.len() as u32; // centre a short group
            for (j, (server, p)) in bars.iter().enumerate() {
                let x0 = g as u32 * width + 1 + offset + 2 * j as u32;
                let legend = !legend_done.contains(server) && self.workload == Workload::Static;
                if legend {
                    legend_done.push(server);
                }
                self.bar(&mut chart, x0, server, p, legend, top - bottom)?;
            }
        }
        if self.workload == Workload::Static {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FAMILY, 15))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }

    /// One bar at `x0` with its whisker, its legend entry (`legend`) and, for idle, its label.
    fn bar<DB: DrawingBackend>(
        &self,
        chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordu32, RangedCoordf64>>,
        x0: u32,
        server: &str,
        p: &PointSummary,
        legend: bool,
        height: f64,
    ) -> Result<(), String> {
        let color = self.color(server);
        let value = if p.median.is_finite() { p.median } else { 0.0 };
        let drawn = chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x0 + 2, value)],
                color.filled(),
            )))
            .map_err(err)?;
        if legend {
            drawn.label(server.to_string()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled())
            });
        }
        if p.max > p.min {
            chart
                .draw_series(std::iter::once(ErrorBar::new_vertical(
                    x0 + 1,
                    p.min,
                    p.median,
                    p.max,
                    BLACK.stroke_width(1),
                    8,
                )))
                .map_err(err)?;
        }
        if self.workload == Workload::Idle {
            let held = self
                .held
                .iter()
                .find(|h| h.server == server && h.x == p.x)
                .map_or(String::new(), |h| format!(" ({:.0} held)", h.median));
            let y = p.max.max(value).max(0.0) + height * 0.02;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{} KiB{held}", num(value)),
                    (x0, y),
                    (FAMILY, 14).into_font().color(&BLACK),
                )))
                .map_err(err)?;
        }
        Ok(())
    }
}

/// A group of bars: its label and its (server, point) bars.
type Group<'a> = (String, Vec<(&'a str, &'a PointSummary)>);

/// Tick labels without decimals that carry nothing (`50000`, not `50000.0`).
fn axis_number(v: f64, top: f64) -> String {
    if top >= 20.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A y-axis top with room above the highest value (and a usable range when all are zero).
fn y_top(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0f64, f64::max);
    if max > 0.0 {
        max * 1.15
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_registers() {
        register().unwrap();
    }

    #[test]
    fn y_axis_leaves_room() {
        assert_eq!(y_top([1.0, 2.0, f64::NAN].into_iter()), 2.3);
        assert_eq!(y_top(std::iter::empty()), 1.0);
    }

    #[test]
    fn draws_svg_and_png() {
        let dir = std::env::temp_dir().join(format!("archserve-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rows = Vec::new();
        for (server, w) in [
            ("threads", "cpu"),
            ("async", "cpu"),
            ("threads", "static"),
            ("threads", "idle"),
        ] {
            for x in 1..=3 {
                for (metric, v) in [
                    ("total_ms", 60.0 * x as f64),
                    ("req_per_s", 1e4),
                    ("kib_per_conn", 3.0),
                    ("held", 5.0),
                ] {
                    rows.push(Sample {
                        server: server.into(),
                        workers: 5,
                        workload: w.into(),
                        x,
                        repeat: 1,
                        metric: metric.into(),
                        value: v,
                        unit: "ms".into(),
                        ok: 1,
                        errors: 0,
                    });
                }
            }
        }
        let files = draw_all(&dir, &rows).unwrap();
        assert_eq!(files.len(), 6); // cpu, static, idle; no io rows
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() > 100, "{}", f.display());
        }
        let svg = std::fs::read_to_string(dir.join("cpu.svg")).unwrap();
        assert!(svg.contains("CPU Bound Task") && svg.trim_end().ends_with("</svg>"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
