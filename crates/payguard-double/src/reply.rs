//! Replies before they become HTTP responses: a status, headers and what the body is made of,
//! plus [`ApiError`], the errors every layer of the double decides on, and their Stripe shape.
//!
//! Keeping the body as data (bytes, or a pattern of N bytes) until the last moment lets the
//! delivery faults (slow and truncated bodies) apply to any reply, whoever made it. Errors are
//! kept as data too, in Stripe's vocabulary (the double's native one), until the configured
//! dialect spells them (`dialect.rs`): the endpoints decide *what* went wrong, the dialect
//! decides how the provider says it.

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};

/// What a reply's body is made of.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    Bytes(Bytes),
    /// `len` bytes of the deterministic pattern (see [`pattern_byte`]), made as they are sent.
    Pattern(u64),
}

impl Source {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Source::Bytes(bytes) => bytes.len() as u64,
            Source::Pattern(len) => *len,
        }
    }
}

/// The byte at `offset` of the `/_double/large` pattern. Cycling over a prime length means
/// a shifted or repeated chunk shows up as a mismatch rather than lining up by chance.
pub(crate) fn pattern_byte(offset: u64) -> u8 {
    // The remainder is below 251, so it fits a byte.
    (offset % 251) as u8
}

/// Headers are a short list rather than a `HeaderMap`: replies travel in `Result`s through
/// validation, and a small error type keeps those cheap to move.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Source,
}

impl Reply {
    pub(crate) fn new(status: StatusCode, content_type: &'static str, body: Source) -> Self {
        // `from_static` panics only on bytes invalid in a header; every caller passes one of
        // the double's own literal media types.
        let headers = vec![(CONTENT_TYPE, HeaderValue::from_static(content_type))];
        Self {
            status,
            headers,
            body,
        }
    }

    /// The first value of a header.
    pub(crate) fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// A JSON reply. Pretty-printed like Stripe's, which also makes test failures readable.
    pub(crate) fn json(status: StatusCode, value: &Value) -> Self {
        Self::json_as(status, "application/json", value)
    }

    /// A JSON reply of another JSON media type, such as `application/problem+json`.
    pub(crate) fn json_as(status: StatusCode, content_type: &'static str, value: &Value) -> Self {
        // Serializing a `Value` cannot fail: its map keys are strings.
        let text = serde_json::to_vec_pretty(value).unwrap_or_default();
        Self::new(status, content_type, Source::Bytes(Bytes::from(text)))
    }

    /// Adds a header. Names and values the double builds are always valid; one that is not
    /// is dropped rather than failing the reply.
    pub(crate) fn with(mut self, name: &str, value: impl AsRef<str>) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes());
        if let (Ok(name), Ok(value)) = (name, HeaderValue::from_str(value.as_ref())) {
            self.headers.push((name, value));
        }
        self
    }
}

/// An error the double answers with, before a dialect spells it: Stripe's error `type`
/// (`kind`), `code`, `param` and message, plus the status.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    /// Stripe's error type: `invalid_request_error`, `api_error`, `idempotency_error`...
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    /// Names the parameter the error is about.
    pub(crate) fn on(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// Stripe's shape: `{"error": {"type", "code", "message", "param"}}`, absent fields left
    /// out as Stripe does.
    pub(crate) fn stripe_json(&self) -> Value {
        let mut error = json!({ "type": self.kind, "message": self.message });
        if let Some(code) = self.code {
            error["code"] = json!(code);
        }
        if let Some(param) = &self.param {
            error["param"] = json!(param);
        }
        json!({ "error": error })
    }
}

/// An error of a Stripe type, with an optional code.
pub(crate) fn error(
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    message: impl Into<String>,
) -> ApiError {
    ApiError {
        status,
        kind,
        code,
        message: message.into(),
        param: None,
    }
}

/// 400 for a missing or malformed parameter: a validation failure, never saved under a key.
pub(crate) fn invalid_param(param: &str, code: &'static str, message: String) -> ApiError {
    let invalid = error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some(code),
        message,
    );
    invalid.on(param)
}

/// 404 for an object that does not exist in the caller's scope.
pub(crate) fn missing(kind: &str, id: &str, param: &str) -> ApiError {
    let message = format!("No such {kind}: '{id}'");
    let missing = error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        message,
    );
    missing.on(param)
}

/// A provider-side failure (`api_error`), for 5xx faults.
pub(crate) fn api_error(status: StatusCode) -> ApiError {
    let message = "An unknown error occurred while processing your request (injected by the payguard double).";
    error(status, "api_error", None, message)
}

/// Reads a fault's status number, falling back to 500 for one that is not a status code.
pub(crate) fn status_or_500(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_stripe_shaped() {
        let invalid = invalid_param(
            "amount",
            "parameter_missing",
            "Missing required param: amount.".into(),
        );
        assert_eq!(invalid.status, 400);
        let body = invalid.stripe_json();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "amount");
        let body = api_error(StatusCode::BAD_GATEWAY).stripe_json();
        assert_eq!(body["error"]["type"], "api_error");
        assert!(body["error"].get("code").is_none());
    }

    #[test]
    fn pattern_and_statuses() {
        assert_eq!(
            (pattern_byte(0), pattern_byte(250), pattern_byte(251)),
            (0, 250, 0)
        );
        assert_eq!(status_or_500(503), 503);
        assert_eq!(status_or_500(1000), 500);
        let reply = Reply::json(StatusCode::OK, &json!({}))
            .with("request-id", "req_1")
            .with("bad", "\n");
        assert_eq!(reply.header("request-id").unwrap(), "req_1");
        assert!(reply.header("bad").is_none());
    }
}
