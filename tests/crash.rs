//! A real `kill -9` of payguard mid-request: after a restart on the same embedded store, the
//! app's retry with the same key finds no claim (claims do not outlive their process) and is
//! forwarded under that key at once. While the provider still runs the first request it
//! answers "in use", which payguard passes on as "outcome unknown, retry with the same key";
//! the next retry gets the provider's answer. Exactly one effect.

mod support;

use std::time::Duration;

use payguard_double::{self as double, DoubleConfig, EffectKind, Fault};
use support::process::spawn_payguard;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_in_flight_when_payguard_is_killed_is_charged_once() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    // The first request hangs at the provider (its key claimed there) long enough to kill
    // payguard while it waits.
    provider.faults().push(Fault::Stall(Duration::from_secs(2)));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let extra = "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
                 [retry]\ndeadline = \"3s\"\nattempt_timeout = \"3s\"\nbase_delay = \"50ms\"\n\
                 [idempotency]\nstore = \"embedded\"\npath = \"store.redb\"\ncoalesce_wait = \"1s\"";
    let toml = config_toml(&provider.url(), extra).replace("level = \"warn\"", "level = \"info\"");
    std::fs::write(&file, toml).unwrap();

    let mut first = spawn_payguard(&file).await;
    let form = "amount=5000&currency=usd&confirm=true&metadata[order_id]=crash-1";
    let url = format!("http://{}/v1/payment_intents", first.proxy);
    let request = move || {
        let mut r = http::Request::post(url.clone())
            .header("authorization", "Bearer sk_test_crash")
            .header("idempotency-key", "crash-order-1")
            .body(http_body_util::Full::new(bytes::Bytes::from(form)))
            .unwrap();
        r.headers_mut().insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        r
    };
    let in_flight = tokio::spawn(client().request(request()));
    while provider.requests_seen() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.kill().await.unwrap(); // SIGKILL: no drain, no release of the key
    assert!(
        in_flight.await.unwrap().is_err(),
        "the app saw the connection die"
    );

    let second = spawn_payguard(&file).await;
    let retry_url = format!("http://{}/v1/payment_intents", second.proxy);
    let reply = until_settled(|| {
        let mut r = request();
        *r.uri_mut() = retry_url.parse().unwrap();
        send(r)
    })
    .await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let ledger = provider.ledger();
    assert_eq!(
        ledger.count(EffectKind::PaymentIntentCreated),
        1,
        "{:?}",
        ledger.entries()
    );
    assert_eq!(ledger.count(EffectKind::Charge), 1);
    assert!(ledger.duplicates().is_empty());
    assert_eq!(
        reply.json()["id"].as_str(),
        Some(ledger.entries()[0].object_id.as_str())
    );
}
