//! The admin listener: liveness, readiness and Prometheus metrics labelled by configured routes.

mod support;

use payguard_double::{self as double, DoubleConfig};
use support::*;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let routes =
        "[[route]]\nname = \"create_payment_intent\"\nmatch = \"POST /v1/payment_intents\"\n";
    let proxy = start_proxy(&config_toml(&provider.url(), routes)).await;

    assert_eq!(get(&proxy.admin_url("/healthz")).await.status, 200);
    assert_eq!(get(&proxy.admin_url("/readyz")).await.status, 200);
    assert_eq!(get(&proxy.admin_url("/nope")).await.status, 404);

    post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
    post_form(&proxy.url("/v1/payment_intents"), "currency=usd").await;
    get(&proxy.url("/v1/payment_intents/pi_unknown/whatever")).await;

    let metrics = get(&proxy.admin_url("/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    for line in [
        r#"payguard_requests_total{origin="upstream",route="create_payment_intent",status_class="2xx"} 1"#,
        r#"payguard_requests_total{origin="upstream",route="create_payment_intent",status_class="4xx"} 1"#,
        r#"payguard_requests_total{origin="upstream",route="default",status_class="4xx"} 1"#,
        r#"payguard_request_duration_seconds_count{route="create_payment_intent"} 2"#,
        "payguard_requests_in_flight 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    // Labels come from config only: no raw path or id leaks into a series.
    assert!(!text.contains("pi_unknown"));
    assert!(!text.contains("sk_test"));
}
