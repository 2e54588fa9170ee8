//! Provider profiles: what differs between payment APIs that payguard's retry and idempotency
//! logic otherwise treats alike.
//!
//! The rules themselves (retry only what a replay cannot harm, one key on every attempt,
//! replay a completed key, refuse a key reused for another request) are the same for every
//! provider. What a profile names is how one provider spells them: the header carrying the
//! key, the header that says "retry" or "don't", which answer means "the first request with
//! this key is still running" and which "this key was used for something else", how errors
//! look, how long keys are kept, and a safe default send rate.
//!
//! Profiles are data, not code paths: a `&'static Profile` travels with each route (from its
//! upstream), and the places that used to hard-code Stripe's spelling ask it instead. The
//! built-in ones are below; `README.md` ("Provider profiles") cites the sources of each fact.

use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, StatusCode};

/// How a provider spells idempotency, retry hints and errors.
#[derive(Debug, PartialEq)]
pub struct Profile {
    /// The name used in `profile = "..."`.
    pub name: &'static str,
    /// The request header carrying the idempotency key.
    pub key_header: HeaderName,
    /// Methods that take a key (the others are idempotent by definition, or not keyed).
    pub key_methods: &'static [Method],
    /// Longer keys are left for the provider to refuse; payguard neither stores nor injects.
    pub max_key_len: usize,
    /// Headers naming the tenant beside `Authorization` (a connected account, a merchant a
    /// partner acts for): keys are scoped by all of them.
    pub scope_headers: &'static [&'static str],
    /// A response header whose `true`/`false` overrides the status in the retry decision.
    pub should_retry_header: Option<HeaderName>,
    /// The answer to a request whose key is held by one still executing.
    pub in_flight: Answer,
    /// The answer that says "over the rate limit": the only one the adaptive limiter slows
    /// down for (Stripe's 429 `lock_timeout` is contention on one object, not the rate).
    pub rate_limited: Answer,
    /// The status of the answer to a key reused with another method, path or body.
    pub mismatch: StatusCode,
    /// Header and value marking a replayed response, when the provider marks them.
    pub replayed_header: Option<(HeaderName, &'static str)>,
    /// Whether the provider answers a completed key with a copy of its first response, which
    /// payguard may then give itself. `false` where it answers with the resource's latest
    /// state instead (PayPal): payguard forwards such a duplicate, under its key, so the app
    /// sees what the provider would say now. (A duplicate that waited for the first request
    /// still gets that request's answer: it is the latest state.)
    pub replays: bool,
    /// The error answers the provider keeps under a key, beside every 2xx: what its endpoint
    /// decided once it executed (a decline, a missing resource). Anything else (a validation
    /// 400, 401, 403, 408, 409, 421, 425, 429, 5xx) it does not keep, so payguard does not
    /// replay it either: the request may be corrected or simply sent again with the same key.
    /// A list of what is kept, not of what is not, so an unforeseen status is never replayed.
    pub saved_errors: &'static [u16],
    /// How the provider's error bodies look, and so how payguard shapes its own.
    pub errors: ErrorStyle,
    /// How long the provider keeps a key: payguard's default replay time and the resolver's
    /// limit for re-sends.
    pub key_window: Duration,
    /// The longest any of the provider's APIs documents keeping a key: a configured
    /// `key_window` beyond it would let the resolver re-send after the provider forgot the key,
    /// and so execute the request a second time.
    pub longest_key_window: Duration,
    /// The default client-side limit, as sends per second and burst.
    pub rate: f64,
    pub burst: u32,
}

/// A status, narrowed by the error code in the body when the status alone is ambiguous.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    pub code: Option<&'static str>,
}

impl Answer {
    fn matches(&self, status: StatusCode, code: Option<&str>) -> bool {
        status == self.status && self.code.is_none_or(|want| code == Some(want))
    }
}

