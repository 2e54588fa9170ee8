//! The provider's idempotency layer, as Stripe runs it (see `provider-semantics.md`); the
//! dialect (`dialect.rs`) decides only the scope and how a duplicate is answered.
//!
//! A key lives in a scope (for Stripe, API key plus `Stripe-Account`). The first request claims
//! it; while it executes, others with the key are told it is in use; once the endpoint has
//! started executing, its status and body (with its media type) are saved, failures included,
//! and later requests get them replayed. A claim dropped without saving (a validation failure,
//! a panic) frees the key again, which is how "validation failures are not saved" is enforced:
//! nothing is saved unless the endpoint says so. Keys are pruned once older than the window, lazily, oldest first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use tokio::time::Instant;

use super::reply::{Reply, Source};

/// Where a key lives: (scope, key).
type Slot = (String, String);

/// A saved first response.
#[derive(Clone, Debug)]
pub(crate) struct Saved {
    pub status: StatusCode,
    /// `application/json`, or the dialect's error media type.
    pub content_type: HeaderValue,
    pub body: Bytes,
}

impl Saved {
    /// The saved response as it was first sent, headers other than its media type aside.
    pub(crate) fn into_reply(self) -> Reply {
        Reply {
            status: self.status,
            headers: vec![(CONTENT_TYPE, self.content_type)],
            body: Source::Bytes(self.body),
        }
    }
}

/// What a request with a key should do.
pub(crate) enum Begin {
    /// The key is ours: execute, then save or drop the claim.
    Claimed(Claim),
    /// The first request finished: answer with its result.
    Replay(Saved),
    /// The first request is still executing.
    InUse,
    /// The key was used with another endpoint or other parameters.
    Mismatch,
}

pub(crate) struct IdempotencyStore {
    window: Duration,
    // A std Mutex: lookups and inserts are short and never await while holding it.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: HashMap<Slot, Record>,
    /// Claims in creation order, for pruning from the front. Entries whose record was since
    /// released or replaced are skipped when they reach the front.
    order: VecDeque<(Instant, Slot)>,
}

struct Record {
    fingerprint: String,
    created: Instant,
    saved: Option<Saved>,
}

impl IdempotencyStore {
    pub(crate) fn new(window: Duration) -> Arc<Self> {
        Arc::new(Self {
            window,
            inner: Mutex::default(),
        })
    }

    /// Looks the key up and claims it when it is free. `fingerprint` names the endpoint and
    /// its parameters; a different one under the same key is a mismatch.
    pub(crate) fn begin(self: &Arc<Self>, scope: &str, key: &str, fingerprint: String) -> Begin {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.prune(now, self.window);
        let slot = (scope.to_owned(), key.to_owned());
        if let Some(record) = inner.records.get(&slot) {
            return match (&record.saved, record.fingerprint == fingerprint) {
                (_, false) => Begin::Mismatch,
                (None, true) => Begin::InUse,
                (Some(saved), true) => Begin::Replay(saved.clone()),
            };
        }
        let record = Record {
            fingerprint,
            created: now,
            saved: None,
        };
        inner.records.insert(slot.clone(), record);
        inner.order.push_back((now, slot.clone()));
        Begin::Claimed(Claim {
            store: Arc::clone(self),
            slot,
            created: now,
            saved: false,
        })
    }

    /// How many keys are held, in flight or saved.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().records.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update below leaves the maps consistent at each step, so poison is harmless.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some((created, _)) = self.order.front() {
            if now.duration_since(*created) < window {
                break;
            }
            if let Some((created, slot)) = self.order.pop_front() {
                // Only remove the record this entry was made for, not a later claim of the key.
                if self
                    .records
                    .get(&slot)
                    .is_some_and(|r| r.created == created)
                {
                    self.records.remove(&slot);
                }
            }
        }
    }
}

/// The right to execute under a key. Dropping it without [`Claim::save`] frees the key.
pub(crate) struct Claim {
    store: Arc<IdempotencyStore>,
    slot: Slot,
    created: Instant,
    saved: bool,
}

impl Claim {
    /// Saves the result for replay. Call once the endpoint has started executing.
    pub(crate) fn save(mut self, status: StatusCode, content_type: HeaderValue, body: Bytes) {
        let mut inner = self.store.lock();
        // A claim outlived by the window may have been pruned and the key claimed anew; that
        // newer record is not ours to fill.
        let ours = inner
            .records
            .get_mut(&self.slot)
            .filter(|r| r.created == self.created);
        if let Some(record) = ours {
            record.saved = Some(Saved {
                status,
                content_type,
                body,
            });
        }
        self.saved = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.saved {
            return;
        }
        let mut inner = self.store.lock();
        if inner
            .records
            .get(&self.slot)
            .is_some_and(|r| r.created == self.created)
        {
            inner.records.remove(&self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: HeaderValue = HeaderValue::from_static("application/json");

    fn claim(begin: Begin) -> Claim {
        match begin {
            Begin::Claimed(claim) => claim,
            _ => panic!("expected a claim"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn claim_in_use_replay_and_mismatch() {
        let store = IdempotencyStore::new(Duration::from_secs(60));
        let first = claim(store.begin("sk_a", "k", "POST /x a=1".into()));
        assert!(matches!(
            store.begin("sk_a", "k", "POST /x a=1".into()),
            Begin::InUse
        ));
        assert!(matches!(
            store.begin("sk_a", "k", "POST /x a=2".into()),
            Begin::Mismatch
        ));
        // Another scope does not see the key at all.
        drop(claim(store.begin("sk_b", "k", "POST /x a=1".into())));
        first.save(
            StatusCode::PAYMENT_REQUIRED,
            JSON,
            Bytes::from_static(b"{}"),
        );
        match store.begin("sk_a", "k", "POST /x a=1".into()) {
            Begin::Replay(saved) => assert_eq!(saved.status, 402),
            _ => panic!("expected a replay"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_claim_frees_the_key() {
        let store = IdempotencyStore::new(Duration::from_secs(60));
        drop(claim(store.begin("s", "k", "f".into())));
        assert_eq!(store.len(), 0);
        claim(store.begin("s", "k", "f".into())).save(StatusCode::OK, JSON, Bytes::new());
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_pruned_after_the_window() {
        let store = IdempotencyStore::new(Duration::from_secs(60));
        claim(store.begin("s", "k", "f".into())).save(StatusCode::OK, JSON, Bytes::new());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(matches!(
            store.begin("s", "k", "f".into()),
            Begin::Replay(_)
        ));
        tokio::time::advance(Duration::from_secs(1)).await;
        // Reused after pruning, the key starts a new request, even with other parameters.
        let again = claim(store.begin("s", "k", "g".into()));
        assert_eq!(store.len(), 1);
        drop(again);
        assert_eq!(store.len(), 0);
    }
}
