//! Idempotency against the provider double: duplicates coalesced and replayed, mismatches
//! refused, tenants kept apart, records kept across restarts and expired on time, and keyless
//! duplicates caught inside a route's dedup window.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use payguard_double::{self as double, DoubleConfig, EffectKind};
use support::*;

fn post(url: &str, api_key: &str, idem: Option<&str>, form: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::post(url)
        .header("authorization", format!("Bearer {api_key}"))
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(key) = idem {
        builder = builder.header("idempotency-key", key);
    }
    builder
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap()
}

fn replayed(reply: &Reply) -> bool {
    reply
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_duplicates_make_one_effect_and_one_answer() {
    // A slow provider, so the duplicates arrive while the first request is in flight.
    let provider = double::spawn(DoubleConfig {
        latency: Duration::from_millis(300),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;
    let url = proxy.url("/v1/payment_intents");
    let sends = (0..100).map(|_| {
        let request = post(
            &url,
            "sk_test_dup",
            Some("order-42"),
            "amount=4200&currency=usd",
        );
        tokio::spawn(send(request))
    });
    let mut replies = Vec::new();
    for task in sends {
        replies.push(task.await.unwrap());
    }

    assert!(replies.iter().all(|r| r.status == 200));
    assert!(
        replies.iter().all(|r| r.body == replies[0].body),
        "100 identical answers"
    );
    assert_eq!(replies.iter().filter(|r| replayed(r)).count(), 99);
    assert_eq!(
        provider.requests_seen(),
        1,
        "only the first reached the provider"
    );
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
    let metrics = String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"payguard_idempotency_replays_total{route="default"} 99"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_key_reused_for_other_parameters_is_refused_without_contacting_the_provider() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;
    let url = proxy.url("/v1/payment_intents");
    assert_eq!(
        send(post(
            &url,
            "sk_test_m",
            Some("k1"),
            "amount=100&currency=usd"
        ))
        .await
        .status,
        200
    );
    let reply = send(post(
        &url,
        "sk_test_m",
        Some("k1"),
        "amount=999&currency=usd",
    ))
    .await;
    assert_payguard_error(&reply, 400, "payguard_idempotency_key_reused");
    assert_eq!(reply.json()["error"]["type"], "idempotency_error");
    let other_path = send(post(
        &proxy.url("/v1/refunds"),
        "sk_test_m",
        Some("k1"),
        "amount=100&currency=usd",
    ))
    .await;
    assert_payguard_error(&other_path, 400, "payguard_idempotency_key_reused");
    assert_eq!(provider.requests_seen(), 1);
}

#[tokio::test]
async fn the_same_key_under_two_api_keys_is_two_requests() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;
    let url = proxy.url("/v1/payment_intents");
    let a = send(post(
        &url,
        "sk_test_tenant_a",
        Some("shared"),
        "amount=100&currency=usd",
    ))
    .await;
    let b = send(post(
        &url,
        "sk_test_tenant_b",
        Some("shared"),
        "amount=100&currency=usd",
    ))
    .await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    assert!(!replayed(&b), "tenant b was not served tenant a's record");
    assert_ne!(a.json()["id"], b.json()["id"]);
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 2);
}

#[tokio::test]
async fn the_same_key_for_two_accounts_of_one_api_key_is_two_requests() {
    // One platform key acting for two accounts, each named by the header its API uses:
    // `Stripe-Account` (Connect) or `Stripe-Context` (organizations, accounts v2).
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;
    let url = proxy.url("/v1/payment_intents");
    for header in ["stripe-context", "stripe-account"] {
        let pay = |account: &'static str| {
            let mut request = post(
                &url,
                "sk_test_platform",
                Some(&format!("shared-{header}")),
                "amount=100&currency=usd",
            );
            let value = http::HeaderValue::from_static(account);
            request.headers_mut().insert(header, value);
            send(request)
        };
        let a = pay("acct_a").await;
        let b = pay("acct_b").await;
        assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
        assert!(
            !replayed(&b),
            "{header}: account b was served account a's record"
        );
        assert_ne!(a.json()["id"], b.json()["id"]);
        let again = pay("acct_b").await;
        assert!(replayed(&again), "{header}: the same account is replayed");
    }
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 4);
}

