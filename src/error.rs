//! The one error type of the request path, and the one place it becomes a response.
//!
//! Every failure payguard itself produces travels as a [`ProxyError`] until the edge of the
//! request path, where [`ProxyError::into_response`] shapes it like an error of the route's
//! provider (its profile's [`ErrorStyle`]: Stripe's JSON, RFC 9457 problem details, PayPal's
//! JSON) so that the app's SDK parses it into its usual exception types. Each such response carries a
//! `Payguard-Error` header naming the cause, so operators can tell payguard's answers from the
//! provider's at a glance (the provider never sends that header).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{ProxyBody, full};
use crate::profile::{ErrorStyle, Profile};
use crate::retry::{AttemptError, Refusal};

/// Header on every response payguard made itself, holding [`ProxyError::code`].
pub const PAYGUARD_ERROR: &str = "payguard-error";
/// `unknown` on the answer to a keyed request that may have executed without the provider's
/// final word: retry it with the same key. Only requests answered so are ever re-sent by the
/// resolver.
pub const PAYGUARD_OUTCOME: &str = "payguard-outcome";

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
    #[error(
        "payguard cannot tell whether the provider executed this request ({detail}); send it again with the same idempotency key to learn the outcome"
    )]
    OutcomeUnknown { detail: String, timed_out: bool },
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
    #[error("payguard is at its bound on {}; retry shortly", .0.label().replace('_', " "))]
    Overloaded(crate::load::Bound),
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
            AttemptError::Unknown { detail, timed_out } => {
                ProxyError::OutcomeUnknown { detail, timed_out }
            }
        }
    }
}

impl ProxyError {
    /// The status under `profile`: the idempotency refusals take the provider's own.
    pub fn status_for(&self, profile: &Profile) -> StatusCode {
        match self {
            ProxyError::KeyMismatch => profile.mismatch,
            ProxyError::KeyInUse => profile.in_flight.status,
            _ => self.status(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyRead(_) | ProxyError::ForeignTarget(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Connect => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::UpstreamConnect(_) | ProxyError::UpstreamIo(_) => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::OutcomeUnknown {
                timed_out: true, ..
            } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::OutcomeUnknown { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::KeyInUse => StatusCode::CONFLICT,
            ProxyError::KeyMismatch => StatusCode::BAD_REQUEST,
            ProxyError::StoreUnavailable(_)
            | ProxyError::CircuitOpen(_)
            | ProxyError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            ProxyError::OutcomeUnknown { .. } => "payguard_outcome_unknown",
            ProxyError::Internal => "payguard_internal",
            // The provider's own code, so SDKs and retry logic treat it as they would Stripe's.
            ProxyError::KeyInUse => "idempotency_key_in_use",
            ProxyError::KeyMismatch => "payguard_idempotency_key_reused",
            ProxyError::StoreUnavailable(_) => "payguard_store_unavailable",
            // Stripe's code for its own limiter, so clients handle both alike.
            ProxyError::RateLimited(_) => "rate_limit",
            ProxyError::CircuitOpen(_) => "payguard_circuit_open",
            ProxyError::Overloaded(_) => "payguard_overloaded",
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

    /// Whether the app should send the request again (with the same key): true for a refusal
    /// that sent nothing and may pass later, and for an outcome only the provider knows. It becomes the profile's retry header (Stripe's
    /// `Stripe-Should-Retry`), which every official SDK obeys over the status: without it, some
    /// never retry a 429 `rate_limit`, and the app would fail an order payguard only delayed.
    fn should_retry(&self) -> bool {
        matches!(
            self,
            ProxyError::RateLimited(_)
                | ProxyError::CircuitOpen(_)
                | ProxyError::Overloaded(_)
                | ProxyError::StoreUnavailable(_)
                | ProxyError::KeyInUse
                | ProxyError::OutcomeUnknown { .. }
        )
    }

    /// The error body in `profile`'s shape, and its media type.
    fn body(&self, profile: &Profile) -> (&'static str, serde_json::Value) {
        let status = self.status_for(profile);
        let message = self.to_string();
        match profile.errors {
            ErrorStyle::Stripe => {
                let code = match self {
                    ProxyError::KeyInUse => profile.in_flight.code.unwrap_or(self.code()),
                    _ => self.code(),
                };
                let body = serde_json::json!({
                    "error": { "type": self.stripe_type(), "code": code, "message": message }
                });
                ("application/json", body)
            }
            // RFC 9457: "about:blank" says the status is the whole story, so the title is its
            // reason phrase; payguard's cause rides in the `code` extension member.
            ErrorStyle::Problem => {
                let body = serde_json::json!({
                    "type": "about:blank",
                    "title": status.canonical_reason().unwrap_or("Error"),
                    "status": status.as_u16(),
                    "detail": message,
                    "code": self.code(),
                });
                ("application/problem+json", body)
            }
            ErrorStyle::PayPal => {
                let issue = match self {
                    ProxyError::KeyInUse => "PREVIOUS_REQUEST_IN_PROGRESS".to_owned(),
                    ProxyError::KeyMismatch => "PAYPAL_REQUEST_ID_PREVIOUSLY_USED".to_owned(),
                    _ => self.code().to_ascii_uppercase(),
                };
                let body = serde_json::json!({
                    "name": paypal_name(status),
                    "message": message,
                    "debug_id": format!("payguard-{:016x}", rand::random::<u64>()),
                    "details": [{ "issue": issue, "description": message }],
                });
                ("application/json", body)
            }
        }
    }

    /// The single mapping from error to response, shaped as `profile`'s provider shapes its
    /// errors.
    pub fn into_response(self, profile: &Profile) -> Response<ProxyBody> {
        let (media_type, body) = self.body(profile);
        let mut response = Response::new(full(Bytes::from(body.to_string())));
        *response.status_mut() = self.status_for(profile);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
        headers.insert(PAYGUARD_ERROR, HeaderValue::from_static(self.code()));
        let retry_after = match &self {
            ProxyError::RateLimited(after) | ProxyError::CircuitOpen(after) => Some(*after),
            // Requests in flight end within their deadline; a second is the shortest hint.
            ProxyError::Overloaded(_) => Some(std::time::Duration::from_secs(1)),
            _ => None,
        };
        if let Some(after) = retry_after {
            // Whole seconds, rounded up: a client waiting less would only be refused again.
            let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if let Some(name) = profile
            .should_retry_header
            .as_ref()
            .filter(|_| self.should_retry())
        {
            headers.insert(name, HeaderValue::from_static("true"));
        }
        if matches!(self, ProxyError::OutcomeUnknown { .. }) {
            headers.insert(PAYGUARD_OUTCOME, HeaderValue::from_static("unknown"));
        }
        if matches!(self, ProxyError::Connect) {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        response
    }
}

/// PayPal's error `name` for a status (developer.paypal.com, "API responses").
fn paypal_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "AUTHENTICATION_FAILURE",
        403 => "NOT_AUTHORIZED",
        405 => "METHOD_NOT_SUPPORTED",
        409 => "RESOURCE_CONFLICT",
        422 => "UNPROCESSABLE_ENTITY",
        429 => "RATE_LIMIT_REACHED",
        500 => "INTERNAL_SERVER_ERROR",
        502..=504 => "SERVICE_UNAVAILABLE",
        _ if status.is_server_error() => "INTERNAL_SERVER_ERROR",
        _ => "INVALID_REQUEST",
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
