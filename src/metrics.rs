//! Every metric family payguard exports, registered once on its own registry.
//!
//! A registry per [`Metrics`] (rather than the process-wide default) lets tests run many
//! proxies in one process without their counters mixing. Labels come only from the config
//! (route names) and from small fixed sets (status classes, who answered), never from paths,
//! ids or keys, so the number of series stays bounded whatever traffic passes.

use std::time::Duration;

use http::{Response, StatusCode};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::retry::{AttemptError, Observer, RetryReason, Stop};

/// Who produced the response the app received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The provider answered and payguard relayed it.
    Upstream,
    /// payguard answered itself (see `error::ProxyError`).
    Payguard,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Origin::Upstream => "upstream",
            Origin::Payguard => "payguard",
        }
    }
}

/// Latency buckets in seconds: from a fast local hop to the slowest payment calls.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    attempts: IntCounterVec,
    attempt_duration: HistogramVec,
    retries: IntCounterVec,
    retries_refused: IntCounterVec,
    results: IntCounterVec,
}

impl Metrics {
    /// Registers every family, with a zeroed series for each route so dashboards show
    /// configured routes before their first request.
    pub fn new<'a>(
        routes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "payguard_requests_total",
                "Requests answered, by route, status class and who answered.",
            ),
            &["route", "status_class", "origin"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "payguard_request_duration_seconds",
                "Time from receiving a request to sending the response head, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let in_flight =
            IntGauge::new("payguard_requests_in_flight", "Requests being handled now.")?;
        let attempts = IntCounterVec::new(
            Opts::new(
                "payguard_upstream_attempts_total",
                "Attempts sent upstream, by route and outcome class.",
            ),
            &["route", "outcome"],
        )?;
        let attempt_duration = HistogramVec::new(
            HistogramOpts::new(
                "payguard_upstream_attempt_duration_seconds",
                "Time from sending one attempt to its response head or failure, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "payguard_retries_total",
                "Retries scheduled, by route and reason.",
            ),
            &["route", "reason"],
        )?;
        let retries_refused = IntCounterVec::new(
            Opts::new(
                "payguard_retries_refused_total",
                "Retryable outcomes not retried because the budget or the deadline did not allow it.",
            ),
            &["route", "reason"],
        )?;
        let results = IntCounterVec::new(
            Opts::new(
                "payguard_request_results_total",
                "Requests by route and final result: succeeded on the first attempt, after retries, or failed.",
            ),
            &["route", "result"],
        )?;
        let build = IntGauge::with_opts(
            Opts::new("payguard_build_info", "Always 1; the version is a label.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )?;
        build.set(1);
        for name in routes {
            duration.with_label_values(&[name]);
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(build))?;
        for family in [&attempts, &retries, &retries_refused, &results] {
            registry.register(Box::new(family.clone()))?;
        }
        registry.register(Box::new(attempt_duration.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            in_flight,
            attempts,
            attempt_duration,
            retries,
            retries_refused,
            results,
        })
    }

    /// Marks a request as started; the guard marks it finished when dropped, so a request
    /// cancelled by a client disconnect still leaves the gauge right.
    pub fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn observe(&self, route: &str, status: StatusCode, origin: Origin, elapsed: Duration) {
        self.requests
            .with_label_values(&[route, status_class(status), origin.label()])
            .inc();
        self.duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
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

    /// The retry loop's observer for one request on `route`.
    pub fn for_route<'a>(&'a self, route: &'a str) -> RouteObserver<'a> {
        RouteObserver {
            metrics: self,
            route,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; an error here would mean a malformed
        // metric, which registration already rejected.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Feeds the retry loop's events into the metric families of one route.
pub struct RouteObserver<'a> {
    metrics: &'a Metrics,
    route: &'a str,
}

impl Observer for RouteObserver<'_> {
    fn attempt<B>(&self, outcome: &Result<Response<B>, AttemptError>, elapsed: Duration) {
        let class = match outcome {
            Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            Ok(r) => status_class(r.status()),
            Err(AttemptError::NotSent(_)) => "not_sent",
            Err(AttemptError::Lost(_)) => "connection_lost",
            Err(AttemptError::TimedOut(_)) => "timeout",
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
            .retries_refused
            .with_label_values(&[self.route, stop.label()])
            .inc();
    }
}

pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_preregistered_and_requests_counted() {
        let m = Metrics::new(["refunds", "default"]).unwrap();
        m.observe(
            "refunds",
            StatusCode::OK,
            Origin::Upstream,
            Duration::from_millis(12),
        );
        m.observe(
            "refunds",
            StatusCode::BAD_GATEWAY,
            Origin::Payguard,
            Duration::from_millis(3),
        );
        let text = m.render();
        assert!(
            text.contains(
                r#"payguard_requests_total{origin="upstream",route="refunds",status_class="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"payguard_requests_total{origin="payguard",route="refunds",status_class="5xx"} 1"#
        ));
        assert!(text.contains(r#"payguard_request_duration_seconds_count{route="default"} 0"#));
        assert!(text.contains(r#"payguard_request_duration_seconds_count{route="refunds"} 2"#));
    }

    #[test]
    fn in_flight_guard_decrements_on_drop() {
        let m = Metrics::new([]).unwrap();
        let guard = m.start();
        assert!(m.render().contains("payguard_requests_in_flight 1"));
        drop(guard);
        assert!(m.render().contains("payguard_requests_in_flight 0"));
    }
}
