//! The report as text: one aligned row per route, then the limiters and breakers.
//!
//! Columns size themselves to their widest cell so route names of any length line up; numbers
//! are right-aligned, names and error lists left-aligned. A dash means "no data yet", never 0.

use std::fmt::Write;

use super::{Report, RouteReport};

const HEADER: [&str; 11] = [
    "ROUTE",
    "REQUESTS",
    "OK",
    "ATTEMPTS",
    "ATT/REQ",
    "RETRIES",
    "AVG ms",
    "P50 ms",
    "P99 ms",
    "REPLAYS",
    "TOP ERRORS",
];

pub(super) fn render(report: &Report) -> String {
    let mut rows = vec![HEADER.map(str::to_owned).to_vec()];
    rows.extend(report.routes.iter().map(row));
    let mut out = align(&rows);
    if !report.limiters.is_empty() {
        let limiters: Vec<String> = report
            .limiters
            .iter()
            .map(|l| {
                format!(
                    "{} {:.1}/s, {} rejected",
                    l.name, l.effective_rate, l.rejected
                )
            })
            .collect();
        let _ = writeln!(out, "\nlimiters: {}", limiters.join("; "));
    }
    if !report.breakers.is_empty() {
        let breakers: Vec<String> = report
            .breakers
            .iter()
            .map(|b| {
                format!(
                    "{} {}, opened {} times, {} refused",
                    b.name, b.state, b.opened, b.refused
                )
            })
            .collect();
        let prefix = if report.limiters.is_empty() { "\n" } else { "" };
        let _ = writeln!(out, "{prefix}breakers: {}", breakers.join("; "));
    }
    out
}

fn row(r: &RouteReport) -> Vec<String> {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let errors: Vec<String> = r
        .top_errors
        .iter()
        .map(|e| format!("{} {}", e.what, e.count))
        .collect();
    vec![
        r.route.clone(),
        r.requests.to_string(),
        r.success_rate()
            .map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0)),
        r.attempts.to_string(),
        r.attempts_per_request()
            .map_or_else(|| "-".to_owned(), |a| format!("{a:.2}")),
        r.retries.to_string(),
        ms(r.mean_latency_ms),
        ms(r.p50_latency_ms),
        ms(r.p99_latency_ms),
        r.replays.to_string(),
        match errors.is_empty() {
            true => "-".to_owned(),
            false => errors.join(", "),
        },
    ]
}

/// Pads every cell to its column's width; the first and last columns align left.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| match c {
                0 => format!("{cell:<w$}", w = widths[c]),
                c if c + 1 == columns => cell.clone(),
                _ => format!("{cell:>w$}", w = widths[c]),
            })
            .collect();
        let _ = writeln!(out, "{}", cells.join("  "));
    }
    out
}
