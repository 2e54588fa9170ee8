//! The dialects' facts and error shapes, without sockets.

use bytes::Bytes;
use http::HeaderMap;

use super::*;
use crate::reply::{Source, api_error, invalid_param};

fn body(reply: &Reply) -> Value {
    match &reply.body {
        Source::Bytes(bytes) => serde_json::from_slice(bytes).unwrap(),
        Source::Pattern(_) => panic!("not JSON"),
    }
}

fn content_type(reply: &Reply) -> &str {
    reply.header("content-type").unwrap().to_str().unwrap()
}

#[test]
fn names_parse_back_and_unknown_ones_are_refused() {
    for p in Provider::ALL {
        assert_eq!(Provider::parse(p.name()), Ok(p));
    }
    assert_eq!(Provider::default(), Provider::Stripe);
    let unknown = Provider::parse("PayPal").unwrap_err();
    assert!(
        unknown.to_string().contains("stripe, ietf or paypal"),
        "{unknown}"
    );
}

#[test]
fn key_headers_methods_and_scopes() {
    assert_eq!(Provider::Ietf.key_header(), "idempotency-key");
    assert_eq!(Provider::PayPal.key_header(), "paypal-request-id");
    assert!(Provider::Ietf.takes_key(&Method::PATCH));
    assert!(!Provider::Stripe.takes_key(&Method::PATCH));
    assert!(!Provider::PayPal.takes_key(&Method::PATCH));
    assert!(Provider::ALL.iter().all(|p| !p.takes_key(&Method::GET)));

    let mut headers = HeaderMap::new();
    headers.insert("stripe-account", "acct_1".parse().unwrap());
    headers.insert("paypal-auth-assertion", "jwt".parse().unwrap());
    let request = SeenRequest {
        method: Method::POST,
        path: "/v1/payment_intents".into(),
        query: None,
        headers,
        body: Bytes::new(),
        received: std::time::Instant::now(),
    };
    let scope = |p: Provider| p.scope("sk_a".into(), &request);
    assert_eq!(scope(Provider::Stripe), "sk_a/acct_1");
    assert_eq!(scope(Provider::Ietf), "sk_a");
    assert_eq!(scope(Provider::PayPal), "sk_a/jwt");
}

#[test]
fn conflicts_and_mismatches_per_dialect() {
    let statuses: Vec<_> = Provider::ALL
        .iter()
        .map(|p| (p.in_use().status.as_u16(), p.mismatch("k").status.as_u16()))
        .collect();
    assert_eq!(statuses, vec![(409, 400), (409, 422), (409, 422)]);

    let stripe = body(&Provider::Stripe.error(Provider::Stripe.mismatch("k")));
    assert_eq!(stripe["error"]["type"], "idempotency_error");
    let ietf = Provider::Ietf.error(Provider::Ietf.in_use());
    assert_eq!(content_type(&ietf), "application/problem+json");
    assert_eq!(
        body(&ietf)["type"],
        format!("{PROBLEM_BASE}idempotency-key-in-use")
    );
    assert_eq!(body(&ietf)["status"], 409);
    let paypal = body(&Provider::PayPal.error(Provider::PayPal.mismatch("k")));
    assert_eq!(paypal["name"], "UNPROCESSABLE_ENTITY");
    assert_eq!(
        paypal["details"][0]["issue"],
        "PAYPAL_REQUEST_ID_PREVIOUSLY_USED"
    );
    let paypal = body(&Provider::PayPal.error(Provider::PayPal.in_use()));
    assert_eq!(
        (&paypal["name"], &paypal["details"][0]["issue"]),
        (
            &json!("RESOURCE_CONFLICT"),
            &json!("PREVIOUS_REQUEST_IN_PROGRESS")
        )
    );
}

#[test]
fn problem_details_keep_the_status_and_a_stable_type() {
    let invalid = || invalid_param("amount", "parameter_missing", "Missing amount.".into());
    let a = body(&Provider::Ietf.error(invalid()));
    let b = body(&Provider::Ietf.error(invalid()));
    assert_eq!(a, b, "nothing varies between occurrences");
    assert_eq!(
        (&a["type"], &a["status"], &a["detail"], &a["param"]),
        (
            &json!(format!("{PROBLEM_BASE}invalid-request")),
            &json!(400),
            &json!("Missing amount."),
            &json!("amount")
        )
    );
    let failed = body(&Provider::Ietf.error(api_error(StatusCode::BAD_GATEWAY)));
    assert_eq!(failed["type"], format!("{PROBLEM_BASE}server-error"));
    assert_eq!(failed["status"], 502);
}

#[test]
fn paypal_names_follow_the_status_and_debug_ids_differ() {
    let name = |status: u16| {
        let err = error(StatusCode::from_u16(status).unwrap(), "x", None, "m");
        body(&Provider::PayPal.error(err))["name"].clone()
    };
    let names: Vec<_> = [400, 401, 404, 409, 422, 429, 500, 502, 503, 504]
        .into_iter()
        .map(name)
        .collect();
    assert_eq!(
        names,
        json!([
            "INVALID_REQUEST",
            "AUTHENTICATION_FAILURE",
            "RESOURCE_NOT_FOUND",
            "RESOURCE_CONFLICT",
            "UNPROCESSABLE_ENTITY",
            "RATE_LIMIT_REACHED",
            "INTERNAL_SERVER_ERROR",
            "SERVICE_UNAVAILABLE",
            "SERVICE_UNAVAILABLE",
            "SERVICE_UNAVAILABLE"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
    let invalid = invalid_param("amount", "parameter_missing", "Missing amount.".into());
    let reply = Provider::PayPal.error(invalid.clone());
    assert_eq!(content_type(&reply), "application/json");
    let first = body(&reply);
    assert_eq!(
        (&first["details"][0]["issue"], &first["details"][0]["field"]),
        (&json!("PARAMETER_MISSING"), &json!("/amount"))
    );
    let second = body(&Provider::PayPal.error(invalid));
    assert_ne!(first["debug_id"], second["debug_id"]);
}

#[test]
fn only_stripe_sends_stripe_headers() {
    for p in Provider::ALL {
        let reply = Reply::json(StatusCode::OK, &json!({}));
        let reply = p.stripe_header(reply, "stripe-should-retry", "true");
        assert_eq!(
            reply.header("stripe-should-retry").is_some(),
            p == Provider::Stripe
        );
    }
}
