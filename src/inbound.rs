//! The inbound checks of the request path: what payguard refuses before anything is sent, and
//! buffering the body within its limit.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use crate::error::ProxyError;

/// Idempotent by definition (RFC 9110 9.2.2): repeating them has the effect of doing it once.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The body length a request declares in `Content-Length`, when it declares one.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// payguard forwards only to its configured upstream. An absolute-form target is accepted only
/// when it names payguard itself (RFC 9112 says servers must accept that form); any other host
/// means someone is using payguard as a forward proxy, which it refuses.
pub fn refuse_foreign_target<B>(request: &Request<B>, local: SocketAddr) -> Result<(), ProxyError> {
    if request.method() == Method::CONNECT {
        return Err(ProxyError::Connect);
    }
    // In HTTP/2 every request names an authority (`:authority`, HTTP/1's Host): that is
    // not forward-proxy use. Either way payguard only ever forwards to its upstream.
    if request.version() >= http::Version::HTTP_2 {
        return Ok(());
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
        // Host and port only: a userinfo part may hold credentials, never echoed or logged.
        let target = match authority.port() {
            Some(port) => format!("{}:{port}", authority.host()),
            None => authority.host().to_owned(),
        };
        Err(ProxyError::ForeignTarget(target))
    }
}

/// Reads the whole body, refusing it before reading a byte when `Content-Length` already says
/// it is too large, and as soon as the limit is crossed otherwise.
pub async fn read_body(
    headers: &http::HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, ProxyError> {
    if declared_length(headers).is_some_and(|len| len > limit as u64) {
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
        // HTTP/2 always carries an authority; it is the Host, not a forward-proxy target.
        let mut h2 = target(Method::GET, "http://payguard.svc:8080/v1/charges");
        *h2.version_mut() = http::Version::HTTP_2;
        assert!(refuse_foreign_target(&h2, local).is_ok());
        let err = refuse_foreign_target(
            &target(Method::GET, "http://alice:s3cret@evil.example/"),
            local,
        );
        let message = err.unwrap_err().to_string();
        assert!(
            message.contains("evil.example") && !message.contains("s3cret"),
            "{message}"
        );
    }
}
