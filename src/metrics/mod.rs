//! Every metric family payguard exports, registered once on its own registry.
//!
//! A registry per [`Metrics`] (rather than the process-wide default) lets tests run many
//! proxies in one process without their counters mixing. Labels come only from the config
//! (route names) and from small fixed sets (status classes, reasons, who answered), never from
//! paths, ids or keys, so the number of series stays bounded whatever traffic passes.
//!
//! Families are grouped by the part of the request path that feeds them: [`retry`] and
//! [`idempotency`] hold theirs; this file holds the per-request ones and the registry, and
//! [`route`] one route's series of both, resolved once so the request path does not look
//! them up by label.

pub mod idempotency;
pub mod limits;
pub mod postgres;
mod register;
pub mod resolver;
pub mod retry;
mod route;

use prometheus::{Encoder, HistogramVec, IntCounterVec, IntGauge, Registry, TextEncoder};

pub use idempotency::IdempotencyMetrics;
pub use limits::LimitMetrics;
pub use postgres::PostgresMetrics;
pub use resolver::ResolverMetrics;
pub use retry::RetryMetrics;
pub use route::RouteSeries;

use register::build_info;
pub(crate) use register::{counter, gauge, histogram};

/// Who produced the response the app received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The provider answered and payguard relayed it.
    Upstream,
    /// payguard answered itself: an error of its own, or a replay from its store.
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
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    pub retry: RetryMetrics,
    pub idempotency: IdempotencyMetrics,
    pub limits: LimitMetrics,
    pub resolver: ResolverMetrics,
    /// The PostgreSQL store's statement latency (no series unless that store is used).
    pub postgres: PostgresMetrics,
    /// Config reloads by result: `applied` or `invalid`.
    pub reloads: IntCounterVec,
    /// 1 while a reloaded config changed settings that only a restart applies.
    pub restart_required: IntGauge,
    /// Uploads streamed through unbuffered (sent once, never retried), and their bytes.
    streamed: IntCounterVec,
    streamed_bytes: IntCounterVec,
}

impl Metrics {
    /// Registers every family. A route's series, zeroed ones included, are made when the
    /// route table is built ([`Metrics::route`]).
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = counter(
            &registry,
            "payguard_requests_total",
            "Requests answered, by route, status class and who answered.",
            &["route", "status_class", "origin"],
        )?;
        let duration = histogram(
            &registry,
            "payguard_request_duration_seconds",
            "Time from receiving a request to sending the response head, by route.",
            &["route"],
            LATENCY_BUCKETS,
        )?;
        let in_flight = gauge(
            &registry,
            "payguard_requests_in_flight",
            "Requests being handled now.",
        )?;
        build_info(&registry)?;
        let retry = RetryMetrics::new(&registry)?;
        let idempotency = IdempotencyMetrics::new(&registry)?;
        let resolver = ResolverMetrics::new(&registry)?;
        let streamed = counter(
            &registry,
            "payguard_streamed_uploads_total",
            "Request bodies over the replay buffer streamed upstream unbuffered, with one attempt and no retry, by route.",
            &["route"],
        )?;
        let streamed_bytes = counter(
            &registry,
            "payguard_streamed_upload_bytes_total",
            "Declared bytes of the request bodies streamed upstream unbuffered, by route.",
            &["route"],
        )?;
        let reloads = counter(
            &registry,
            "payguard_config_reloads_total",
            "Config reloads, by result: applied, or invalid (the running config stayed).",
            &["result"],
        )?;
        for result in ["applied", "invalid"] {
            reloads.with_label_values(&[result]);
        }
        let restart_required = gauge(
            &registry,
            "payguard_config_restart_required",
            "1 while a reloaded config changed settings that need a restart.",
        )?;
        Ok(Metrics {
            streamed,
            streamed_bytes,
            reloads,
            restart_required,
            retry,
            idempotency,
            resolver,
            postgres: PostgresMetrics::new(&registry)?,
            limits: LimitMetrics::new(&registry)?,
            registry,
            requests,
            duration,
            in_flight,
        })
    }

    /// Marks a request as started; the guard marks it finished when dropped, so a request
    /// cancelled by a client disconnect still leaves the gauge right.
    pub fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts an upload streamed through on `route`, of `bytes` declared bytes.
    pub fn streamed(&self, route: &str, bytes: u64) {
        self.streamed.with_label_values(&[route]).inc();
        self.streamed_bytes
            .with_label_values(&[route])
            .inc_by(bytes);
    }

    /// Every family's current values, for reports computed from them (`/stats`).
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
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

pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::StatusCode;

    use super::*;

    #[test]
    fn routes_are_preregistered_and_requests_counted() {
        let m = Metrics::new().unwrap();
        let refunds = m.route("refunds");
        let _default = m.route("default");
        refunds.observe(StatusCode::OK, Origin::Upstream, Duration::from_millis(12));
        refunds.observe(
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
        let m = Metrics::new().unwrap();
        let guard = m.start();
        assert!(m.render().contains("payguard_requests_in_flight 1"));
        drop(guard);
        assert!(m.render().contains("payguard_requests_in_flight 0"));
    }
}
