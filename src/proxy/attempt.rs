//! One attempt, the unit the retry loop repeats: the gates of the route and its upstream,
//! then the upstream's client, then (only when the provider's profile needs it) a look at a
//! small error body to tell "still in progress" from other answers of the same status.
//!
//! Generic over the request body, so a buffered body (sent again on every attempt) and a
//! streamed upload (sent once) take the same way out.

use std::time::Duration;

use http::{Request, Response};
use http_body_util::{BodyExt, Limited};
use tower::retry::budget::TpsBudget;

use super::{ProxyBody, ProxyState, full};
use crate::error::ProxyError;
use crate::headers;
use crate::journal::Ticket;
use crate::profile::Profile;
use crate::retry::{AttemptError, ProviderErrorCode};
use crate::route::RouteSpec;
use crate::upstream::{OutBody, Upstream};

/// The largest error body read to find the provider's error code (only the profile's
/// in-flight and rate-limit statuses need it).
const ERROR_PEEK_LIMIT: usize = 64 * 1024;

/// A turn at the gates must leave at least this share of the attempt timeout of the deadline
/// for the send itself (1 s of the shipped 20 s): an attempt granted with less would most
/// likely time out after sending, leaving its outcome unknown, where a refusal leaves nothing
/// sent.
const SEND_RESERVE: u32 = 20;

impl ProxyState {
    /// The retry budget of the upstream a request on `route` goes to.
    pub(super) fn budget(&self, route: &RouteSpec) -> Result<&TpsBudget, ProxyError> {
        // Routes are built with the upstreams they index; a miss would be payguard's bug.
        self.budgets
            .get(route.upstream)
            .map(|budget| &**budget)
            .ok_or(ProxyError::Internal)
    }

    /// An attempt's request: the app's method, target and headers (idempotency key
    /// included), and `body`. The upstream sends the target's path and query to its own
    /// origin ([`Upstream::send`]).
    pub(super) fn rebuild<B>(parts: &http::request::Parts, body: B) -> Request<B> {
        let mut attempt = Request::new(body);
        *attempt.method_mut() = parts.method.clone();
        *attempt.uri_mut() = parts.uri.clone();
        *attempt.headers_mut() = parts.headers.clone();
        attempt
    }

    /// One attempt through the gates of `route` and its upstream: breakers admit it and
    /// limiters grant it a send time, queueing as long as the request's `deadline` allows
    /// (less a [`SEND_RESERVE`]th of the attempt timeout); then its journal `ticket` (if any) is written, and it is sent,
    /// waiting at most `timeout` for the answer and never past the deadline.
    pub(super) async fn gated_attempt<B: OutBody>(
        &self,
        route: &RouteSpec,
        request: Request<B>,
        timeout: Duration,
        deadline: tokio::time::Instant,
        ticket: Option<&Ticket>,
    ) -> Result<Response<ProxyBody>, AttemptError> {
        let queue = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .saturating_sub(route.retry.attempt_timeout / SEND_RESERVE);
        let passage = self
            .gates
            .pass(&route.name, route.upstream, queue, &self.metrics.limits)
            .await
            .map_err(AttemptError::Refused)?;
        let Some(upstream) = self.upstreams.get(route.upstream) else {
            return Err(AttemptError::NotSent("no such upstream".into()));
        };
        if let Some(ticket) = ticket {
            ticket.before_send().await;
        }
        let left = timeout.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        let outcome = attempt(upstream, route.profile, request, left).await;
        passage.report(&outcome, route.profile);
        outcome
    }
}

/// One upstream attempt. The small error body of the profile's in-flight status is read when
/// its code decides (Stripe's 409 `idempotency_key_in_use` vs other conflicts); every other
/// body streams untouched.
async fn attempt<B: OutBody>(
    upstream: &Upstream,
    profile: &Profile,
    request: Request<B>,
    timeout: Duration,
) -> Result<Response<ProxyBody>, AttemptError> {
    let started = tokio::time::Instant::now();
    let response = upstream.send(request, timeout).await?;
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if !profile.needs_code(parts.status) {
        return Ok(Response::from_parts(parts, body.boxed()));
    }
    // The small error body is read within what is left of the attempt's timeout.
    let left = timeout.saturating_sub(started.elapsed());
    let bytes =
        match tokio::time::timeout(left, Limited::new(body, ERROR_PEEK_LIMIT).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) => return Err(AttemptError::Lost(format!("reading an error body: {e}"))),
            Err(_) => return Err(AttemptError::TimedOut(timeout)),
        };
    if let Some(code) = profile.error_code(&bytes) {
        parts.extensions.insert(ProviderErrorCode(code));
    }
    Ok(Response::from_parts(parts, full(bytes)))
}
