use std::time::Duration;

use http::{Response, StatusCode};

use super::extract::Latency;
use super::*;
use crate::metrics::Origin;
use crate::retry::{AttemptError, Observer, RetryReason};

fn reply(status: u16) -> Result<Response<()>, AttemptError> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    Ok(response)
}

/// Three charges: one at once, one after a lost connection and a 500, one failed for good
/// after two 503s; plus one replay answered by payguard.
fn traffic() -> Metrics {
    let m = Metrics::new().unwrap();
    let charges = m.route("charges");
    let _default = m.route("default");
    let observer = charges.observer();
    let ms = Duration::from_millis;
    observer.attempt(&reply(200), ms(4));
    observer.attempt::<()>(&Err(AttemptError::Lost("reset".into())), ms(2));
    observer.retry(RetryReason::Lost, ms(10));
    observer.attempt(&reply(500), ms(3));
    observer.retry(RetryReason::ServerError, ms(20));
    observer.attempt(&reply(200), ms(4));
    observer.attempt(&reply(503), ms(3));
    observer.retry(RetryReason::ServerError, ms(10));
    observer.attempt(&reply(503), ms(3));
    charges.result(StatusCode::OK, 1);
    charges.result(StatusCode::OK, 3);
    charges.result(StatusCode::SERVICE_UNAVAILABLE, 2);
    for (status, origin, elapsed) in [
        (200, Origin::Upstream, ms(4)),
        (200, Origin::Upstream, ms(40)),
        (503, Origin::Upstream, ms(20)),
        (200, Origin::Payguard, ms(1)),
    ] {
        charges.observe(StatusCode::from_u16(status).unwrap(), origin, elapsed);
    }
    m.idempotency.replays.with_label_values(&["charges"]).inc();
    m.limits.limiter("upstream", 8.0);
    m.limits.breaker("upstream");
    m
}

#[test]
fn a_route_row_adds_up_the_metric_families() {
    let report = Report::from_metrics(&traffic());
    let names: Vec<&str> = report.routes.iter().map(|r| r.route.as_str()).collect();
    assert_eq!(names, ["charges", "default"]);
    let charges = &report.routes[0];
    assert_eq!(charges.requests, 4);
    assert_eq!(charges.succeeded, 3);
    assert_eq!(charges.success_rate(), Some(0.75));
    assert_eq!(
        (
            charges.succeeded_first_attempt,
            charges.succeeded_after_retry,
            charges.failed
        ),
        (1, 1, 1)
    );
    assert_eq!(charges.attempts, 6);
    assert_eq!(charges.attempts_per_request(), Some(2.0));
    assert_eq!(charges.retries, 3);
    assert_eq!(charges.replays, 1);
    let mean = charges.mean_latency_ms.unwrap();
    assert!((mean - 16.25).abs() < 1e-9, "{mean}");
    let errors: Vec<(&str, u64)> = charges
        .top_errors
        .iter()
        .map(|e| (e.what.as_str(), e.count))
        .collect();
    assert_eq!(errors, [("5xx from provider", 3), ("connection lost", 1)]);

    let idle = &report.routes[1];
    assert_eq!(
        (idle.requests, idle.success_rate(), idle.p99_latency_ms),
        (0, None, None)
    );
    assert_eq!(report.limiters[0].effective_rate, 8.0);
    assert_eq!(report.breakers[0].state, "closed");
}

#[test]
fn quantiles_interpolate_inside_the_bucket_that_holds_them() {
    // 10 samples at or under 10 ms, 90 more between 10 and 50 ms.
    let latency = Latency::from_buckets(100, vec![(0.01, 10), (0.05, 100), (0.1, 100)]);
    let p50 = latency.quantile_ms(0.5).unwrap();
    assert!((p50 - (10.0 + 40.0 * 40.0 / 90.0)).abs() < 1e-9, "{p50}");
    assert!((latency.quantile_ms(0.05).unwrap() - 5.0).abs() < 1e-9);
    // Samples beyond the last finite bound: the bound is all the histogram can say.
    let slow = Latency::from_buckets(4, vec![(0.01, 1), (0.05, 2)]);
    assert_eq!(slow.quantile_ms(0.99), Some(50.0));
    assert_eq!(Latency::default().quantile_ms(0.5), None);
}

#[test]
fn the_table_aligns_routes_and_marks_missing_data() {
    let table = Report::from_metrics(&traffic()).table();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ROUTE    REQUESTS"), "{table}");
    assert!(lines[1].starts_with("charges         4  75.0%"), "{table}");
    assert!(
        lines[1].ends_with("5xx from provider 3, connection lost 1"),
        "{table}"
    );
    // The idle route: zero counts, dashes where there is nothing to divide.
    assert!(lines[2].starts_with("default         0      -"), "{table}");
    assert!(
        table.contains("limiters: upstream 8.0/s, 0 rejected"),
        "{table}"
    );
    assert!(
        table.contains("breakers: upstream closed, opened 0 times, 0 refused"),
        "{table}"
    );
}

#[test]
fn the_report_survives_a_json_round_trip() {
    let report = Report::from_metrics(&traffic());
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
}
