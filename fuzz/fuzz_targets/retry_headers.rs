//! `Retry-After` and `Stripe-Should-Retry` as the provider (or anything pretending to be it)
//! may send them: never a panic, and the documented forms read exactly.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue, header::RETRY_AFTER};
use libfuzzer_sys::fuzz_target;
use payguard::profile::STRIPE;
use payguard::retry::classify::retry_after;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    retry_after: &'a [u8],
    should_retry: &'a [u8],
    /// The current time, in seconds since the epoch (kept below year 10000 for HTTP dates).
    now: u32,
    /// A date to send as an IMF-fixdate.
    date: u32,
}

fuzz_target!(|input: Input<'_>| {
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(input.now));
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(input.retry_after) {
        headers.insert(RETRY_AFTER, value);
    }
    if let Ok(value) = HeaderValue::from_bytes(input.should_retry) {
        headers.insert("stripe-should-retry", value);
    }

    let wait = retry_after(&headers, now);
    if let Some(text) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            // delay-seconds: exactly that many, or ignored when it does not fit.
            assert_eq!(wait, text.parse::<u64>().ok().map(Duration::from_secs));
        }
    } else {
        assert_eq!(wait, None, "no readable header, no wait");
    }

    match STRIPE.should_retry(&headers) {
        Some(answer) => {
            let text = headers["stripe-should-retry"].to_str().expect("was read");
            assert_eq!(text.trim(), if answer { "true" } else { "false" });
        }
        None => {
            let text = headers
                .get("stripe-should-retry")
                .and_then(|v| v.to_str().ok());
            assert!(!matches!(text.map(str::trim), Some("true" | "false")));
        }
    }

    // An HTTP date round-trips: the wait is the time until it, or none once it has passed.
    let date = UNIX_EPOCH + Duration::from_secs(u64::from(input.date));
    let mut dated = HeaderMap::new();
    let value = HeaderValue::from_str(&httpdate::fmt_http_date(date)).expect("a date is ASCII");
    dated.insert(RETRY_AFTER, value);
    let expected = date.duration_since(now).unwrap_or(Duration::ZERO);
    assert_eq!(retry_after(&dated, now), Some(expected));
});
