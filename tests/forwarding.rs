//! Pass-through fidelity: what the app sends is what the provider gets, and back.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use payguard_double::{self as double, DoubleConfig};
use support::*;

#[tokio::test]
async fn method_path_query_headers_and_body_pass_unchanged() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;

    let request = Request::post(proxy.url("/_double/echo?expand[]=latest_charge&q=a%20b"))
        .header("authorization", "Bearer sk_test_fidelity")
        .header("stripe-account", "acct_123")
        .header("stripe-version", "2024-06-20")
        .header("x-echo-trace", "abc")
        .header("connection", "keep-alive, x-hop-only")
        .header("x-hop-only", "must not cross")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"amount=2000&currency=usd")))
        .unwrap();
    let reply = send(request).await;

    assert_eq!(reply.status, 200);
    // The double echoes x-echo-* request headers back as response headers.
    assert_eq!(reply.headers["x-echo-trace"], "abc");
    let echo = reply.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/_double/echo");
    assert_eq!(echo["query"], "expand[]=latest_charge&q=a%20b");
    assert_eq!(echo["body"], "amount=2000&currency=usd");
    let header = |name: &str| echo["headers"][name][0].as_str().map(str::to_owned);
    assert_eq!(
        header("authorization").as_deref(),
        Some("Bearer sk_test_fidelity")
    );
    assert_eq!(header("stripe-account").as_deref(), Some("acct_123"));
    assert_eq!(header("stripe-version").as_deref(), Some("2024-06-20"));
    assert_eq!(
        header("x-hop-only"),
        None,
        "headers named by Connection are hop-by-hop"
    );
    assert_eq!(
        header("host"),
        Some(provider.addr().to_string()),
        "Host names the upstream"
    );
}

#[tokio::test]
async fn provider_statuses_and_error_bodies_pass_unchanged() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;

    // A validation error from the provider is relayed as is, not rewritten by payguard.
    let reply = post_form(&proxy.url("/v1/payment_intents"), "currency=usd").await;
    assert_eq!(reply.status, 400);
    assert!(reply.headers.get("payguard-error").is_none());
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    let created = post_form(
        &proxy.url("/v1/payment_intents"),
        "amount=1500&currency=eur",
    )
    .await;
    assert_eq!(created.status, 200);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pi_"));
    let read = send(
        Request::get(proxy.url(&format!("/v1/payment_intents/{id}")))
            .header("authorization", "Bearer sk_test_payguard")
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["amount"], 1500);
}

#[tokio::test]
async fn a_multi_megabyte_response_streams_through_intact() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;
    let size = 8 * 1024 * 1024 + 17;

    let direct = get(&format!("{}/_double/large?bytes={size}", provider.url())).await;
    let response = client()
        .request(
            Request::get(proxy.url(&format!("/_double/large?bytes={size}")))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Count frames to show the body arrives in pieces rather than as one buffered blob.
    let mut body = response.into_body();
    let (mut frames, mut received) = (0usize, Vec::with_capacity(size));
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames += 1;
            received.extend_from_slice(&data);
        }
    }
    assert_eq!(received.len(), size);
    assert!(
        received == direct.body,
        "bytes differ from the direct response"
    );
    assert!(frames > 8, "expected a streamed body, got {frames} frames");
}

#[tokio::test]
async fn h2c_clients_are_served_too() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;
    let h2: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let response = h2
        .request(
            Request::get(proxy.url("/_double/echo?h=2"))
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["query"], "h=2");
}
