//! Intake: the journal entry a keyed POST gets before its first attempt.

use std::time::Duration;

use bytes::Bytes;
use http::Method;

use super::journal::Opening;
use super::{Entry, Journal, Payload, State, Ticket};
use crate::config::{ResolverSpec, RouteSpec};
use crate::idempotency::fingerprint;

/// An open entry outlives its request's deadline by this much before it counts as abandoned
/// by a dead process.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Journals a keyed POST before its first attempt. A journal failure is logged and the
/// request goes on: the provider still deduplicates it, only the resolver will not know.
pub async fn open(
    journal: &Journal,
    spec: &ResolverSpec,
    route: &RouteSpec,
    parts: &http::request::Parts,
    body: &Bytes,
) -> Option<Ticket> {
    if parts.method != Method::POST {
        return None;
    }
    let scope = fingerprint::scope(&parts.headers)?;
    let key = parts
        .headers
        .get("idempotency-key")
        .filter(|k| !k.is_empty())?;
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let resend = spec.resends(&route.name);
    let entry = Entry {
        route: route.name.clone(),
        method: parts.method.to_string(),
        target: target.to_owned(),
        key: String::from_utf8_lossy(key.as_bytes()).into_owned(),
        fingerprint: fingerprint::fingerprint(&parts.method, target, body),
        created_ms: 0,
        updated_ms: 0,
        attempts: 0,
        rounds: 0,
        last_error: None,
        state: State::Pending { next_at: 0 },
        resend,
        was_pending: false,
        payload: None,
        sealed: false,
    };
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
