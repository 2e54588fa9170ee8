//! The fault plan: which requests fail, and how. Shared and scriptable while the double runs.
//!
//! Three sources, consulted in this order for each arriving request, each giving at most one
//! fault: faults queued for a matching request ([`FaultPlan::push_for`]), faults queued for the
//! next request whatever it is ([`FaultPlan::push`]), then the probabilistic [`Profile`]. The
//! profile draws from a seeded `StdRng`, so the same requests in the same order meet the same
//! faults on every run.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::form::parse_form;

/// One injected failure. Where it strikes is part of its meaning; see the module docs of
/// [the crate docs](crate) for which faults are answered before the idempotency layer.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer this status (500, 502, 503...), an `api_error` in the dialect's shape; nothing runs.
    /// A number that is not a valid status code is answered as 500.
    Status(u16),
    /// 429 `rate_limit`, with optional `Retry-After` (whole seconds, rounded up) and
    /// `Stripe-Should-Retry` headers; the latter only in the Stripe dialect.
    RateLimited {
        retry_after: Option<Duration>,
        should_retry: Option<bool>,
    },
    /// 429 `lock_timeout`.
    LockTimeout,
    /// 409 `idempotency_key_in_use`, whether or not the key is in use.
    KeyInUse,
    /// 400 `invalid_request_error`, as if a parameter were invalid.
    BadRequest,
    /// This status with `Stripe-Should-Retry` set to the flag (Stripe only), e.g. a 500.
    ShouldRetry(u16, bool),
    /// Reset the connection (TCP RST) without executing anything.
    ResetBeforeProcessing,
    /// Execute fully (effects and idempotency record saved), then reset instead of replying.
    ResetAfterProcessing,
    /// Hold the request this long before executing it, the key claimed meanwhile, then reply.
    Stall(Duration),
    /// Execute normally, then send the body in small chunks with this pause before each.
    SlowBody(Duration),
    /// Execute normally, send the headers and about half of the body, then reset.
    TruncatedBody,
    /// Start executing, then fail with this status (an `api_error`) before any effect. The
    /// failure is saved under the idempotency key like any result of an executing endpoint.
    FailDuringExecution(u16),
}

/// A rule over a request's method and path.
type Rule = dyn Fn(&Method, &str) -> bool + Send + Sync;

/// Which requests a targeted fault applies to.
#[derive(Clone)]
pub struct Matcher(Arc<Rule>);

impl Matcher {
    /// Requests whose path starts with `prefix`, any method.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Self(Arc::new(move |_, path| path.starts_with(&prefix)))
    }

    /// Requests with this method whose path starts with `prefix`.
    pub fn method(method: Method, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Self(Arc::new(move |m, path| {
            *m == method && path.starts_with(&prefix)
        }))
    }

    /// Any rule over the method and the path (without the query).
    pub fn custom(rule: impl Fn(&Method, &str) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(rule))
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        (self.0)(method, path)
    }
}

/// `"/v1/refunds"` is a path prefix; `"POST /v1/refunds"` also names the method.
impl From<&str> for Matcher {
    fn from(text: &str) -> Self {
        match text.split_once(' ') {
            Some((method, prefix)) => match Method::from_bytes(method.as_bytes()) {
                Ok(method) => Matcher::method(method, prefix.trim()),
                Err(_) => Matcher::prefix(text),
            },
            None => Matcher::prefix(text),
        }
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Matcher(..)")
    }
}

/// Faults by probability: each request fails with probability `rate`, the fault drawn from
/// `mix` in proportion to the weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    /// From 0.0 (never) to 1.0 (always).
    pub rate: f64,
    pub mix: Vec<(Fault, u32)>,
    pub seed: u64,
}

