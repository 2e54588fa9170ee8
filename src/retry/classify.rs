//! What may be retried. This is the heart of payguard: a retry that cannot succeed wastes the
//! provider's rate limit, and a retry of a request that may already have taken effect, without
//! the same idempotency key, can charge a customer twice.
//!
//! The rules, in order:
//!
//! 1. Never sent (connect, DNS or TLS failure, or the connection died before the request was
//!    fully handed over): nothing can have happened upstream, so any method may be retried.
//! 2. Sent, outcome unknown (reset or timeout after the request went out): retried only when a
//!    replay is harmless, that is the method is idempotent or the request carries an
//!    idempotency key the provider will deduplicate on.
//! 3. A response with the profile's retry header (Stripe: `Stripe-Should-Retry: true|false`):
//!    the provider's explicit word wins over the status, as in every official SDK.
//! 4. 429 (`rate_limit`, `lock_timeout`): the provider refused before executing, so a retry is
//!    safe for any request. The profile's in-flight answer (Stripe: 409
//!    `idempotency_key_in_use`; the IETF draft: any 409): the first request with that key is
//!    still running; a later retry gets its result.
//! 5. 5xx: retried when a replay is harmless (rule 2's test), since the request was executed
//!    or partly executed.
//! 6. Any other status, including every other 4xx, is final: it would fail the same way again.
//!
//! `Retry-After` (seconds or an HTTP date) on a retryable response sets the least wait.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Response, StatusCode};

use crate::profile::Profile;

/// Why an attempt produced no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// The request never fully left payguard.
    NotSent(String),
    /// The request went out; the connection failed before a response head came back.
    Lost(String),
    /// The request went out; no response head within the attempt's timeout.
    TimedOut(Duration),
    /// payguard itself held the attempt back; nothing was sent.
    Refused(Refusal),
    /// The attempts of a keyed request ended in doubt: one may have executed and none
    /// brought the provider's final answer ([`super::outcome`]). Only the loop makes it.
    Unknown { detail: String, timed_out: bool },
}

/// Why payguard held an attempt back, and when it could go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The rate limiter's queue was longer than the attempt could wait.
    RateLimited(Duration),
    /// The circuit breaker is open.
    CircuitOpen(Duration),
}

/// The provider's error code, read from a bounded error body when the status alone cannot
/// decide (the profile's in-flight status). Attached to the response as an extension by the
/// sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderErrorCode(pub String);

/// Why a retry was wanted; also a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    NotSent,
    Lost,
    TimedOut,
    ShouldRetryHeader,
    RateLimited,
    KeyInUse,
    ServerError,
}

impl RetryReason {
    pub fn label(self) -> &'static str {
        match self {
            RetryReason::NotSent => "not_sent",
            RetryReason::Lost => "connection_lost",
            RetryReason::TimedOut => "timeout",
            RetryReason::ShouldRetryHeader => "should_retry_header",
            RetryReason::RateLimited => "rate_limited",
            RetryReason::KeyInUse => "idempotency_key_in_use",
            RetryReason::ServerError => "server_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Return this outcome to the app.
    Final,
    /// Try again, waiting at least `not_before` when the provider asked for it.
    Retry {
        reason: RetryReason,
        not_before: Option<Duration>,
    },
}

/// What classifying an outcome needs to know of its request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// True when the method is idempotent or the request carries an idempotency key.
    pub replay_safe: bool,
    /// True when it carries the provider's idempotency key: an attempt that may have executed
    /// then leaves a doubt that only the provider can settle, under that key.
    pub keyed: bool,
    /// Whose retry hints and in-flight answer apply.
    pub profile: &'a Profile,
}

/// Classifies one attempt's outcome.
pub fn classify<B>(outcome: &Result<Response<B>, AttemptError>, facts: RequestFacts) -> Verdict {
    let RequestFacts {
        replay_safe,
        profile,
        ..
    } = facts;
    let retry = |reason| Verdict::Retry {
        reason,
        not_before: None,
    };
    let response = match outcome {
        Err(AttemptError::NotSent(_)) => return retry(RetryReason::NotSent),
        Err(AttemptError::Lost(_)) if replay_safe => return retry(RetryReason::Lost),
        Err(AttemptError::TimedOut(_)) if replay_safe => return retry(RetryReason::TimedOut),
        // Retrying a local refusal would only queue again behind the same limit or breaker;
        // the app gets payguard's 429 or 503 with a Retry-After instead.
        Err(AttemptError::Refused(_)) => return Verdict::Final,
        Err(_) => return Verdict::Final,
        Ok(response) => response,
    };
    let status = response.status();
    let code = response.extensions().get::<ProviderErrorCode>();
    let reason = match profile.should_retry(response.headers()) {
        Some(true) => Some(RetryReason::ShouldRetryHeader),
        Some(false) => None,
        None if status == StatusCode::TOO_MANY_REQUESTS => Some(RetryReason::RateLimited),
        None if profile.is_in_flight(status, code.map(|c| c.0.as_str())) => {
            Some(RetryReason::KeyInUse)
        }
        None if status.is_server_error() && replay_safe => Some(RetryReason::ServerError),
        None => None,
    };
    match reason {
        None => Verdict::Final,
        Some(reason) => Verdict::Retry {
            reason,
            not_before: retry_after(response.headers(), SystemTime::now()),
        },
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 10.2.3). A date in the past means
/// no wait; an unparseable value is ignored rather than trusted.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
