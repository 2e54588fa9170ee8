//! The journal ticket a keyed POST gets ([`prepare`], written before its first attempt
//! leaves), and with it the one decision of whether payguard may ever re-send it.
//!
//! Whether payguard may re-send a request on its own is decided here, once. Re-sending is
//! safe only if the app cannot also pay again under a new key meanwhile (an app that was told
//! "failed" often does): the provider would execute both. So by default a route re-sends
//! only requests covered by a duplicate window across keys (`dedup_across_keys`), which turns
//! such a new-key retry into a retry of this entry's key, and only until that window closes.
//! Everything else is recorded and reported, never executed. `[route.resolver] enabled`
//! overrides this for a route whose app is known to retry only under the same key.

use std::time::Duration;

use bytes::Bytes;

use super::{Entry, Journal, Opening, Payload, Ticket};
use crate::idempotency::{RequestIdentity, fingerprint};
use crate::route::RouteSpec;

/// An open entry outlives its request's deadline by this much before it counts as abandoned
/// by a dead process.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// The ticket of a keyed request (a method its route's profile keys, with a key), written
/// when its first attempt is about to leave. `identity` is the request's, as the idempotency
/// layer used it. `resends` is the resolver's rule for the route (`[resolver]` and the
/// route's override): whether it re-sends an entry, given whether a duplicate window across
/// keys covers it. `bound_until` is when the idempotency layer's binding of the request's
/// identity ends, if it made one ([`crate::idempotency::Guard::bound_until`]).
pub fn prepare(
    journal: &Journal,
    resends: impl FnOnce(bool) -> bool,
    route: &RouteSpec,
    parts: &http::request::Parts,
    body: &Bytes,
    identity: &RequestIdentity,
    bound_until: Option<u64>,
) -> Option<Ticket> {
    let profile = route.profile;
    let (scope, print) = (identity.scope?, identity.fingerprint);
    let key = parts
        .headers
        .get(&profile.key_header)
        .filter(|k| !k.is_empty())?;
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    // Until when a new-key retry of this request would join it instead of paying again: as
    // long as the idempotency layer's binding lasts, when it made one and the route joins
    // requests across keys; never longer.
    let window_until = bound_until.filter(|_| route.idempotency.dedup_across_keys);
    let resend = resends(window_until.is_some());
    let mut entry = Entry::new(
        route.name.clone(),
        parts.method.to_string(),
        target.to_owned(),
        String::from_utf8_lossy(key.as_bytes()).into_owned(),
        print,
        resend,
    );
    entry.window_until = window_until;
    // Only what a re-send needs is kept, and only when the route re-sends.
    let payload = resend.then(|| Payload {
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
    });
    let opening = Opening {
        entry,
        payload,
        lease: route.retry.deadline + LEASE_MARGIN,
    };
    let id = fingerprint::record_key(&scope, key.as_bytes());
    Some(Ticket::new(journal.clone(), id, opening))
}
