//! The retry loop's families: attempts, retries by reason, refusals, and final results.

use std::time::Duration;

use http::{Response, StatusCode};
use prometheus::{HistogramVec, IntCounterVec, Registry};

use super::{LATENCY_BUCKETS, counter, histogram, status_class};
use crate::retry::{AttemptError, Observer, RetryReason, Stop};

pub struct RetryMetrics {
    attempts: IntCounterVec,
    attempt_duration: HistogramVec,
    retries: IntCounterVec,
    refused: IntCounterVec,
    results: IntCounterVec,
}

impl RetryMetrics {
    pub(super) fn new(r: &Registry) -> Result<RetryMetrics, prometheus::Error> {
        Ok(RetryMetrics {
            attempts: counter(
                r,
                "payguard_upstream_attempts_total",
                "Attempts sent upstream, by route and outcome class.",
                &["route", "outcome"],
            )?,
            attempt_duration: histogram(
                r,
                "payguard_upstream_attempt_duration_seconds",
                "Time from sending one attempt to its response head or failure, by route.",
                &["route"],
                LATENCY_BUCKETS,
            )?,
            retries: counter(
                r,
                "payguard_retries_total",
                "Retries scheduled, by route and reason.",
                &["route", "reason"],
            )?,
            refused: counter(
                r,
                "payguard_retries_refused_total",
                "Retryable outcomes not retried because the budget or the deadline did not allow it.",
                &["route", "reason"],
            )?,
            results: counter(
                r,
                "payguard_request_results_total",
                "Requests sent upstream, by route and final result: succeeded on the first attempt, after retries, or failed.",
                &["route", "result"],
            )?,
        })
    }

    pub(super) fn preregister(&self, route: &str) {
        for reason in [Stop::Budget, Stop::Deadline] {
            self.refused.with_label_values(&[route, reason.label()]);
        }
    }

    /// Records how a request ended after `attempts` attempts.
    pub fn result(&self, route: &str, status: StatusCode, attempts: u32) {
        let result = match (status.is_success() || status.is_redirection(), attempts) {
            (true, 1) => "succeeded_first_attempt",
            (true, _) => "succeeded_after_retry",
            (false, _) => "failed",
        };
        self.results.with_label_values(&[route, result]).inc();
    }
}

/// Feeds the retry loop's events into the families, for one route.
pub struct RouteObserver<'a> {
    metrics: &'a RetryMetrics,
    route: &'a str,
}

impl<'a> RouteObserver<'a> {
    pub(super) fn new(metrics: &'a RetryMetrics, route: &'a str) -> Self {
        RouteObserver { metrics, route }
    }
}

impl Observer for RouteObserver<'_> {
    fn attempt<B>(&self, outcome: &Result<Response<B>, AttemptError>, elapsed: Duration) {
        let class = match outcome {
            Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            Ok(r) => status_class(r.status()),
            Err(AttemptError::NotSent(_)) => "not_sent",
            Err(AttemptError::Lost(_)) => "connection_lost",
            Err(AttemptError::TimedOut(_)) => "timeout",
            Err(AttemptError::Refused(_)) => "refused_locally",
            // Made by the loop from earlier attempts, never by one: counted as they were.
            Err(AttemptError::Unknown { .. }) => "outcome_unknown",
        };
        let m = self.metrics;
        m.attempts.with_label_values(&[self.route, class]).inc();
        m.attempt_duration
            .with_label_values(&[self.route])
            .observe(elapsed.as_secs_f64());
    }

    fn retry(&self, reason: RetryReason, _delay: Duration) {
        self.metrics
            .retries
            .with_label_values(&[self.route, reason.label()])
            .inc();
    }

    fn refused(&self, stop: Stop) {
        self.metrics
            .refused
            .with_label_values(&[self.route, stop.label()])
            .inc();
    }
}
