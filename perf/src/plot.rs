//! `codis-bench plot`: SVG charts from `compare --json` results (plotters' SVG backend, text as
//! SVG `<text>`, so no system font is needed).
//!
//! The input holds JSON objects, one per line (or one JSON array of them), each a `compare --json`
//! row: `test`, `target`, `pipeline`, `rps`, `p50`, `p90`, `p99`, `p999`, `p9999`, `max` (µs),
//! plus an optional `suite` naming the group of runs it belongs to (`scripts/bench` writes
//! `server` and `proxy`). Per suite it draws:
//! - `<suite>-throughput.svg`: requests/s against pipeline depth (log scale), one line per target
//!   and test;
//! - `<suite>-latency-p<P>.svg`: latency percentiles (p50 … max, log scale) at pipeline depth P,
//!   one line per target and test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use serde::Deserialize;

use crate::error::BenchError;

/// One result row (the fields of `compare --json` that the charts use).
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    /// Group of runs (`server`, `proxy`, …); rows without one go to `results`.
    #[serde(default)]
    pub suite: Option<String>,
    /// Test name (`GET`, `SET`, …).
    pub test: String,
    /// Target name.
    pub target: String,
    /// Pipeline depth (`-P`).
    #[serde(default = "one")]
    pub pipeline: u32,
    /// Median requests per second.
    pub rps: f64,
    /// Latency percentiles in µs.
    pub p50: f64,
    /// p90 in µs.
    pub p90: f64,
    /// p99 in µs.
    pub p99: f64,
    /// p99.9 in µs.
    pub p999: f64,
    /// p99.99 in µs.
    pub p9999: f64,
    /// Highest latency in µs.
    pub max: f64,
}

fn one() -> u32 {
    1
}

impl Row {
    fn suite(&self) -> &str {
        self.suite.as_deref().unwrap_or("results")
    }

    fn percentiles(&self) -> [f64; 6] {
        [
            self.p50, self.p90, self.p99, self.p999, self.p9999, self.max,
        ]
    }

    fn series(&self) -> String {
        format!("{} {}", self.target, self.test)
    }
}

const PERCENTILE_LABELS: [&str; 6] = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];

/// Parse a results file: JSON lines, or one JSON array. Lines that are not JSON objects with the
/// fields of a comparison row (e.g. other records a script keeps in the same file) are skipped.
pub fn parse_rows(text: &str) -> Result<Vec<Row>, BenchError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> = serde_json::from_str(trimmed)
            .map_err(|e| BenchError::Plot(format!("results are not a JSON array: {e}")))?;
        return Ok(values
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect());
    }
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| BenchError::Plot(format!("line {}: not JSON: {e}", i + 1)))?;
        if let Ok(r) = serde_json::from_value::<Row>(v) {
            rows.push(r);
        }
    }
    Ok(rows)
}

/// `server`, `proxy path` → `server`, `proxy-path` (safe in a file name).
fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn plot_err<E: std::fmt::Debug>(what: &Path) -> impl Fn(E) -> BenchError + '_ {
    move |e| BenchError::Plot(format!("{}: {e:?}", what.display()))
}

/// Draw every chart of `rows` into `out_dir` (created if missing); returns the files written.
pub fn plot(rows: &[Row], out_dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    if rows.is_empty() {
        return Err(BenchError::Plot(
            "no result rows (expected compare --json objects with test, target, rps, p50 …)".into(),
        ));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| BenchError::File(out_dir.to_path_buf(), e))?;
    let mut suites: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        suites.entry(r.suite()).or_default().push(r);
    }
    let mut written = Vec::new();
    for (suite, rows) in suites {
        let path = out_dir.join(format!("{}-throughput.svg", slug(suite)));
        throughput_chart(suite, &rows, &path)?;
        written.push(path);
        let mut depths: Vec<u32> = rows.iter().map(|r| r.pipeline).collect();
        depths.sort_unstable();
        depths.dedup();
        for p in depths {
            let at: Vec<&Row> = rows.iter().copied().filter(|r| r.pipeline == p).collect();
            let path = out_dir.join(format!("{}-latency-p{p}.svg", slug(suite)));
            latency_chart(suite, p, &at, &path)?;
            written.push(path);
        }
    }
    Ok(written)
}

/// One line of a chart: its legend, its colour index (one colour per target) and whether it is
/// dashed (every test but the first-seen one), with its points.
struct Series<T> {
    name: String,
    color: usize,
    dashed: bool,
    points: Vec<T>,
}

/// Rows grouped into series (target × test), in first-seen order.
fn group<'a, T>(rows: &[&'a Row], point: impl Fn(&'a Row) -> T) -> Vec<Series<T>> {
    let mut targets: Vec<&str> = Vec::new();
    let mut tests: Vec<&str> = Vec::new();
    let mut out: Vec<Series<T>> = Vec::new();
    for &r in rows {
        let name = r.series();
        if let Some(s) = out.iter_mut().find(|s| s.name == name) {
            s.points.push(point(r));
            continue;
        }
        let color = targets
            .iter()
            .position(|t| *t == r.target)
            .unwrap_or_else(|| {
                targets.push(&r.target);
                targets.len() - 1
            });
        let test = tests.iter().position(|t| *t == r.test).unwrap_or_else(|| {
            tests.push(&r.test);
            tests.len() - 1
        });
        out.push(Series {
            name,
            color,
            dashed: test > 0,
            points: vec![point(r)],
        });
    }
    out
}

