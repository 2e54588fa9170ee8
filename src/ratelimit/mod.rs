//! Client-side rate limiting: stay under the provider's ceiling instead of discovering it
//! through 429s.
//!
//! The limiter is GCRA (the generic cell rate algorithm) run as a *reservation* scheduler:
//! each attempt reserves the next free send time under a short lock and then sleeps until it.
//! Reservations are handed out in arrival order, so the queue is FIFO by construction. An
//! attempt queues for as long as its request's deadline allows (or `max_wait`, when one is
//! set): payguard queues before it sheds, and refuses only an attempt whose turn would come too
//! late to be sent and answered before the deadline. `governor` implements GCRA well, but it
//! answers "not yet" and leaves waiters to race for the next cell, and its quota is fixed at
//! construction; fairness and the adaptive rate below need the reservation state itself,
//! which is a few lines of arithmetic.
//!
//! **Fairness.** First attempts and retries share the one FIFO queue: a retry reserves its
//! turn only when its backoff is over, at the back, and never moves ahead of anyone already
//! waiting. What keeps retries from crowding out first attempts is the retry budget
//! ([`crate::retry`]): retries are at most `ratio` of recent requests plus `min_per_second`, so
//! they hold at most that share of the slots. A waiter that leaves before its turn (its app
//! hung up) gives its slot back, and the next arrival takes it: otherwise a queue of departed
//! waiters would leave the provider idle while live requests wait behind them.
//!
//! In any window of `T` seconds the limiter grants at most `burst + rate * T` sends, so
//! `rate + burst - 1` is the most the provider can see in one second; keep that at or below its
//! ceiling.
//!
//! Adaptive rate ([`adaptive`]): repeated 429 `rate_limit` answers despite the limiter mean the
//! ceiling is lower than configured (someone else shares the account), so the rate comes down
//! to what the provider accepted; it climbs back within seconds once they stop.
//!
//! Several replicas share one limit through Redis with [`shared`]: the same reservation, on
//! one Redis key, behind the same [`Limiter`] interface.

pub mod adaptive;
pub mod shared;

use std::collections::BTreeMap;
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
    /// The longest an attempt waits in the queue before payguard answers 429 itself; `None`:
    /// as long as its request's deadline allows.
    pub max_wait: Option<Duration>,
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
    /// Reserved send times given back by waiters that left, by count: the next arrivals take
    /// them before reserving new ones.
    holes: BTreeMap<Instant, u32>,
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
                holes: BTreeMap::new(),
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

    /// Reserves a send time no later than `wait_limit` from now, or refuses. A slot given back
    /// by a waiter that left is taken first: it is already on the schedule.
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
            // reserved at the old spacing. Slots given back were spaced for the old rate.
            let sends = (tat - now).as_secs_f64() / state.interval.as_secs_f64();
            tat = now + Duration::from_secs_f64(sends * interval.as_secs_f64());
            state.holes.clear();
        }
        // Kept even when this attempt is refused: it is the same backlog, in the new unit.
        (state.tat, state.interval) = (tat, interval);
        state.holes = state.holes.split_off(&now);
        if let Some(mut hole) = state.holes.first_entry() {
            let at = *hole.key();
            if at - now <= wait_limit {
                *hole.get_mut() -= 1;
                if *hole.get() == 0 {
                    hole.remove();
                }
                return Ok(at);
            }
        }
        let at = (tat - tolerance).max(now);
        if at - now > wait_limit {
            return Err(Refused {
                retry_after: at - now,
            });
        }
        state.tat = tat + interval;
        Ok(at)
    }

    /// A waiter reserved `at` and left before it: the next arrival may have it.
    fn give_back(&self, at: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state.holes.entry(at).or_default() += 1;
    }

    /// Counts a send the limiter let go, for the adaptive rate.
    fn sent(&self) {
        if self.spec.adaptive {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.adaptive.sent(Instant::now());
        }
    }

    /// How long an attempt may wait: what its deadline leaves, and `max_wait` when set.
    fn wait_limit(&self, deadline_left: Duration) -> Duration {
        self.spec
            .max_wait
            .map_or(deadline_left, |w| w.min(deadline_left))
    }

    /// Waits for this attempt's turn, at most `max_wait` (when set) and at most
    /// `deadline_left`. Returns how long it waited.
    pub async fn acquire(&self, deadline_left: Duration) -> Result<Duration, Refused> {
        if let Some(shared) = &self.shared {
            let started = Instant::now();
            let rate = self.effective_rate();
            let limit = self.wait_limit(deadline_left);
            match shared.reserve(rate, self.spec.burst, limit).await {
                Ok(reserved) => {
                    shared.record(Ok(()));
                    // Counted from the reply, not from the script's run: half a round trip
                    // late rather than early, so replicas never send ahead of the schedule.
                    let wait = reserved?;
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    self.sent();
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
        let at = self.reserve(now, self.wait_limit(deadline_left))?;
        // Only sleep when there is something to wait for: the timer has millisecond
        // granularity, so even a sleep until "now" would cost up to a millisecond.
        if at > now {
            let mut turn = Turn {
                limiter: self,
                at,
                taken: false,
            };
            tokio::time::sleep_until(at).await;
            turn.taken = true;
        }
        self.sent();
        Ok(at - now)
    }

    /// Tells the limiter the provider answered its rate-limit 429 despite it (the caller has
    /// checked it is about the rate: not Stripe's `lock_timeout`, say).
    pub fn throttled(&self) {
        if let Some(shared) = &self.shared {
            shared.fallback.throttled();
        }
        if self.spec.adaptive {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.adaptive.throttled(Instant::now());
        }
    }

    /// The rate in force now, for the gauge.
    pub fn effective_rate(&self) -> f64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.adaptive.rate(Instant::now())
    }
}

/// A reserved send time being waited for; dropped before it comes (the request went away),
/// it is given back.
struct Turn<'a> {
    limiter: &'a Limiter,
    at: Instant,
    taken: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.taken && self.at > Instant::now() {
            self.limiter.give_back(self.at);
        }
    }
}

#[cfg(test)]
mod tests;
