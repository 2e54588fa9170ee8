//! How long to wait before the next attempt: exponential backoff with full jitter.
//!
//! The ceiling doubles from `base` on each retry, up to `max`, and the actual wait is drawn
//! uniformly from zero to that ceiling ("full jitter"). Spreading waits over the whole range is
//! what keeps many clients that failed together from retrying together; adding a little jitter
//! to a fixed delay, as the seed article's handler does, keeps them bunched.
//!
//! The random source is injectable so tests (and reproducible benchmark runs) get the same
//! sequence every time.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Where the jitter comes from.
pub enum Jitter {
    /// The thread-local OS-seeded generator: production.
    Random,
    /// A seeded generator, for reproducible runs. A lock is fine here: it is taken only when a
    /// retry is already decided, never on the first attempt.
    Seeded(Box<Mutex<StdRng>>),
    /// No jitter: always wait the full ceiling. For tests that assert exact spacing.
    None,
}

impl Jitter {
    pub fn seeded(seed: u64) -> Jitter {
        Jitter::Seeded(Box::new(Mutex::new(StdRng::seed_from_u64(seed))))
    }

    /// A duration drawn uniformly from `[0, ceiling]`.
    fn draw(&self, ceiling: Duration) -> Duration {
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let drawn = match self {
            Jitter::None => nanos,
            Jitter::Random => rand::rng().random_range(0..=nanos),
            Jitter::Seeded(rng) => match rng.lock() {
                Ok(mut rng) => rng.random_range(0..=nanos),
                // A panic elsewhere poisoned the lock; the state of an RNG cannot be
                // corrupted in a way that matters here, so keep using it.
                Err(poisoned) => poisoned.into_inner().random_range(0..=nanos),
            },
        };
        Duration::from_nanos(drawn)
    }
}

/// Exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling before retry number `retry` (1 for the first retry): `base * 2^(retry-1)`,
    /// capped at `max`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry number `retry`.
    pub fn delay(&self, retry: u32, jitter: &Jitter) -> Duration {
        jitter.draw(self.ceiling(retry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };

    #[test]
    fn ceilings_double_then_cap() {
        let ceilings: Vec<u128> = (1..=6).map(|n| B.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(
            B.ceiling(200),
            Duration::from_secs(1),
            "no overflow on huge retry counts"
        );
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling_and_spreads() {
        let jitter = Jitter::seeded(7);
        let draws: Vec<Duration> = (0..200).map(|_| B.delay(3, &jitter)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(400)));
        assert!(
            draws.iter().any(|d| *d < Duration::from_millis(100)),
            "reaches the low end"
        );
        assert!(
            draws.iter().any(|d| *d > Duration::from_millis(300)),
            "reaches the high end"
        );
    }

    #[test]
    fn a_seed_gives_the_same_sequence() {
        let (a, b) = (Jitter::seeded(42), Jitter::seeded(42));
        for n in 1..10 {
            assert_eq!(B.delay(n, &a), B.delay(n, &b));
        }
        assert_eq!(B.delay(2, &Jitter::None), Duration::from_millis(200));
    }
}