/// Draw one series as a line (solid or dashed, with its legend entry) and dots at its points.
fn draw_line<DB, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    name: Option<String>,
    color: usize,
    dashed: bool,
    pts: Vec<(X::ValueType, Y::ValueType)>,
) -> Result<(), String>
where
    DB: DrawingBackend,
    X: Ranged,
    Y: Ranged,
    X::ValueType: Clone + 'static,
    Y::ValueType: Clone + 'static,
{
    let c = Palette99::pick(color).to_rgba();
    let style = c.stroke_width(2);
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("{e:?}");
    if dashed {
        let a = chart
            .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
            .map_err(e)?;
        if let Some(n) = name {
            a.label(n).legend(move |(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 22, y)], 5, 3, style)
            });
        }
    } else {
        let a = chart
            .draw_series(LineSeries::new(pts.clone(), style))
            .map_err(e)?;
        if let Some(n) = name {
            a.label(n)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
        }
    }
    chart
        .draw_series(pts.into_iter().map(|p| Circle::new(p, 4, c.filled())))
        .map_err(e)?;
    Ok(())
}

fn throughput_chart(suite: &str, rows: &[&Row], path: &Path) -> Result<(), BenchError> {
    let err = plot_err(path);
    let mut series = group(rows, |r| (f64::from(r.pipeline.max(1)), r.rps));
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let pmin = rows.iter().map(|r| r.pipeline.max(1)).min().unwrap_or(1) as f64;
    let pmax = rows.iter().map(|r| r.pipeline.max(1)).max().unwrap_or(1) as f64;
    let ymax = rows.iter().map(|r| r.rps).fold(0.0, f64::max).max(1.0) * 1.15;
    let root = SVGBackend::new(path, (860, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{suite}: throughput vs pipeline depth"),
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(84)
        .build_cartesian_2d((pmin * 0.7..pmax * 1.4).log_scale(), 0.0..ymax)
        .map_err(&err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("pipeline depth (-P)")
        .y_desc("requests/s (median of rounds)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(&err)?;
    for s in series {
        draw_line(&mut chart, Some(s.name), s.color, s.dashed, s.points)
            .map_err(|e| BenchError::Plot(format!("{}: {e}", path.display())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}

fn latency_chart(suite: &str, pipeline: u32, rows: &[&Row], path: &Path) -> Result<(), BenchError> {
    let err = plot_err(path);
    let series = group(rows, |r| r.percentiles());
    let all = rows.iter().flat_map(|r| r.percentiles());
    let ymin = all
        .clone()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    let ymin = if ymin.is_finite() { ymin * 0.7 } else { 1.0 };
    let ymax = all.fold(0.0, f64::max).max(ymin * 2.0) * 1.5;
    let root = SVGBackend::new(path, (860, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{suite}: latency percentiles at pipeline {pipeline}"),
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(84)
        .build_cartesian_2d(
            (0u32..PERCENTILE_LABELS.len() as u32 - 1).into_segmented(),
            (ymin..ymax).log_scale(),
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("percentile")
        .y_desc("latency (µs, log scale)")
        .x_labels(PERCENTILE_LABELS.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => PERCENTILE_LABELS
                .get(*i as usize)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(&err)?;
    for s in series {
        // One run per series at a given depth; should a file hold several, draw each.
        for (k, p) in s.points.iter().enumerate() {
            let pts: Vec<(SegmentValue<u32>, f64)> = p
                .iter()
                .enumerate()
                .filter(|(_, v)| **v > 0.0)
                .map(|(j, v)| (SegmentValue::CenterOf(j as u32), *v))
                .collect();
            let name = (k == 0).then(|| s.name.clone());
            draw_line(&mut chart, name, s.color, s.dashed, pts)
                .map_err(|e| BenchError::Plot(format!("{}: {e}", path.display())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(&err)?;
    root.present().map_err(&err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_from_lines_and_arrays() {
        let line = r#"{"suite":"server","test":"GET","target":"redis","pipeline":16,"rps":5.0,"p50":1,"p90":2,"p99":3,"p999":4,"p9999":5,"max":6}"#;
        let text = format!("{line}\n\n{{\"other\":1}}\n{line}\n");
        let rows = parse_rows(&text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].pipeline, 16);
        assert_eq!(rows[0].suite(), "server");
        let rows = parse_rows(&format!("[{line}, {{\"x\": 2}}]")).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(parse_rows("not json").is_err());
        assert_eq!(slug("Proxy path (P=1)"), "proxy-path-p-1");
    }
}
