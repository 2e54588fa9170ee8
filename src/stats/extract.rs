//! Reading the report's figures out of gathered metric families.
//!
//! Kept apart from the report's shape so that the names of the families appear in one place
//! beside the metrics that define them, and a renamed family breaks a unit test here rather
//! than silently zeroing a column.

use std::collections::{BTreeSet, HashMap};

use prometheus::proto::{Metric, MetricFamily};

use super::{BreakerReport, Count, LimiterReport, RouteReport};

/// Attempt outcomes that are not failures, left out of "top errors".
const NOT_ERRORS: &[&str] = &["1xx", "2xx", "3xx"];

/// Readable names for the attempt outcome labels.
fn describe(outcome: &str) -> &str {
    match outcome {
        "rate_limited" => "429 from provider",
        "not_sent" => "connect failed",
        "connection_lost" => "connection lost",
        "timeout" => "attempt timeout",
        "refused_locally" => "refused locally",
        "4xx" => "4xx from provider",
        "5xx" => "5xx from provider",
        other => other,
    }
}

pub(super) struct Families(HashMap<String, MetricFamily>);

impl Families {
    pub(super) fn new(gathered: Vec<MetricFamily>) -> Families {
        Families(
            gathered
                .into_iter()
                .map(|f| (f.name().to_owned(), f))
                .collect(),
        )
    }

    /// The series of `family` whose labels include every `(name, value)` of `filter`.
    fn series<'a>(
        &'a self,
        family: &str,
        filter: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Metric> + 'a {
        self.0
            .get(family)
            .map(|f| f.get_metric())
            .unwrap_or_default()
            .iter()
            .filter(move |m| filter.iter().all(|(k, v)| label(m, k) == Some(*v)))
    }

    /// Every value `label` takes in `family`, sorted.
    pub(super) fn label_values(&self, family: &str, name: &str) -> Vec<String> {
        let values: BTreeSet<String> = self
            .series(family, &[])
            .filter_map(|m| label(m, name).map(str::to_owned))
            .collect();
        values.into_iter().collect()
    }

    /// The sum of a counter family over the series matching `filter`.
    fn sum(&self, family: &str, filter: &[(&str, &str)]) -> u64 {
        // Counters are integral; the model stores them as floats.
        self.series(family, filter)
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    /// The value of the first gauge of `family` matching `filter`.
    fn gauge(&self, family: &str, filter: &[(&str, &str)]) -> Option<f64> {
        self.series(family, filter)
            .map(|m| m.get_gauge().get_value())
            .next()
    }

    /// A counter family's values for one route, keyed by another label.
    fn by(&self, family: &str, route: &str, key: &str) -> Vec<(String, u64)> {
        self.series(family, &[("route", route)])
            .filter_map(|m| {
                Some((
                    label(m, key)?.to_owned(),
                    m.get_counter().get_value() as u64,
                ))
            })
            .collect()
    }

    pub(super) fn route(&self, route: &str) -> RouteReport {
        let filter = [("route", route)];
        let result = |r: &str| {
            self.sum(
                "payguard_request_results_total",
                &[("route", route), ("result", r)],
            )
        };
        let latency = self
            .series("payguard_request_duration_seconds", &filter)
            .next()
            .map(Latency::of)
            .unwrap_or_default();
        let mut errors: Vec<Count> = self
            .by("payguard_upstream_attempts_total", route, "outcome")
            .into_iter()
            .filter(|(outcome, count)| *count > 0 && !NOT_ERRORS.contains(&outcome.as_str()))
            .map(|(outcome, count)| Count {
                what: describe(&outcome).to_owned(),
                count,
            })
            .collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.what.cmp(&b.what)));
        errors.truncate(3);
        let succeeded = self
            .by("payguard_requests_total", route, "status_class")
            .into_iter()
            .filter(|(class, _)| class == "2xx" || class == "3xx")
            .map(|(_, count)| count)
            .sum();
        RouteReport {
            route: route.to_owned(),
            requests: self.sum("payguard_requests_total", &filter),
            succeeded,
            succeeded_first_attempt: result("succeeded_first_attempt"),
            succeeded_after_retry: result("succeeded_after_retry"),
            failed: result("failed"),
            attempts: self.sum("payguard_upstream_attempts_total", &filter),
            retries: self.sum("payguard_retries_total", &filter),
            retries_refused: self.sum("payguard_retries_refused_total", &filter),
            mean_latency_ms: latency.mean_ms,
            p50_latency_ms: latency.quantile_ms(0.5),
            p99_latency_ms: latency.quantile_ms(0.99),
            top_errors: errors,
            keys_injected: self.sum("payguard_idempotency_keys_injected_total", &filter),
            replays: self.sum("payguard_idempotency_replays_total", &filter),
            coalesced: self.sum("payguard_idempotency_coalesced_total", &filter),
            conflicts: self.sum("payguard_idempotency_conflicts_total", &filter),
        }
    }

    pub(super) fn limiters(&self) -> Vec<LimiterReport> {
        self.label_values("payguard_ratelimit_effective_rate", "limiter")
            .into_iter()
            .map(|name| {
                let filter = [("limiter", name.as_str())];
                LimiterReport {
                    effective_rate: self
                        .gauge("payguard_ratelimit_effective_rate", &filter)
                        .unwrap_or_default(),
                    rejected: self.sum("payguard_ratelimit_rejected_total", &filter),
                    name,
                }
            })
            .collect()
    }

    pub(super) fn breakers(&self) -> Vec<BreakerReport> {
        self.label_values("payguard_breaker_state", "breaker")
            .into_iter()
            .map(|name| {
                let filter = [("breaker", name.as_str())];
                let state = self.gauge("payguard_breaker_state", &filter);
                let opened = [("breaker", name.as_str()), ("to", "open")];
                BreakerReport {
                    state: match state {
                        Some(s) if s >= 2.0 => "open",
                        Some(s) if s >= 1.0 => "half_open",
                        _ => "closed",
                    }
                    .to_owned(),
                    opened: self.sum("payguard_breaker_transitions_total", &opened),
                    refused: self.sum("payguard_breaker_refused_total", &filter),
                    name,
                }
            })
            .collect()
    }
}

