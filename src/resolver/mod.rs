//! Requests in limbo: what payguard does about requests that ended without a definitive answer.
//!
//! A POST that was sent (or may have been) and got no definitive answer (every attempt lost
//! or timed out, a 5xx, the deadline, payguard stopping or crashing mid-request) may or may
//! not have charged the customer. The provider knows; the app does not. payguard keeps a
//! durable journal of such requests beside the idempotency records ([`crate::journal`], below
//! the request path); this module, above it, acts on that journal:
//!
//! 1. when the first attempt of a keyed POST has passed the gates and is about to leave, an
//!    **open** entry is written durably: scope, key, route, method, path, a body fingerprint,
//!    and the payload needed to re-send (headers and body, sealed with AES-256-GCM when a key
//!    is configured, see [`crate::journal::seal`]). A request abandoned while it queued writes nothing;
//! 2. a definitive answer deletes it once the answer, body included, has reached the app:
//!    the common case leaves nothing behind. So does a request whose attempts never left;
//! 3. a request that ends in doubt marks it **pending**: the app was told "outcome unknown,
//!    retry with the same key" ([`crate::retry::outcome`]), or hung up after it was sent. An
//!    open entry whose lease ran out (its process died) counts as pending too;
//! 4. the background [`task`] re-sends each due pending entry that may be re-sent
//!    ([`crate::journal::open`]: one a duplicate window covers across keys, by default)
//!    through the request path's one entry point for it ([`resend`]: limiter, breaker,
//!    retries, idempotency layer, not the journal), under the same key and
//!    scope, until the provider answers definitively (**resolved**: the answer is stored, so
//!    the app's next retry with the key is replayed without a provider call), the key window
//!    or the duplicate window nears its end, or an operator gives up (**gave up**). Others are
//!    listed until a human gives up on them. Finished entries drop their payload at once and
//!    stay listed as a summary for `keep_finished`.
//!
//! Operators see the journal through [`report`] (`payguard unresolved`, `GET /unresolved`),
//! give up through [`admin`], and may be notified of every finished entry by the journal's
//! webhook ([`crate::journal::webhook`]).
//!
//! The schedule of re-sends is a plain function ([`task::backoff`]), tested without sockets.

pub mod admin;
pub mod report;
mod resend;
pub mod task;

pub use resend::resend;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::report::Listing;
    use super::task::backoff;
    use crate::journal::memory::MemoryJournal;
    use crate::journal::seal::Sealer;
    use crate::journal::{Journal, conformance};

    /// The listing of the journal the lifecycle leaves: no payload, no query string,
    /// unresolved first.
    #[tokio::test]
    async fn the_listing_shows_no_secret_and_orders_unresolved_first() {
        let journal = Journal::new(Arc::new(MemoryJournal::new(100)), Sealer::new(None));
        conformance::lifecycle(journal.clone()).await;
        let listing = Listing::new(&journal.list().await.unwrap(), journal.now_ms());
        let json = serde_json::to_string(&listing).unwrap();
        assert!(!json.contains("sk_test") && !json.contains("amount") && !json.contains("expand"));
        assert_eq!(listing.entries.last().unwrap().state, "resolved");
        assert!(listing.table().contains("report only"));
    }

    #[test]
    fn resolver_backoff_doubles_up_to_its_cap() {
        let (base, max) = (Duration::from_secs(30), Duration::from_secs(300));
        let waits: Vec<u64> = (1..=6).map(|r| backoff(base, max, r).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300]);
        assert_eq!(backoff(base, max, 1000), max);
    }
}
