//! The admin listener: health, readiness, metrics, the retry report (`/stats`) and the
//! unresolved requests (`/unresolved`, see [`crate::resolver::admin`]), kept apart from the
//! proxy port so that probes and scrapes never queue behind payment traffic and the app cannot
//! reach them by accident through its Stripe base URL.
//!
//! Readiness is a latch: it is set once both listeners are bound and the upstream client is
//! built, and cleared when shutdown begins so that Kubernetes stops routing new work to a
//! draining pod while `/healthz` still says the process is alive. Readiness also fails while
//! the idempotency store is failing, and recovers when a store operation (at the latest the
//! periodic prune, or with Redis the probe each second) succeeds again.
//!
//! With state shared through Redis, a Redis outage hits every replica at once, so it does not
//! make them unready (that would take the whole app out of its Service): `/readyz` stays 200
//! and names what is degraded in its body. The exception is a store failing while some route
//! has `on_store_error = "closed"`: that replica would refuse those payments, so it is
//! reported not ready.
//!
//! Reads are open to whoever reaches the listener; writes (the resolver's give-up) are let
//! through only by [`access`]: with the configured bearer token, or on a loopback listener.

pub mod access;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;

use self::access::Access;
use crate::proxy::ProxyState;
use crate::reload::LiveState;

/// Whether payguard should receive traffic. Shared between the server and the admin handler.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Answers one admin request.
pub fn handle<B>(
    request: &Request<B>,
    state: &ProxyState,
    ready: &Readiness,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if !ready.is_ready() => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        "/readyz" => readiness(state),
        "/metrics" => {
            let mut response = text(StatusCode::OK, &state.metrics().render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/stats" => {
            let report = crate::stats::Report::from_metrics(state.metrics());
            // A report of plain numbers and strings always serialises.
            let body = serde_json::to_string_pretty(&report).unwrap_or_default();
            let mut response = text(StatusCode::OK, &body);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz, /metrics, /stats or /unresolved\n",
        ),
    }
}

/// Ready, degraded (ready, with what is failing in the body), or not ready.
fn readiness(state: &ProxyState) -> Response<Full<Bytes>> {
    let store_failing = !state.idempotency().healthy();
    if store_failing && state.store_blocks_readiness() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: idempotency store failing\n",
        );
    }
    let mut degraded = Vec::new();
    if store_failing {
        degraded.push("idempotency store failing (routes fail open: forwarding with keys)".into());
    }
    if state.idempotency().full() {
        degraded.push("idempotency store full (max_records): new keys go out without payguard's dedup, keyless requests on windowed routes are refused".into());
    }
    for limiter in state.gates().degraded() {
        degraded.push(format!(
            "rate limiter {limiter} cannot reach Redis (limiting locally at its fallback rate)"
        ));
    }
    match degraded.is_empty() {
        true => text(StatusCode::OK, "ready\n"),
        false => text(
            StatusCode::OK,
            &format!("ready, degraded: {}\n", degraded.join("; ")),
        ),
    }
}

/// `handle` in the shape hyper's `service_fn` wants, behind [`access`]'s rule for writes: a
/// refused write gets 401 before any handler sees it.
pub async fn serve<B>(
    request: Request<B>,
    state: LiveState,
    ready: Readiness,
    access: Arc<Access>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let refused = match Access::is_write(request.method()) {
        true => access.check(request.headers()).err(),
        false => None,
    };
    if let Some(refusal) = refused {
        // Why, never what was sent: the header may hold a token, right or nearly.
        let method = request.method();
        tracing::warn!(%method, reason = refusal.label(), "refused an admin write");
        let mut response = text(StatusCode::UNAUTHORIZED, refusal.message());
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"payguard admin\""),
        );
        return Ok(response);
    }
    let current = state.load_full();
    if let Some(response) = crate::resolver::admin::handle(&request, &current).await {
        return Ok(response);
    }
    Ok(handle(&request, &current, &ready))
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
