//! The provider dialects the double speaks: how a provider spells idempotency and errors.
//!
//! payguard's provider profiles (issue #11) keep one retry and idempotency logic and change how
//! it is spelled: the header that carries the key and the methods it applies to, the scope a key
//! lives in, what a completed, a concurrent and a reused-with-another-body duplicate get back,
//! and the shape of every error body. This module is the double's own model of those
//! differences, written from the providers' documents. It deliberately imports nothing from
//! payguard's `profile` module: a mistake in payguard's profile data then fails a test against
//! the double instead of being mirrored by it.
//!
//! Only idempotency, scoping and error shapes change. Endpoints, ids, form bodies, statuses of
//! the endpoints' own errors and the ledger stay Stripe-shaped under every dialect. The rest of
//! the double decides errors in Stripe's vocabulary ([`ApiError`]); [`Provider::error`] spells
//! them as Stripe's `{"error": {...}}`, as RFC 9457 problem details (`ietf`, after
//! draft-ietf-httpapi-idempotency-key-header-07), or as PayPal's `{name, message, debug_id,
//! details}`.

use http::{Method, StatusCode};
use rand::Rng;
use serde_json::{Value, json};

use super::app::SeenRequest;
use super::reply::{ApiError, Reply, error};

/// Where the `ietf` dialect's problem type URIs live; each kind of problem adds its slug.
pub(crate) const PROBLEM_BASE: &str = "https://payguard.test/problems/";

/// Which provider's dialect the double speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Provider {
    /// `Idempotency-Key` on POST, scoped by API key and `Stripe-Account`, replays marked with
    /// `Idempotent-Replayed: true`, Stripe error bodies. The double's original behaviour.
    #[default]
    Stripe,
    /// draft-ietf-httpapi-idempotency-key-header-07: `Idempotency-Key` on POST and PATCH,
    /// scoped by the credentials alone, 409 in progress, 422 reused, unmarked replays, and
    /// RFC 9457 problem details for every error.
    Ietf,
    /// PayPal REST: `PayPal-Request-Id` on POST, scoped by the credentials and
    /// `PayPal-Auth-Assertion`; a completed id answers with the object's latest state.
    PayPal,
}

/// A provider name that [`Provider::parse`] does not know.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown provider {0:?}: expected stripe, ietf or paypal")]
pub struct UnknownProvider(pub String);

/// How a dialect answers a key whose first request has completed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Replay {
    /// The saved status and body, with this header set to `true` if the dialect marks replays.
    Saved(Option<&'static str>),
    /// PayPal's "latest status of the previous request": 200 with the object's current state.
    Latest,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Stripe, Provider::Ietf, Provider::PayPal];

    /// `"stripe"`, `"ietf"` or `"paypal"`.
    pub fn parse(name: &str) -> Result<Self, UnknownProvider> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| UnknownProvider(name.to_owned()))
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::Stripe => "stripe",
            Provider::Ietf => "ietf",
            Provider::PayPal => "paypal",
        }
    }

    /// The request header carrying the idempotency key, lowercase as `http` stores names. Its
    /// value is compared byte for byte: an `ietf` key sent as a quoted Structured Field string
    /// (`"abc"`) is a different key from `abc`, as it is to payguard.
    pub fn key_header(self) -> &'static str {
        match self {
            Provider::Stripe | Provider::Ietf => "idempotency-key",
            Provider::PayPal => "paypal-request-id",
        }
    }

    /// Whether a key is honoured on this method. Elsewhere it is ignored, as Stripe ignores one
    /// on GET. The draft names POST and PATCH; Stripe and PayPal document POST.
    pub(crate) fn takes_key(self, method: &Method) -> bool {
        *method == Method::POST || (self == Provider::Ietf && *method == Method::PATCH)
    }

    /// The longest key accepted. Only Stripe publishes one limit; the draft sets none and
    /// PayPal's varies by API (108 to 10,000 characters), so the double enforces none for them.
    pub(crate) fn max_key_len(self) -> Option<usize> {
        (self == Provider::Stripe).then_some(255)
    }

    /// Where keys and objects live: the API key, plus the header that names the account acted
    /// for (`PayPal-Auth-Assertion`; Stripe's `Stripe-Context`, which supersedes
    /// `Stripe-Account` when both are sent); the draft scopes by credentials alone.
    pub(crate) fn scope(self, api_key: String, request: &SeenRequest) -> String {
        let account = match self {
            Provider::Stripe => request
                .header("stripe-context")
                .or_else(|| request.header("stripe-account")),
            Provider::Ietf => None,
            Provider::PayPal => request.header("paypal-auth-assertion"),
        };
        match account {
            Some(account) => format!("{api_key}/{account}"),
            None => api_key,
        }
    }

    pub(crate) fn replay(self) -> Replay {
        match self {
            Provider::Stripe => Replay::Saved(Some("idempotent-replayed")),
            // The draft defines no replay marker header.
            Provider::Ietf => Replay::Saved(None),
            Provider::PayPal => Replay::Latest,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401.
    pub(crate) fn challenge(self) -> &'static str {
        match self {
            Provider::Stripe => "Basic realm=\"Stripe\"",
            Provider::Ietf | Provider::PayPal => "Bearer",
        }
    }

    /// 409 for a key whose first request is still executing.
    pub(crate) fn in_use(self) -> ApiError {
        let message = match self {
            Provider::Stripe => {
                "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): please try again later."
            }
            Provider::Ietf => "A request with this Idempotency-Key is still being processed.",
            // PayPal's description of PREVIOUS_REQUEST_IN_PROGRESS.
            Provider::PayPal => {
                "A previous request on this resource is currently in progress. Please wait for sometime and try again."
            }
        };
        let code = Some("idempotency_key_in_use");
        error(StatusCode::CONFLICT, "invalid_request_error", code, message)
    }

    /// A key reused with another endpoint or other parameters: 400 for Stripe, 422 for the
    /// draft. PayPal documents no general answer to this; the double follows its Vault v3 issue
    /// `PAYPAL_REQUEST_ID_PREVIOUSLY_USED`, whose wording is that of its 422s.
    pub(crate) fn mismatch(self, key: &str) -> ApiError {
        let (status, message) = match self {
            Provider::Stripe => (
                StatusCode::BAD_REQUEST,
                format!(
                    "Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."
                ),
            ),
            Provider::Ietf => (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Idempotency-Key '{key}' was already used with a different request."),
            ),
            Provider::PayPal => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "The PayPal-Request-Id has already been used for another request.".to_owned(),
            ),
        };
        error(status, "idempotency_error", None, message)
    }

    /// Adds a header only Stripe sends (`Stripe-Should-Retry`, `Stripe-Rate-Limited-Reason`).
    pub(crate) fn stripe_header(self, reply: Reply, name: &str, value: impl AsRef<str>) -> Reply {
        match self {
            Provider::Stripe => reply.with(name, value),
            Provider::Ietf | Provider::PayPal => reply,
        }
    }

    /// The error as this provider spells it.
    pub(crate) fn error(self, err: ApiError) -> Reply {
        match self {
            Provider::Stripe => Reply::json(err.status, &err.stripe_json()),
            Provider::Ietf => {
                Reply::json_as(err.status, "application/problem+json", &problem(&err))
            }
            Provider::PayPal => Reply::json(err.status, &paypal(&err)),
        }
    }
}

