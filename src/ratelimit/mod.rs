//! Client-side rate limiting: stay under the provider's ceiling instead of discovering it
//! through 429s.
//!
//! The limiter is GCRA (the generic cell rate algorithm) run as a *reservation* scheduler:
//! each attempt reserves the next free send time under a short lock and then sleeps until it.
//! Reservations are handed out in arrival order, so the queue is FIFO by construction, and a
//! request whose reserved time would be later than it may wait (its `max_wait`, or what is left
//! of its deadline) is refused before reserving anything. `governor` implements GCRA well, but
//! it answers "not yet" and leaves waiters to race for the next cell, and its quota is fixed
//! at construction; fairness and the adaptive rate below need the reservation state itself,
//! which is a few lines of arithmetic.
//!
//! In any window of `T` seconds the limiter grants at most `burst + rate * T` sends, so
//! `rate + burst - 1` is the most the provider can see in one second; keep that at or below its
//! ceiling.
//!
//! Adaptive rate ([`adaptive`]): a 429 from the provider despite the limiter means someone else
//! shares the account's budget, so the rate is halved (down to a floor); each second without a
//! 429 gives back a tenth of the configured rate, never above it.
//!
//! Several replicas share one limit through Redis with [`shared`]: the same reservation, on
//! one Redis key, behind the same [`Limiter`] interface.

pub mod adaptive;
pub mod shared;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use adaptive::Adaptive;
use shared::{BackendMetrics, Shared};

use crate::shared::RedisPool;

/// A limiter's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSpec {
    /// Sends per second.
    pub rate: f64,
    /// Sends allowed back to back after a quiet period.
    pub burst: u32,
    /// The longest an attempt waits in the queue before payguard answers 429 itself.
    pub max_wait: Duration,
    /// Lower the rate on provider 429s, and recover it gradually.
    pub adaptive: bool,
    /// The floor of the adaptive rate.
    pub min_rate: f64,
    /// Shared through Redis by every replica, rather than kept by this process alone.
    pub shared: Option<SharedSpec>,
}

/// The settings of a limiter shared through Redis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedSpec {
    /// The rate this process keeps to on its own while Redis cannot be reached: its share.
    pub fallback_rate: f64,
}

/// Why an attempt was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When a send could be granted, as a hint for `Retry-After`.
    pub retry_after: Duration,
}

struct State {
    /// The theoretical arrival time of the next send at the current rate.
    tat: Instant,
    /// The send interval `tat` was scheduled with.
    interval: Duration,
    adaptive: Adaptive,
}

/// One rate limiter, shared by every request it covers.
pub struct Limiter {
    spec: LimitSpec,
    state: Mutex<State>,
    /// Set when the reservations are shared with other replicas through Redis.
    shared: Option<Box<Shared>>,
}

impl Limiter {
    /// A limiter of this process alone.
    pub fn new(spec: LimitSpec) -> Limiter {
        Limiter {
            state: Mutex::new(State {
                tat: Instant::now(),
                interval: Duration::from_secs_f64(1.0 / spec.rate),
                adaptive: Adaptive::new(spec.rate, spec.min_rate, Instant::now()),
            }),
            spec,
            shared: None,
        }
    }

    /// A limiter named `name` whose reservations are shared through Redis when `spec.shared`
    /// is set; without a pool (Redis configured after start) it keeps to its fallback rate.
    pub fn with_backend(
        name: &str,
        spec: LimitSpec,
        pool: Option<&Arc<RedisPool>>,
        metrics: impl FnOnce() -> BackendMetrics,
    ) -> Limiter {
        let Some(shared) = spec.shared else {
            return Limiter::new(spec);
        };
        let fallback = Limiter::new(LimitSpec {
            rate: shared.fallback_rate,
            min_rate: spec.min_rate.min(shared.fallback_rate),
            shared: None,
            ..spec
        });
        let Some(pool) = pool else {
            return fallback;
        };
        Limiter {
            shared: Some(Box::new(Shared::new(
                name,
                pool.clone(),
                fallback,
                metrics(),
            ))),
            ..Limiter::new(spec)
        }
    }

