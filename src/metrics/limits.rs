//! The families of the rate limiters and circuit breakers, labelled by the limiter's or
//! breaker's name: `upstream`, or the route that has its own.

use std::time::Duration;

use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{counter, gauge, histogram};
use crate::breaker::State;
use crate::load::Bound;
use crate::ratelimit::shared::BackendMetrics;

const WAIT_BUCKETS: &[f64] = &[
    0.0, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];

pub struct LimitMetrics {
    backend_errors: IntCounterVec,
    backend_healthy: IntGaugeVec,
    wait: HistogramVec,
    rejected: IntCounterVec,
    rate: GaugeVec,
    state: IntGaugeVec,
    transitions: IntCounterVec,
    refused: IntCounterVec,
    overloaded: IntCounterVec,
    buffered: IntGauge,
}

impl LimitMetrics {
    pub(super) fn new(r: &Registry) -> Result<LimitMetrics, prometheus::Error> {
        let rate = GaugeVec::new(
            Opts::new(
                "payguard_ratelimit_effective_rate",
                "Sends per second the limiter allows now (lowered after provider 429s).",
            ),
            &["limiter"],
        )?;
        r.register(Box::new(rate.clone()))?;
        let state = IntGaugeVec::new(
            Opts::new(
                "payguard_breaker_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ),
            &["breaker"],
        )?;
        r.register(Box::new(state.clone()))?;
        let backend_healthy = IntGaugeVec::new(
            Opts::new(
                "payguard_ratelimit_backend_healthy",
                "1 while a shared limiter reaches Redis, 0 while it limits locally at its fallback rate.",
            ),
            &["limiter"],
        )?;
        r.register(Box::new(backend_healthy.clone()))?;
        let overloaded = counter(
            r,
            "payguard_overload_refusals_total",
            "Requests answered 503 at once because payguard was at a bound on load ([server]).",
            &["bound"],
        )?;
        for bound in [Bound::Connections, Bound::Requests, Bound::BufferedBytes] {
            overloaded.with_label_values(&[bound.label()]);
        }
        Ok(LimitMetrics {
            overloaded,
            buffered: gauge(
                r,
                "payguard_buffered_request_bytes",
                "Request body bytes reserved by requests in flight (at most server.max_buffered_bytes).",
            )?,
            backend_errors: counter(
                r,
                "payguard_ratelimit_backend_errors_total",
                "Reservations a shared limiter could not make in Redis (each fell back to local limiting).",
                &["limiter"],
            )?,
            backend_healthy,
            wait: histogram(
                r,
                "payguard_ratelimit_wait_seconds",
                "Time attempts waited in the limiter's queue.",
                &["limiter"],
                WAIT_BUCKETS,
            )?,
            rejected: counter(
                r,
                "payguard_ratelimit_rejected_total",
                "Attempts refused locally with 429 because the queue was longer than they could wait.",
                &["limiter"],
            )?,
            rate,
            state,
            transitions: counter(
                r,
                "payguard_breaker_transitions_total",
                "Circuit breaker state changes, by the state entered.",
                &["breaker", "to"],
            )?,
            refused: counter(
                r,
                "payguard_breaker_refused_total",
                "Attempts refused locally with 503 while the breaker was open.",
                &["breaker"],
            )?,
        })
    }

    /// A request refused at `bound`.
    pub fn overloaded(&self, bound: Bound) {
        self.overloaded.with_label_values(&[bound.label()]).inc();
    }

    /// Request bytes reserved now.
    pub fn buffered(&self, bytes: usize) {
        self.buffered.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Zeroed series for a limiter, so the gauge exists before the first request.
    pub fn limiter(&self, name: &str, rate: f64) {
        self.rate.with_label_values(&[name]).set(rate);
        self.rejected.with_label_values(&[name]);
    }

    /// The handles of a shared limiter's backend health.
    pub fn backend(&self, name: &str) -> BackendMetrics {
        BackendMetrics {
            errors: self.backend_errors.with_label_values(&[name]),
            healthy: self.backend_healthy.with_label_values(&[name]),
        }
    }

    pub fn breaker(&self, name: &str) {
        self.state.with_label_values(&[name]).set(0);
        self.refused.with_label_values(&[name]);
    }

    pub fn waited(&self, name: &str, waited: Duration, rate: f64) {
        self.wait
            .with_label_values(&[name])
            .observe(waited.as_secs_f64());
        self.rate.with_label_values(&[name]).set(rate);
    }

    pub fn rejected(&self, name: &str) {
        self.rejected.with_label_values(&[name]).inc();
    }

    pub fn rate(&self, name: &str, rate: f64) {
        self.rate.with_label_values(&[name]).set(rate);
    }

    pub fn transition(&self, name: &str, to: State) {
        let value = match to {
            State::Closed => 0,
            State::HalfOpen => 1,
            State::Open => 2,
        };
        self.state.with_label_values(&[name]).set(value);
        self.transitions
            .with_label_values(&[name, to.label()])
            .inc();
        tracing::warn!(
            breaker = name,
            state = to.label(),
            "circuit breaker changed state"
        );
    }

    pub fn breaker_refused(&self, name: &str) {
        self.refused.with_label_values(&[name]).inc();
    }
}
