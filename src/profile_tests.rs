use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.insert(*name, HeaderValue::from_static(value));
    }
    h
}

#[test]
fn profiles_are_found_by_name() {
    assert_eq!(named("stripe").map(|p| p.name), Some("stripe"));
    assert_eq!(named("ietf").map(|p| p.name), Some("ietf"));
    assert_eq!(named("paypal").map(|p| p.name), Some("paypal"));
    assert!(named("Stripe").is_none());
}

#[test]
fn each_profile_reads_its_own_key_header() {
    let stripe_key = headers(&[("idempotency-key", "k1")]);
    let paypal_key = headers(&[("paypal-request-id", "k1")]);
    assert!(STRIPE.has_key(&stripe_key) && IETF.has_key(&stripe_key));
    assert!(!PAYPAL.has_key(&stripe_key));
    assert!(PAYPAL.has_key(&paypal_key) && !STRIPE.has_key(&paypal_key));
    assert!(!STRIPE.has_key(&headers(&[("idempotency-key", "")])));
    // The draft keys PATCH as well as POST; Stripe and PayPal key POST only.
    assert!(IETF.keys(&Method::PATCH) && !STRIPE.keys(&Method::PATCH));
    assert!(PAYPAL.keys(&Method::POST) && !PAYPAL.keys(&Method::GET));
}

#[test]
fn only_stripe_has_a_retry_header() {
    let yes = headers(&[("stripe-should-retry", " true ")]);
    assert_eq!(STRIPE.should_retry(&yes), Some(true));
    assert_eq!(
        STRIPE.should_retry(&headers(&[("stripe-should-retry", "false")])),
        Some(false)
    );
    assert_eq!(
        STRIPE.should_retry(&headers(&[("stripe-should-retry", "1")])),
        None
    );
    assert_eq!(IETF.should_retry(&yes), None);
    assert_eq!(PAYPAL.should_retry(&yes), None);
}

#[test]
fn in_flight_answers_differ_by_profile() {
    let conflict = StatusCode::CONFLICT;
    // Stripe needs the code: other 409s are final.
    assert!(STRIPE.needs_code(conflict));
    assert!(STRIPE.is_in_flight(conflict, Some("idempotency_key_in_use")));
    assert!(!STRIPE.is_in_flight(conflict, Some("resource_already_exists")));
    assert!(!STRIPE.is_in_flight(conflict, None));
    // The draft's 409 means exactly that; no body needs reading.
    assert!(!IETF.needs_code(conflict));
    assert!(IETF.is_in_flight(conflict, None));
    assert!(PAYPAL.is_in_flight(conflict, Some("PREVIOUS_REQUEST_IN_PROGRESS")));
    assert!(!PAYPAL.is_in_flight(conflict, Some("RESOURCE_CONFLICT")));
    assert!(!IETF.is_in_flight(StatusCode::UNPROCESSABLE_ENTITY, None));
}

#[test]
fn error_codes_are_read_from_each_shape() {
    let stripe = br#"{"error":{"type":"invalid_request_error","code":"idempotency_key_in_use"}}"#;
    assert_eq!(
        STRIPE.error_code(stripe).as_deref(),
        Some("idempotency_key_in_use")
    );
    let paypal = br#"{"name":"RESOURCE_CONFLICT","message":"m","debug_id":"1",
        "details":[{"issue":"PREVIOUS_REQUEST_IN_PROGRESS","description":"d"}]}"#;
    assert_eq!(
        PAYPAL.error_code(paypal).as_deref(),
        Some("PREVIOUS_REQUEST_IN_PROGRESS")
    );
    let bare = br#"{"name":"RESOURCE_CONFLICT","message":"m"}"#;
    assert_eq!(
        PAYPAL.error_code(bare).as_deref(),
        Some("RESOURCE_CONFLICT")
    );
    let problem = br#"{"type":"https://example.com/idempotency","status":409}"#;
    assert_eq!(
        IETF.error_code(problem).as_deref(),
        Some("https://example.com/idempotency")
    );
    assert_eq!(STRIPE.error_code(b"<html>"), None);
    assert_eq!(STRIPE.error_code(paypal), None);
}

#[test]
fn saved_answers_and_replay_markers() {
    for profile in BUILTIN {
        assert!(profile.saves(StatusCode::OK), "{}", profile.name);
        assert!(
            profile.saves(StatusCode::PAYMENT_REQUIRED),
            "{}",
            profile.name
        );
        assert!(!profile.saves(StatusCode::CONFLICT), "{}", profile.name);
        assert!(
            !profile.saves(StatusCode::TOO_MANY_REQUESTS),
            "{}",
            profile.name
        );
        assert!(!profile.saves(StatusCode::BAD_GATEWAY), "{}", profile.name);
        // Answers no provider keeps under a key: never replayed for a day.
        for status in [400, 401, 403, 408, 421, 425, 499] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!profile.saves(status), "{} {status}", profile.name);
        }
    }
    // A 422 is the draft's mismatch (and PayPal's business-rule failure): not kept.
    assert!(STRIPE.saves(StatusCode::UNPROCESSABLE_ENTITY));
    assert!(!IETF.saves(StatusCode::UNPROCESSABLE_ENTITY));
    let marked = headers(&[("idempotent-replayed", "true")]);
    assert!(STRIPE.is_replay(&marked));
    assert!(!IETF.is_replay(&marked));
    assert!(STRIPE.replays && IETF.replays && !PAYPAL.replays);
}
