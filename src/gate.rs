//! The gates every attempt passes before it is sent: the circuit breakers admit it, then the
//! rate limiters grant it a send time. The route's own breaker and limiter (if it has them)
//! come first, then those of the route's upstream. Each upstream has its own, so a files host
//! that is down or throttled never holds back the API host's requests.
//!
//! Each attempt takes a token, retries included: a retry is as much a request to the provider
//! as the first attempt. Outcomes flow back through [`Passage::report`]: 5xx and transport
//! failures are breaker failures, the profile's rate-limit 429 is evidence for the limiters'
//! adaptive rate (another 429, such as Stripe's `lock_timeout`, is not), anything else is a
//! success.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode};
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerSpec, Outcome, Ticket};
use crate::metrics::LimitMetrics;
use crate::profile::Profile;
use crate::ratelimit::{LimitSpec, Limiter};
use crate::retry::{AttemptError, ProviderErrorCode, Refusal};
use crate::shared::RedisPool;

struct Gate {
    name: String,
    limiter: Option<Limiter>,
    breaker: Option<Breaker>,
}

pub struct Gates {
    /// One per upstream, in the config's order (routes point in by index).
    upstreams: Vec<Gate>,
    routes: HashMap<String, Gate>,
}

/// An attempt that passed the gates; it must report its outcome to the breakers that let it
/// through. Dropping it unreported (the request was cancelled) frees any probe place it held.
///
/// An attempt passes at most two gates (its route's and its upstream's), so what it passed is
/// held in two slots, not in vectors: three allocations an attempt fewer.
pub struct Passage<'a> {
    tickets: [Option<(&'a Gate, Ticket)>; 2],
    metrics: &'a LimitMetrics,
    limiters: [Option<&'a Gate>; 2],
}

/// One gate's settings: its name in metrics and its limiter and breaker, either optional.
pub struct GateSpec {
    pub name: String,
    pub rate_limit: Option<LimitSpec>,
    pub breaker: Option<BreakerSpec>,
}

impl Gates {
    /// The gates of the routes that have their own and of every upstream, in the config's
    /// order of upstreams; limiters with `backend = "redis"` share `redis`.
    pub fn new(
        routes: Vec<GateSpec>,
        upstreams: Vec<GateSpec>,
        metrics: &LimitMetrics,
        redis: Option<&Arc<RedisPool>>,
    ) -> Gates {
        let gate = |name: &str, limit: Option<LimitSpec>, breaker: Option<BreakerSpec>| {
            let gate = Gate {
                name: name.to_owned(),
                limiter: limit
                    .map(|spec| Limiter::with_backend(name, spec, redis, || metrics.backend(name))),
                breaker: breaker.map(Breaker::new),
            };
            if let Some(l) = &gate.limiter {
                metrics.limiter(name, l.effective_rate());
            }
            if gate.breaker.is_some() {
                metrics.breaker(name);
            }
            gate
        };
        let routes = routes
            .into_iter()
            .filter(|r| r.rate_limit.is_some() || r.breaker.is_some())
            .map(|r| (r.name.clone(), gate(&r.name, r.rate_limit, r.breaker)))
            .collect();
        let upstreams = upstreams
            .into_iter()
            .map(|u| gate(&u.name, u.rate_limit, u.breaker))
            .collect();
        Gates { upstreams, routes }
    }

    /// The shared limiters that cannot reach Redis now (limiting locally instead).
    pub fn degraded(&self) -> Vec<&str> {
        self.routes
            .values()
            .chain(&self.upstreams)
            .filter(|g| {
                g.limiter
                    .as_ref()
                    .and_then(Limiter::backend_healthy)
                    .is_some_and(|ok| !ok)
            })
            .map(|g| g.name.as_str())
            .collect()
    }

    /// Admits one attempt of `route` to its upstream (an index into the config's upstreams),
    /// waiting at most `deadline_left` in all.
    pub async fn pass<'a>(
        &'a self,
        route: &str,
        upstream: usize,
        deadline_left: Duration,
        m: &'a LimitMetrics,
    ) -> Result<Passage<'a>, Refusal> {
        let started = Instant::now();
        let gates = [self.routes.get(route), self.upstreams.get(upstream)];
        let mut passage = Passage {
            tickets: [None, None],
            metrics: m,
            limiters: [None, None],
        };
        for (slot, gate) in gates.iter().enumerate() {
            if let Some(gate) = gate
                && let Some(breaker) = &gate.breaker
            {
                let left = deadline_left.saturating_sub(started.elapsed());
                passage.tickets[slot] = Some((gate, admit(gate, breaker, left, m).await?));
            }
        }
        for (slot, gate) in gates.into_iter().enumerate() {
            let Some(gate) = gate else { continue };
            if let Some(limiter) = &gate.limiter {
                let left = deadline_left.saturating_sub(started.elapsed());
                match limiter.acquire(left).await {
                    Ok(waited) => m.waited(&gate.name, waited, limiter.effective_rate()),
                    Err(refused) => {
                        m.rejected(&gate.name);
                        return Err(Refusal::RateLimited(refused.retry_after));
                    }
                }
                passage.limiters[slot] = Some(gate);
            }
        }
        Ok(passage)
    }
}

/// Asks one breaker, waiting out a short open period when the settings and deadline allow.
async fn admit(
    gate: &Gate,
    breaker: &Breaker,
    deadline_left: Duration,
    m: &LimitMetrics,
) -> Result<Ticket, Refusal> {
    let (result, transition) = breaker.admit(Instant::now());
    transition
        .into_iter()
        .for_each(|to| m.transition(&gate.name, to));
    let wait = match result {
        Ok(ticket) => return Ok(ticket),
        Err(wait) => wait,
    };
    if wait <= breaker.spec().max_wait_open && wait < deadline_left {
        tokio::time::sleep(wait).await;
        let (result, transition) = breaker.admit(Instant::now());
        transition
            .into_iter()
            .for_each(|to| m.transition(&gate.name, to));
        if let Ok(ticket) = result {
            return Ok(ticket);
        }
    }
    m.breaker_refused(&gate.name);
    Err(Refusal::CircuitOpen(wait))
}

impl Passage<'_> {
    /// Feeds an attempt's outcome to the breakers and limiters it passed; `profile` says which
    /// 429 is about the rate.
    pub fn report<B>(mut self, outcome: &Result<Response<B>, AttemptError>, profile: &Profile) {
        let verdict = match outcome {
            Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => {
                let code = r.extensions().get::<ProviderErrorCode>();
                let about_rate = profile.is_rate_limited(r.status(), code.map(|c| c.0.as_str()));
                for gate in self.limiters.iter().flatten().filter(|_| about_rate) {
                    if let Some(limiter) = &gate.limiter {
                        limiter.throttled();
                        self.metrics.rate(&gate.name, limiter.effective_rate());
                    }
                }
                Outcome::Ignored
            }
            Ok(r) if r.status().is_server_error() => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(AttemptError::Refused(_)) => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        };
        self.settle(verdict);
    }

    fn settle(&mut self, outcome: Outcome) {
        let now = Instant::now();
        for (gate, ticket) in self.tickets.iter_mut().filter_map(Option::take) {
            let transition = gate
                .breaker
                .as_ref()
                .and_then(|b| b.record(ticket, outcome, now));
            if let Some(to) = transition {
                self.metrics.transition(&gate.name, to);
            }
        }
    }
}

impl Drop for Passage<'_> {
    fn drop(&mut self) {
        self.settle(Outcome::Ignored);
    }
}
