//! The seed article's failures, as regression tests against the provider double: retries end,
//! 4xx are final, keys are stable, provider hints are obeyed, and nothing is charged twice.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use payguard_double::{self as double, DoubleConfig, Fault};
use support::*;

/// Fast retries so tests take milliseconds; no jitter surprises (seeded).
const RETRY: &str =
    "[retry]\nmax_attempts = 4\nbase_delay = \"1ms\"\nmax_delay = \"5ms\"\njitter_seed = 1\n";

fn keyed_post(url: &str, form: &str, key: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("authorization", "Bearer sk_test_retries")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap()
}

fn attempts(reply: &Reply) -> u32 {
    reply.headers["payguard-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_retry_loop_always_ends() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    for _ in 0..20 {
        provider.faults().push(Fault::Status(503));
    }
    let proxy = start_proxy(&config_toml(&provider.url(), RETRY)).await;
    let reply = send(keyed_post(
        &proxy.url("/v1/payment_intents"),
        "amount=100&currency=usd",
        "k-ends",
    ))
    .await;
    // Each 503 may have executed: the keyed request ends "outcome unknown", never as a plain
    // 503 the app could take for "failed" and pay again under a new key.
    assert_outcome_unknown(&reply, &[502]);
    assert!(
        reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    assert_eq!(attempts(&reply), 4);
    assert_eq!(provider.requests_seen(), 4);
}

#[tokio::test]
async fn a_400_is_never_retried() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), RETRY)).await;
    // Missing amount: the provider's own validation error.
    let reply = send(keyed_post(
        &proxy.url("/v1/payment_intents"),
        "currency=usd",
        "k-400",
    ))
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(attempts(&reply), 1);
    assert_eq!(provider.requests_seen(), 1);
}

#[tokio::test]
async fn every_attempt_carries_the_same_idempotency_key() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::Status(500));
    provider.faults().push(Fault::Status(502));
    let proxy = start_proxy(&config_toml(&provider.url(), RETRY)).await;
    let reply = send(keyed_post(
        &proxy.url("/v1/payment_intents"),
        "amount=700&currency=usd",
        "k-same",
    ))
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(attempts(&reply), 3);
    let keys: Vec<String> = provider
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys, ["k-same", "k-same", "k-same"]);
    assert_eq!(provider.ledger().entries().len(), 1);
}

#[tokio::test]
async fn a_500_marked_should_retry_false_is_not_retried() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::ShouldRetry(500, false));
    let proxy = start_proxy(&config_toml(&provider.url(), RETRY)).await;
    let reply = send(keyed_post(
        &proxy.url("/v1/refunds"),
        "payment_intent=pi_x",
        "k-no",
    ))
    .await;
    assert_eq!(reply.status, 500);
    assert_eq!(attempts(&reply), 1);
}

#[tokio::test]
async fn a_reset_after_the_charge_then_a_retry_charges_exactly_once() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), RETRY)).await;
    let created = send(keyed_post(
        &proxy.url("/v1/payment_intents"),
        "amount=2500&currency=usd",
        "k-create",
    ))
    .await;
    let id = created.json()["id"].as_str().unwrap().to_owned();

    // The provider charges the card, then the connection dies before the reply.
    provider.faults().push(Fault::ResetAfterProcessing);
    let confirm = keyed_post(
        &proxy.url(&format!("/v1/payment_intents/{id}/confirm")),
        "",
        "k-confirm",
    );
    let reply = send(confirm).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(attempts(&reply), 2);
    assert_eq!(
        reply.headers["idempotent-replayed"], "true",
        "the retry got the saved result"
    );
    assert_eq!(reply.json()["status"], "succeeded");
    assert_eq!(provider.ledger().count(double::EffectKind::Charge), 1);
    assert!(provider.ledger().duplicates().is_empty());
}

/// Key injection off: the rule for POSTs that really carry no key.
const NO_INJECTION: &str = "[idempotency]\nstore = \"memory\"\ninject_keys = false\n";

#[tokio::test]
async fn a_keyless_post_that_reached_the_provider_is_not_retried() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::ResetAfterProcessing);
    let proxy = start_proxy(&config_toml(
        &provider.url(),
        &format!("{RETRY}{NO_INJECTION}"),
    ))
    .await;
    let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
    assert_payguard_error(&reply, 502, "payguard_upstream_failed");
    assert_eq!(attempts(&reply), 1);
    assert_eq!(
        provider.ledger().entries().len(),
        1,
        "one effect, and no second one"
    );
}

#[tokio::test]
async fn a_keyless_post_that_never_left_is_retried() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), RETRY)).await;
    // Rate limited before execution: safe to retry even without a key.
    provider.faults().push(Fault::RateLimited {
        retry_after: None,
        should_retry: None,
    });
    let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
    assert_eq!(reply.status, 200);
    assert_eq!(attempts(&reply), 2);
    assert_eq!(provider.ledger().entries().len(), 1);
}

#[tokio::test]
async fn an_empty_budget_refuses_retries_and_says_so() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::Status(500));
    let budget = "[retry_budget]\nratio = 0.0\nmin_per_second = 0\n";
    let proxy = start_proxy(&config_toml(&provider.url(), &format!("{RETRY}{budget}"))).await;
    let reply = send(keyed_post(
        &proxy.url("/v1/payment_intents"),
        "amount=100&currency=usd",
        "k-b",
    ))
    .await;
    assert_outcome_unknown(&reply, &[502]);
    assert_eq!(attempts(&reply), 1);
    let metrics = String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"payguard_retries_refused_total{reason="budget",route="default"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn retry_metrics_count_attempts_reasons_and_results() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::Status(503));
    let proxy = start_proxy(&config_toml(&provider.url(), RETRY)).await;
    send(keyed_post(
        &proxy.url("/v1/payment_intents"),
        "amount=100&currency=usd",
        "k-m1",
    ))
    .await;
    send(keyed_post(
        &proxy.url("/v1/payment_intents"),
        "amount=100&currency=usd",
        "k-m2",
    ))
    .await;
    let text = String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap();
    for line in [
        r#"payguard_upstream_attempts_total{outcome="5xx",route="default"} 1"#,
        r#"payguard_upstream_attempts_total{outcome="2xx",route="default"} 2"#,
        r#"payguard_retries_total{reason="server_error",route="default"} 1"#,
        r#"payguard_request_results_total{result="succeeded_after_retry",route="default"} 1"#,
        r#"payguard_request_results_total{result="succeeded_first_attempt",route="default"} 1"#,
        r#"payguard_upstream_attempt_duration_seconds_count{route="default"} 3"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn an_injected_key_makes_a_keyless_post_safe_to_retry() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::ResetAfterProcessing);
    let proxy = start_proxy(&config_toml(&provider.url(), RETRY)).await;
    let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
    assert_eq!(reply.status, 200);
    assert_eq!(attempts(&reply), 2);
    let injected = reply.headers["payguard-idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(injected.starts_with("payguard-"), "{injected}");
    let keys: Vec<_> = provider
        .requests()
        .iter()
        .map(|r| r.headers["idempotency-key"].clone())
        .collect();
    assert_eq!(
        keys,
        [injected.clone(), injected],
        "one key, on every attempt"
    );
    assert_eq!(
        provider.ledger().entries().len(),
        1,
        "the retry was replayed, not re-executed"
    );
}
