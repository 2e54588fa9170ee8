//! The idempotency step of the request path: [`Idempotency::admit`] before the attempts, and
//! [`Guard::finish`] after them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Response};
use rand::Rng;
use tokio::sync::Notify;

use super::fingerprint::{self, Digest};
use super::guard::{Guard, replay};
use super::identity::RequestIdentity;
use super::keys::KeyChoice;
use super::store::{Claim, ClaimRequest, Store, StoreError};
use super::{Clock, FailMode, KeyedRoute, RoutePolicy, Settings, after};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::metrics::IdempotencyMetrics;

/// A claim outlives its request's deadline by this much, so a slow finish is not taken over.
const LEASE_MARGIN: Duration = Duration::from_secs(2);
/// The longest one store operation may take before it counts as failed and the route's
/// `on_store_error` applies.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// Waiters re-check the store this often even without a wake-up (another process may hold
/// the key once the store is shared).
const POLL: Duration = Duration::from_millis(50);

/// What to do with a request.
pub enum Admission {
    /// Send it upstream. With a guard, its result must be handed to [`Guard::finish`].
    Forward {
        guard: Option<Guard>,
        injected: Option<HeaderValue>,
    },
    /// Answer with this stored response, without contacting the provider. `injected` is the
    /// key payguard bound to a keyless request, so the app sees it on the replay too.
    Replay {
        response: Response<ProxyBody>,
        injected: Option<HeaderValue>,
    },
    /// Refuse it, without contacting the provider.
    Refuse(ProxyError),
}

pub(super) struct Inner {
    pub(super) store: Arc<dyn Store>,
    pub(super) settings: Settings,
    clock: Clock,
    /// Wakes duplicates waiting on a key in this process when its holder finishes.
    waiters: Mutex<HashMap<Digest, Arc<Notify>>>,
    healthy: AtomicBool,
    /// Set when the store refused a new record for being full, until one fits again.
    full: AtomicBool,
}

#[derive(Clone)]
pub struct Idempotency(pub(super) Arc<Inner>);

impl Idempotency {
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Idempotency {
        Idempotency(Arc::new(Inner {
            store,
            settings,
            clock: Clock::new(),
            waiters: Mutex::new(HashMap::new()),
            healthy: AtomicBool::new(true),
            full: AtomicBool::new(false),
        }))
    }

    /// False after a store operation failed, until one succeeds again; `/readyz` reports it.
    pub fn healthy(&self) -> bool {
        self.0.healthy.load(Ordering::Relaxed)
    }

