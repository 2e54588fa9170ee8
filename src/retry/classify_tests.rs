//! One test per rule of the classification table.

use super::*;

fn response(status: u16, headers: &[(&str, &str)]) -> Result<Response<()>, AttemptError> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Ok(builder.body(()).unwrap())
}

fn stripe(replay_safe: bool) -> RequestFacts<'static> {
    RequestFacts {
        replay_safe,
        keyed: replay_safe,
        profile: &crate::profile::STRIPE,
    }
}

fn reason(verdict: Verdict) -> Option<RetryReason> {
    match verdict {
        Verdict::Retry { reason, .. } => Some(reason),
        Verdict::Final => None,
    }
}

#[test]
fn never_sent_is_retryable_for_any_request() {
    let outcome = Err(AttemptError::NotSent("connection refused".into()));
    assert_eq!(
        reason(classify::<()>(&outcome, stripe(false))),
        Some(RetryReason::NotSent)
    );
}

#[test]
fn sent_with_unknown_outcome_needs_a_safe_replay() {
    let lost = Err(AttemptError::Lost("reset".into()));
    assert_eq!(classify::<()>(&lost, stripe(false)), Verdict::Final);
    assert_eq!(
        reason(classify::<()>(&lost, stripe(true))),
        Some(RetryReason::Lost)
    );
    let timed_out = Err(AttemptError::TimedOut(Duration::from_secs(1)));
    assert_eq!(classify::<()>(&timed_out, stripe(false)), Verdict::Final);
    assert_eq!(
        reason(classify::<()>(&timed_out, stripe(true))),
        Some(RetryReason::TimedOut)
    );
}

#[test]
fn server_errors_retry_only_when_replay_is_safe() {
    for status in [500, 502, 503, 504] {
        assert_eq!(
            reason(classify(&response(status, &[]), stripe(true))),
            Some(RetryReason::ServerError)
        );
        assert_eq!(
            classify(&response(status, &[]), stripe(false)),
            Verdict::Final,
            "{status}"
        );
    }
}

#[test]
fn rate_limits_retry_even_without_a_key() {
    assert_eq!(
        reason(classify(&response(429, &[]), stripe(false))),
        Some(RetryReason::RateLimited)
    );
}

#[test]
fn key_in_use_conflicts_retry_but_other_conflicts_do_not() {
    let mut in_use = response(409, &[]);
    if let Ok(r) = &mut in_use {
        r.extensions_mut()
            .insert(ProviderErrorCode("idempotency_key_in_use".into()));
    }
    assert_eq!(
        reason(classify(&in_use, stripe(true))),
        Some(RetryReason::KeyInUse)
    );
    assert_eq!(classify(&response(409, &[]), stripe(true)), Verdict::Final);
}

#[test]
fn other_client_errors_are_final() {
    for status in [400, 401, 402, 403, 404, 422] {
        assert_eq!(
            classify(&response(status, &[]), stripe(true)),
            Verdict::Final,
            "{status}"
        );
    }
    assert_eq!(classify(&response(200, &[]), stripe(true)), Verdict::Final);
}

#[test]
fn stripe_should_retry_overrides_the_status() {
    let no = response(500, &[("stripe-should-retry", "false")]);
    assert_eq!(classify(&no, stripe(true)), Verdict::Final);
    let no_429 = response(429, &[("stripe-should-retry", "false")]);
    assert_eq!(classify(&no_429, stripe(true)), Verdict::Final);
    let yes = response(400, &[("stripe-should-retry", "true")]);
    assert_eq!(
        reason(classify(&yes, stripe(false))),
        Some(RetryReason::ShouldRetryHeader)
    );
}

#[test]
fn other_profiles_have_their_own_in_flight_answer_and_no_retry_header() {
    let facts = |profile| RequestFacts {
        replay_safe: true,
        keyed: true,
        profile,
    };
    let (ietf, paypal) = (&crate::profile::IETF, &crate::profile::PAYPAL);
    // The draft's 409 is always "still in progress": retried without reading a body.
    assert_eq!(
        reason(classify(&response(409, &[]), facts(ietf))),
        Some(RetryReason::KeyInUse)
    );
    // PayPal's only with the issue PREVIOUS_REQUEST_IN_PROGRESS.
    let mut in_progress = response(409, &[]);
    if let Ok(r) = &mut in_progress {
        r.extensions_mut()
            .insert(ProviderErrorCode("PREVIOUS_REQUEST_IN_PROGRESS".into()));
    }
    assert_eq!(
        reason(classify(&in_progress, facts(paypal))),
        Some(RetryReason::KeyInUse)
    );
    assert_eq!(classify(&response(409, &[]), facts(paypal)), Verdict::Final);
    // Stripe's header means nothing from another provider.
    let no = response(503, &[("stripe-should-retry", "false")]);
    assert_eq!(
        reason(classify(&no, facts(ietf))),
        Some(RetryReason::ServerError)
    );
    let yes = response(400, &[("stripe-should-retry", "true")]);
    assert_eq!(classify(&yes, facts(paypal)), Verdict::Final);
}

#[test]
fn retry_after_sets_the_least_wait() {
    let verdict = classify(&response(429, &[("retry-after", "7")]), stripe(false));
    assert_eq!(
        verdict,
        Verdict::Retry {
            reason: RetryReason::RateLimited,
            not_before: Some(Duration::from_secs(7))
        }
    );
}

#[test]
fn retry_after_reads_seconds_and_http_dates() {
    let now = httpdate::parse_http_date("Sun, 29 Nov 2026 08:00:00 GMT").unwrap();
    let headers = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, v.parse().unwrap());
        h
    };
    assert_eq!(
        retry_after(&headers("3"), now),
        Some(Duration::from_secs(3))
    );
    assert_eq!(
        retry_after(&headers("Sun, 29 Nov 2026 08:00:30 GMT"), now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        retry_after(&headers("Sun, 29 Nov 2026 07:59:00 GMT"), now),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after(&headers("soon"), now), None);
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
}
