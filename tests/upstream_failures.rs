//! When the upstream cannot answer, the app gets payguard's own Stripe-shaped 502 or 504.

mod support;

use std::time::Duration;

use payguard_double::{self as double, DoubleConfig, Fault};
use support::*;

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let once = "[retry]\nmax_attempts = 1";
    let proxy = start_proxy(&config_toml(&format!("http://127.0.0.1:{port}"), once)).await;
    let reply = post_form(&proxy.url("/v1/refunds"), "payment_intent=pi_1").await;
    assert_payguard_error(&reply, 502, "payguard_upstream_unreachable");
    assert_eq!(reply.json()["error"]["type"], "api_error");
}

#[tokio::test]
async fn an_upstream_that_stalls_past_the_response_timeout_is_a_504() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider
        .faults()
        .push(Fault::Stall(Duration::from_secs(10)));
    let retry = "[retry]\nmax_attempts = 1\nattempt_timeout = \"200ms\"";
    let toml = config_toml(&provider.url(), retry);
    let proxy = start_proxy(&toml).await;
    let started = std::time::Instant::now();
    let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
    // A keyed request (payguard injects a key) that may have executed: outcome unknown.
    assert_outcome_unknown(&reply, &[504]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_reset_connection_is_a_502() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::ResetBeforeProcessing);
    // A keyless POST that was sent is never retried (key injection off): the reset is final.
    let no_keys = "[idempotency]\nstore = \"memory\"\ninject_keys = false";
    let proxy = start_proxy(&config_toml(&provider.url(), no_keys)).await;
    let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
    assert_payguard_error(&reply, 502, "payguard_upstream_failed");
    assert_eq!(provider.ledger().entries().len(), 0);
}