/// The shape of error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error": {"type", "code", "message"}}`.
    Stripe,
    /// RFC 9457 problem details, `application/problem+json`.
    Problem,
    /// `{"name", "message", "debug_id", "details": [{"issue", "description"}]}`.
    PayPal,
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Stripe, the default. Key rules from docs.stripe.com/idempotency; the rest from
/// `provider-semantics.md`. The default rate, 9.8/s with no burst, keeps every second at or
/// under 10 sends: the seed article's ceiling, used to 98%, and under Stripe's 25/s in test
/// mode (raise it for live mode's 100/s).
pub static STRIPE: Profile = Profile {
    name: "stripe",
    key_header: IDEMPOTENCY_KEY,
    key_methods: &[Method::POST],
    max_key_len: 255,
    // Connect names the account with Stripe-Account; newer APIs (organizations, accounts v2)
    // with Stripe-Context, which supersedes it when both are sent. Either selects the tenant.
    scope_headers: &["stripe-account", "stripe-context"],
    should_retry_header: Some(HeaderName::from_static("stripe-should-retry")),
    in_flight: Answer {
        status: StatusCode::CONFLICT,
        code: Some("idempotency_key_in_use"),
    },
    rate_limited: Answer {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: Some("rate_limit"),
    },
    mismatch: StatusCode::BAD_REQUEST,
    replayed_header: Some((HeaderName::from_static("idempotent-replayed"), "true")),
    replays: true,
    saved_errors: &[402, 404, 422],
    errors: ErrorStyle::Stripe,
    key_window: Duration::from_secs(24 * 3600),
    longest_key_window: Duration::from_secs(24 * 3600),
    rate: 9.8,
    burst: 1,
};

/// A provider following draft-ietf-httpapi-idempotency-key-header: `Idempotency-Key` on
/// non-idempotent methods (POST, PATCH), 409 while the first request is outstanding, 422 for a
/// key reused with another payload, errors as problem details. The draft leaves key expiry and
/// rate limits to each server, so those are payguard's conservative defaults.
pub static IETF: Profile = Profile {
    name: "ietf",
    key_header: IDEMPOTENCY_KEY,
    key_methods: &[Method::POST, Method::PATCH],
    max_key_len: 255,
    scope_headers: &[],
    should_retry_header: None,
    in_flight: Answer {
        status: StatusCode::CONFLICT,
        code: None,
    },
    // RFC 6585: 429 is "too many requests"; the draft names no finer code.
    rate_limited: Answer {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: None,
    },
    mismatch: StatusCode::UNPROCESSABLE_ENTITY,
    replayed_header: None,
    replays: true,
    saved_errors: &[402, 404],
    errors: ErrorStyle::Problem,
    key_window: Duration::from_secs(24 * 3600),
    // The draft leaves expiry to each server: bounded only by payguard's own limit.
    longest_key_window: Duration::from_secs(90 * 24 * 3600),
    rate: 8.0,
    burst: 2,
};

/// PayPal's REST APIs (developer.paypal.com, "Idempotency"): `PayPal-Request-Id` on POST,
/// scoped by the credentials and `PayPal-Auth-Assertion` (the merchant a partner acts for). A
/// repeated id gets "the latest status of the previous request", not a stored copy, so
/// payguard forwards completed duplicates rather than replaying them. A concurrent duplicate
/// gets 409 with the issue `PREVIOUS_REQUEST_IN_PROGRESS`. PayPal documents no general answer
/// to an id reused with another body; payguard refuses it with 422, PayPal's status for a
/// request that fails business validation. The key window is Orders v2's 6 hours, the
/// shortest of the payment APIs (Payments v2 keeps ids for 45 days: set `key_window` on an
/// upstream that only captures and refunds). PayPal publishes no rate limits: the default is
/// payguard's conservative one. Ids up to 108 characters (Orders v2's limit).
pub static PAYPAL: Profile = Profile {
    name: "paypal",
    key_header: HeaderName::from_static("paypal-request-id"),
    key_methods: &[Method::POST],
    max_key_len: 108,
    scope_headers: &["paypal-auth-assertion"],
    should_retry_header: None,
    in_flight: Answer {
        status: StatusCode::CONFLICT,
        code: Some("PREVIOUS_REQUEST_IN_PROGRESS"),
    },
    // PayPal documents its 429 (RATE_LIMIT_REACHED) as rate limiting and nothing else.
    rate_limited: Answer {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: None,
    },
    mismatch: StatusCode::UNPROCESSABLE_ENTITY,
    replayed_header: None,
    replays: false,
    saved_errors: &[402, 404],
    errors: ErrorStyle::PayPal,
    key_window: Duration::from_secs(6 * 3600),
    // Payments v2 keeps ids for 45 days.
    longest_key_window: Duration::from_secs(45 * 24 * 3600),
    rate: 8.0,
    burst: 2,
};