impl Profile {
    /// The transient failures of a flaky network and provider front end, in equal parts:
    /// resets before and after processing, 500, 503, and 429 without hints. The fault mix of
    /// the seed article's experiment, shared by the tests, the benchmarks and the binary.
    pub fn transient(rate: f64, seed: u64) -> Profile {
        let rate_limited = Fault::RateLimited {
            retry_after: None,
            should_retry: None,
        };
        let mix = [
            Fault::ResetBeforeProcessing,
            Fault::ResetAfterProcessing,
            Fault::Status(500),
            Fault::Status(503),
            rate_limited,
        ];
        Profile {
            rate,
            mix: mix.into_iter().map(|f| (f, 1)).collect(),
            seed,
        }
    }
}

impl Profile {
    /// [`Profile::transient`] with one difference: the 429 says `Retry-After: 1`, as a
    /// provider's rate limiter that hints its clients would. Retry-After is not documented by
    /// Stripe (see `provider-semantics.md`), so both forms are worth measuring.
    pub fn transient_retry_after(rate: f64, seed: u64) -> Profile {
        let mut profile = Profile::transient(rate, seed);
        for (fault, _) in &mut profile.mix {
            if let Fault::RateLimited { retry_after, .. } = fault {
                *retry_after = Some(Duration::from_secs(1));
            }
        }
        profile
    }
}

/// Contention on one object: a share of the requests that name it meet 429 `lock_timeout`.
///
/// Stripe answers `lock_timeout` when a request cannot take the lock of an object that other
/// requests (or Stripe itself) hold: many refunds of one charge at once, many updates of one
/// customer. It is about that object, not the account's rate, and the request did nothing.
/// A request names the object when a path segment or a form parameter's value is its id
/// (`/v1/payment_intents/pi_1/confirm`, `payment_intent=pi_1`, `customer=cus_1`). The share is
/// drawn, like a [`Profile`], from a seeded generator; the double serves requests far too
/// quickly for real lock waits to make contention, so it is scripted.
#[derive(Clone, Debug, PartialEq)]
pub struct Contention {
    /// The contended object's id, e.g. `pi_...`.
    pub object: String,
    /// From 0.0 to 1.0: the share of the requests naming it that time out on its lock.
    pub rate: f64,
    pub seed: u64,
}

/// Why a [`Profile`] was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("profile.rate must be between 0 and 1, got {0}")]
    Rate(f64),
    #[error("profile.mix must hold at least one fault with a weight above 0 when rate is above 0")]
    EmptyMix,
}

/// The shared, mutable fault plan. Cloning is cheap; clones script the same plan.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    // A std Mutex: each request takes it once, briefly, and never across an await.
    inner: Arc<Mutex<Plan>>,
}

#[derive(Debug, Default)]
struct Plan {
    targeted: VecDeque<(Matcher, Fault)>,
    next: VecDeque<Fault>,
    profile: Option<(Profile, u64, StdRng)>,
    contention: Option<(Contention, StdRng)>,
    injected: u64,
}

impl FaultPlan {
    /// The next request, whatever it is, gets this fault. Queued faults apply in FIFO order.
    pub fn push(&self, fault: Fault) {
        self.lock().next.push_back(fault);
    }

    /// The next request that matches gets this fault; earlier pushes for it apply first.
    pub fn push_for(&self, matcher: impl Into<Matcher>, fault: Fault) {
        self.lock().targeted.push_back((matcher.into(), fault));
    }

    /// Replaces the probabilistic profile, reseeding its generator.
    pub fn set_profile(&self, profile: Profile) -> Result<(), ProfileError> {
        if !(0.0..=1.0).contains(&profile.rate) {
            return Err(ProfileError::Rate(profile.rate));
        }
        let total: u64 = profile.mix.iter().map(|(_, w)| u64::from(*w)).sum();
        if profile.rate > 0.0 && total == 0 {
            return Err(ProfileError::EmptyMix);
        }
        let rng = StdRng::seed_from_u64(profile.seed);
        self.lock().profile = Some((profile, total, rng));
        Ok(())
    }

    /// The probabilistic profile in force, if any.
    pub fn profile(&self) -> Option<Profile> {
        self.lock().profile.as_ref().map(|(p, _, _)| p.clone())
    }

