//! What the chaos tests (`chaos_*.rs`) share: a keyed payment, timed, and the ledger's count
//! of charges for one order.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use payguard_double::{DoubleHandle, EffectKind};

use super::{Reply, send};

/// A confirmed payment for `order` under idempotency key `key`, sent to payguard at `base`
/// (`http://host:port`), and how long its answer took.
pub async fn timed_payment(base: &str, key: &str, order: &str) -> (Reply, Duration) {
    let request = http::Request::post(format!("{base}/v1/payment_intents"))
        .header("authorization", "Bearer sk_test_chaos")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(format!(
            "amount=900&currency=usd&confirm=true&metadata[order_id]={order}"
        ))))
        .unwrap();
    let started = Instant::now();
    let reply = send(request).await;
    (reply, started.elapsed())
}

/// The charges the provider made for `order`, after checking that nothing happened twice.
pub fn charges(provider: &DoubleHandle, order: &str) -> usize {
    let ledger = provider.ledger();
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.entries());
    ledger
        .entries()
        .iter()
        .filter(|e| e.kind == EffectKind::Charge && e.order_id.as_deref() == Some(order))
        .count()
}
