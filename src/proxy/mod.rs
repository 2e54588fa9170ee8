//! The request path, top to bottom.
//!
//! 1. Match the request to a route (or the default route), which brings its policies.
//! 2. Refuse what payguard must never forward: CONNECT, absolute-form requests naming another
//!    host, bodies over the buffer limit ([`crate::inbound`]). Nothing reaches the upstream.
//!    The route names the upstream (and with it the provider profile) the request goes to.
//! 3. Buffer the body (bounded), so every attempt can send it again. A larger upload, on a
//!    route that allows one, streams through instead, with one attempt ([`stream`]).
//! 4. Idempotency ([`crate::idempotency`]): inject a key when missing; replay a completed key,
//!    join one in flight, refuse a mismatch, or claim it.
//! 5. Attempt, classify, back off and attempt again, within the route's attempts and deadline
//!    and the upstream's retry budget ([`crate::retry`]). Every attempt first passes the
//!    circuit breakers and rate limiters ([`crate::gate`]).
//! 6. Store the final response under the claimed key, stream it back with `Payguard-Attempts`
//!    (and `Payguard-Idempotency-Key` when payguard chose the key), and count and log the
//!    outcome: one line per request, never headers or bodies.
//!
//! Keyed POSTs are journaled around step 5 ([`crate::resolver`]): an entry is written when
//! the first attempt is about to leave and settled once the answer has reached the app, so a
//! request left in doubt is re-sent later by the resolver, through this same path
//! ([`ProxyState::resend`]), where its route allows.
//!
//! Failures travel as [`ProxyError`] and become responses in exactly one place, at the end of
//! [`ProxyState::handle`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tower::retry::budget::TpsBudget;

use crate::config::ResolverSpec;
use crate::error::ProxyError;
use crate::gate::Gates;
use crate::headers;
use crate::idempotency::Idempotency;
use crate::inbound::{declared_length, read_body, refuse_foreign_target};
use crate::journal::Journal;
use crate::journal::webhook::Webhook;
use crate::load::Load;
use crate::metrics::{Metrics, Origin};
use crate::retry::Jitter;
use crate::route::RouteSpec;
use crate::shared::RedisPool;
use crate::upstream::Upstream;

use crate::body::attempts_value;
pub use crate::body::{PAYGUARD_ATTEMPTS, PAYGUARD_IDEMPOTENCY_KEY, ProxyBody, full};

mod attempt;
mod dispatch;
mod routes;
mod settle;
mod state;
mod stream;

pub use routes::Routed;
use routes::Routes;

/// What the request path needs, shared by every connection behind an `Arc`.
pub struct ProxyState {
    routes: Routes,
    /// One client and one retry budget per configured upstream, in the config's order:
    /// routes point in by index.
    upstreams: Vec<Upstream>,
    budgets: Vec<Arc<TpsBudget>>,
    /// Kept across config reloads, so counters continue.
    metrics: Arc<Metrics>,
    jitter: Jitter,
    idempotency: Idempotency,
    gates: Arc<Gates>,
    max_body: usize,
    /// The bound on requests in flight and their buffered bytes; kept across reloads.
    load: Arc<Load>,
    /// Kept across reloads, like the store it shares a file with.
    journal: Journal,
    resolver: ResolverSpec,
    webhook: Option<Arc<Webhook>>,
    /// The Redis shared with other replicas, when configured; kept across reloads.
    redis: Option<Arc<RedisPool>>,
    /// The PostgreSQL pool of the store and journal, with that store; kept across reloads.
    postgres: Option<Arc<crate::idempotency::postgres::PgPool>>,
    /// Whether the store is shared by replicas (Redis, PostgreSQL); fixed at start.
    store_shared: bool,
    /// Whether any route answers 503 when the store fails.
    fails_closed: bool,
}

/// How a request ended, before it becomes a response.
pub(crate) struct Forwarded {
    result: Result<Response<ProxyBody>, ProxyError>,
    pub(crate) attempts: u32,
    injected: Option<HeaderValue>,
    origin: Origin,
}

impl Forwarded {
    /// The end of a request that went through the attempts, `attempts` of which left.
    fn answered(
        result: Result<Response<ProxyBody>, ProxyError>,
        attempts: u32,
        injected: Option<HeaderValue>,
    ) -> Forwarded {
        Forwarded {
            result,
            attempts,
            injected,
            // Refused by a gate before any attempt left: payguard's own answer.
            origin: match attempts {
                0 => Origin::Payguard,
                _ => Origin::Upstream,
            },
        }
    }

