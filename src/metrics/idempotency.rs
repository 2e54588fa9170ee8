//! The idempotency families: injected keys, replays, coalesced waits, conflicts, and the
//! store's latency, errors and size.

use std::time::Duration;

use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};

use super::{counter, gauge, histogram};

/// Store operations are local map accesses or an fsync'd file write: microseconds to tens of
/// milliseconds.
const STORE_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

pub struct IdempotencyMetrics {
    pub injected: IntCounterVec,
    pub replays: IntCounterVec,
    pub coalesced: IntCounterVec,
    pub conflicts: IntCounterVec,
    pub joined: IntCounterVec,
    store_duration: HistogramVec,
    store_errors: IntCounterVec,
    pub records: IntGauge,
    /// 1 while the store answers, 0 after a failure until an operation succeeds again.
    pub store_healthy: IntGauge,
    /// 1 after the store refused a new record for being full, until one fits again.
    pub store_full: IntGauge,
}

impl IdempotencyMetrics {
    pub(super) fn new(r: &Registry) -> Result<IdempotencyMetrics, prometheus::Error> {
        let metrics = IdempotencyMetrics {
            injected: counter(
                r,
                "payguard_idempotency_keys_injected_total",
                "Idempotency keys payguard added to requests that had none, by route.",
                &["route"],
            )?,
            replays: counter(
                r,
                "payguard_idempotency_replays_total",
                "Responses replayed from the store without contacting the provider, by route.",
                &["route"],
            )?,
            coalesced: counter(
                r,
                "payguard_idempotency_coalesced_total",
                "Duplicates that waited for the first request with their key, by route and how the wait ended.",
                &["route", "result"],
            )?,
            conflicts: counter(
                r,
                "payguard_idempotency_conflicts_total",
                "Requests refused for their key, by route and kind (in_use, mismatch).",
                &["route", "kind"],
            )?,
            joined: counter(
                r,
                "payguard_idempotency_joined_total",
                "Requests under a new key answered as a retry of an identical earlier request (dedup_across_keys), by route.",
                &["route"],
            )?,
            store_duration: histogram(
                r,
                "payguard_idempotency_store_operation_duration_seconds",
                "Time per store operation, by operation.",
                &["op"],
                STORE_BUCKETS,
            )?,
            store_errors: counter(
                r,
                "payguard_idempotency_store_errors_total",
                "Store operations that failed, by operation.",
                &["op"],
            )?,
            records: gauge(
                r,
                "payguard_idempotency_records",
                "Records held by the store, as of the last prune.",
            )?,
            store_healthy: gauge(
                r,
                "payguard_idempotency_store_healthy",
                "1 while the idempotency store answers; 0 after a failure, until an operation succeeds.",
            )?,
            store_full: gauge(
                r,
                "payguard_idempotency_store_full",
                "1 after the idempotency store refused a new record for being full (max_records), until one fits again.",
            )?,
        };
        metrics.store_healthy.set(1);
        for op in [
            "claim", "complete", "release", "bind", "prune", "count", "probe",
        ] {
            metrics.store_errors.with_label_values(&[op]);
        }
        Ok(metrics)
    }

    pub(super) fn preregister(&self, route: &str) {
        self.injected.with_label_values(&[route]);
        self.replays.with_label_values(&[route]);
        self.joined.with_label_values(&[route]);
        for kind in ["in_use", "mismatch"] {
            self.conflicts.with_label_values(&[route, kind]);
        }
    }

    pub fn store_op(&self, op: &str, elapsed: Duration, ok: bool) {
        self.store_duration
            .with_label_values(&[op])
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.store_errors.with_label_values(&[op]).inc();
        }
    }
}
