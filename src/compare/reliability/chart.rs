//! The soak's chart, soak.svg and soak.png: RSS (MiB), open descriptors (the floor of each
//! burst, bold; the instant value, faint), the descriptors held (the target's figure,
//! fd_burst.rs) and threads against time, one line per server (compare's colours and embedded
//! font), minute one marked.
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::super::plot::{register, FAMILY, PALETTE};
use super::soak::Point;

const SIZE: (u32, u32) = (900, 1160);

/// Draws the chart of `series` (server name, samples) into `dir`; returns the files written.
pub fn draw(dir: &Path, series: &[(String, Vec<Point>)]) -> Result<Vec<PathBuf>, String> {
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Ok(Vec::new());
    }
    register()?;
    let svg = dir.join("soak.svg");
    panels(SVGBackend::new(&svg, SIZE).into_drawing_area(), series)?;
    let png = dir.join("soak.png");
    panels(BitMapBackend::new(&png, SIZE).into_drawing_area(), series)?;
    Ok(vec![svg, png])
}

/// A panel: its title, the bold line, and a faint line beside it (or none).
type Metric = (&'static str, fn(&Point) -> f64, Option<fn(&Point) -> f64>);

fn panels<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &[(String, Vec<Point>)],
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let metrics: [Metric; 4] = [
        (
            "RSS (MiB, sum over the server's processes)",
            |p| p.rss_kib as f64 / 1024.0,
            None,
        ),
        (
            "Open descriptors: floor of each 500 ms burst (bold), instant value (faint)",
            |p| p.fd.all.floor as f64,
            Some(|p| p.fd.all.instant as f64),
        ),
        (
            "Descriptors held (judged): floor of files and other kinds, + sockets no client explains",
            |p| p.fd.held as f64,
            None,
        ),
        ("Threads", |p| p.threads as f64, None),
    ];
    let areas = root.split_evenly((4, 1));
    for (i, (area, metric)) in areas.iter().zip(metrics).enumerate() {
        panel(area, series, metric, i == 0)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[(String, Vec<Point>)],
    (title, f, faint): Metric,
    legend: bool,
) -> Result<(), String> {
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let t_max = all().map(|p| p.t_s).fold(1.0, f64::max) / 60.0;
    let y_max = all()
        .map(|p| faint.map_or(f(p), |g| f(p).max(g(p))))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .label_style((FAMILY, 12))
        .draw()
        .map_err(|e| e.to_string())?;
    let one = 1.0f64.min(t_max / 2.0);
    chart
        .draw_series(LineSeries::new(
            [(one, 0.0), (one, y_max)],
            RGBColor(180, 180, 180),
        ))
        .map_err(|e| e.to_string())?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if let Some(g) = faint {
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.t_s / 60.0, g(p))),
                    color.mix(0.3).stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
        }
        let s = chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.t_s / 60.0, f(p))),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        if legend {
            s.label(name.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        }
    }
    if legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FAMILY, 12))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
