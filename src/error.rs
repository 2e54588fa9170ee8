//! The one error type of the request path, and the one place it becomes a response.
//!
//! Every failure payguard itself produces travels as a [`ProxyError`] until the edge of the
//! request path, where [`ProxyError::into_response`] shapes it like a Stripe error so that the
//! app's SDK parses it into its usual exception types. Each such response carries a
//! `Payguard-Error` header naming the cause, so operators can tell payguard's answers from the
//! provider's at a glance (the provider never sends that header).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::proxy::{ProxyBody, full};
use crate::retry::{AttemptError, Refusal};

/// Header on every response payguard made itself, holding [`ProxyError::code`].
pub const PAYGUARD_ERROR: &str = "payguard-error";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request body exceeds the {limit}-byte limit payguard can buffer")]
    BodyTooLarge { limit: usize },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    #[error("payguard is a reverse proxy for its configured upstream; it does not forward to {0}")]
    ForeignTarget(String),
    #[error("payguard does not tunnel CONNECT requests")]
    Connect,
    #[error("could not connect to the upstream: {0}")]
    UpstreamConnect(String),
    #[error("the upstream failed before answering: {0}")]
    UpstreamIo(String),
    #[error("the upstream did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("payguard failed internally while handling this request")]
    Internal,
    #[error("another request with this idempotency key is still in progress; retry later")]
    KeyInUse,
    #[error(
        "keys for idempotent requests can only be used with the same method, path and parameters they were first used with"
    )]
    KeyMismatch,
    #[error("the idempotency store is unavailable: {0}")]
    StoreUnavailable(String),
    #[error("payguard is holding requests below the provider's rate limit; retry after {0:?}")]
    RateLimited(std::time::Duration),
    #[error("the upstream is failing and payguard's circuit breaker is open; retry after {0:?}")]
    CircuitOpen(std::time::Duration),
}

/// An attempt's failure, when it is the last word: never sent means the upstream could not be
/// reached; lost and timed out mean it was reached but did not answer.
impl From<AttemptError> for ProxyError {
    fn from(e: AttemptError) -> Self {
        match e {
            AttemptError::NotSent(detail) => ProxyError::UpstreamConnect(detail),
            AttemptError::Lost(detail) => ProxyError::UpstreamIo(detail),
            AttemptError::TimedOut(after) => ProxyError::UpstreamTimeout(after),
            AttemptError::Refused(Refusal::RateLimited(after)) => ProxyError::RateLimited(after),
            AttemptError::Refused(Refusal::CircuitOpen(after)) => ProxyError::CircuitOpen(after),
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyRead(_) | ProxyError::ForeignTarget(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Connect => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UpstreamConnect(_) | ProxyError::UpstreamIo(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::KeyInUse => StatusCode::CONFLICT,
            ProxyError::KeyMismatch => StatusCode::BAD_REQUEST,
            ProxyError::StoreUnavailable(_) | ProxyError::CircuitOpen(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// A stable, machine-readable name for the cause; the error body's `code` and the
    /// `Payguard-Error` header.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::BodyTooLarge { .. } => "payguard_body_too_large",
            ProxyError::BodyRead(_) => "payguard_bad_request",
            ProxyError::BodyTimeout(_) => "payguard_body_timeout",
            ProxyError::ForeignTarget(_) => "payguard_forward_proxy_refused",
            ProxyError::Connect => "payguard_connect_refused",
            ProxyError::UpstreamConnect(_) => "payguard_upstream_unreachable",
            ProxyError::UpstreamIo(_) => "payguard_upstream_failed",
            ProxyError::UpstreamTimeout(_) => "payguard_upstream_timeout",
            ProxyError::Internal => "payguard_internal",
            // The provider's own code, so SDKs and retry logic treat it as they would Stripe's.
            ProxyError::KeyInUse => "idempotency_key_in_use",
            ProxyError::KeyMismatch => "payguard_idempotency_key_reused",
            ProxyError::StoreUnavailable(_) => "payguard_store_unavailable",
            // Stripe's code for its own limiter, so clients handle both alike.
            ProxyError::RateLimited(_) => "rate_limit",
            ProxyError::CircuitOpen(_) => "payguard_circuit_open",
        }
    }

    /// Stripe's error `type`: `idempotency_error` for a reused key, `rate_limit_error` for a
    /// 429; otherwise the app's fault is an `invalid_request_error`, ours or the
    /// provider's an `api_error`; SDKs pick their exception class from it.
    fn stripe_type(&self) -> &'static str {
        if matches!(self, ProxyError::KeyMismatch) {
            "idempotency_error"
        } else if matches!(self, ProxyError::RateLimited(_)) {
            "rate_limit_error"
        } else if self.status().is_client_error() {
            "invalid_request_error"
        } else {
            "api_error"
        }
    }

    /// The single mapping from error to response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let body = serde_json::json!({
            "error": {
                "type": self.stripe_type(),
                "code": self.code(),
                "message": self.to_string(),
            }
        });
        let mut response = Response::new(full(Bytes::from(body.to_string())));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(PAYGUARD_ERROR, HeaderValue::from_static(self.code()));
        if let ProxyError::RateLimited(after) | ProxyError::CircuitOpen(after) = &self {
            // Whole seconds, rounded up: a client waiting less would only be refused again.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if matches!(self, ProxyError::Connect) {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_are_stripe_shaped_and_marked() {
        let response =
            ProxyError::UpstreamTimeout(std::time::Duration::from_secs(3)).into_response();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            response.headers()[PAYGUARD_ERROR],
            "payguard_upstream_timeout"
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["error"]["type"], "api_error");
        assert_eq!(json["error"]["code"], "payguard_upstream_timeout");
        assert!(json["error"]["message"].as_str().unwrap().contains("3s"));
    }

    #[test]
    fn client_faults_are_invalid_request_errors() {
        let e = ProxyError::BodyTooLarge { limit: 10 };
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(e.stripe_type(), "invalid_request_error");
    }
}