    /// Whether a shared limiter reaches Redis; `None` for a local one.
    pub fn backend_healthy(&self) -> Option<bool> {
        self.shared.as_ref().map(|s| s.healthy())
    }

    /// Reserves a send time no later than `wait_limit` from now, or refuses. The reservation
    /// is kept even if the caller then gives up: a lost slot only slows the next caller by
    /// one interval, whereas handing it back would let later callers overtake earlier ones.
    fn reserve(&self, now: Instant, wait_limit: Duration) -> Result<Instant, Refused> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = state.adaptive.rate(now);
        let interval = Duration::from_secs_f64(1.0 / rate);
        let tolerance = interval.saturating_mul(self.spec.burst.saturating_sub(1));
        let mut tat = state.tat.max(now);
        if interval > state.interval {
            // A lowered rate: the backlog is a number of sends, not a length of time, so it
            // is stretched to the new interval. Left in time units, the longer tolerance of
            // the halved rate would swallow the backlog and let a burst beyond `burst` go
            // right after a 429, when the provider most needs relief. A raised rate is left
            // unscaled: squeezing the backlog would pull new sends in among those already
            // reserved at the old spacing.
            let sends = (tat - now).as_secs_f64() / state.interval.as_secs_f64();
            tat = now + Duration::from_secs_f64(sends * interval.as_secs_f64());
        }
        // Kept even when this attempt is refused: it is the same backlog, in the new unit.
        (state.tat, state.interval) = (tat, interval);
        let at = (tat - tolerance).max(now);
        if at - now > wait_limit {
            return Err(Refused {
                retry_after: at - now,
            });
        }
        state.tat = tat + interval;
        Ok(at)
    }

    /// Waits for this attempt's turn, at most `max_wait` and at most `deadline_left`.
    /// Returns how long it waited.
    pub async fn acquire(&self, deadline_left: Duration) -> Result<Duration, Refused> {
        if let Some(shared) = &self.shared {
            let started = Instant::now();
            let rate = self.effective_rate();
            let limit = self.spec.max_wait.min(deadline_left);
            match shared.reserve(rate, self.spec.burst, limit).await {
                Ok(reserved) => {
                    shared.record(Ok(()));
                    // Counted from the reply, not from the script's run: half a round trip
                    // late rather than early, so replicas never send ahead of the schedule.
                    let wait = reserved?;
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return Ok(started.elapsed());
                }
                Err(e) => {
                    shared.record(Err(&e));
                    let left = deadline_left.saturating_sub(started.elapsed());
                    return shared.fallback.acquire_local(left).await;
                }
            }
        }
        self.acquire_local(deadline_left).await
    }

    /// [`Limiter::acquire`] on this process's own reservations.
    async fn acquire_local(&self, deadline_left: Duration) -> Result<Duration, Refused> {
        let now = Instant::now();
        let at = self.reserve(now, self.spec.max_wait.min(deadline_left))?;
        // Only sleep when there is something to wait for: the timer has millisecond
        // granularity, so even a sleep until "now" would cost up to a millisecond.
        if at > now {
            tokio::time::sleep_until(at).await;
        }
        Ok(at - now)
    }

    /// Tells the limiter the provider answered 429 despite it.
    pub fn throttled(&self) {
        if let Some(shared) = &self.shared {
            shared.fallback.throttled();
        }
        if self.spec.adaptive {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.adaptive.decrease(Instant::now());
        }
    }

    /// The rate in force now, for the gauge.
    pub fn effective_rate(&self) -> f64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.adaptive.rate(Instant::now())
    }
}

/// The most of `times` (sorted) in any half-open window `[t, t + window)`: what a provider's
/// limiter counts, and so what the limiter's promise (at most `rate + burst - 1` sends in any
/// second) is checked against by tests and benchmarks.
pub fn busiest_window<T>(times: &[T], window: Duration) -> usize
where
    T: Copy + Ord + std::ops::Add<Duration, Output = T>,
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
mod tests;
