//! The double over real sockets, for what its unit tests cannot show: resets are TCP resets,
//! truncation breaks a promised length, which faults are saved under a key, retry hints,
//! delays, the payment flow through HTTP, the request log and shutdown.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;

use super::{DoubleConfig, EffectKind, Fault, spawn};
use crate::client::*;

#[tokio::test]
async fn resets_are_tcp_resets_not_clean_closes() {
    let d = start().await;
    d.faults().push(Fault::ResetBeforeProcessing);
    let (received, ended) = raw(d.addr(), &raw_create(d.addr())).await;
    assert_eq!(
        (received.len(), ended),
        (0, Err(ErrorKind::ConnectionReset))
    );
    assert_eq!(d.ledger().entries().len(), 0, "nothing executed");

    d.faults().push(Fault::ResetAfterProcessing);
    let (received, ended) = raw(d.addr(), &raw_create(d.addr())).await;
    assert_eq!(
        (received.len(), ended),
        (0, Err(ErrorKind::ConnectionReset))
    );
    assert_eq!(d.ledger().entries().len(), 1, "executed, reply lost");

    // Without a fault the same request ends with a clean close after the reply.
    let (received, ended) = raw(d.addr(), &raw_create(d.addr())).await;
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert_eq!(ended, Ok(()));
}

#[tokio::test]
async fn a_truncated_body_promises_more_than_it_sends_then_resets() {
    let d = start().await;
    d.faults().push(Fault::TruncatedBody);
    let (received, ended) = raw(d.addr(), &raw_create(d.addr())).await;
    assert_eq!(ended, Err(ErrorKind::ConnectionReset));
    let text = String::from_utf8_lossy(&received);
    let (head, body) = text.split_once("\r\n\r\n").expect("headers arrived");
    let promised: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .parse()
        .unwrap();
    assert!(
        !body.is_empty() && body.len() < promised,
        "{} of {promised} bytes",
        body.len()
    );
    assert_eq!(d.ledger().entries().len(), 1, "the request executed");
}