/// Every built-in profile, for `profile = "..."` and its error message.
pub static BUILTIN: [&Profile; 3] = [&STRIPE, &IETF, &PAYPAL];

/// The built-in profile called `name`.
pub fn named(name: &str) -> Option<&'static Profile> {
    BUILTIN.iter().copied().find(|p| p.name == name)
}

impl Profile {
    /// Whether requests with `method` take a key.
    pub fn keys(&self, method: &Method) -> bool {
        self.key_methods.contains(method)
    }

    /// Whether the request carries a (non-empty) key.
    pub fn has_key(&self, headers: &HeaderMap) -> bool {
        headers.get(&self.key_header).is_some_and(|v| !v.is_empty())
    }

    /// The provider's explicit retry word: `Some` only for exactly `true` or `false`
    /// (surrounding whitespace aside); anything else is no word at all.
    pub fn should_retry(&self, headers: &HeaderMap) -> Option<bool> {
        let name = self.should_retry_header.as_ref()?;
        match headers.get(name)?.to_str().ok()?.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }

    /// Whether an error body must be read to judge a response of this status (the in-flight
    /// and rate-limit answers', when a code narrows them).
    pub fn needs_code(&self, status: StatusCode) -> bool {
        [&self.in_flight, &self.rate_limited]
            .iter()
            .any(|a| status == a.status && a.code.is_some())
    }

    /// Whether a response says the key is held by a request still executing. `code` is the
    /// error code read from its body, when [`Profile::needs_code`] asked for it.
    pub fn is_in_flight(&self, status: StatusCode, code: Option<&str>) -> bool {
        self.in_flight.matches(status, code)
    }

    /// Whether a response says the sender is over the provider's rate limit.
    pub fn is_rate_limited(&self, status: StatusCode, code: Option<&str>) -> bool {
        self.rate_limited.matches(status, code)
    }

    /// Whether a replayed response is marked as one.
    pub fn is_replay(&self, headers: &HeaderMap) -> bool {
        self.replayed_header
            .as_ref()
            .is_some_and(|(name, value)| headers.get(name).is_some_and(|v| v == value))
    }

    /// Whether the provider keeps a final answer of this status under its key.
    pub fn saves(&self, status: StatusCode) -> bool {
        status.is_success() || self.saved_errors.contains(&status.as_u16())
    }

    /// The error code of a body in this provider's error shape, if it is one.
    pub fn error_code(&self, body: &[u8]) -> Option<String> {
        let json: serde_json::Value = serde_json::from_slice(body).ok()?;
        let code = match self.errors {
            ErrorStyle::Stripe => json.get("error")?.get("code")?,
            // Problem details name the kind of problem by its `type` URI.
            ErrorStyle::Problem => json.get("type")?,
            // The fine-grained `issue` of the first detail names the case; `name` only the
            // status's family (RESOURCE_CONFLICT).
            ErrorStyle::PayPal => json
                .get("details")
                .and_then(|d| d.get(0)?.get("issue"))
                .or_else(|| json.get("name"))?,
        };
        code.as_str().map(str::to_owned)
    }
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
