//! The resolver against the provider double: requests left without a definitive answer are
//! settled later, once, through the normal request path; the app's retry then gets the answer
//! from payguard's store. Real sockets and small intervals; no paused time, since the double
//! and payguard talk over TCP.

mod support;

use std::time::{Duration, Instant};

use payguard_double::{self as double, DoubleConfig, EffectKind, Fault};
use support::resolver::{FAST, metric, payment, resolving, rows, wait_for};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_whose_reply_is_always_lost_is_resolved_once_and_replayed() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    // Both attempts execute at the provider, and both replies are lost.
    provider.faults().push(Fault::ResetAfterProcessing);
    provider.faults().push(Fault::ResetAfterProcessing);
    let proxy = start_proxy(&config_toml(&provider.url(), &resolving(""))).await;
    let url = proxy.url("/v1/payment_intents");
    let form = "amount=2500&currency=usd&confirm=true";

    let first = send(payment(&url, "order-lost", form)).await;
    assert_eq!(
        first.status,
        502,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(provider.requests_seen(), 2);

    let row = wait_for(&proxy.admin.to_string(), "order-lost", "resolved").await;
    assert_eq!(row["outcome"], "200");
    assert_eq!(row["route"], "default");
    assert!(row["attempts"].as_u64().unwrap() >= 3, "{row}");
    let ledger = provider.ledger();
    assert_eq!(ledger.count(EffectKind::PaymentIntentCreated), 1);
    assert_eq!(ledger.count(EffectKind::Charge), 1);
    assert!(ledger.duplicates().is_empty());

    // The app's retry: payguard answers from its store, the provider sees nothing new.
    let seen = provider.requests_seen();
    let retry = send(payment(&url, "order-lost", form)).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.headers["payguard-attempts"], "0");
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert_eq!(provider.requests_seen(), seen);
    assert_eq!(
        retry.json()["id"].as_str(),
        Some(ledger.entries()[0].object_id.as_str())
    );

    let text = get(&proxy.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&text.body);
    let resolved = r#"payguard_unresolved_resolutions_total{outcome="resolved",route="default"}"#;
    assert_eq!(metric(&text, resolved), Some(1.0));
    assert_eq!(
        metric(&text, r#"payguard_unresolved_requests{route="default"}"#),
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_provider_never_received_is_resent_and_completes_once() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::ResetBeforeProcessing);
    provider.faults().push(Fault::ResetBeforeProcessing);
    let proxy = start_proxy(&config_toml(&provider.url(), &resolving(""))).await;
    let url = proxy.url("/v1/payment_intents");
    let first = send(payment(&url, "order-unseen", "amount=700&currency=usd")).await;
    assert_eq!(first.status, 502);
    assert_eq!(provider.ledger().entries().len(), 0, "nothing executed yet");

    let row = wait_for(&proxy.admin.to_string(), "order-unseen", "resolved").await;
    assert_eq!(row["outcome"], "200");
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
    assert!(provider.ledger().duplicates().is_empty());
    // Resolved means done: no further sends.
    let seen = provider.requests_seen();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(provider.requests_seen(), seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_sends_wait_for_the_rate_limiter() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let limit = "[rate_limit]\nrate = 4.0\nburst = 1\nadaptive = false\nmax_wait = \"3s\"\n\
                 [breaker]\nenabled = false\n";
    let toml = config_toml(&provider.url(), &resolving(limit))
        .replace("max_attempts = 2", "max_attempts = 1")
        // Re-sends start after the app's three requests, which each take a token.
        .replace("base_delay = \"50ms\"", "base_delay = \"1s\"")
        .replace("max_delay = \"200ms\"", "max_delay = \"2s\"");
    let proxy = start_proxy(&toml).await;
    let url = proxy.url("/v1/payment_intents");
    for i in 0..3 {
        provider.faults().push(Fault::ResetBeforeProcessing);
        let reply = send(payment(
            &url,
            &format!("limited-{i}"),
            &format!("amount={}&currency=usd", 100 + i),
        ))
        .await;
        assert_eq!(reply.status, 502);
    }
    // Watch the provider's arrivals while the resolver re-sends all three.
    let before = provider.requests_seen();
    let mut arrivals = Vec::new();
    let started = Instant::now();
    while arrivals.len() < 3 && started.elapsed() < Duration::from_secs(10) {
        let seen = provider.requests_seen() - before;
        while (arrivals.len() as u64) < seen {
            arrivals.push(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(arrivals.len(), 3, "all three re-sent");
    // 4 per second with a burst of 1: a token every 250 ms, so 500 ms from the first re-send
    // to the third. Without the limiter they would leave within a millisecond of each other.
    // (The span, not each gap, so that one late poll on a busy machine cannot fail the test.)
    let span = arrivals[2] - arrivals[0];
    assert!(
        span >= Duration::from_millis(400),
        "three re-sends within {span:?}"
    );
    for i in 0..3 {
        wait_for(
            &proxy.admin.to_string(),
            &format!("limited-{i}"),
            "resolved",
        )
        .await;
    }
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_gives_up_when_the_key_window_nears_its_end() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    for _ in 0..200 {
        provider.faults().push(Fault::Status(503));
    }
    // A 2 s window and a 1 s request deadline: re-sends may start for about a second.
    let toml = config_toml(&provider.url(), &resolving(""))
        .replace("deadline = \"2s\"", "deadline = \"1s\"")
        .replace(
            "interval = \"20ms\"",
            "interval = \"20ms\"\nkey_window = \"2s\"",
        )
        + "[breaker]\nenabled = false\n";
    let proxy = start_proxy(&toml).await;
    let url = proxy.url("/v1/payment_intents");
    let started = Instant::now();
    let first = send(payment(&url, "order-doomed", "amount=1")).await;
    assert_outcome_unknown(&first, &[502]);

    let row = wait_for(&proxy.admin.to_string(), "order-doomed", "gave_up").await;
    assert_eq!(row["outcome"], "key_window");
    assert!(
        row["rounds"].as_u64().unwrap() >= 1,
        "it was re-sent first: {row}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "given up before the window ended"
    );
    assert!(row["last_error"].as_str().unwrap().contains("503"));
    let seen = provider.requests_seen();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provider.requests_seen(), seen, "no sends after giving up");
    assert!(provider.ledger().entries().is_empty());

    let text = get(&proxy.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&text.body);
    let gave_up =
        r#"payguard_unresolved_resolutions_total{outcome="gave_up_key_window",route="default"}"#;
    assert_eq!(metric(&text, gave_up), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_only_route_records_and_the_apps_retry_resolves_it() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let route = "[[route]]\nname = \"intents\"\nmatch = \"POST /v1/payment_intents\"\n\
                 [route.resolver]\nenabled = false\n";
    let proxy = start_proxy(&config_toml(&provider.url(), &resolving(route))).await;
    let url = proxy.url("/v1/payment_intents");
    provider.faults().push(Fault::ResetAfterProcessing);
    provider.faults().push(Fault::ResetAfterProcessing);
    let form = "amount=900&currency=usd";
    assert_eq!(send(payment(&url, "order-manual", form)).await.status, 502);

    let admin = proxy.admin.to_string();
    let row = wait_for(&admin, "order-manual", "pending").await;
    assert_eq!(
        (row["resend"].as_bool(), row["route"].as_str()),
        (Some(false), Some("intents"))
    );
    let seen = provider.requests_seen();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        provider.requests_seen(),
        seen,
        "a report-only route is never re-sent"
    );
    let text = String::from_utf8_lossy(&get(&proxy.admin_url("/metrics")).await.body).into_owned();
    assert_eq!(
        metric(&text, r#"payguard_unresolved_requests{route="intents"}"#),
        Some(1.0)
    );
    assert!(metric(&text, "payguard_unresolved_oldest_age_seconds").is_some());

    // The app's own retry gets the provider's stored answer: that resolves the entry.
    let retry = send(payment(&url, "order-manual", form)).await;
    assert_eq!(retry.status, 200);
    let row = wait_for(&admin, "order-manual", "resolved").await;
    assert_eq!(row["outcome"], "200");
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
    // The listing never shows credentials or bodies.
    let all = serde_json::to_string(&rows(&admin).await).unwrap();
    assert!(!all.contains("sk_test") && !all.contains("amount"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitive_answers_leave_nothing_in_the_journal() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), &resolving(""))).await;
    let url = proxy.url("/v1/payment_intents");
    assert_eq!(
        send(payment(&url, "ok-1", "amount=1&currency=usd"))
            .await
            .status,
        200
    );
    provider.faults().push(Fault::BadRequest);
    assert_eq!(
        send(payment(&url, "bad-1", "amount=2&currency=usd"))
            .await
            .status,
        400
    );
    assert!(rows(&proxy.admin.to_string()).await.is_empty());
    // Give-up refuses unknown ids and short prefixes.
    let post = |path: &str| {
        http::Request::post(proxy.admin_url(path))
            .body(http_body_util::Full::default())
            .unwrap()
    };
    assert_eq!(send(post("/unresolved/abcdef01/give-up")).await.status, 404);
    assert_eq!(send(post("/unresolved/ab/give-up")).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_window_across_keys_an_unknown_outcome_is_reported_never_resent() {
    // The app could pay again under a new key, and nothing would tie it to this request: a
    // re-send by payguard could then charge twice. So the entry is only listed.
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::ResetAfterProcessing);
    provider.faults().push(Fault::ResetAfterProcessing);
    let proxy = start_proxy(&config_toml(&provider.url(), FAST)).await;
    let url = proxy.url("/v1/payment_intents");
    let first = send(payment(&url, "order-unwindowed", "amount=300&currency=usd")).await;
    assert_outcome_unknown(&first, &[502]);
    let row = wait_for(&proxy.admin.to_string(), "order-unwindowed", "pending").await;
    assert_eq!(row["resend"].as_bool(), Some(false), "{row}");
    let seen = provider.requests_seen();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        provider.requests_seen(),
        seen,
        "nothing sent on payguard's own"
    );
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_stops_before_the_duplicate_window_closes() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    for _ in 0..200 {
        provider.faults().push(Fault::Status(503));
    }
    // A 1.5 s window and a 1 s deadline: a re-send may start for about half a second; after
    // the window the app may pay again under a new key, so payguard must not send it again.
    let toml = config_toml(&provider.url(), &resolving("[breaker]\nenabled = false\n"))
        .replace("dedup_window = \"1h\"", "dedup_window = \"1500ms\"")
        .replace("deadline = \"2s\"", "deadline = \"1s\"");
    let proxy = start_proxy(&toml).await;
    let url = proxy.url("/v1/payment_intents");
    let started = Instant::now();
    let first = send(payment(&url, "order-window", "amount=2")).await;
    assert_outcome_unknown(&first, &[502]);
    let row = wait_for(&proxy.admin.to_string(), "order-window", "gave_up").await;
    assert_eq!(row["outcome"], "dedup_window");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "before it closed"
    );
    let seen = provider.requests_seen();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provider.requests_seen(), seen, "no sends after giving up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_off_on_its_way_leaves_the_request_pending() {
    // The provider executes and starts answering, then the body is cut half way: the app
    // never got the answer, so the journal must not take the head for a definitive answer.
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), FAST)).await;
    let url = proxy.url("/v1/payment_intents");
    provider.faults().push(Fault::TruncatedBody);
    let form = "amount=640&currency=usd";
    let first = send(payment(&url, "order-cut", form)).await;
    assert_outcome_unknown(&first, &[502]);
    let admin = proxy.admin.to_string();
    let row = wait_for(&admin, "order-cut", "pending").await;
    assert!(
        row["last_error"].as_str().unwrap().contains("cut off"),
        "{row}"
    );
    // The app's retry under the key gets the provider's record: resolved, charged once.
    let retry = send(payment(&url, "order-cut", form)).await;
    assert_eq!(retry.status, 200);
    wait_for(&admin, "order-cut", "resolved").await;
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_never_reads_not_executed_while_an_earlier_attempt_is_in_doubt() {
    // The payment's first request ends "outcome unknown" and opens the breaker. Its retries,
    // under the same key or under a new one the duplicate window joins to it, are refused
    // locally: nothing is sent, but the payment may still be executed by the resolver, so the
    // app must hear "outcome unknown", not a 503 it would take for "failed".
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    for _ in 0..2 {
        provider.faults().push(Fault::Status(503));
    }
    let breaker = "[breaker]\nconsecutive_failures = 2\nbreak_duration = \"30s\"\n";
    let proxy = start_proxy(&config_toml(&provider.url(), &resolving(breaker))).await;
    let url = proxy.url("/v1/payment_intents");
    let form = "amount=880&currency=usd&metadata[order_id]=doubt-1";
    let first = send(payment(&url, "doubt-key", form)).await;
    assert_outcome_unknown(&first, &[502]);
    // The same key: refused by the open breaker, still in doubt.
    let again = send(payment(&url, "doubt-key", form)).await;
    assert_outcome_unknown(&again, &[502]);
    assert_eq!(again.headers["payguard-attempts"], "0");
    // A new key for the same payment (the article's loop): joined, refused, still in doubt.
    let fresh = send(payment(&url, "doubt-key-2", form)).await;
    assert_outcome_unknown(&fresh, &[502]);
    // Another payment that nothing ties to a doubt: the plain refusal.
    let other = send(payment(&url, "other-key", "amount=1&currency=usd")).await;
    assert_payguard_error(&other, 503, "payguard_circuit_open");
    assert_eq!(provider.requests_seen(), 2);
}
