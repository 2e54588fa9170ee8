//! Idempotency: keys injected when missing, duplicates coalesced, results replayed, and the
//! provider's rules applied before a request ever leaves.
//!
//! The provider already deduplicates by its key header (Stripe's `Idempotency-Key`; each
//! route's provider profile, [`crate::profile`], names the header, the keyed methods, the
//! tenant headers and the answers spelled below in Stripe's terms); payguard does three things
//! it cannot:
//!
//! - it gives every POST a key (when the route injects), the same on every attempt, so its own
//!   retries are safe, and returns the key in `Payguard-Idempotency-Key` for reconciliation;
//! - it answers duplicates itself: a completed key is replayed from the store, a key still in
//!   flight is joined (the duplicate waits for the first request's result, within
//!   `coalesce_wait`), a key reused for another request is refused, all without spending the
//!   provider's rate limit;
//! - on routes with a `dedup_window`, it treats a keyless request identical to a recent one as
//!   a retry of it, by binding the request's identity to the key it was first sent under;
//!   with `dedup_across_keys`, a request under a new key too ([`keys`]).
//!
//! What is stored (Stripe's rules; a profile lists the statuses its provider does not keep):
//! 2xx responses, and 4xx the provider itself saves under the key (402, 404, 422...). Not stored, so the app may try again: 400 (a validation failure may be corrected
//! and resent under the same key), 401/403, 409 and 429 (never saved by the provider), 5xx and
//! outcome-unknown failures (the provider's own record, if any, is the authority), and bodies
//! without a `Content-Length` or larger than `max_stored_body_bytes`.

pub mod conformance;
pub mod embedded;
pub mod fingerprint;
mod guard;
mod handle;
pub mod identity;
mod keys;
mod layer;
pub mod memory;
pub mod postgres;
pub mod redis;
pub mod store;
pub mod writer;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

use crate::profile::Profile;

pub use guard::{Admission, Guard};
pub use handle::Idempotency;
pub use identity::RequestIdentity;
pub use store::{Store, StoreError, StoredResponse};

/// What to do when the store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Forward the request with its key: the provider still deduplicates by key.
    Open,
    /// Answer 503 without sending anything.
    Closed,
}

/// A route's idempotency behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    /// Give keyless POSTs a key.
    pub inject: bool,
    /// Treat a keyless request identical to one within this window (same tenant, method,
    /// target and body) as its retry: it takes the first one's key.
    pub dedup_window: Option<Duration>,
    /// Within the window, a request under another key is that request's retry too (the
    /// article's `refund_<order>_<timestamp>` keys): it joins or replays the first one.
    pub dedup_across_keys: bool,
    /// The window covers only bodies carrying this form parameter (`metadata` matches
    /// `metadata[order_id]=...`): an order id makes identical bodies one payment, where two
    /// identical bodies without one may be two purchases.
    pub dedup_when_param: Option<String>,
    pub on_store_error: FailMode,
}

/// What the idempotency layer and the journal need of a request's route, as the route table
/// hands it down ([`crate::route::RouteSpec::keyed`]): they sit below routing.
#[derive(Debug, Clone, Copy)]
pub struct KeyedRoute<'a> {
    /// The route's name, for metrics.
    pub name: &'a str,
    pub profile: &'static Profile,
    pub policy: &'a RoutePolicy,
    /// How long the provider keeps keys for the route's upstream.
    pub key_window: Duration,
}

/// Store-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long completed records are replayed; `None`: as long as the route's upstream
    /// keeps keys (its key window).
    pub ttl: Option<Duration>,
    /// How long a duplicate waits for the first request with its key before 409.
    pub coalesce_wait: Duration,
    /// Larger responses are relayed but not stored.
    pub max_stored_body: usize,
}

/// Milliseconds since the Unix epoch, advancing with tokio's clock.
///
/// Records outlive the process, so they hold wall-clock times; but tests pause tokio's clock,
/// and expiry should follow it. The clock reads the wall clock once and then adds tokio's
/// elapsed time, which is the wall clock in production and the paused clock in tests.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch_ms: u64,
    anchor: tokio::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Clock {
            epoch_ms,
            anchor: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.epoch_ms.saturating_add(elapsed)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Adds a duration to a millisecond timestamp.
pub fn after(now_ms: u64, d: Duration) -> u64 {
    now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A fresh key for a request that had none: 128 random bits, recognisable as payguard's.
pub fn new_key() -> String {
    format!("payguard-{:032x}", rand::rng().random::<u128>())
}