    /// Sets (or, with `None`, ends) contention on one object, reseeding its generator.
    pub fn set_contention(&self, contention: Option<Contention>) -> Result<(), ProfileError> {
        if let Some(c) = &contention
            && !(0.0..=1.0).contains(&c.rate)
        {
            return Err(ProfileError::Rate(c.rate));
        }
        self.lock().contention = contention.map(|c| {
            let rng = StdRng::seed_from_u64(c.seed);
            (c, rng)
        });
        Ok(())
    }

    /// The contention in force, if any.
    pub fn contention(&self) -> Option<Contention> {
        self.lock().contention.as_ref().map(|(c, _)| c.clone())
    }

    /// Drops the profile, the contention and every queued fault.
    pub fn clear(&self) {
        let mut plan = self.lock();
        plan.targeted.clear();
        plan.next.clear();
        plan.profile = None;
        plan.contention = None;
    }

    /// Queued faults not yet delivered.
    pub fn pending(&self) -> usize {
        let plan = self.lock();
        plan.targeted.len() + plan.next.len()
    }

    /// How many faults were delivered to requests so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// The fault for an arriving request, if any; queued faults are consumed. `body` is only
    /// read for contention, whose object a form parameter may name.
    pub(crate) fn take(&self, method: &Method, path: &str, body: &[u8]) -> Option<Fault> {
        let mut plan = self.lock();
        let targeted = plan
            .targeted
            .iter()
            .position(|(m, _)| m.matches(method, path));
        let fault = match targeted {
            Some(at) => plan.targeted.remove(at).map(|(_, fault)| fault),
            None => plan.next.pop_front(),
        }
        .or_else(|| plan.contend(path, body))
        .or_else(|| plan.draw());
        plan.injected += u64::from(fault.is_some());
        fault
    }

    fn lock(&self) -> MutexGuard<'_, Plan> {
        // Poison is harmless: every update is a single push, pop or assignment.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Plan {
    /// `lock_timeout` for a request naming the contended object, at the contention's rate.
    fn contend(&mut self, path: &str, body: &[u8]) -> Option<Fault> {
        let (contention, rng) = self.contention.as_mut()?;
        let object = contention.object.as_str();
        let named = path.split('/').any(|segment| segment == object)
            || parse_form(body).iter().any(|(_, value)| value == object);
        (named && rng.random::<f64>() < contention.rate).then_some(Fault::LockTimeout)
    }

