//! One route's series, resolved when the route table is built instead of looked up by label
//! on every request.
//!
//! A lookup by label (`with_label_values`) hashes the labels, reads the family's map under its
//! lock and clones the child out: callgrind put it at ~180 instructions, five times a request
//! (its count and duration, its attempt's count and duration, its result). Here each child is
//! looked up once and kept. Children whose other label varies by request (status class, who
//! answered, an attempt's outcome, the result) are looked up the first time they are counted,
//! so a series still appears in `/metrics` only once it has something to say, as before.

use std::sync::OnceLock;
use std::time::Duration;

use http::{Response, StatusCode};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use super::{Metrics, Origin};
use crate::retry::{AttemptError, Observer, RetryReason, Stop};

/// How many labels an attempt's outcome can take: 429, the five status classes, and the five
/// ways an attempt fails ([`attempt_class`]).
const ATTEMPT_CLASSES: usize = 11;

/// How many values [`Origin`] has ([`origin_slot`]).
const ORIGINS: usize = 2;

/// The series one route's requests feed.
pub struct RouteSeries {
    route: String,
    /// `payguard_requests_total`, by status class (1xx to 5xx) and who answered.
    requests: Children<{ 5 * ORIGINS }>,
    duration: Histogram,
    attempts: Children<ATTEMPT_CLASSES>,
    attempt_duration: OnceLock<Histogram>,
    attempt_durations: HistogramVec,
    /// `payguard_request_results_total`: first attempt, after retries, failed.
    results: Children<3>,
    retries: IntCounterVec,
    refused: IntCounterVec,
}

/// The children of one counter family for one route, by a small fixed set of second labels,
/// each looked up the first time it is counted.
struct Children<const N: usize> {
    family: IntCounterVec,
    cells: [OnceLock<IntCounter>; N],
}

impl<const N: usize> Children<N> {
    fn new(family: &IntCounterVec) -> Self {
        Children {
            family: family.clone(),
            cells: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Counts one in the child at `slot`, whose labels are `labels`: the caller keeps the two
    /// in step (one slot, one set of labels).
    fn inc(&self, slot: usize, labels: &[&str]) {
        match self.cells.get(slot) {
            Some(cell) => cell
                .get_or_init(|| self.family.with_label_values(labels))
                .inc(),
            // Not reached (slots come from the fixed tables below, tested to fit); counted the
            // slow way if it were.
            None => {
                debug_assert!(false, "slot {slot} of {N} for {labels:?}");
                self.family.with_label_values(labels).inc()
            }
        }
    }
}

impl Metrics {
    /// The series of the route named `route`, made for every route when the route table is
    /// built (at start and at each reload). Its zeroed series exist from here on, so
    /// dashboards and alerts see a configured route (and rare events such as refusals) before
    /// they first happen; the others appear when first counted.
    pub fn route(&self, route: &str) -> RouteSeries {
        let retry = &self.retry;
        retry.preregister(route);
        self.idempotency.preregister(route);
        self.resolver.preregister(route);
        RouteSeries {
            route: route.to_owned(),
            requests: Children::new(&self.requests),
            duration: self.duration.with_label_values(&[route]),
            attempts: Children::new(&retry.attempts),
            attempt_duration: OnceLock::new(),
            attempt_durations: retry.attempt_duration.clone(),
            results: Children::new(&retry.results),
            retries: retry.retries.clone(),
            refused: retry.refused.clone(),
        }
    }
}

impl RouteSeries {
    /// Counts a request answered with `status` by `origin`, `elapsed` after it arrived.
    pub fn observe(&self, status: StatusCode, origin: Origin, elapsed: Duration) {
        let class = status_class(status);
        let slot = status_slot(status) * ORIGINS + origin_slot(origin);
        self.requests
            .inc(slot, &[&self.route, class, origin.label()]);
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Records how a request sent upstream ended after `attempts` attempts.
    pub fn result(&self, status: StatusCode, attempts: u32) {
        let (slot, result) = match (status.is_success() || status.is_redirection(), attempts) {
            (true, 1) => (0, "succeeded_first_attempt"),
            (true, _) => (1, "succeeded_after_retry"),
            (false, _) => (2, "failed"),
        };
        self.results.inc(slot, &[&self.route, result]);
    }

    /// The retry loop's observer for one request on this route.
    pub fn observer(&self) -> RouteObserver<'_> {
        RouteObserver(self)
    }
}

fn origin_slot(origin: Origin) -> usize {
    match origin {
        Origin::Upstream => 0,
        Origin::Payguard => 1,
    }
}

/// The `status_class` label values, by [`status_slot`].
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Where a status falls among 1xx to 5xx; anything else counts as 5xx.
fn status_slot(status: StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// A status as its `status_class` label: derived from its slot, so the two cannot disagree.
fn status_class(status: StatusCode) -> &'static str {
    STATUS_CLASSES[status_slot(status)]
}

/// An attempt's outcome as the `outcome` label of `payguard_upstream_attempts_total`, and its
/// slot among [`ATTEMPT_CLASSES`].
fn attempt_class<B>(outcome: &Result<Response<B>, AttemptError>) -> (usize, &'static str) {
    match outcome {
        Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => (0, "rate_limited"),
        Ok(r) => (1 + status_slot(r.status()), status_class(r.status())),
        Err(AttemptError::NotSent(_)) => (6, "not_sent"),
        Err(AttemptError::Lost(_)) => (7, "connection_lost"),
        Err(AttemptError::TimedOut(_)) => (8, "timeout"),
        Err(AttemptError::Refused(_)) => (9, "refused_locally"),
        // Made by the loop from earlier attempts, never by one: counted as they were.
        Err(AttemptError::Unknown { .. }) => (10, "outcome_unknown"),
    }
}

/// Feeds the retry loop's events into one route's series.
pub struct RouteObserver<'a>(&'a RouteSeries);

impl Observer for RouteObserver<'_> {
    // Not inlined into the retry loop: inlined (rustc 1.95), it made the loop's poll copy each
    // attempt's future once more, ~700 instructions a request more than it saved (callgrind,
    // bench/overhead/instructions.sh).
    #[inline(never)]
    fn attempt<B>(&self, outcome: &Result<Response<B>, AttemptError>, elapsed: Duration) {
        let series = self.0;
        let (slot, class) = attempt_class(outcome);
        series.attempts.inc(slot, &[&series.route, class]);
        series
            .attempt_duration
            .get_or_init(|| series.attempt_durations.with_label_values(&[&series.route]))
            .observe(elapsed.as_secs_f64());
    }

