//! The money path against the payguard binary running the shipped `config.toml` (only its
//! upstream, store file and listeners changed): the two defects first reproduced that way.
//! `PAYGUARD_BIN=target/release/payguard` runs them against the release build.
//!
//! - A request the app abandoned before it left payguard is never sent, now or later.
//! - `Stripe-Context` is part of the tenant: one API key acting for two accounts never gets
//!   one account's answer replayed to the other.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use payguard_double::{self as double, DoubleConfig, EffectKind};
use support::process::{shipped_config_file, spawn_payguard};
use support::resolver::rows;
use support::*;

fn payment(proxy: &str, key: &str, order: usize) -> http::Request<Full<Bytes>> {
    let form = format!(
        "amount={}&currency=usd&metadata[order_id]=abandon-{order}",
        100 + order
    );
    http::Request::post(format!("http://{proxy}/v1/payment_intents"))
        .header("authorization", "Bearer sk_test_money_path")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(form)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_abandoned_in_the_limiters_queue_are_never_sent() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let payguard = spawn_payguard(&shipped_config_file(dir.path(), &provider.url())).await;
    // Twelve keyed payments at once: the shipped limiter (9.8/s, no burst) sends one every
    // 102 ms; the apps hang up after 150 ms, so most are still queued when they do.
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let request = payment(&payguard.proxy, &format!("abandon-key-{i}"), i);
            tokio::spawn(tokio::time::timeout(
                Duration::from_millis(150),
                send(request),
            ))
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        answered += usize::from(task.await.unwrap().is_ok());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = provider.requests_seen();
    assert!(sent < 12, "most were abandoned in the queue: {sent} sent");
    let effects = provider.ledger().count(EffectKind::PaymentIntentCreated);
    assert_eq!(effects as u64, sent, "one effect per request that left");
    // Nothing is left for the resolver (it only ever sends what its journal holds) but for a
    // request that did leave and whose app hung up before the answer, on a slow machine.
    let sent_keys: Vec<String> = provider
        .requests()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_owned))
        .collect();
    let rows = rows(&payguard.admin).await;
    for row in &rows {
        let key = row["key"].as_str().unwrap();
        assert!(
            sent_keys.iter().any(|k| k == key),
            "{answered} answered; {key} never left, yet is journaled: {rows:?}"
        );
    }
    // And nothing arrives later (the shipped resolver looks every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        provider.requests_seen(),
        sent,
        "nothing sent on payguard's own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_api_key_acting_for_two_accounts_is_two_tenants() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let payguard = spawn_payguard(&shipped_config_file(dir.path(), &provider.url())).await;
    let pay = |account: &'static str| {
        let mut request = payment(&payguard.proxy, "same-key", 1);
        let context = http::HeaderValue::from_static(account);
        request.headers_mut().insert("stripe-context", context);
        send(request)
    };
    let a = pay("acct_context_a").await;
    let b = pay("acct_context_b").await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    assert!(
        b.headers.get("idempotent-replayed").is_none(),
        "b got a's record"
    );
    assert_ne!(a.json()["id"], b.json()["id"]);
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 2);
}
