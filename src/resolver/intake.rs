//! Where the resolver meets the request path: the journal ticket a keyed POST gets
//! ([`prepare`], written before its first attempt leaves), and the re-send of a pending entry
//! through that same path ([`resend`]), which skips the journal since the resolver keeps the
//! entry itself.
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
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use super::journal::Opening;
use super::{Entry, Journal, Payload, Ticket, Verdict};
use crate::config::{ResolverSpec, RouteSpec};
use crate::idempotency::{RequestIdentity, after, fingerprint};
use crate::proxy::ProxyState;

/// An open entry outlives its request's deadline by this much before it counts as abandoned
/// by a dead process.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// The ticket of a keyed request (a method its route's profile keys, with a key), written
/// when its first attempt is about to leave. `identity` is the request's, as the idempotency
/// layer used it; `now_ms` the journal's clock.
pub fn prepare(
    journal: &Journal,
    spec: &ResolverSpec,
    route: &RouteSpec,
    parts: &http::request::Parts,
    body: &Bytes,
    identity: &RequestIdentity,
) -> Option<Ticket> {
    let profile = route.profile;
    let (scope, print) = (identity.scope?, identity.fingerprint);
    let key = parts
        .headers
        .get(&profile.key_header)
        .filter(|k| !k.is_empty())?;
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let policy = &route.idempotency;
    // Until when a new-key retry of this request would join it instead of paying again.
    let window = policy
        .dedup_window
        .filter(|_| identity.windowed && policy.dedup_across_keys);
    let resend = spec.resends(&route.name, window.is_some());
    let mut entry = Entry::new(
        route.name.clone(),
        parts.method.to_string(),
        target.to_owned(),
        String::from_utf8_lossy(key.as_bytes()).into_owned(),
        print,
        resend,
    );
    entry.window_until = window.map(|w| after(journal.now_ms(), w));
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
    Some(journal.ticket(id, opening))
}

/// Re-sends a journaled request through the whole request path (idempotency layer,
/// gates, retries), without journaling it again. Returns its verdict and attempts.
pub async fn resend(
    proxy: &ProxyState,
    method: Method,
    target: &str,
    payload: Payload,
) -> (Verdict, u32) {
    let mut request = Request::new(());
    *request.method_mut() = method;
    match target.parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(e) => return (Verdict::Unknown(format!("bad stored target: {e}")), 0),
    }
    let mut headers = HeaderMap::new();
    for (name, value) in payload.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    *request.headers_mut() = headers;
    let (parts, ()) = request.into_parts();
    let route = proxy.route(&parts.method, parts.uri.path());
    // A re-send gets the route's whole deadline, as a request arriving now would.
    let deadline = tokio::time::Instant::now() + route.retry.deadline;
    proxy
        .resend(parts, Bytes::from(payload.body), route, deadline)
        .await
}