#[tokio::test]
async fn records_survive_a_restart_on_the_embedded_store() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let toml = config_toml(
        &provider.url(),
        "[idempotency]\nstore = \"embedded\"\npath = \"store/records.redb\"",
    );
    let config = payguard::config::Config::parse(&toml, "restart test", Some(dir.path())).unwrap();

    let first = start_proxy_with(&config).await;
    let url = first.url("/v1/payment_intents");
    let original = send(post(
        &url,
        "sk_test_r",
        Some("survives"),
        "amount=300&currency=usd",
    ))
    .await;
    assert_eq!(original.status, 200);
    first.begin_shutdown().await.unwrap().unwrap();

    let second = start_proxy_with(&config).await;
    let url = second.url("/v1/payment_intents");
    let again = send(post(
        &url,
        "sk_test_r",
        Some("survives"),
        "amount=300&currency=usd",
    ))
    .await;
    assert!(replayed(&again));
    assert_eq!(
        again.headers["payguard-attempts"], "0",
        "answered from the store"
    );
    assert_eq!(again.body, original.body);
    assert_eq!(provider.requests_seen(), 1);
}

#[tokio::test]
async fn records_expire() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let store = "[idempotency]\nstore = \"memory\"\nttl = \"1s\"\nprune_interval = \"1s\"";
    let proxy = start_proxy(&config_toml(&provider.url(), store)).await;
    let url = proxy.url("/v1/payment_intents");
    let request = || {
        post(
            &url,
            "sk_test_e",
            Some("short-lived"),
            "amount=300&currency=usd",
        )
    };
    send(request()).await;
    assert!(replayed(&send(request()).await));
    assert_eq!(provider.requests_seen(), 1);

    // Real time: the records live in wall-clock milliseconds and the sockets are real.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let metrics = String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("payguard_idempotency_records 0"),
        "pruned:\n{metrics}"
    );
    send(request()).await;
    assert_eq!(
        provider.requests_seen(),
        2,
        "the expired record no longer answers"
    );
}

#[tokio::test]
async fn keyless_duplicates_inside_the_dedup_window_are_one_request() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let route = "[[route]]\nname = \"refunds\"\nmatch = \"POST /v1/payment_intents\"\n[route.idempotency]\ndedup_window = \"800ms\"";
    let proxy = start_proxy(&config_toml(&provider.url(), route)).await;
    let url = proxy.url("/v1/payment_intents");
    let request = || {
        post(
            &url,
            "sk_test_w",
            None,
            "amount=500&currency=usd&metadata[order_id]=o-1",
        )
    };

    let first = send(request()).await;
    let second = send(request()).await;
    assert_eq!(
        first.headers["payguard-idempotency-key"],
        second.headers["payguard-idempotency-key"]
    );
    assert!(replayed(&second));
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let third = send(request()).await;
    assert_ne!(
        third.headers["payguard-idempotency-key"],
        first.headers["payguard-idempotency-key"]
    );
    assert_eq!(
        provider.ledger().count(EffectKind::PaymentIntentCreated),
        2,
        "outside the window: a new request"
    );

    // A different body is a different request, even inside the window.
    let other = send(post(&url, "sk_test_w", None, "amount=501&currency=usd")).await;
    assert!(!replayed(&other));
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 3);
    // Three keys were made; the resend inside the window reused the first.
    let metrics = String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"payguard_idempotency_keys_injected_total{route="refunds"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_duplicate_still_in_flight_after_the_coalesce_wait_gets_409() {
    let provider = double::spawn(DoubleConfig {
        latency: Duration::from_millis(800),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    let store = "[idempotency]\nstore = \"memory\"\ncoalesce_wait = \"100ms\"";
    let proxy = start_proxy(&config_toml(&provider.url(), store)).await;
    let url = proxy.url("/v1/payment_intents");
    let first = tokio::spawn(send(post(
        &url,
        "sk_test_c",
        Some("slow"),
        "amount=1&currency=usd",
    )));
    while provider.requests_seen() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let duplicate = send(post(
        &url,
        "sk_test_c",
        Some("slow"),
        "amount=1&currency=usd",
    ))
    .await;
    assert_payguard_error(&duplicate, 409, "idempotency_key_in_use");
    assert_eq!(first.await.unwrap().status, 200);
}
