//! The retry loop's families: attempts, retries by reason, refusals, and final results.

use prometheus::{HistogramVec, IntCounterVec, Registry};

use super::{LATENCY_BUCKETS, counter, histogram};
use crate::retry::Stop;

/// The families; a route's requests feed them through its [`super::RouteSeries`].
pub struct RetryMetrics {
    pub(super) attempts: IntCounterVec,
    pub(super) attempt_duration: HistogramVec,
    pub(super) retries: IntCounterVec,
    pub(super) refused: IntCounterVec,
    pub(super) results: IntCounterVec,
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
}