#[tokio::test]
async fn front_faults_are_not_saved_but_failures_during_execution_are() {
    let d = start().await;
    d.faults().push(Fault::Status(503));
    let failed = send(post(intents(&d), KEY, Some("a"), "amount=1&currency=usd")).await;
    assert_eq!(
        (
            failed.status.as_u16(),
            failed.json()["error"]["type"].as_str()
        ),
        (503, Some("api_error"))
    );
    let retried = send(post(intents(&d), KEY, Some("a"), "amount=1&currency=usd")).await;
    assert_eq!(
        (
            retried.status.as_u16(),
            retried.header("idempotent-replayed")
        ),
        (200, None)
    );

    d.faults().push(Fault::FailDuringExecution(500));
    let failed = send(post(intents(&d), KEY, Some("b"), "amount=1&currency=usd")).await;
    assert_eq!(failed.status, 500);
    let replayed = send(post(intents(&d), KEY, Some("b"), "amount=1&currency=usd")).await;
    assert_eq!(
        (
            replayed.status.as_u16(),
            replayed.header("idempotent-replayed")
        ),
        (500, Some("true"))
    );
    assert_eq!(
        d.ledger().entries().len(),
        1,
        "only the retried request of key a executed"
    );

    // A validation failure is not saved either: the same key then works with valid parameters.
    let invalid = send(post(intents(&d), KEY, Some("c"), "currency=usd")).await;
    assert_eq!(
        (
            invalid.status.as_u16(),
            invalid.json()["error"]["param"].as_str()
        ),
        (400, Some("amount"))
    );
    assert_eq!(
        send(post(intents(&d), KEY, Some("c"), "amount=5&currency=usd"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn retry_hints_travel_as_headers() {
    let d = start().await;
    let faults = d.faults();
    faults.push(Fault::RateLimited {
        retry_after: Some(Duration::from_millis(1500)),
        should_retry: Some(true),
    });
    faults.push(Fault::LockTimeout);
    faults.push(Fault::ShouldRetry(500, false));
    faults.push(Fault::KeyInUse);
    let limited = send(post(intents(&d), KEY, None, "")).await;
    assert_eq!(
        (limited.status.as_u16(), limited.code()),
        (429, "rate_limit".into())
    );
    assert_eq!(
        (
            limited.header("retry-after"),
            limited.header("stripe-should-retry")
        ),
        (Some("2"), Some("true"))
    );
    assert_eq!(
        send(post(intents(&d), KEY, None, "")).await.code(),
        "lock_timeout"
    );
    let no_retry = send(post(intents(&d), KEY, None, "")).await;
    assert_eq!(
        (
            no_retry.status.as_u16(),
            no_retry.header("stripe-should-retry")
        ),
        (500, Some("false"))
    );
    assert_eq!(send(post(intents(&d), KEY, None, "")).await.status, 409);
    assert_eq!(d.faults().injected(), 4);
}

#[tokio::test]
async fn latency_and_slow_bodies_delay_the_reply() {
    let d = spawn(DoubleConfig {
        latency: Duration::from_millis(200),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    let started = Instant::now();
    assert_eq!(
        send(post(intents(&d), KEY, None, "amount=1&currency=usd"))
            .await
            .status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    let d = start().await;
    d.faults().push(Fault::SlowBody(Duration::from_millis(50)));
    let started = Instant::now();
    let reply = send(post(intents(&d), KEY, None, "amount=1&currency=usd")).await;
    assert!(
        reply.json()["id"].as_str().unwrap().starts_with("pi_"),
        "the body arrives whole"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "several paced chunks: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let d = start().await;
    let addr = d.addr();
    d.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn the_payment_flow_and_the_ledger() {
    let d = start().await;
    let form = "amount=1000&currency=usd&metadata[order_id]=o1";
    let pi = send(post(intents(&d), KEY, None, form)).await.json();
    assert_eq!(
        (pi["object"].as_str(), pi["status"].as_str()),
        (Some("payment_intent"), Some("requires_confirmation"))
    );
    let confirm = format!("{}/{}/confirm", intents(&d), pi["id"].as_str().unwrap());
    assert_eq!(
        send(post(confirm.clone(), KEY, None, "")).await.json()["status"],
        "succeeded"
    );
    assert_eq!(
        send(post(confirm, KEY, None, "")).await.code(),
        "payment_intent_unexpected_state"
    );
    let refunds = format!("{}/v1/refunds", d.url());
    let refund_form = format!("payment_intent={}&amount=400", pi["id"].as_str().unwrap());
    let refund = send(post(refunds.clone(), KEY, None, &refund_form))
        .await
        .json();
    assert!(refund["id"].as_str().unwrap().starts_with("re_"));
    let too_much = format!("payment_intent={}&amount=700", pi["id"].as_str().unwrap());
    assert_eq!(
        send(post(refunds.clone(), KEY, None, &too_much))
            .await
            .status,
        400
    );
    let read = send(get(
        format!("{refunds}/{}", refund["id"].as_str().unwrap()),
        KEY,
    ))
    .await;
    assert_eq!(read.json()["amount"], 400);

    // The same order paid again, without a key: the ledger calls it out.
    let again = send(post(
        intents(&d),
        KEY,
        None,
        &format!("{form}&confirm=true"),
    ))
    .await
    .json();
    assert_eq!(again["status"], "succeeded");
    let kinds: Vec<_> = d.ledger().duplicates().iter().map(|dup| dup.kind).collect();
    assert_eq!(
        kinds,
        vec![EffectKind::PaymentIntentCreated, EffectKind::Charge]
    );
}

#[tokio::test]
async fn slow_waits_and_the_log_keeps_arrival_order() {
    let d = start().await;
    let started = Instant::now();
    let slow = Request::get(format!("{}/_double/slow?ms=300", d.url()));
    assert_eq!(send(slow.body(Full::default()).unwrap()).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let create = post(intents(&d), KEY, Some("k"), "amount=1&currency=usd");
    send(create).await;

    let log = d.requests();
    assert_eq!(d.requests_seen(), 2);
    assert_eq!(
        (log[0].path.as_str(), log[0].query.as_deref()),
        ("/_double/slow", Some("ms=300"))
    );
    assert_eq!(
        (log[1].header("idempotency-key"), &log[1].body[..]),
        (Some("k"), &b"amount=1&currency=usd"[..])
    );
}

#[test]
fn handles_and_plans_can_be_shared_across_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<super::DoubleHandle>();
    shareable::<super::FaultPlan>();
    shareable::<super::Ledger>();
}
