//! The provider's own rate limiter: a token bucket in front of everything Stripe-shaped.
//!
//! It models the seed article's provider, which answered 429 `rate_limit` above about 10
//! requests per second. One bucket for the whole double, like Stripe's global limiter; it runs
//! before the idempotency layer, so a limited request saves nothing and its key stays free.
//! Time comes from `tokio::time` so tests with paused time control refills.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

/// Sustained rate and burst of the provider's limiter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second. Must be greater than 0.
    pub per_second: f64,
    /// Bucket size: how many requests may arrive at once after a quiet period. At least 1.
    pub burst: u32,
}

impl RateLimit {
    /// Checks the settings, naming what is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(format!(
                "rate_limit.per_second must be a number above 0, got {}",
                self.per_second
            ));
        }
        if self.burst == 0 {
            return Err("rate_limit.burst must be at least 1".to_owned());
        }
        Ok(())
    }
}

pub(crate) struct Limiter {
    limit: RateLimit,
    // A std Mutex: the critical section is a few float operations.
    bucket: Mutex<Bucket>,
    limited: AtomicU64,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Limiter {
    /// A full bucket. The caller has validated `limit`.
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limit.burst),
                refilled: Instant::now(),
            }),
            limited: AtomicU64::new(0),
        }
    }

    /// Takes a token if there is one. When there is not, counts the refusal and returns false.
    pub(crate) fn admit(&self) -> bool {
        let now = Instant::now();
        // Poison is harmless: the bucket is two plain numbers, each always valid.
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            self.limited.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// How many requests were refused so far.
    pub(crate) fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }
}

/// The most of `times` (sorted) in any half-open window `[t, t + window)`: what a provider's
/// limiter counts, and so what payguard's limiter's promise (at most `rate + burst - 1` sends
/// in any second) is checked against by its tests and benchmarks.
pub fn busiest_window<T>(times: &[T], window: std::time::Duration) -> usize
where
    T: Copy + Ord + std::ops::Add<std::time::Duration, Output = T>,
{
    (0..times.len())
        .map(|i| {
            let end = times[i] + window;
            times[i..].iter().take_while(|t| **t < end).count()
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_sustained_rate() {
        let limiter = Limiter::new(RateLimit {
            per_second: 10.0,
            burst: 3,
        });
        assert!((0..3).all(|_| limiter.admit()));
        assert!(!limiter.admit());
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limiter.admit(), "one token back after 1/10 s");
        assert!(!limiter.admit());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(
            (0..5).filter(|_| limiter.admit()).count(),
            3,
            "refill stops at the burst"
        );
        assert_eq!(limiter.limited(), 4);
    }

    #[test]
    fn invalid_settings_name_the_field() {
        let zero = RateLimit {
            per_second: 0.0,
            burst: 1,
        };
        assert!(zero.validate().unwrap_err().contains("per_second"));
        let no_burst = RateLimit {
            per_second: 1.0,
            burst: 0,
        };
        assert!(no_burst.validate().unwrap_err().contains("burst"));
    }
}
