//! The idempotency step of the request path: [`Idempotency::admit`] before the attempts, and
//! [`Guard::finish`] after them.

use std::time::Duration;

use http::HeaderMap;
use rand::Rng;

use super::fingerprint::{self, Digest};
use super::guard::{Admission, Guard, replay};
use super::handle::Idempotency;
use super::identity::RequestIdentity;
use super::keys::KeyChoice;
use super::store::{Claim, ClaimRequest, StoreError, StoredResponse};
use super::{KeyedRoute, after};
use crate::error::ProxyError;
use crate::metrics::IdempotencyMetrics;

/// A claim outlives its request's deadline by this much, so a slow finish is not taken over.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// Waiters re-check the store this often even without a wake-up (another process may hold
/// the key once the store is shared).
const POLL: Duration = Duration::from_millis(50);

impl Idempotency {
    /// Decides a request's fate before any attempt. May add a key (in the header of the
    /// route's provider profile) to `headers`, or replace the app's with the key of an
    /// identical earlier request ([`super::keys`]).
    ///
    /// `identity` is the request's [`RequestIdentity`], computed once by the caller. Only
    /// the methods the route's profile keys have one (POST; GET and DELETE are idempotent by
    /// definition), and the caller does not come here without it.
    pub async fn admit(
        &self,
        spec: KeyedRoute<'_>,
        m: &IdempotencyMetrics,
        headers: &mut HeaderMap,
        identity: &RequestIdentity,
        deadline: tokio::time::Instant,
    ) -> Admission {
        // A request without credentials will be refused by the provider: nothing to
        // deduplicate.
        let Some(scope) = identity.scope else {
            return Admission::Forward {
                guard: None,
                injected: None,
            };
        };
        let (print, windowed) = (identity.fingerprint, identity.windowed);
        match self
            .choose_key(spec, m, headers, &scope, &print, windowed)
            .await
        {
            Ok(choice) => {
                self.claim(spec, m, headers, scope, print, choice, deadline)
                    .await
            }
            Err(admission) => admission,
        }
    }

    /// Claims the chosen key, or answers from its record: a replay, a wait for the request
    /// in flight, a refusal of a mismatch.
    #[allow(clippy::too_many_arguments)]
    async fn claim(
        &self,
        spec: KeyedRoute<'_>,
        m: &IdempotencyMetrics,
        headers: &mut HeaderMap,
        scope: Digest,
        print: Digest,
        mut choice: KeyChoice,
        deadline: tokio::time::Instant,
    ) -> Admission {
        let route = spec.name;
        let owner = rand::rng().random::<u128>();
        let wait_until =
            (tokio::time::Instant::now() + self.0.settings.coalesce_wait).min(deadline);
        let mut waited = false;
        loop {
            let record = fingerprint::record_key(&scope, choice.key.as_bytes());
            // Register for the wake-up before looking, so a finish between the look and the
            // wait is not missed.
            let notify = self.waiter(&record);
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claim = match self.try_claim(m, record, print, owner, deadline).await {
                Ok(claim) => claim,
                Err(e) => return self.degrade(spec.policy, e, choice.shown),
            };
            let coalesced = |result| {
                if waited {
                    m.coalesced.with_label_values(&[route, result]).inc();
                }
            };
            match claim {
                Claim::Claimed => {
                    coalesced("took_over");
                    choice.count_join(m, route);
                    return Admission::Forward {
                        guard: Some(self.guard(record, owner, spec, choice.bound_until)),
                        injected: choice.shown,
                    };
                }
                Claim::Completed { fingerprint: f, .. } | Claim::InFlight { fingerprint: f }
                    if f != print =>
                {
                    m.conflicts.with_label_values(&[route, "mismatch"]).inc();
                    self.forget(&record);
                    return Admission::Refuse(ProxyError::KeyMismatch);
                }
                // An identical earlier request under another key failed for good (a decline
                // saved under its key): this one is a new attempt, under its own key.
                Claim::Completed { response, .. }
                    if choice.joined() && !(200..300).contains(&response.status) =>
                {
                    self.forget(&record);
                    choice = match self.take_over(spec, m, headers, choice).await {
                        Ok(choice) => choice,
                        Err(admission) => return admission,
                    };
                }
                Claim::Completed { response, .. } => {
                    self.forget(&record);
                    return self.answer_from_record(spec, m, choice, response, waited);
                }
                Claim::InFlight { .. } if tokio::time::Instant::now() >= wait_until => {
                    coalesced("timed_out");
                    m.conflicts.with_label_values(&[route, "in_use"]).inc();
                    self.forget(&record);
                    return Admission::Refuse(ProxyError::KeyInUse);
                }
                Claim::InFlight { .. } => {
                    waited = true;
                    let nap =
                        POLL.min(wait_until.saturating_duration_since(tokio::time::Instant::now()));
                    let _ = tokio::time::timeout(nap, notified).await;
                }
            }
        }
    }

    /// The answer to a duplicate of a completed request: its stored response replayed, or,
    /// where the provider answers a repeated key with the resource's latest state rather than
    /// a copy, the request forwarded under the same key so nothing executes twice. A duplicate
    /// that waited for the first request takes that request's answer instead: it is the
    /// latest state, and asking again would only spend the rate limit.
    fn answer_from_record(
        &self,
        spec: KeyedRoute<'_>,
        m: &IdempotencyMetrics,
        choice: KeyChoice,
        response: StoredResponse,
        waited: bool,
    ) -> Admission {
        choice.count_join(m, spec.name);
        if !spec.profile.replays && !waited {
            return Admission::Forward {
                guard: None,
                injected: choice.shown,
            };
        }
        if waited {
            m.coalesced
                .with_label_values(&[spec.name, "replayed"])
                .inc();
        }
        m.replays.with_label_values(&[spec.name]).inc();
        Admission::Replay {
            response: replay(response, spec.profile),
            injected: choice.shown,
        }
    }

    /// One look at the store: claims `record` for `owner` until the deadline (and a margin),
    /// or reads who holds it. On a failure the claim may have been written all the same (a
    /// timeout after the store ran it): it is released, or it would hold the key until its
    /// lease ends.
    async fn try_claim(
        &self,
        m: &IdempotencyMetrics,
        record: Digest,
        print: Digest,
        owner: u128,
        deadline: tokio::time::Instant,
    ) -> Result<Claim, StoreError> {
        let now = self.now_ms();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let claim = ClaimRequest {
            key: &record,
            fingerprint: &print,
            owner,
            lease_until: after(now, left + LEASE_MARGIN),
            now,
        };
        let claimed = self.op(m, "claim", self.0.store.claim(claim)).await;
        if claimed.is_err() {
            let idem = self.clone();
            tokio::spawn(async move {
                let _ = idem.0.store.release(&record, owner).await;
            });
            self.forget(&record);
        }
        claimed
    }

    /// The guard of a key this request claimed, kept as long as the route's provider keeps it.
    fn guard(
        &self,
        record: Digest,
        owner: u128,
        spec: KeyedRoute<'_>,
        bound_until: Option<u64>,
    ) -> Guard {
        Guard {
            bound_until,
            owner: self.clone(),
            record,
            claim: owner,
            finished: false,
            profile: spec.profile,
            ttl: self.0.settings.ttl.unwrap_or(spec.key_window),
        }
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
