//! The idempotency layer's handle: the store, its settings and clock, the health the
//! store's operations report, and the in-process wake-ups of duplicates waiting on a key.
//! Below the layer's steps (choosing a key, claiming it, finishing it), which all use it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::fingerprint::Digest;
use super::store::{Store, StoreError};
use super::{Clock, Settings};
use crate::metrics::IdempotencyMetrics;

/// The longest one store operation may take before it counts as failed and the route's
/// `on_store_error` applies.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);
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

    pub(super) fn waiter(&self, record: &Digest) -> Arc<Notify> {
        let mut map = self
            .0
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.entry(*record).or_default().clone()
    }

    /// Drops this request's interest in `record`'s wake-ups, removing the entry when nobody
    /// else waits on it, so answered duplicates leave nothing behind in the map.
    pub(super) fn forget(&self, record: &Digest) {
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
