//! The optional webhook: a resolution is POSTed, signed, to the configured URL; a failed
//! delivery is retried with the same event id.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use payguard::journal::webhook::signature;
use payguard_double::{self as double, DoubleConfig, Fault};
use support::resolver::{payment, resolving, wait_for};
use support::*;
use tokio::net::TcpListener;

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A receiver that answers 500 to the first delivery and 200 to the rest.
async fn receiver() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/payguard", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let log = log.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let mut log = log.lock().unwrap();
                    log.push((parts.headers, body));
                    let status = if log.len() == 1 { 500 } else { 200 };
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_is_notified_signed_and_retried_under_one_event_id() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let (url, seen) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_test_0123456789abcdef";
    std::fs::write(dir.path().join("hook.secret"), format!("{secret}\n")).unwrap();
    let hook = format!(
        "[resolver.webhook]\nurl = \"{url}\"\nsecret_file = \"{}\"\nbase_delay = \"20ms\"\n",
        dir.path().join("hook.secret").display()
    );
    let proxy = start_proxy(&config_toml(&provider.url(), &resolving(&hook))).await;
    provider.faults().push(Fault::ResetAfterProcessing);
    provider.faults().push(Fault::ResetAfterProcessing);
    let intents = proxy.url("/v1/payment_intents");
    let reply = send(payment(&intents, "hooked-1", "amount=100&currency=usd")).await;
    assert_eq!(reply.status, 502);
    let row = wait_for(&proxy.admin.to_string(), "hooked-1", "resolved").await;

    let started = Instant::now();
    while seen.lock().unwrap().len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deliveries = seen.lock().unwrap().clone();
    assert_eq!(
        deliveries.len(),
        2,
        "the refused delivery was retried, once"
    );
    let ids: Vec<&str> = deliveries
        .iter()
        .map(|(h, _)| h["payguard-event-id"].to_str().unwrap())
        .collect();
    assert_eq!(ids[0], ids[1], "one event id across retries");
    for (headers, body) in &deliveries {
        let sig = headers["payguard-signature"].to_str().unwrap();
        let t: u64 = sig
            .strip_prefix("t=")
            .and_then(|s| s.split(',').next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            sig,
            signature(secret.as_bytes(), t, body),
            "signed with the secret"
        );
        let event: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["id"], ids[0]);
        assert_eq!(event["type"], "unresolved.resolved");
        assert_eq!(event["key"], "hooked-1");
        assert_eq!(event["outcome"], "200");
        assert_eq!(event["entry"], row["id"]);
        let text = String::from_utf8_lossy(body);
        assert!(
            !text.contains("sk_test") && !text.contains("amount"),
            "{text}"
        );
    }
    // Nothing more comes: delivered is delivered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(seen.lock().unwrap().len(), 2);
}
