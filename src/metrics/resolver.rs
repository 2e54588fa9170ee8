//! The resolver's families: how many requests are unresolved and for how long, and how the
//! resolved ones ended. Refreshed by each resolver round from the journal.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{counter, gauge};

/// The outcomes counted by `payguard_unresolved_resolutions_total`: `resolved`, and
/// `gave_up_` and a [`crate::journal::GiveUp`] label. Declared here, with the family, so every
/// series exists from the start.
pub const OUTCOMES: [&str; 5] = [
    "resolved",
    "gave_up_key_window",
    "gave_up_dedup_window",
    "gave_up_operator",
    "gave_up_payload_unreadable",
];

pub struct ResolverMetrics {
    pub unresolved: IntGaugeVec,
    pub oldest_age: IntGauge,
    pub resolutions: IntCounterVec,
}

impl ResolverMetrics {
    pub(super) fn new(r: &Registry) -> Result<ResolverMetrics, prometheus::Error> {
        let unresolved = IntGaugeVec::new(
            Opts::new(
                "payguard_unresolved_requests",
                "Requests sent without a definitive answer and not yet resolved, by route.",
            ),
            &["route"],
        )?;
        r.register(Box::new(unresolved.clone()))?;
        Ok(ResolverMetrics {
            unresolved,
            oldest_age: gauge(
                r,
                "payguard_unresolved_oldest_age_seconds",
                "Age of the oldest unresolved request; 0 when there is none.",
            )?,
            resolutions: counter(
                r,
                "payguard_unresolved_resolutions_total",
                "Unresolved requests that ended, by route and outcome (resolved or gave_up_*).",
                &["route", "outcome"],
            )?,
        })
    }

    pub(super) fn preregister(&self, route: &str) {
        self.unresolved.with_label_values(&[route]);
        for outcome in OUTCOMES {
            self.resolutions.with_label_values(&[route, outcome]);
        }
    }

    /// Sets the gauges from a count per route (routes missing from `counts` go to 0).
    pub fn set(&self, counts: &std::collections::BTreeMap<String, i64>, oldest_seconds: i64) {
        for family in prometheus::core::Collector::collect(&self.unresolved) {
            for metric in family.get_metric() {
                if let Some(label) = metric.get_label().first() {
                    let route = label.value();
                    if !counts.contains_key(route) {
                        self.unresolved.with_label_values(&[route]).set(0);
                    }
                }
            }
        }
        for (route, n) in counts {
            self.unresolved.with_label_values(&[route]).set(*n);
        }
        self.oldest_age.set(oldest_seconds);
    }
}