/// RFC 9457 problem details. `code` and `param` ride along as extension members, which
/// clients must ignore when they do not know them.
fn problem(err: &ApiError) -> Value {
    let (slug, title) = match (err.status.as_u16(), err.kind, err.code) {
        (_, "idempotency_error", _) => {
            ("idempotency-key-reused", "Idempotency-Key is already used")
        }
        (_, _, Some("idempotency_key_in_use")) => (
            "idempotency-key-in-use",
            "A request is outstanding for this Idempotency-Key",
        ),
        (_, _, Some("lock_timeout")) => ("lock-timeout", "The object is locked by another request"),
        (429, ..) => ("rate-limited", "Too many requests"),
        (401, ..) => ("unauthenticated", "Authentication failed"),
        (404, ..) => ("not-found", "No such resource"),
        (500..=599, ..) => ("server-error", "The server failed to process the request"),
        _ => ("invalid-request", "The request is invalid"),
    };
    let mut body = json!({
        "type": format!("{PROBLEM_BASE}{slug}"),
        "title": title,
        "status": err.status.as_u16(),
        "detail": err.message,
    });
    if let Some(code) = err.code {
        body["code"] = json!(code);
    }
    if let Some(param) = &err.param {
        body["param"] = json!(param);
    }
    body
}

/// PayPal's error: a name and message per status, a `debug_id`, and one detail whose `issue`
/// is the fine-grained code.
fn paypal(err: &ApiError) -> Value {
    let (name, message) = paypal_name(err.status);
    let issue = match (err.kind, err.code) {
        ("idempotency_error", _) => "PAYPAL_REQUEST_ID_PREVIOUSLY_USED".to_owned(),
        (_, Some("idempotency_key_in_use")) => "PREVIOUS_REQUEST_IN_PROGRESS".to_owned(),
        (_, Some(code)) => code.to_ascii_uppercase(),
        (_, None) => name.to_owned(),
    };
    let mut detail = json!({ "issue": issue, "description": err.message });
    if let Some(param) = &err.param {
        detail["field"] = json!(format!("/{param}"));
    }
    // PayPal's debug ids are short lowercase hex strings; 13 digits is what they usually show.
    let debug_id = format!("{:013x}", rand::rng().random::<u64>() >> 12);
    json!({ "name": name, "message": message, "debug_id": debug_id, "details": [detail] })
}

fn paypal_name(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        401 => (
            "AUTHENTICATION_FAILURE",
            "Authentication failed due to invalid authentication credentials or a missing Authorization header.",
        ),
        403 => (
            "NOT_AUTHORIZED",
            "Authorization failed due to insufficient permissions.",
        ),
        404 => (
            "RESOURCE_NOT_FOUND",
            "The specified resource does not exist.",
        ),
        409 => (
            "RESOURCE_CONFLICT",
            "The server has detected a conflict while processing this request.",
        ),
        422 => (
            "UNPROCESSABLE_ENTITY",
            "The requested action could not be performed, semantically incorrect, or failed business validation.",
        ),
        429 => (
            "RATE_LIMIT_REACHED",
            "Too many requests. Blocked due to rate limiting.",
        ),
        502..=504 => ("SERVICE_UNAVAILABLE", "Service Unavailable."),
        500..=599 => (
            "INTERNAL_SERVER_ERROR",
            "An internal server error occurred.",
        ),
        _ => (
            "INVALID_REQUEST",
            "Request is not well-formed, syntactically incorrect, or violates schema.",
        ),
    }
}

#[cfg(test)]
#[path = "dialect_tests.rs"]
mod tests;
