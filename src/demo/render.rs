//! The demo's closing screen: both runs side by side, then payguard's retry report.

use std::fmt::Write;

use super::{Outcome, Results, SETTINGS};

/// A row of the comparison: its name and how to print one run's cell.
type Row = (&'static str, fn(&Outcome) -> String);

pub(super) fn render(results: &Results) -> String {
    let o = &results.options;
    let (direct, guarded) = (&results.direct, &results.payguard);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} orders, {:.0}% transient faults (seed {}), {} in flight at a time",
        o.orders,
        o.fault_rate * 100.0,
        o.seed,
        o.concurrency
    );
    let _ = writeln!(out, "{SETTINGS}\n");
    let direct_title = match o.naive_retries {
        0 => "straight to provider".to_owned(),
        n => format!("direct, {n} naive retries"),
    };
    let rows: [Row; 7] = [
        ("completed", |r| {
            format!(
                "{}/{} ({:.1}%)",
                r.completed,
                r.orders,
                r.completion() * 100.0
            )
        }),
        ("orders charged twice", |r| r.charged_twice.to_string()),
        ("charges in the ledger", |r| r.charges.to_string()),
        // A charge the app was told failed: the order sits in "pending" until someone checks.
        ("charged, app saw failure", |r| {
            r.charges.saturating_sub(r.completed).to_string()
        }),
        ("mean attempts per order", |r| {
            format!("{:.2}", r.mean_attempts())
        }),
        ("p99 latency", |r| {
            format!("{:.1} ms", r.latency_quantile(0.99).as_secs_f64() * 1000.0)
        }),
        ("wall time", |r| format!("{:.1} s", r.elapsed.as_secs_f64())),
    ];
    let width = direct_title.len().max(22);
    let _ = writeln!(
        out,
        "{:<25}{direct_title:>width$}  {:>20}",
        "", "through payguard"
    );
    for (name, cell) in rows {
        let _ = writeln!(
            out,
            "{name:<25}{:>width$}  {:>20}",
            cell(direct),
            cell(guarded)
        );
    }
    let _ = writeln!(out, "\n{}", verdict(direct, guarded));
    let _ = writeln!(
        out,
        "\nretry report (what `payguard stats` shows for a running sidecar):"
    );
    out.push_str(&results.report.table());
    out
}

/// One sentence on what changed.
fn verdict(direct: &Outcome, guarded: &Outcome) -> String {
    let saved = guarded.completed.saturating_sub(direct.completed);
    let mut line = format!(
        "payguard completed {saved} more orders out of {}",
        guarded.orders
    );
    match guarded.charged_twice {
        0 => line.push_str(" and charged no order twice."),
        n => {
            let _ = write!(
                line,
                ", but charged {n} orders twice: a bug, please report it."
            );
        }
    }
    line
}
