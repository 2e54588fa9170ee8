//! A limiter shared by every replica through Redis (`backend = "redis"`).
//!
//! The reservation is the local limiter's GCRA, run as a Lua script (`gcra.lua`) on one key
//! per limiter (`<prefix>ratelimit:<name>`, `upstream` or the route's name), with time taken
//! from Redis's `TIME` so replicas' clocks do not matter. Each replica then sleeps until its
//! reserved send time, as the local limiter does. The script holds the theoretical arrival
//! time; replicas hand it their own current rate, so the adaptive part (halving on a provider
//! 429, recovering over quiet seconds) stays local to each replica, and a replica that was
//! throttled simply spends more of the shared budget per send.
//!
//! When Redis cannot answer within the command timeout, the attempt goes to a local limiter at
//! `fallback_rate` (by default `rate / redis.replicas`: this replica's share), so N replicas
//! without Redis still stay near the rate. The error is counted, the backend's health gauge
//! drops to 0, and one line is logged when the state changes, not one per attempt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use redis::Script;

use super::{Limiter, Refused};
use crate::shared::{RedisFailure, RedisPool};

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("gcra.lua")));

/// The metric handles of one shared limiter.
pub struct BackendMetrics {
    pub errors: IntCounter,
    pub healthy: IntGauge,
}

pub struct Shared {
    name: String,
    pool: Arc<RedisPool>,
    key: String,
    /// Takes over while Redis fails.
    pub(super) fallback: Limiter,
    healthy: AtomicBool,
    metrics: BackendMetrics,
}

impl Shared {
    pub fn new(
        name: &str,
        pool: Arc<RedisPool>,
        fallback: Limiter,
        metrics: BackendMetrics,
    ) -> Shared {
        metrics.healthy.set(1);
        Shared {
            name: name.to_owned(),
            key: pool.key(&format!("ratelimit:{name}")),
            pool,
            fallback,
            healthy: AtomicBool::new(true),
            metrics,
        }
    }

    /// Reserves a send time at most `wait_limit` from now at `rate`, on the shared clock.
    /// The outer error is Redis failing; the inner one the limiter refusing.
    pub async fn reserve(
        &self,
        rate: f64,
        burst: u32,
        wait_limit: Duration,
    ) -> Result<Result<Duration, Refused>, RedisFailure> {
        let interval = (1e6 / rate).round().max(1.0) as u64;
        let tolerance = interval.saturating_mul(u64::from(burst.saturating_sub(1)));
        let limit = u64::try_from(wait_limit.as_micros()).unwrap_or(u64::MAX);
        let key = self.key.clone();
        let (granted, wait_us): (i64, u64) = self
            .pool
            .run(|mut c| async move {
                GCRA.key(key)
                    .arg(interval)
                    .arg(tolerance)
                    .arg(limit)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let wait = Duration::from_micros(wait_us);
        Ok(match granted {
            1 => Ok(wait),
            _ => Err(Refused { retry_after: wait }),
        })
    }

    /// Records whether Redis answered; logs and sets the gauge when that changes.
    pub fn record(&self, result: Result<(), &RedisFailure>) {
        if let Err(e) = result {
            self.metrics.errors.inc();
            if self.healthy.swap(false, Ordering::Relaxed) {
                self.metrics.healthy.set(0);
                tracing::warn!(
                    limiter = self.name,
                    error = %e,
                    fallback_rate = self.fallback.spec.rate,
                    "shared rate limiter cannot reach Redis; limiting locally at its fallback rate"
                );
            }
        } else if !self.healthy.swap(true, Ordering::Relaxed) {
            self.metrics.healthy.set(1);
            tracing::info!(
                limiter = self.name,
                "shared rate limiter reaches Redis again"
            );
        }
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}
