//! Circuit breaking: stop calling a provider that is down, and find out when it is back.
//!
//! A pure state machine over tokio's clock, no I/O, so every transition is tested with paused
//! time:
//!
//! - **closed**: calls pass; outcomes go into a sliding window. It opens when the failure rate
//!   over the window reaches `failure_rate` with at least `min_calls` calls in it, or after
//!   `consecutive_failures` failures in a row (a provider that is simply down, at low traffic);
//! - **open**: calls are refused with the time left as `Retry-After`, nothing is sent;
//! - **half-open** after `break_duration`: up to `half_open_probes` calls go through as probes.
//!   All of them succeeding closes the breaker; any failing re-opens it.
//!
//! Only 5xx, timeouts and connection failures are failures. A 4xx is the provider working
//! (a decline is an answer), and a 429 is the rate limiter's business, not a sign of an outage;
//! both leave the breaker alone (see [`Outcome`]).

mod window;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use window::Window;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSpec {
    pub failure_rate: f64,
    pub min_calls: u32,
    pub window: Duration,
    pub consecutive_failures: u32,
    pub break_duration: Duration,
    pub half_open_probes: u32,
    /// A refused request may wait this long for the breaker to half-open instead of failing
    /// at once, if its deadline allows.
    pub max_wait_open: Duration,
}

/// The breaker's state, as the gauge reports it (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    HalfOpen,
    Open,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half_open",
            State::Open => "open",
        }
    }
}

/// How an attempt's outcome counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Neither: a 429, or an attempt abandoned before it had an outcome.
    Ignored,
}

enum Inner {
    Closed { window: Window, consecutive: u32 },
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

pub struct Breaker {
    spec: BreakerSpec,
    /// The state, and a generation number bumped on every transition, so that an outcome
    /// reported after the state it was admitted under has ended (a slow probe from an earlier
    /// half-open round, say) is ignored instead of counted in the new state.
    inner: Mutex<(Inner, u64)>,
}

/// A call the breaker let through. Report its outcome with [`Breaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    probe: bool,
    generation: u64,
}

impl Breaker {
    pub fn new(spec: BreakerSpec) -> Breaker {
        Breaker {
            inner: Mutex::new((
                Inner::Closed {
                    window: Window::new(spec.window),
                    consecutive: 0,
                },
                0,
            )),
            spec,
        }
    }

    pub fn spec(&self) -> &BreakerSpec {
        &self.spec
    }

    fn lock(&self) -> MutexGuard<'_, (Inner, u64)> {
        // Each operation replaces the state whole; a poisoned lock still holds a valid one.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> State {
        match self.lock().0 {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Lets a call through, or says how long until one may go. The second value is the new
    /// state when this call changed it.
    pub fn admit(&self, now: Instant) -> (Result<Ticket, Duration>, Option<State>) {
        let mut guard = self.lock();
        let (inner, generation) = &mut *guard;
        let ticket = |probe, generation| Ok(Ticket { probe, generation });
        match inner {
            Inner::Closed { .. } => (ticket(false, *generation), None),
            Inner::Open { until } if now < *until => (Err(*until - now), None),
            Inner::Open { .. } => {
                *inner = Inner::HalfOpen {
                    in_flight: 1,
                    succeeded: 0,
                };
                *generation += 1;
                (ticket(true, *generation), Some(State::HalfOpen))
            }
            Inner::HalfOpen {
                in_flight,
                succeeded,
            } if *in_flight + *succeeded < self.spec.half_open_probes => {
                *in_flight += 1;
                (ticket(true, *generation), None)
            }
            // All probes are out: the others wait for their verdict. A probe takes at most an
            // attempt timeout, so suggest a short wait.
            Inner::HalfOpen { .. } => (Err(Duration::from_secs(1)), None),
        }
    }

    /// Records a call's outcome; returns the new state when it changed.
    pub fn record(&self, ticket: Ticket, outcome: Outcome, now: Instant) -> Option<State> {
        let spec = &self.spec;
        let mut guard = self.lock();
        let (inner, generation) = &mut *guard;
        // A result from before the last transition says nothing about the state now.
        if ticket.generation != *generation {
            return None;
        }
        let next = match inner {
            Inner::Closed {
                window,
                consecutive,
            } => {
                match outcome {
                    Outcome::Ignored => return None,
                    Outcome::Success => *consecutive = 0,
                    Outcome::Failure => *consecutive += 1,
                }
                window.record(now, outcome == Outcome::Failure);
                let (calls, failures) = window.totals(now);
                let rate_trips = calls >= spec.min_calls
                    && f64::from(failures) >= spec.failure_rate * f64::from(calls);
                (rate_trips || *consecutive >= spec.consecutive_failures).then_some(State::Open)
            }
            Inner::HalfOpen {
                in_flight,
                succeeded,
            } => {
                *in_flight = in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Failure => Some(State::Open),
                    Outcome::Success => {
                        *succeeded += 1;
                        (*succeeded >= spec.half_open_probes).then_some(State::Closed)
                    }
                    Outcome::Ignored => None,
                }
            }
            Inner::Open { .. } => None,
        }?;
        *inner = match next {
            State::Open => Inner::Open {
                until: now + spec.break_duration,
            },
            // Closed with a fresh window: the failures that opened it are forgotten.
            _ => Inner::Closed {
                window: Window::new(spec.window),
                consecutive: 0,
            },
        };
        *generation += 1;
        Some(next)
    }
}

#[cfg(test)]
mod tests;
