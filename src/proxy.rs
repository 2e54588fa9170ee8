//! The request path, top to bottom.
//!
//! 1. Match the request to a route (or the default route), which brings its retry policy.
//! 2. Refuse what payguard must never forward: CONNECT, absolute-form requests naming another
//!    host, bodies over the buffer limit. Nothing reaches the upstream in those cases.
//! 3. Buffer the body (bounded), so every attempt can send it again.
//! 4. Rewrite the target to the configured upstream and strip hop-by-hop headers.
//! 5. Attempt, classify, back off and attempt again, within the route's attempts and deadline
//!    and the upstream's retry budget (see [`crate::retry`]).
//! 6. Stream the final response back with `Payguard-Attempts`, and count and log the outcome:
//!    one line per request, never headers or bodies.
//!
//! Failures travel as [`ProxyError`] and become responses in exactly one place, at the end of
//! [`ProxyState::handle`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use tower::retry::budget::TpsBudget;

use crate::config::Config;
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::{Metrics, Origin};
use crate::retry::{self, AttemptError, Jitter, ProviderErrorCode};
use crate::route::RouteTable;
use crate::upstream::Upstream;

/// The body of every response payguard returns: the provider's streamed through, or its own.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Header on every response: how many upstream attempts the request took (0 when payguard
/// refused it before sending anything).
pub const PAYGUARD_ATTEMPTS: &str = "payguard-attempts";

/// The largest error body read to find the provider's error code (only 409s need it).
const ERROR_PEEK_LIMIT: usize = 64 * 1024;

/// What the request path needs, shared by every connection behind an `Arc`.
pub struct ProxyState {
    routes: RouteTable,
    upstream: Upstream,
    metrics: Metrics,
    budget: TpsBudget,
    jitter: Jitter,
    max_body: usize,
}

