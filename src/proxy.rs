//! The request path, top to bottom.
//!
//! 1. Match the request to a route (or the default route).
//! 2. Refuse what payguard must never forward: CONNECT, absolute-form requests naming another
//!    host, bodies over the buffer limit. Nothing reaches the upstream in those cases.
//! 3. Buffer the body (bounded), so that later layers can replay it on a retry.
//! 4. Rewrite the target to the configured upstream and strip hop-by-hop headers.
//! 5. Send, and stream the response back with its own hop-by-hop headers stripped.
//! 6. Count and log the outcome: one line per request, never headers or bodies.
//!
//! Failures travel as [`ProxyError`] and become responses in exactly one place, at the end of
//! [`ProxyState::handle`].

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::config::Config;
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::{Metrics, Origin};
use crate::route::RouteTable;
use crate::upstream::Upstream;

/// The body of every response payguard returns: the provider's streamed through, or its own.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// What the request path needs, shared by every connection behind an `Arc`.
pub struct ProxyState {
    routes: RouteTable,
    upstream: Upstream,
    metrics: Metrics,
    max_body: usize,
}

impl ProxyState {
    pub fn new(config: &Config) -> anyhow::Result<ProxyState> {
        let routes = RouteTable::new(config.routes.clone());
        let metrics = Metrics::new(routes.names())?;
        Ok(ProxyState {
            upstream: Upstream::new(&config.upstream)?,
            routes,
            metrics,
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
        let route = self.routes.name_for(request.method(), request.uri().path());
        let method = request.method().clone();
        let path = request.uri().path().to_owned();

        let (response, origin) = match self.forward(request, local).await {
            Ok(response) => (response, Origin::Upstream),
            Err(err) => {
                tracing::warn!(route, %method, path, error = %err, "payguard answered with an error");
                (err.into_response(), Origin::Payguard)
            }
        };
        let elapsed = started.elapsed();
        self.metrics
            .observe(route, response.status(), origin, elapsed);
        tracing::info!(
            route,
            %method,
            path,
            status = response.status().as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            attempts = 1,
            "request"
        );
        response
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
        local: SocketAddr,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        refuse_foreign_target(&request, local)?;
        let (mut parts, body) = request.into_parts();
        let body = read_body(&parts.headers, body, self.max_body).await?;

        headers::for_upstream(&mut parts.headers);
        parts.uri = self
            .upstream
            .uri_for(parts.uri.path_and_query())
            .map_err(|e| ProxyError::BodyRead(format!("bad request target: {e}")))?;
        // The upstream connection negotiates its own HTTP version; the app's is irrelevant.
        parts.version = http::Version::HTTP_11;
        let upstream_request = Request::from_parts(parts, Full::new(body));

        let response = self.upstream.send(upstream_request).await?;
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body.boxed()))
    }
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
