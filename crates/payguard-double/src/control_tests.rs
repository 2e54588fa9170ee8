//! The control endpoints over real sockets: scripting faults at run time (an outage, contention
//! on one object) and reading the ledger and per-order answers, all without being counted,
//! faulted or limited themselves.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};

use super::{DoubleConfig, DoubleHandle, Fault, RateLimit, spawn};
use crate::client::*;

fn control_post(d: &DoubleHandle, form: &str) -> Request<Full<Bytes>> {
    Request::post(format!("{}/_double/faults", d.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap()
}

fn control_get(d: &DoubleHandle, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("{}{path}", d.url()))
        .body(Full::default())
        .unwrap()
}

async fn ledger(d: &DoubleHandle) -> Value {
    send(control_get(d, "/_double/ledger")).await.json()
}

async fn create(d: &DoubleHandle, order: &str) -> Result<u16, String> {
    let form = format!("amount=100&currency=usd&confirm=true&metadata[order_id]={order}");
    let request = post(intents(d), KEY, Some(&format!("k-{order}")), &form);
    try_send(request).await.map(|r| r.status.as_u16())
}

#[tokio::test]
async fn an_outage_starts_and_ends_at_run_time() {
    let d = start().await;
    assert_eq!(create(&d, "o1").await, Ok(200));
    let set = send(control_post(&d, "rate=1&mix=503&seed=4")).await;
    assert_eq!(set.status, 200);
    assert_eq!(
        set.json()["profile"],
        json!({"rate": 1.0, "mix": [{"fault": "503", "weight": 1}], "seed": 4})
    );
    assert_eq!(create(&d, "o2").await, Ok(503));
    assert_eq!(create(&d, "o2").await, Ok(503));
    let ended = send(control_post(&d, "rate=0")).await.json();
    assert_eq!(ended["profile"]["rate"], 0.0);
    assert_eq!(create(&d, "o2").await, Ok(200));

    let seen = ledger(&d).await;
    assert_eq!(seen["requests_seen"], 4, "control requests are not counted");
    assert_eq!(seen["answers"], json!({"200": 2, "503": 2}));
    assert_eq!(seen["orders"]["o2"]["answers"], json!({"200": 1, "503": 2}));
    let effects = json!({"payment_intent_created": 1, "charge": 1});
    assert_eq!(seen["orders"]["o2"]["effects"], effects);
    assert_eq!(seen["faults_injected"], 2);
}

#[tokio::test]
async fn control_is_neither_faulted_nor_limited_and_refuses_bad_input_whole() {
    let d = spawn(DoubleConfig {
        rate_limit: Some(RateLimit {
            per_second: 0.001,
            burst: 1,
        }),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    d.faults().push(Fault::ResetBeforeProcessing);
    for _ in 0..5 {
        assert_eq!(send(control_get(&d, "/_double/faults")).await.status, 200);
    }
    assert_eq!(d.faults().pending(), 1, "the queued reset is still waiting");

    let bad = send(control_post(&d, "rate=0.5&mix=reset&lock_object=pi_1")).await;
    assert_eq!(
        (bad.status.as_u16(), bad.json()["error"]["param"].clone()),
        (400, json!("mix"))
    );
    let bad_rate = send(control_post(&d, "rate=2&mix=503")).await;
    assert_eq!(bad_rate.status, 400);
    let now = send(control_get(&d, "/_double/faults")).await.json();
    assert_eq!(
        (now["profile"].clone(), now["contention"].clone()),
        (Value::Null, Value::Null)
    );
    let wrong = Request::delete(format!("{}/_double/ledger", d.url()))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(wrong).await.status, 405);
}

#[tokio::test]
async fn contention_times_out_a_share_of_the_requests_on_one_object() {
    let d = start().await;
    let form = "amount=100000&currency=usd&confirm=true&metadata[order_id]=setup";
    let hot = send(post(intents(&d), KEY, None, form)).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let set = send(control_post(
        &d,
        &format!("lock_object={hot}&lock_rate=0.5&lock_seed=9"),
    ))
    .await;
    assert_eq!(
        set.json()["contention"],
        json!({"object": hot, "rate": 0.5, "seed": 9})
    );
    let mut timed_out = 0;
    for i in 0..40 {
        let form = format!("payment_intent={hot}&amount=1&metadata[order_id]=r{i}");
        let reply = send(post(
            format!("{}/v1/refunds", d.url()),
            KEY,
            Some(&format!("r{i}")),
            &form,
        ))
        .await;
        match reply.status.as_u16() {
            200 => {}
            429 => {
                assert_eq!(reply.code(), "lock_timeout");
                timed_out += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!((8..32).contains(&timed_out), "{timed_out} of 40");
    // Another object is never contended.
    assert_eq!(create(&d, "cold").await, Ok(200));
    let seen = ledger(&d).await;
    assert_eq!(seen["answers"]["429"], timed_out);
    assert_eq!(seen["effects"]["refund_created"], 40 - timed_out);
    let ended = send(control_post(&d, "lock_object=")).await.json();
    assert_eq!(ended["contention"], Value::Null);
}

#[tokio::test]
async fn the_ledger_shows_an_order_charged_whose_reply_was_lost() {
    let d = start().await;
    d.faults().push(Fault::ResetAfterProcessing);
    assert!(create(&d, "lost").await.is_err(), "the reply was lost");
    // The same order again under a fresh key, as the article's loop retries: charged twice.
    let form = "amount=100&currency=usd&confirm=true&metadata[order_id]=lost";
    let again = send(post(intents(&d), KEY, Some("fresh"), form)).await;
    assert_eq!(again.status, 200);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let seen = ledger(&d).await;
    let order = &seen["orders"]["lost"];
    assert_eq!(order["answers"], json!({"200": 1, "reset": 1}));
    assert_eq!(
        order["effects"],
        json!({"payment_intent_created": 2, "charge": 2})
    );
    assert_eq!(
        seen["duplicates"], 2,
        "created twice and charged twice for one order"
    );
}
