//! The classification table, checked rule by rule against arbitrary outcomes: above all, a
//! request that may have executed is never retried unless replaying it is harmless.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use http::{HeaderValue, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use payguard::profile::STRIPE;
use payguard::retry::{
    AttemptError, ProviderErrorCode, Refusal, RequestFacts, RetryReason, Verdict, classify,
    classify::retry_after,
};

#[derive(Arbitrary, Debug)]
enum Outcome<'a> {
    NotSent,
    Lost,
    TimedOut(u32),
    RateLimited(u32),
    CircuitOpen(u32),
    Response {
        status: u16,
        should_retry: Option<&'a [u8]>,
        retry_after: Option<&'a [u8]>,
        code: Option<&'a str>,
    },
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    outcome: Outcome<'a>,
    replay_safe: bool,
}

fn reason(verdict: &Verdict) -> Option<RetryReason> {
    match verdict {
        Verdict::Retry { reason, .. } => Some(*reason),
        Verdict::Final => None,
    }
}

fuzz_target!(|input: Input<'_>| {
    let safe = input.replay_safe;
    let millis = |n: u32| Duration::from_millis(u64::from(n));
    let failed = |e: AttemptError| Err::<Response<()>, _>(e);
    let (outcome, expected) = match input.outcome {
        Outcome::NotSent => (
            failed(AttemptError::NotSent("x".into())),
            Some(RetryReason::NotSent),
        ),
        Outcome::Lost => (
            failed(AttemptError::Lost("x".into())),
            safe.then_some(RetryReason::Lost),
        ),
        Outcome::TimedOut(n) => (
            failed(AttemptError::TimedOut(millis(n))),
            safe.then_some(RetryReason::TimedOut),
        ),
        Outcome::RateLimited(n) => (
            failed(AttemptError::Refused(Refusal::RateLimited(millis(n)))),
            None,
        ),
        Outcome::CircuitOpen(n) => (
            failed(AttemptError::Refused(Refusal::CircuitOpen(millis(n)))),
            None,
        ),
        Outcome::Response {
            status,
            should_retry,
            retry_after,
            code,
        } => {
            let Ok(status) = StatusCode::from_u16(status) else {
                return;
            };
            let mut response = Response::new(());
            *response.status_mut() = status;
            let headers = response.headers_mut();
            if let Some(value) = should_retry.and_then(|v| HeaderValue::from_bytes(v).ok()) {
                headers.insert("stripe-should-retry", value);
            }
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_bytes(v).ok()) {
                headers.insert(http::header::RETRY_AFTER, value);
            }
            if let Some(code) = code {
                response
                    .extensions_mut()
                    .insert(ProviderErrorCode(code.to_owned()));
            }
            let in_use = code == Some("idempotency_key_in_use");
            let expected = match STRIPE.should_retry(response.headers()) {
                Some(true) => Some(RetryReason::ShouldRetryHeader),
                Some(false) => None,
                None if status == StatusCode::TOO_MANY_REQUESTS => Some(RetryReason::RateLimited),
                None if status == StatusCode::CONFLICT && in_use => Some(RetryReason::KeyInUse),
                None if status.is_server_error() && safe => Some(RetryReason::ServerError),
                None => None,
            };
            (Ok(response), expected)
        }
    };
    let facts = RequestFacts {
        replay_safe: safe,
        keyed: safe,
        profile: &STRIPE,
    };
    let verdict = classify(&outcome, facts);
    assert_eq!(reason(&verdict), expected, "{outcome:?}");

    if let (Ok(response), Verdict::Retry { not_before, .. }) = (&outcome, &verdict) {
        // The provider's explicit "no" and a success are never retried.
        assert!(
            !response.status().is_success()
                || reason(&verdict) == Some(RetryReason::ShouldRetryHeader)
        );
        // A wait asked for in delay-seconds is honoured exactly (dates depend on the clock).
        let digits = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.trim().is_empty() && v.trim().bytes().all(|b| b.is_ascii_digit()));
        if digits {
            assert_eq!(
                *not_before,
                retry_after(response.headers(), std::time::SystemTime::now())
            );
        }
    }
});