    // Retries and refusals are rare: looked up by label when they happen.
    fn retry(&self, reason: RetryReason, _delay: Duration) {
        let series = self.0;
        series
            .retries
            .with_label_values(&[&series.route, reason.label()])
            .inc();
    }

    fn refused(&self, stop: Stop) {
        let series = self.0;
        series
            .refused
            .with_label_values(&[&series.route, stop.label()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16) -> Result<Response<()>, AttemptError> {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        Ok(response)
    }

    /// A slot's child keeps the labels it was first counted under, so each slot must stand
    /// for exactly one set of labels, and each set for one slot, within the table's size.
    fn one_to_one(pairs: &[(usize, String)], size: usize) {
        let mut by_slot = std::collections::HashMap::new();
        let mut by_label = std::collections::HashMap::new();
        for (slot, label) in pairs {
            assert!(*slot < size, "slot {slot} of {size} for {label}");
            assert_eq!(by_slot.entry(*slot).or_insert(label), &label, "slot {slot}");
            assert_eq!(by_label.entry(label).or_insert(*slot), slot, "{label}");
        }
    }

    #[test]
    fn each_slot_stands_for_one_set_of_labels() {
        let statuses = [100, 101, 200, 204, 302, 400, 404, 429, 500, 503, 599];
        let mut requests = Vec::new();
        for status in statuses.map(|s| StatusCode::from_u16(s).unwrap()) {
            for origin in [Origin::Upstream, Origin::Payguard] {
                let slot = status_slot(status) * ORIGINS + origin_slot(origin);
                requests.push((slot, format!("{}/{}", status_class(status), origin.label())));
            }
        }
        one_to_one(&requests, 5 * ORIGINS);
        assert_eq!(requests.len() / 2, statuses.len());

        let mut attempts: Vec<(usize, String)> = statuses
            .into_iter()
            .map(|s| attempt_class(&answer(s)))
            .map(|(slot, label)| (slot, label.to_owned()))
            .collect();
        let errors = [
            AttemptError::NotSent(String::new()),
            AttemptError::Lost(String::new()),
            AttemptError::TimedOut(Duration::ZERO),
            AttemptError::Refused(crate::retry::Refusal::RateLimited(Duration::ZERO)),
            AttemptError::Unknown {
                detail: String::new(),
                timed_out: false,
            },
        ];
        for e in errors {
            let (slot, label) = attempt_class::<()>(&Err(e));
            attempts.push((slot, label.to_owned()));
        }
        one_to_one(&attempts, ATTEMPT_CLASSES);
        let labels: std::collections::HashSet<&String> = attempts.iter().map(|a| &a.1).collect();
        assert_eq!(labels.len(), ATTEMPT_CLASSES, "every slot is used");
    }

    #[test]
    fn series_count_under_the_labels_a_lookup_would_use() {
        let m = Metrics::new().unwrap();
        let series = m.route("refunds");
        series.observe(StatusCode::OK, Origin::Upstream, Duration::from_millis(5));
        series.observe(StatusCode::OK, Origin::Upstream, Duration::from_millis(5));
        series.observe(StatusCode::BAD_GATEWAY, Origin::Payguard, Duration::ZERO);
        series.result(StatusCode::OK, 3);
        series
            .observer()
            .attempt(&answer(429), Duration::from_millis(1));
        series
            .observer()
            .retry(RetryReason::RateLimited, Duration::ZERO);
        let text = m.render();
        for line in [
            r#"payguard_requests_total{origin="upstream",route="refunds",status_class="2xx"} 2"#,
            r#"payguard_requests_total{origin="payguard",route="refunds",status_class="5xx"} 1"#,
            r#"payguard_request_duration_seconds_count{route="refunds"} 3"#,
            r#"payguard_request_results_total{result="succeeded_after_retry",route="refunds"} 1"#,
            r#"payguard_upstream_attempts_total{outcome="rate_limited",route="refunds"} 1"#,
            r#"payguard_upstream_attempt_duration_seconds_count{route="refunds"} 1"#,
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        // Counted series only: no 4xx request, no first-attempt success.
        assert!(!text.contains(r#"status_class="4xx""#), "{text}");
        assert!(!text.contains("succeeded_first_attempt"), "{text}");
    }
}