fn label<'a>(metric: &'a Metric, name: &str) -> Option<&'a str> {
    metric
        .get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

/// A latency histogram's cumulative buckets, in seconds.
#[derive(Default)]
pub(super) struct Latency {
    count: u64,
    mean_ms: Option<f64>,
    /// (upper bound, cumulative count), the `+Inf` bucket excluded.
    buckets: Vec<(f64, u64)>,
}

impl Latency {
    fn of(metric: &Metric) -> Latency {
        let h = metric.get_histogram();
        let count = h.get_sample_count();
        Latency {
            count,
            mean_ms: (count > 0).then(|| h.get_sample_sum() * 1000.0 / count as f64),
            buckets: h
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count()))
                .filter(|(bound, _)| bound.is_finite())
                .collect(),
        }
    }

    /// The `q` quantile in milliseconds, interpolated linearly inside the bucket that holds
    /// it (as `histogram_quantile` does). Past the last finite bucket it answers that bound:
    /// the histogram knows no more.
    pub(super) fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q * self.count as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, cumulative) in &self.buckets {
            if cumulative as f64 >= rank {
                let in_bucket = (cumulative - lower.1) as f64;
                let share = match in_bucket > 0.0 {
                    true => (rank - lower.1 as f64) / in_bucket,
                    false => 1.0,
                };
                return Some((lower.0 + (bound - lower.0) * share) * 1000.0);
            }
            lower = (bound, cumulative);
        }
        Some(lower.0 * 1000.0)
    }
}

#[cfg(test)]
impl Latency {
    pub(super) fn from_buckets(count: u64, buckets: Vec<(f64, u64)>) -> Latency {
        Latency {
            count,
            mean_ms: None,
            buckets,
        }
    }
}