impl ProxyState {
    pub fn new(config: &Config) -> anyhow::Result<ProxyState> {
        let routes = RouteTable::new(config.routes.clone(), config.default_retry.clone());
        let metrics = Metrics::new(routes.names())?;
        let b = config.retry_budget;
        Ok(ProxyState {
            upstream: Upstream::new(&config.upstream)?,
            routes,
            metrics,
            budget: TpsBudget::new(b.window, b.min_per_second, b.ratio),
            jitter: config.jitter_seed.map_or(Jitter::Random, Jitter::seeded),
            max_body: config.max_request_body,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

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
        let path = request.uri().path().to_owned();

        let (mut response, attempts, origin) = match self.forward(request, local, route).await {
            Ok((response, attempts)) => (response, attempts, Origin::Upstream),
            Err((err, attempts)) => {
                tracing::warn!(route = route.name, %method, path, attempts, error = %err, "payguard answered with an error");
                (err.into_response(), attempts, Origin::Payguard)
            }
        };
        response
            .headers_mut()
            .insert(PAYGUARD_ATTEMPTS, HeaderValue::from(attempts));
        let elapsed = started.elapsed();
        let status = response.status();
        self.metrics.observe(&route.name, status, origin, elapsed);
        if attempts > 0 {
            self.metrics.result(&route.name, status, attempts);
        }
        tracing::info!(
            route = route.name,
            %method,
            path,
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            attempts,
            "request"
        );
        response
    }

    /// Returns the response and the number of attempts it took, or the error and the number of
    /// attempts made before payguard gave up.
    async fn forward(
        &self,
        request: Request<Incoming>,
        local: SocketAddr,
        route: &crate::config::RouteSpec,
    ) -> Result<(Response<ProxyBody>, u32), (ProxyError, u32)> {
        refuse_foreign_target(&request, local).map_err(|e| (e, 0))?;
        let (mut parts, body) = request.into_parts();
        let body = read_body(&parts.headers, body, self.max_body)
            .await
            .map_err(|e| (e, 0))?;

        headers::for_upstream(&mut parts.headers);
        let uri = self
            .upstream
            .uri_for(parts.uri.path_and_query())
            .map_err(|e| (ProxyError::BodyRead(format!("bad request target: {e}")), 0))?;
        let replay_safe = is_idempotent(&parts.method) || has_idempotency_key(&parts.headers);

        let observer = self.metrics.for_route(&route.name);
        let finished = retry::send_with_retries(
            &route.retry,
            replay_safe,
            &self.budget,
            &self.jitter,
            &observer,
            |timeout| {
                // Each attempt is built afresh from the buffered parts: same method, target,
                // headers (idempotency key included) and body bytes every time.
                let mut attempt = Request::new(body.clone());
                *attempt.method_mut() = parts.method.clone();
                *attempt.uri_mut() = uri.clone();
                *attempt.headers_mut() = parts.headers.clone();
                self.attempt(attempt, timeout)
            },
        )
        .await;
        match finished.outcome {
            Ok(response) => Ok((response, finished.attempts)),
            Err(e) => Err((ProxyError::from(e), finished.attempts)),
        }
    }

    /// One upstream attempt. A 409's small error body is read so the retry policy can tell
    /// `idempotency_key_in_use` from other conflicts; every other body streams untouched.
    async fn attempt(
        &self,
        request: Request<Bytes>,
        timeout: Duration,
    ) -> Result<Response<ProxyBody>, AttemptError> {
        let response = self.upstream.send(request, timeout).await?;
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        if parts.status != StatusCode::CONFLICT {
            return Ok(Response::from_parts(parts, body.boxed()));
        }
        let bytes = match Limited::new(body, ERROR_PEEK_LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return Err(AttemptError::Lost(format!("reading a 409 body: {e}"))),
        };
        if let Some(code) = error_code(&bytes) {
            parts.extensions.insert(ProviderErrorCode(code));
        }
        Ok(Response::from_parts(
            parts,
            Full::new(bytes).map_err(|never| match never {}).boxed(),
        ))
    }
}

/// Idempotent by definition (RFC 9110 9.2.2): repeating them has the effect of doing it once.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn has_idempotency_key(headers: &http::HeaderMap) -> bool {
    headers
        .get("idempotency-key")
        .is_some_and(|v| !v.is_empty())
}

/// The `error.code` of a Stripe-shaped error body, if it is one.
fn error_code(body: &[u8]) -> Option<String> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    json.get("error")?.get("code")?.as_str().map(str::to_owned)
}

/// payguard forwards only to its configured upstream. An absolute-form target is accepted only
/// when it names payguard itself (RFC 9112 says servers must accept that form); any other host
/// means someone is using payguard as a forward proxy, which it refuses.
fn refuse_foreign_target<B>(request: &Request<B>, local: SocketAddr) -> Result<(), ProxyError> {
    if request.method() == Method::CONNECT {
        return Err(ProxyError::Connect);
    }
    let Some(authority) = request.uri().authority() else {
        return Ok(());
    };
    // Absolute-form requests to payguard are plain http, so a missing port means 80.
    let port_matches = authority.port_u16().unwrap_or(80) == local.port();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let names_us = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == local.ip());
    if names_us && port_matches {
        Ok(())
    } else {
        Err(ProxyError::ForeignTarget(authority.to_string()))
    }
}

/// Reads the whole body, refusing it before reading a byte when `Content-Length` already says
/// it is too large, and as soon as the limit is crossed otherwise.
async fn read_body(
    headers: &http::HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, ProxyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ProxyError::BodyTooLarge { limit }),
        Err(e) => Err(ProxyError::BodyRead(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    #[test]
    fn forward_proxy_use_is_refused() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let ok = |m, u| refuse_foreign_target(&target(m, u), local).is_ok();
        assert!(ok(Method::GET, "/v1/charges"));
        assert!(ok(Method::GET, "http://127.0.0.1:8080/v1/charges"));
        assert!(ok(Method::GET, "http://localhost:8080/v1/charges"));
        assert!(!ok(Method::GET, "http://example.com/v1/charges"));
        assert!(!ok(Method::GET, "http://127.0.0.1:9999/"));
        assert!(!ok(Method::CONNECT, "api.stripe.com:443"));
    }
}