    /// True after the store refused a new record for being full, until a new one fits; while
    /// it lasts new keys go out without payguard's dedup, and keyless requests on windowed
    /// routes are refused. `/readyz` reports it.
    pub fn full(&self) -> bool {
        self.0.full.load(Ordering::Relaxed)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    pub fn now_ms(&self) -> u64 {
        self.0.clock.now_ms()
    }

    /// Times a store operation and records its health.
    pub(super) async fn op<T>(
        &self,
        m: &IdempotencyMetrics,
        name: &str,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        // Every backend gets the same bound: a hung disk under the embedded store must not
        // hold requests for ever any more than a slow Redis (which has its own, shorter one).
        let result = match tokio::time::timeout(STORE_TIMEOUT, f).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Backend(format!(
                "no answer within {STORE_TIMEOUT:?}"
            ))),
        };
        m.store_op(name, started.elapsed(), result.is_ok());
        // A full store is working as configured (new keys go out undeduplicated until the
        // prune makes room); only a failing backend makes payguard unready.
        // One log line when the store's health changes, not one per request: an outage would
        // otherwise flood the log at the request rate.
        match &result {
            Err(e @ StoreError::Backend(_)) => {
                if self.0.healthy.swap(false, Ordering::Relaxed) {
                    m.store_healthy.set(0);
                    tracing::warn!(op = name, error = %e, "idempotency store failing; routes follow their on_store_error");
                }
            }
            _ => {
                if !self.0.healthy.swap(true, Ordering::Relaxed) {
                    m.store_healthy.set(1);
                    tracing::info!(op = name, "idempotency store answers again");
                }
            }
        }
        match &result {
            Err(e @ StoreError::Full(_)) if !self.0.full.swap(true, Ordering::Relaxed) => {
                m.store_full.set(1);
                tracing::warn!(op = name, error = %e, "idempotency store full: new keys go out without payguard's dedup until records expire");
            }
            // A claim or binding written: there is room again.
            Ok(_)
                if matches!(name, "claim" | "bind")
                    && self.0.full.swap(false, Ordering::Relaxed) =>
            {
                m.store_full.set(0);
                tracing::info!("idempotency store has room again");
            }
            _ => {}
        }
        result
    }

    /// Decides a request's fate before any attempt. May add a key (in the header of the
    /// route's provider profile) to `headers`, or replace the app's with the key of an
    /// identical earlier request ([`super::keys`]).
    ///
    /// `identity` is the request's [`RequestIdentity`], computed once by the caller for the
    /// methods the route's profile keys, and `None` for the others: those are forwarded
    /// untouched.
    pub async fn admit(
        &self,
        spec: KeyedRoute<'_>,
        m: &IdempotencyMetrics,
        headers: &mut HeaderMap,
        identity: Option<&RequestIdentity>,
        deadline: tokio::time::Instant,
    ) -> Admission {
        // Keys are for the methods the provider keys (POST; GET and DELETE are idempotent by
        // definition: no identity), and a request without credentials will be refused by the
        // provider: nothing to deduplicate.
        let Some((scope, print)) = identity.and_then(|i| Some((i.scope?, i.fingerprint))) else {
            return Admission::Forward {
                guard: None,
                injected: None,
            };
        };
        let windowed = identity.is_some_and(|i| i.windowed);
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
        let (route, profile) = (spec.name, spec.profile);
        let owner = rand::rng().random::<u128>();
        let wait_until =
            (tokio::time::Instant::now() + self.0.settings.coalesce_wait).min(deadline);
        let mut waited = false;
        loop {
            let record = fingerprint::record_key(&scope, choice.key.as_bytes());
            let now = self.now_ms();
            let claim = ClaimRequest {
                key: &record,
                fingerprint: &print,
                owner,
                lease_until: after(
                    now,
                    deadline.saturating_duration_since(tokio::time::Instant::now()) + LEASE_MARGIN,
                ),
                now,
            };
            // Register for the wake-up before looking, so a finish between the look and the
            // wait is not missed.
            let notify = self.waiter(&record);
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let claim = match self.op(m, "claim", self.0.store.claim(claim)).await {
                Ok(claim) => claim,
                Err(e) => {
                    // The claim may have been written all the same (a timeout after the store
                    // ran it): release it, or it would hold the key until its lease ends.
                    let (idem, record) = (self.clone(), record);
                    tokio::spawn(async move {
                        let _ = idem.0.store.release(&record, owner).await;
                    });
                    self.forget(&record);
                    return self.degrade(spec.policy, e, choice.shown);
                }
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
                    let guard = Guard {
                        owner: self.clone(),
                        record,
                        claim: owner,
                        finished: false,
                        profile,
                        ttl: self.0.settings.ttl.unwrap_or(spec.key_window),
                    };
                    return Admission::Forward {
                        guard: Some(guard),
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
                // The provider answers a repeated key with the resource's latest state, not a
                // copy: ask it, under the same key, so nothing executes twice. A duplicate that
                // waited for the first request takes that request's answer below instead: it
                // is the latest state, and asking again would only spend the rate limit.
                Claim::Completed { .. } if !profile.replays && !waited => {
                    self.forget(&record);
                    choice.count_join(m, route);
                    return Admission::Forward {
                        guard: None,
                        injected: choice.shown,
                    };
                }
                Claim::Completed { response, .. } => {
                    coalesced("replayed");
                    choice.count_join(m, route);
                    m.replays.with_label_values(&[route]).inc();
                    self.forget(&record);
                    return Admission::Replay {
                        response: replay(response, profile),
                        injected: choice.shown,
                    };
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

    /// Removes expired records and updates the records gauge. Run periodically; also serves
    /// as the store's health probe, so readiness recovers once the store does.
    pub async fn prune(&self, m: &IdempotencyMetrics) {
        let now = self.now_ms();
        let removed = self.op(m, "prune", self.0.store.prune(now)).await;
        if let Ok(removed @ 1..) = removed {
            tracing::debug!(removed, "pruned expired idempotency records");
        }
        if let Ok(count) = self.op(m, "count", self.0.store.count()).await {
            m.records.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Checks that the store answers: `check` (a backend's own, e.g. that Redis is not a
    /// cluster node), then a `count`. Updates health like any operation, so readiness and the
    /// health gauge follow the store even while no request arrives.
    pub async fn probe(
        &self,
        m: &IdempotencyMetrics,
        check: impl Future<Output = Result<(), StoreError>>,
    ) {
        let probe = async {
            check.await?;
            self.0.store.count().await.map(drop)
        };
        let _ = self.op(m, "probe", probe).await;
    }

    pub(super) fn degrade(
        &self,
        policy: &RoutePolicy,
        e: StoreError,
        injected: Option<HeaderValue>,
    ) -> Admission {
        match policy.on_store_error {
            FailMode::Open => Admission::Forward {
                guard: None,
                injected,
            },
            FailMode::Closed => Admission::Refuse(ProxyError::StoreUnavailable(e.to_string())),
        }
    }

    fn waiter(&self, record: &Digest) -> Arc<Notify> {
        let mut map = self
            .0
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(*record).or_default().clone()
    }

    /// Drops this request's interest in `record`'s wake-ups, removing the entry when nobody
    /// else waits on it, so answered duplicates leave nothing behind in the map.
    fn forget(&self, record: &Digest) {
        let mut map = self
            .0
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's own reference plus the caller's: nobody else is waiting.
        if map.get(record).is_some_and(|n| Arc::strong_count(n) <= 2) {
            map.remove(record);
        }
    }

    /// How many keys have waiters registered; for tests of the map's bound.
    #[cfg(test)]
    pub(crate) fn waiting_keys(&self) -> usize {
        self.0
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub(super) fn wake(&self, record: &Digest) {
        let notify = self
            .0
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(record);
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
