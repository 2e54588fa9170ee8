//! Where the resolver meets the request path: the journal entry a keyed POST gets before its
//! first attempt ([`open`]), and the re-send of a pending one through that same path
//! ([`resend`]), which skips the journal since the resolver keeps the entry itself.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use super::journal::Opening;
use super::{Entry, Journal, Payload, Ticket, Verdict};
use crate::config::{ResolverSpec, RouteSpec};
use crate::idempotency::fingerprint::{self, Digest};
use crate::proxy::ProxyState;

/// An open entry outlives its request's deadline by this much before it counts as abandoned
/// by a dead process.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Journals a keyed request (a method its route's profile keys, with a key) before its first
/// attempt. `print` is the request's fingerprint, as the idempotency layer computed it. A
/// journal failure is logged and the request goes on: the provider still deduplicates it,
/// only the resolver will not know.
pub async fn open(
    journal: &Journal,
    spec: &ResolverSpec,
    route: &RouteSpec,
    parts: &http::request::Parts,
    body: &Bytes,
    print: Digest,
) -> Option<Ticket> {
    let profile = route.profile;
    let scope = fingerprint::scope(&parts.headers, profile.scope_headers)?;
    let key = parts
        .headers
        .get(&profile.key_header)
        .filter(|k| !k.is_empty())?;
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let resend = spec.resends(&route.name);
    let entry = Entry::new(
        route.name.clone(),
        parts.method.to_string(),
        target.to_owned(),
        String::from_utf8_lossy(key.as_bytes()).into_owned(),
        print,
        resend,
    );
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
    match journal.open(id, opening).await {
        Ok(ticket) => Some(ticket),
        Err(e) => {
            tracing::warn!(route = route.name, error = %e, "could not journal a request; it will not be resolved if it ends unresolved");
            None
        }
    }
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
    let (forwarded, verdict) = proxy
        .dispatch(parts, Bytes::from(payload.body), route, deadline, true)
        .await;
    // A re-send is always judged; the fallback only satisfies the type.
    let verdict = verdict.unwrap_or_else(|| Verdict::Unknown("not judged".into()));
    (verdict, forwarded.attempts)
}
