//! A flood of distinct idempotency keys cannot grow the store past `idempotency.max_records`,
//! in memory or on disk: keys beyond the bound are forwarded undeduplicated (or refused, when
//! the route fails closed), the records already held keep replaying, and every client is served.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use payguard_double::{self as double, DoubleConfig};
use support::*;

const BOUND: usize = 30;
const FLOOD: usize = 90;

async fn keyed(proxy: &Proxy, key: &str) -> Reply {
    let request = http::Request::post(proxy.url("/v1/payment_intents"))
        .header("authorization", "Bearer sk_test_flood")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(b"amount=100&currency=usd")))
        .unwrap();
    send(request).await
}

/// The records gauge, once the periodic prune has counted more than zero.
async fn records(proxy: &Proxy) -> usize {
    for _ in 0..100 {
        let text =
            String::from_utf8_lossy(&get(&proxy.admin_url("/metrics")).await.body).into_owned();
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("payguard_idempotency_records "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if value > 0.0 {
            return value as usize;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the records gauge never moved");
}

async fn flood(store: &str) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let settings =
        format!("[idempotency]\n{store}\nmax_records = {BOUND}\nprune_interval = \"1s\"\n");
    let proxy = start_proxy(&config_toml(&provider.url(), &settings)).await;

    for n in 0..FLOOD {
        let reply = keyed(&proxy, &format!("flood-{n}")).await;
        assert_eq!(
            reply.status,
            200,
            "{n}: {}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    assert_eq!(
        records(&proxy).await,
        BOUND,
        "the store holds exactly its bound"
    );

    // What was stored still replays; a key that found the store full was simply forwarded,
    // and the provider (which deduplicates by key itself) answers its retry.
    let replay = keyed(&proxy, "flood-0").await;
    assert_eq!(
        replay
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let seen = provider.requests_seen();
    let late = keyed(&proxy, &format!("flood-{}", FLOOD - 1)).await;
    assert_eq!(late.status, 200);
    assert_eq!(provider.requests_seen(), seen + 1, "not held, so forwarded");
    assert_eq!(
        provider.ledger().entries().len(),
        FLOOD,
        "one effect per key all the same"
    );
    assert_eq!(records(&proxy).await, BOUND);
}

#[tokio::test]
async fn a_key_flood_fills_the_memory_store_to_its_bound_and_no_further() {
    flood("store = \"memory\"").await;
}

#[tokio::test]
async fn a_key_flood_fills_the_embedded_store_to_its_bound_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.redb");
    flood(&format!(
        "store = \"embedded\"\npath = {:?}",
        path.display().to_string()
    ))
    .await;
}

#[tokio::test]
async fn a_route_failing_closed_refuses_keys_past_the_bound() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let settings = format!(
        "[idempotency]\nstore = \"memory\"\nmax_records = {BOUND}\non_store_error = \"closed\"\n"
    );
    let proxy = start_proxy(&config_toml(&provider.url(), &settings)).await;
    for n in 0..BOUND {
        assert_eq!(keyed(&proxy, &format!("k-{n}")).await.status, 200);
    }
    let refused = keyed(&proxy, "one-too-many").await;
    assert_payguard_error(&refused, 503, "payguard_store_unavailable");
    assert_eq!(
        provider.requests_seen(),
        BOUND as u64,
        "the refused key was not sent"
    );
    // Other requests are still served: a stored key replays, a GET needs no record.
    assert_eq!(keyed(&proxy, "k-0").await.status, 200);
    assert!(
        !get(&proxy.url("/v1/balance"))
            .await
            .status
            .is_server_error()
    );
}
