//! The seed article's experiment, reproduced: 1,000 payments against a provider where 30% of
//! attempts fail transiently (resets before and after processing, 500/503, 429), sent straight
//! to the provider and through payguard. The article reports 71.3% -> 98.6% completion at 1.4
//! attempts per order; payguard must do at least 99.5% with no duplicate charge and under 1.6
//! attempts per order.
//!
//! Requests go one at a time so the double's seeded fault sequence, and so the result, is the
//! same on every run.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use payguard_double::{self as double, DoubleConfig, EffectKind, Profile};
use support::*;

const ORDERS: usize = 1000;

/// Fast backoff so the run takes seconds; a budget wide enough for a 30% failure rate (the
/// budget's own behaviour is tested in retries.rs). The rate limiter and the breaker are off:
/// this measures retries alone, and the double has no rate limit to stay under. (At 30%
/// independent failures, five in a row happen a few times per thousand attempts, which the
/// default breaker would rightly treat as an outage.)
const CONFIG: &str = "[retry]\nmax_attempts = 5\nbase_delay = \"1ms\"\nmax_delay = \"8ms\"\njitter_seed = 3\n\
                      [retry_budget]\nratio = 1.0\n[rate_limit]\nenabled = false\n[breaker]\nenabled = false\n";

struct Run {
    completed: usize,
    attempts: u64,
}

/// Sends every order once, like an SDK would: a form POST with an idempotency key per order.
async fn run_orders(base: &str) -> Run {
    let client = client();
    let mut run = Run {
        completed: 0,
        attempts: 0,
    };
    for order in 0..ORDERS {
        let form =
            format!("amount=1999&currency=usd&confirm=true&metadata[order_id]=order-{order}");
        let request = Request::post(format!("{base}/v1/payment_intents"))
            .header("authorization", "Bearer sk_test_seed")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("idempotency-key", format!("order-{order}"))
            .body(Full::new(Bytes::from(form)))
            .unwrap();
        let response = client.request(request).await;
        run.attempts += response
            .as_ref()
            .ok()
            .and_then(|r| r.headers().get("payguard-attempts"))
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(1);
        if response.is_ok_and(|r| r.status() == 200) {
            run.completed += 1;
        }
    }
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payguard_completes_what_a_bare_client_loses_without_charging_twice() {
    // Straight at the provider: every transient fault is a lost order.
    let direct = double::spawn(DoubleConfig::default()).await.unwrap();
    direct
        .faults()
        .set_profile(Profile::transient(0.3, 11))
        .unwrap();
    let bare = run_orders(&direct.url()).await;
    let bare_rate = bare.completed as f64 / ORDERS as f64;

    // Through payguard, same fault profile.
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider
        .faults()
        .set_profile(Profile::transient(0.3, 11))
        .unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), CONFIG)).await;
    let guarded = run_orders(&format!("http://{}", proxy.addr)).await;
    let rate = guarded.completed as f64 / ORDERS as f64;
    let mean_attempts = guarded.attempts as f64 / ORDERS as f64;
    let ledger = provider.ledger();
    eprintln!(
        "direct: {:.1}% completed; payguard: {:.1}% completed, {mean_attempts:.2} attempts per order, {} charges, {} duplicates",
        bare_rate * 100.0,
        rate * 100.0,
        ledger.count(EffectKind::Charge),
        ledger.duplicates().len()
    );

    assert!(
        bare_rate < 0.8,
        "the fault profile bites without payguard: {bare_rate}"
    );
    assert!(rate >= 0.995, "completion through payguard {rate}");
    assert!(mean_attempts < 1.6, "mean attempts {mean_attempts}");
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());
    // Every completed order was charged exactly once; a failed one at most once.
    assert!(ledger.count(EffectKind::Charge) >= guarded.completed);
    assert!(ledger.count(EffectKind::Charge) <= ORDERS);
}
