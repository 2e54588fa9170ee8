//! The PostgreSQL store's own family: how long each statement (or short transaction) takes,
//! by store operation. The request-level effect of a slow database already shows in the
//! request latency; this says which operation it was (a claim waiting on a row lock, a
//! durable commit, a prune batch), which is what an operator tuning the database needs.
//!
//! The label is one of a small fixed set of operation names ([`crate::idempotency::postgres`]
//! and [`crate::journal::postgres`] name them), never a key or a statement's text.

use prometheus::{HistogramVec, Registry};

use super::histogram;

/// Buckets in seconds: a local statement takes well under a millisecond, a durable commit a
/// few, and anything near the statement timeout (1 s by default) is trouble.
const BUCKETS: &[f64] = &[
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone)]
pub struct PostgresMetrics {
    /// Seconds per operation against PostgreSQL, failed ones included.
    pub statement_duration: HistogramVec,
}

impl PostgresMetrics {
    pub(super) fn new(r: &Registry) -> Result<PostgresMetrics, prometheus::Error> {
        Ok(PostgresMetrics {
            statement_duration: histogram(
                r,
                "payguard_postgres_statement_duration_seconds",
                "Time of each PostgreSQL store or journal operation (a statement or a short transaction), by operation.",
                &["operation"],
                BUCKETS,
            )?,
        })
    }

    /// Records one operation's time.
    pub fn observe(&self, operation: &str, elapsed: std::time::Duration) {
        self.statement_duration
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
    }
}