    fn draw(&mut self) -> Option<Fault> {
        let (profile, total, rng) = self.profile.as_mut()?;
        // Draw the coin even at rate 0 so that a rate change keeps the sequence comparable.
        if rng.random::<f64>() >= profile.rate || *total == 0 {
            return None;
        }
        let mut pick = rng.random_range(0..*total);
        for (fault, weight) in &profile.mix {
            let weight = u64::from(*weight);
            if pick < weight {
                return Some(fault.clone());
            }
            pick -= weight;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targeted_then_queued_in_order() {
        let plan = FaultPlan::default();
        plan.push(Fault::Status(500));
        plan.push(Fault::LockTimeout);
        plan.push_for("POST /v1/refunds", Fault::KeyInUse);
        let post = Method::POST;
        assert_eq!(
            plan.take(&Method::GET, "/v1/refunds/re_1", b""),
            Some(Fault::Status(500))
        );
        assert_eq!(plan.take(&post, "/v1/refunds", b""), Some(Fault::KeyInUse));
        assert_eq!(
            plan.take(&post, "/v1/refunds", b""),
            Some(Fault::LockTimeout)
        );
        assert_eq!(plan.take(&post, "/v1/refunds", b""), None);
        assert_eq!(plan.injected(), 3);
        assert_eq!(plan.pending(), 0);
    }

    #[test]
    fn profiles_are_deterministic_per_seed() {
        let mix = vec![(Fault::Status(503), 1), (Fault::ResetBeforeProcessing, 3)];
        let run = |seed| {
            let plan = FaultPlan::default();
            let profile = Profile {
                rate: 0.5,
                mix: mix.clone(),
                seed,
            };
            plan.set_profile(profile).unwrap();
            (0..200)
                .map(|_| plan.take(&Method::POST, "/v1/x", b""))
                .collect::<Vec<_>>()
        };
        let first = run(7);
        assert_eq!(first, run(7));
        let faults = first.iter().flatten().count();
        assert!((60..140).contains(&faults), "{faults} faults at rate 0.5");
        let resets = first
            .iter()
            .flatten()
            .filter(|f| **f == Fault::ResetBeforeProcessing)
            .count();
        assert!(
            resets > faults / 2,
            "weights are honoured: {resets} of {faults}"
        );
    }

    #[test]
    fn invalid_profiles_are_refused() {
        let plan = FaultPlan::default();
        let bad_rate = Profile {
            rate: 1.5,
            mix: vec![(Fault::LockTimeout, 1)],
            seed: 1,
        };
        assert_eq!(plan.set_profile(bad_rate), Err(ProfileError::Rate(1.5)));
        let empty = Profile {
            rate: 0.1,
            mix: vec![(Fault::LockTimeout, 0)],
            seed: 1,
        };
        assert_eq!(plan.set_profile(empty), Err(ProfileError::EmptyMix));
        assert!(
            plan.set_profile(Profile {
                rate: 0.0,
                mix: vec![],
                seed: 1
            })
            .is_ok()
        );
    }

    #[test]
    fn the_hinted_transient_profile_differs_only_in_retry_after() {
        let (plain, hinted) = (
            Profile::transient(0.3, 5),
            Profile::transient_retry_after(0.3, 5),
        );
        assert_eq!((plain.rate, plain.seed), (hinted.rate, hinted.seed));
        let differ: Vec<_> = plain
            .mix
            .iter()
            .zip(&hinted.mix)
            .filter(|(a, b)| a != b)
            .map(|(_, b)| b.clone())
            .collect();
        let one_second = Some(Duration::from_secs(1));
        assert_eq!(
            differ,
            vec![(
                Fault::RateLimited {
                    retry_after: one_second,
                    should_retry: None
                },
                1
            )]
        );
    }

    #[test]
    fn contention_strikes_only_requests_naming_the_object() {
        let plan = FaultPlan::default();
        let contention = Contention {
            object: "pi_hot".into(),
            rate: 0.5,
            seed: 3,
        };
        plan.set_contention(Some(contention.clone())).unwrap();
        assert_eq!(plan.contention(), Some(contention));
        let post = Method::POST;
        let by_param = (0..200)
            .filter_map(|_| plan.take(&post, "/v1/refunds", b"payment_intent=pi_hot&amount=1"))
            .collect::<Vec<_>>();
        assert!((60..140).contains(&by_param.len()), "{}", by_param.len());
        assert!(by_param.iter().all(|f| *f == Fault::LockTimeout));
        let by_path = (0..200)
            .filter(|_| {
                plan.take(&post, "/v1/payment_intents/pi_hot/confirm", b"")
                    .is_some()
            })
            .count();
        assert!((60..140).contains(&by_path), "{by_path}");
        let others = (0..200)
            .filter(|_| {
                plan.take(&post, "/v1/refunds", b"payment_intent=pi_hotter")
                    .is_some()
            })
            .count();
        assert_eq!(others, 0, "another object, even one sharing a prefix");
        let bad = Contention {
            object: "pi_hot".into(),
            rate: -0.1,
            seed: 1,
        };
        assert_eq!(
            plan.set_contention(Some(bad)),
            Err(ProfileError::Rate(-0.1))
        );
        plan.set_contention(None).unwrap();
        assert_eq!(
            plan.take(&post, "/v1/refunds", b"payment_intent=pi_hot"),
            None
        );
    }
}