    /// The end of a request whose attempts' outcome is its answer, as it is: nothing stored
    /// or settled after them.
    fn outcome(finished: crate::retry::Finished<ProxyBody>, injected: Option<HeaderValue>) -> Self {
        let result = finished.outcome.map_err(ProxyError::from);
        Forwarded::answered(result, finished.attempts, injected)
    }

    fn refused(e: ProxyError) -> Forwarded {
        Forwarded {
            result: Err(e),
            attempts: 0,
            injected: None,
            origin: Origin::Payguard,
        }
    }
}

impl ProxyState {
    /// Handles one request received on a connection whose local address is `local`.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        local: SocketAddr,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let _in_flight = self.metrics.start();
        let route = self.routes.lookup(request.method(), request.uri().path());
        let method = request.method().clone();
        // For the request line: a shared clone of the parsed target, not a copy of its path.
        let target = request.uri().clone();

        // Held until the answer is built: the body stays buffered for every attempt till then.
        let held = self.load.admit(self.reserved(&request, &route));
        self.metrics.limits.buffered(self.load.buffered());
        let forwarded = match (&held, refuse_foreign_target(&request, local)) {
            (Err(bound), _) => {
                self.metrics.limits.overloaded(*bound);
                Forwarded::refused(ProxyError::Overloaded(*bound))
            }
            // Boxed: the future of the whole request path is kilobytes, and hyper's, tower's
            // and the panic guard's wrappers each move this request's future before it first
            // runs; boxed, they move a pointer (callgrind: memcpy was the costliest call).
            (Ok(_), Ok(())) => Box::pin(self.forward(request, route)).await,
            (Ok(_), Err(e)) => Forwarded::refused(e),
        };
        drop(held);
        self.metrics.limits.buffered(self.load.buffered());
        let (attempts, origin) = (forwarded.attempts, forwarded.origin);
        let mut response = forwarded.result.unwrap_or_else(|err| {
            tracing::warn!(route = route.name, %method, path = target.path(), attempts, error = %err, "payguard answered with an error");
            err.into_response(route.profile)
        });
        let headers = response.headers_mut();
        headers.insert(PAYGUARD_ATTEMPTS, attempts_value(attempts));
        if let Some(key) = forwarded.injected {
            headers.insert(PAYGUARD_IDEMPOTENCY_KEY, key);
        }
        let elapsed = started.elapsed();
        let status = response.status();
        route.series().observe(status, origin, elapsed);
        if attempts > 0 {
            route.series().result(status, attempts);
        }
        // The request line, under its own target: it is the one line written in batches
        // (`crate::telemetry`), and `RUST_LOG=payguard::access=off` turns it off alone.
        tracing::info!(
            target: crate::telemetry::ACCESS,
            route = route.name,
            %method,
            path = target.path(),
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            attempts,
            "request"
        );
        response
    }

    /// The bytes a request's body may take in payguard's buffer: its declared length, or the
    /// most it may buffer when it streams one of unknown length; nothing for a request
    /// without a body, or an upload its route streams through unbuffered.
    fn reserved<B>(&self, request: &Request<B>, route: &RouteSpec) -> usize {
        let headers = request.headers();
        let max = self.max_body as u64;
        match declared_length(headers) {
            Some(length) if length > max && route.max_upload.is_some() => 0,
            Some(length) => usize::try_from(length.min(max)).unwrap_or(self.max_body),
            None if headers.contains_key(http::header::TRANSFER_ENCODING) => self.max_body,
            None => 0,
        }
    }

    async fn forward(&self, request: Request<Incoming>, route: Routed<'_>) -> Forwarded {
        let (mut parts, body) = request.into_parts();
        // One deadline for the whole request, from its arrival: reading the body, waiting for
        // a duplicate, attempts, backoff and storing the response all count against it. So a
        // client trickling its body cannot hold a connection for longer than that either.
        let deadline = tokio::time::Instant::now() + route.retry.deadline;
        if let Some(limit) = route.max_upload {
            let length = declared_length(&parts.headers);
            if length.is_some_and(|l| l > self.max_body as u64) {
                headers::for_upstream(&mut parts.headers);
                // Boxed: a streamed upload is rare, and its future would otherwise make every
                // request's future larger.
                return Box::pin(self.stream(parts, body, route, deadline, limit)).await;
            }
        }
        let body =
            match tokio::time::timeout_at(deadline, read_body(&parts.headers, body, self.max_body))
                .await
            {
                Ok(Ok(body)) => body,
                Ok(Err(e)) => return Forwarded::refused(e),
                Err(_) => return Forwarded::refused(ProxyError::BodyTimeout(route.retry.deadline)),
            };
        headers::for_upstream(&mut parts.headers);
        self.dispatch(parts, body, route, deadline).await
    }
}
