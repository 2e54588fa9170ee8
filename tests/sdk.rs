//! The official SDKs, unchanged but for their base address, through payguard to the provider
//! double: stripe-node (npm, pinned in tests/sdk/node/package-lock.json), stripe-python (PyPI,
//! pinned in tests/run.sh) and Debian's python3-stripe. Each creates, confirms, reads back and
//! refunds payment intents with its own retries off and on, and under a fault profile; the
//! double's ledger must show every effect exactly once. (tests/sdk_errors.rs: their exceptions
//! for payguard's own errors.)
//!
//! Missing tools fail these tests with the command that installs them: a CI without node or the
//! SDKs must not pass by skipping. `tests/run.sh` installs them.

mod support;

use payguard_double::{self as double, DoubleConfig, DoubleHandle, EffectKind, Fault, Profile};
use support::sdk::Sdk;
use support::*;

/// No local limiter or breaker: these tests are about the SDKs and the ledger, and a breaker
/// tripped by injected faults would turn a flow into a test of the breaker.
const QUIET_LIMITS: &str = "[rate_limit]\nenabled = false\n[breaker]\nenabled = false\n";

/// Runs `orders` full flows through payguard and checks the ledger: for every order one
/// payment intent, one charge and one refund, and nothing twice.
async fn flows(sdk: Sdk, provider: &DoubleHandle, retries: u32, orders: usize, prefix: &str) {
    flows_with(sdk, provider, retries, orders, prefix, "").await;
}

/// As [`flows`], with more `[retry]` settings for payguard.
async fn flows_with(
    sdk: Sdk,
    provider: &DoubleHandle,
    retries: u32,
    orders: usize,
    prefix: &str,
    payguard_retry: &str,
) {
    let retry = format!(
        "[retry]\nbase_delay = \"5ms\"\nmax_delay = \"50ms\"\njitter_seed = 7\n{payguard_retry}"
    );
    let proxy = start_proxy(&config_toml(
        &provider.url(),
        &format!("{QUIET_LIMITS}{retry}"),
    ))
    .await;
    let lines = sdk
        .run(
            proxy.addr.port(),
            &["flow", &retries.to_string(), &orders.to_string(), prefix],
        )
        .await;
    assert_eq!(lines.len(), orders, "one line per order: {lines:?}");
    for line in &lines {
        assert_eq!(line["ok"], true, "{sdk:?}: {line}");
        assert_eq!(line["confirmed"], "succeeded", "{line}");
        assert_eq!(line["read"], "succeeded", "{line}");
        assert_eq!(line["refunded_intent"], line["intent"], "{line}");
    }
    let ledger = provider.ledger();
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());
    for line in &lines {
        let order = line["order"].as_str().unwrap();
        let intent = line["intent"].as_str().unwrap();
        let effects: Vec<_> = ledger
            .entries()
            .into_iter()
            .filter(|e| {
                e.order_id.as_deref() == Some(order) || e.payment_intent.as_deref() == Some(intent)
            })
            .collect();
        for kind in [
            EffectKind::PaymentIntentCreated,
            EffectKind::Charge,
            EffectKind::RefundCreated,
        ] {
            let n = effects.iter().filter(|e| e.kind == kind).count();
            assert_eq!(n, 1, "{sdk:?} order {order}: {kind:?} x{n}: {effects:?}");
        }
    }
    // Nothing but these orders' effects: three each.
    assert_eq!(ledger.entries().len(), 3 * orders, "{:?}", ledger.entries());
}

async fn clean_flows(sdk: Sdk, retries: u32) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    flows(sdk, &provider, retries, 3, &format!("clean-{retries}")).await;
}

/// A flaky network and provider front end: a third of all requests meet a reset before or
/// after processing, a 500, a 503 or a 429. payguard retries under the SDK's key, the SDK may
/// retry on top; the double dedups by key. Seeded, so the same faults strike every run.
async fn faulty_flows(sdk: Sdk, retries: u32) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider
        .faults()
        .set_profile(Profile::transient(0.3, 11))
        .unwrap();
    flows(sdk, &provider, retries, 8, &format!("faulty-{retries}")).await;
    let injected = provider.faults().injected();
    assert!(injected >= 5, "the profile struck only {injected} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_flows_without_sdk_retries() {
    clean_flows(Sdk::Node, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_flows_with_sdk_retries() {
    clean_flows(Sdk::Node, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_flows_under_faults_without_sdk_retries() {
    faulty_flows(Sdk::Node, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_flows_under_faults_with_sdk_retries() {
    faulty_flows(Sdk::Node, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_flows_without_sdk_retries() {
    clean_flows(Sdk::Python, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_flows_with_sdk_retries() {
    clean_flows(Sdk::Python, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_flows_under_faults_without_sdk_retries() {
    faulty_flows(Sdk::Python, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_flows_under_faults_with_sdk_retries() {
    faulty_flows(Sdk::Python, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_flows_without_sdk_retries() {
    clean_flows(Sdk::Debian, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_flows_with_sdk_retries() {
    clean_flows(Sdk::Debian, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_flows_under_faults_without_sdk_retries() {
    faulty_flows(Sdk::Debian, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_flows_under_faults_with_sdk_retries() {
    faulty_flows(Sdk::Debian, 2).await;
}

/// payguard makes one attempt only, so every fault reaches the SDK, which must retry on its own
/// under its key. 429 is left out of the mix: none of these SDKs retries a plain 429, by design.
async fn sdk_retries_alone(sdk: Sdk) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let mix = [
        Fault::ResetBeforeProcessing,
        Fault::ResetAfterProcessing,
        Fault::Status(500),
        Fault::Status(503),
    ];
    let profile = Profile {
        rate: 0.25,
        mix: mix.into_iter().map(|f| (f, 1)).collect(),
        seed: 3,
    };
    provider.faults().set_profile(profile).unwrap();
    let orders = 5;
    let one_attempt = "max_attempts = 1\n";
    flows_with(sdk, &provider, 3, orders, "sdk-retries", one_attempt).await;
    // Four calls per order; anything beyond is the SDK's own retries.
    let resent = provider.requests_seen().saturating_sub(4 * orders as u64);
    assert!(resent >= 2, "the SDK retried only {resent} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_retries_alone_through_a_single_attempt_payguard() {
    sdk_retries_alone(Sdk::Node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_retries_alone_through_a_single_attempt_payguard() {
    sdk_retries_alone(Sdk::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_retries_alone_through_a_single_attempt_payguard() {
    sdk_retries_alone(Sdk::Debian).await;
}
