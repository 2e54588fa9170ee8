//! `payguard demo` with its default flags, as a new user first runs it: it must finish well
//! under a minute and show payguard completing at least 99.5% of orders with no order charged
//! twice, against a clearly worse direct run.

use std::time::{Duration, Instant};

/// Reads the two cells of a row of the side-by-side table, e.g. `completed`.
fn cells<'a>(output: &'a str, row: &str) -> (&'a str, &'a str) {
    let line = output
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("no {row:?} row in\n{output}"));
    let rest = line[row.len()..].trim();
    // Cells are separated by at least two spaces; a cell itself holds at most one.
    let parts: Vec<&str> = rest
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(parts.len(), 2, "{line}");
    (parts[0], parts[1])
}

/// `997/1000 (99.7%)` → 0.997.
fn share(cell: &str) -> f64 {
    let (done, total) = cell.split_once(' ').unwrap().0.split_once('/').unwrap();
    done.parse::<f64>().unwrap() / total.parse::<f64>().unwrap()
}

#[test]
fn the_default_demo_shows_the_value_within_a_minute() {
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payguard"))
        .arg("demo")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    assert!(
        text.starts_with("\n1000 orders, 30% transient faults (seed 11)"),
        "{text}"
    );

    let (direct, guarded) = cells(&text, "completed");
    assert!(
        share(direct) < 0.8,
        "the faults bite without payguard: {direct}"
    );
    assert!(share(guarded) >= 0.995, "payguard completes: {guarded}");
    assert_eq!(cells(&text, "orders charged twice"), ("0", "0"));
    let (_, attempts) = cells(&text, "mean attempts per order");
    let attempts: f64 = attempts.parse().unwrap();
    assert!((1.2..1.7).contains(&attempts), "{attempts}");
    // The retry report of the in-process sidecar follows the comparison.
    assert!(text.contains("\nROUTE "), "{text}");
    let row = text
        .lines()
        .find(|l| l.starts_with("create_payment_intent"))
        .unwrap_or_else(|| panic!("the shipped routes: {text}"));
    assert_eq!(row.split_whitespace().nth(1), Some("1000"), "{row}");
    assert!(text.contains("the shipped config.toml"), "{text}");
}

#[test]
fn naive_retries_show_where_duplicate_charges_come_from() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payguard"))
        .args([
            "demo",
            "--orders",
            "300",
            "--naive-retries",
            "3",
            "--seed",
            "4",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let (direct, guarded) = cells(&text, "orders charged twice");
    assert!(direct.parse::<u32>().unwrap() > 0, "{text}");
    assert_eq!(guarded, "0", "{text}");
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_payguard"))
        .args(["demo", "--fault-rate", "1.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--fault-rate must be between 0 and 1, got 1.5"),
        "{stderr}"
    );
}
