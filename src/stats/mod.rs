//! The retry report: what retries are doing on a running sidecar, per route, for a human.
//!
//! It answers the seed article's per-operation table (attempts, success rate, retries needed,
//! average duration, top errors) plus latency percentiles, breaker state, the limiter's
//! effective rate and idempotency replays. The admin listener serves it as JSON on `/stats`;
//! `payguard stats` fetches that and prints [`Report::table`].
//!
//! The report is computed from the same metric families `/metrics` exports rather than from
//! counters of its own: one source of truth, so the report and the dashboards cannot disagree,
//! and the request path pays nothing extra for it. The price is that percentiles are
//! estimated from histogram buckets, the way Prometheus' `histogram_quantile` does.

mod extract;
mod table;

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use extract::Families;

/// The whole report, as served on `/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub version: String,
    pub routes: Vec<RouteReport>,
    pub limiters: Vec<LimiterReport>,
    pub breakers: Vec<BreakerReport>,
}

/// One route's figures since the process started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteReport {
    pub route: String,
    /// Requests answered, by anyone (the provider, or payguard itself).
    pub requests: u64,
    /// Of those, answered with a 2xx or 3xx.
    pub succeeded: u64,
    /// Requests that went upstream, by how they ended.
    pub succeeded_first_attempt: u64,
    pub succeeded_after_retry: u64,
    pub failed: u64,
    /// Attempts sent upstream, first attempts and retries together.
    pub attempts: u64,
    pub retries: u64,
    /// Retryable outcomes that were not retried, because the budget or the deadline said no.
    pub retries_refused: u64,
    pub mean_latency_ms: Option<f64>,
    pub p50_latency_ms: Option<f64>,
    pub p99_latency_ms: Option<f64>,
    /// The commonest failed attempt outcomes, most frequent first (at most three).
    pub top_errors: Vec<Count>,
    pub keys_injected: u64,
    pub replays: u64,
    pub coalesced: u64,
    pub conflicts: u64,
}

/// A labelled count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub what: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimiterReport {
    /// `upstream`, or the route that has its own limiter.
    pub name: String,
    /// Sends per second allowed now; below the configured rate after provider 429s.
    pub effective_rate: f64,
    /// Attempts refused locally with 429.
    pub rejected: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerReport {
    pub name: String,
    /// `closed`, `half_open` or `open`.
    pub state: String,
    /// Times it opened.
    pub opened: u64,
    /// Attempts refused locally with 503 while it was open.
    pub refused: u64,
}

impl RouteReport {
    /// The share of requests answered successfully, when there were any.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.succeeded as f64 / self.requests as f64)
    }

    /// Attempts per request that went upstream.
    pub fn attempts_per_request(&self) -> Option<f64> {
        let upstream = self.succeeded_first_attempt + self.succeeded_after_retry + self.failed;
        (upstream > 0).then(|| self.attempts as f64 / upstream as f64)
    }
}

impl Report {
    /// The report of everything `metrics` has counted.
    pub fn from_metrics(metrics: &Metrics) -> Report {
        let families = Families::new(metrics.gather());
        let routes = families
            .label_values("payguard_request_duration_seconds", "route")
            .into_iter()
            .map(|route| families.route(&route))
            .collect();
        Report {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            routes,
            limiters: families.limiters(),
            breakers: families.breakers(),
        }
    }

    /// Reads the report of the sidecar whose admin listener is at `admin`.
    pub async fn fetch(admin: &str) -> anyhow::Result<Report> {
        let body = crate::admin_client::call(admin, http::Method::GET, "/stats").await?;
        serde_json::from_slice(&body).map_err(|e| {
            anyhow::anyhow!(
                "{} did not return a payguard report: {e}",
                Report::url(admin)
            )
        })
    }

    /// Where [`Report::fetch`] reads it.
    pub fn url(admin: &str) -> String {
        crate::admin_client::url(admin, "/stats")
    }

    /// The report as plain-text tables, one row per route.
    pub fn table(&self) -> String {
        table::render(self)
    }
}

#[cfg(test)]
mod tests;
