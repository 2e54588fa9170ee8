//! The one mapping from error to response, per provider profile.

use super::*;
use crate::profile::{IETF, PAYPAL, STRIPE};
use http_body_util::BodyExt;
use std::time::Duration;

#[tokio::test]
async fn errors_are_stripe_shaped_and_marked() {
    let response =
        ProxyError::UpstreamTimeout(std::time::Duration::from_secs(3)).into_response(&STRIPE);
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        response.headers()[PAYGUARD_ERROR],
        "payguard_upstream_timeout"
    );
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(json["error"]["type"], "api_error");
    assert_eq!(json["error"]["code"], "payguard_upstream_timeout");
    assert!(json["error"]["message"].as_str().unwrap().contains("3s"));
}

async fn json_of(response: Response<ProxyBody>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn each_profile_gets_its_providers_error_shape() {
    // The draft's problem details, with the draft's statuses for key refusals.
    let response = ProxyError::KeyMismatch.into_response(&IETF);
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(
        response.headers()[PAYGUARD_ERROR],
        "payguard_idempotency_key_reused"
    );
    let json = json_of(response).await;
    assert_eq!(json["status"], 422);
    assert_eq!(json["type"], "about:blank");
    assert_eq!(json["title"], "Unprocessable Entity");
    assert_eq!(json["code"], "payguard_idempotency_key_reused");
    // PayPal's shape; its in-progress issue, so PayPal-aware clients recognise it.
    let response = ProxyError::KeyInUse.into_response(&PAYPAL);
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let json = json_of(response).await;
    assert_eq!(json["name"], "RESOURCE_CONFLICT");
    assert_eq!(json["details"][0]["issue"], "PREVIOUS_REQUEST_IN_PROGRESS");
    assert!(json["debug_id"].as_str().unwrap().starts_with("payguard-"));
    let json =
        json_of(ProxyError::RateLimited(Duration::from_secs(1)).into_response(&PAYPAL)).await;
    assert_eq!(json["name"], "RATE_LIMIT_REACHED");
    assert_eq!(json["details"][0]["issue"], "RATE_LIMIT");
    // Stripe's: a mismatch is a 400 idempotency_error, in-use keeps Stripe's code.
    let response = ProxyError::KeyMismatch.into_response(&STRIPE);
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(response).await["error"]["type"],
        "idempotency_error"
    );
    let json = json_of(ProxyError::KeyInUse.into_response(&STRIPE)).await;
    assert_eq!(json["error"]["code"], "idempotency_key_in_use");
}

#[test]
fn client_faults_are_invalid_request_errors() {
    let e = ProxyError::BodyTooLarge { limit: 10 };
    assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(e.stripe_type(), "invalid_request_error");
}
