//! Each dialect over real sockets: one execution per key, its answers to completed, concurrent
//! and reused-key duplicates, its scopes and error shapes. Each test loops over the dialects.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::Value;

use super::dialect::PROBLEM_BASE;
use super::{DoubleConfig, DoubleHandle, EffectKind, Fault, Provider, spawn};
use crate::client::*;

const FORM: &str = "amount=1000&currency=usd";

type Req = Request<Full<Bytes>>;

async fn start_as(provider: Provider) -> DoubleHandle {
    let cfg = DoubleConfig {
        provider,
        ..DoubleConfig::default()
    };
    spawn(cfg).await.unwrap()
}

/// A form POST with the dialect's key header, plus any extra headers.
fn keyed(url: String, p: Provider, key: Option<&str>, form: &str, extra: &[(&str, &str)]) -> Req {
    let mut request = post(url, KEY, None, form);
    let key = key.map(|k| (p.key_header(), k));
    for (name, value) in key.iter().chain(extra) {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().append(name, value.parse().unwrap());
    }
    request
}

/// Creates a payment intent with the dialect's key header, if a key is given.
async fn create(d: &DoubleHandle, p: Provider, key: Option<&str>, form: &str) -> Reply {
    send(keyed(intents(d), p, key, form, &[])).await
}

/// Checks the reply is an error of `status` in the dialect's shape and media type.
fn assert_shape(p: Provider, reply: &Reply, status: u16) {
    let what = format!("{} {status}: {:?}", p.name(), reply.body);
    assert_eq!(reply.status, status, "{what}");
    let body = reply.json();
    let (media, required): (&str, &[&str]) = match p {
        Provider::Stripe => ("application/json", &["/error/type", "/error/message"]),
        Provider::Ietf => ("application/problem+json", &["/type", "/title", "/detail"]),
        Provider::PayPal => (
            "application/json",
            &["/name", "/message", "/debug_id", "/details/0/issue"],
        ),
    };
    assert_eq!(reply.header("content-type"), Some(media), "{what}");
    for pointer in required {
        let field = body.pointer(pointer);
        assert!(field.is_some_and(Value::is_string), "{pointer}: {what}");
    }
    if p != Provider::Stripe {
        assert!(body.get("error").is_none(), "{what}");
        assert!(reply.header("stripe-should-retry").is_none(), "{what}");
    }
    if p == Provider::Ietf {
        assert!(body["type"].as_str().unwrap().starts_with(PROBLEM_BASE));
        assert_eq!(body["status"], status, "{what}");
    }
    if p == Provider::PayPal {
        let debug_id = body["debug_id"].as_str().unwrap();
        assert!(debug_id.chars().all(|c| c.is_ascii_hexdigit()), "{what}");
    }
}

/// The PayPal issue or Stripe code an error carries, whichever the dialect has.
fn issue(p: Provider, reply: &Reply) -> String {
    let body = reply.json();
    let value = match p {
        Provider::Stripe => body["error"]["code"].clone(),
        Provider::Ietf => body["type"].clone(),
        Provider::PayPal => body["details"][0]["issue"].clone(),
    };
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_completed_key_gets_the_dialects_answer_and_executes_once() {
    for p in Provider::ALL {
        let d = start_as(p).await;
        let first = create(&d, p, Some("k1"), FORM).await;
        assert_eq!(first.status, 200, "{}", p.name());
        assert_eq!(d.ledger().entries().len(), 1, "{}", p.name());
        // The intent moves on after the keyed request: PayPal shows that, the others do not.
        let id = first.json()["id"].as_str().unwrap().to_owned();
        let confirm = format!("{}/{id}/confirm", intents(&d));
        assert_eq!(send(keyed(confirm, p, None, "", &[])).await.status, 200);

        let again = create(&d, p, Some("k1"), FORM).await;
        let marker = again.header("idempotent-replayed");
        match p {
            Provider::Stripe | Provider::Ietf => {
                let (now, then) = ((again.status, &again.body), (first.status, &first.body));
                assert_eq!(now, then, "{}", p.name());
                assert_eq!(again.json()["status"], "requires_confirmation");
                let expected = (p == Provider::Stripe).then_some("true");
                assert_eq!(marker, expected, "{}", p.name());
            }
            Provider::PayPal => {
                let latest = again.json();
                assert_eq!(
                    (again.status.as_u16(), latest["id"].as_str()),
                    (200, Some(id.as_str()))
                );
                assert_eq!(
                    latest["status"], "succeeded",
                    "the latest state, not a frozen copy"
                );
                assert_eq!(marker, None);
            }
        }
        assert_eq!(again.header(p.key_header()), Some("k1"), "{}", p.name());
        let kinds: Vec<_> = d.ledger().entries().iter().map(|e| e.kind).collect();
        let expected = vec![EffectKind::PaymentIntentCreated, EffectKind::Charge];
        assert_eq!(
            kinds,
            expected,
            "{}: the duplicate executed nothing",
            p.name()
        );
    }
}

#[tokio::test]
async fn a_duplicate_while_the_first_executes_gets_the_dialects_409() {
    for p in Provider::ALL {
        let d = start_as(p).await;
        d.faults().push(Fault::Stall(Duration::from_millis(800)));
        let first = tokio::spawn(send(keyed(intents(&d), p, Some("k"), FORM, &[])));
        // The claim follows the arrival by microseconds; then leave it ample time.
        while d.requests_seen() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let busy = create(&d, p, Some("k"), FORM).await;
        assert_shape(p, &busy, 409);
        let expected = match p {
            Provider::Stripe => "idempotency_key_in_use".to_owned(),
            Provider::Ietf => format!("{PROBLEM_BASE}idempotency-key-in-use"),
            Provider::PayPal => "PREVIOUS_REQUEST_IN_PROGRESS".to_owned(),
        };
        assert_eq!(issue(p, &busy), expected);
        if p == Provider::PayPal {
            assert_eq!(busy.json()["name"], "RESOURCE_CONFLICT");
        }
        assert_eq!(first.await.unwrap().status, 200, "{}", p.name());
        assert_eq!(d.ledger().entries().len(), 1, "{}", p.name());
    }
}

#[tokio::test]
async fn a_key_reused_with_another_body_gets_the_dialects_mismatch() {
    for p in Provider::ALL {
        let d = start_as(p).await;
        assert_eq!(create(&d, p, Some("k"), FORM).await.status, 200);
        let other = send(keyed(
            intents(&d),
            p,
            Some("k"),
            "amount=999&currency=usd",
            &[],
        ))
        .await;
        let (status, expected) = match p {
            Provider::Stripe => (400, String::new()),
            Provider::Ietf => (422, format!("{PROBLEM_BASE}idempotency-key-reused")),
            Provider::PayPal => (422, "PAYPAL_REQUEST_ID_PREVIOUSLY_USED".to_owned()),
        };
        assert_shape(p, &other, status);
        assert_eq!(issue(p, &other), expected, "{}", p.name());
        match p {
            Provider::Stripe => assert_eq!(other.json()["error"]["type"], "idempotency_error"),
            Provider::Ietf => assert_eq!(other.json()["title"], "Idempotency-Key is already used"),
            Provider::PayPal => assert_eq!(other.json()["name"], "UNPROCESSABLE_ENTITY"),
        }
        assert_eq!(
            d.ledger().entries().len(),
            1,
            "{}: nothing executed",
            p.name()
        );
    }
}

#[tokio::test]
async fn other_scopes_and_other_headers_do_not_see_the_key() {
    for p in Provider::ALL {
        let d = start_as(p).await;
        let first = create(&d, p, Some("k"), FORM).await;
        let count = |n: usize| assert_eq!(d.ledger().entries().len(), n, "{}", p.name());
        count(1);
        // Another API key is another scope in every dialect.
        let mut other_key = keyed(intents(&d), p, Some("k"), FORM, &[]);
        other_key
            .headers_mut()
            .insert("authorization", "Bearer sk_test_other".parse().unwrap());
        assert_eq!(send(other_key).await.status, 200);
        count(2);
        // The account header is part of the scope for Stripe and PayPal; the draft scopes by
        // credentials only, so there the same key replays.
        let id = |reply: &Reply| reply.json()["id"].as_str().map(str::to_owned);
        let stripe_account = [("stripe-account", "acct_1")];
        let other = send(keyed(intents(&d), p, Some("k"), FORM, &stripe_account)).await;
        assert_eq!(
            id(&other) == id(&first),
            p != Provider::Stripe,
            "{}",
            p.name()
        );
        let assertion = [(
            "paypal-auth-assertion",
            "eyJhbGciOiJub25lIn0.eyJpc3MiOiJjIn0.",
        )];
        let other = send(keyed(intents(&d), p, Some("k"), FORM, &assertion)).await;
        assert_eq!(
            id(&other) == id(&first),
            p != Provider::PayPal,
            "{}",
            p.name()
        );
        count(if p == Provider::Ietf { 2 } else { 3 });

        // The other dialects' key headers are just headers: two requests, two effects.
        let foreign = match p {
            Provider::PayPal => "idempotency-key",
            Provider::Stripe | Provider::Ietf => "paypal-request-id",
        };
        let before = d.ledger().entries().len();
        for _ in 0..2 {
            let unkeyed = keyed(intents(&d), p, None, FORM, &[(foreign, "f")]);
            assert_eq!(send(unkeyed).await.status, 200);
        }
        count(before + 2);
    }
}

#[tokio::test]
async fn every_error_is_in_the_dialects_shape() {
    for p in Provider::ALL {
        let d = start_as(p).await;
        let mut anonymous = keyed(intents(&d), p, None, FORM, &[]);
        anonymous.headers_mut().remove("authorization");
        assert_shape(p, &send(anonymous).await, 401);
        let unknown = format!("{}/v1/nothing_here", d.url());
        assert_shape(p, &send(keyed(unknown, p, None, FORM, &[])).await, 404);
        let invalid = create(&d, p, Some("v"), "currency=usd").await;
        assert_shape(p, &invalid, 400);
        let faults = d.faults();
        faults.push(Fault::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            should_retry: Some(true),
        });
        let limited = create(&d, p, None, FORM).await;
        assert_shape(p, &limited, 429);
        assert_eq!(limited.header("retry-after"), Some("3"), "{}", p.name());
        faults.push(Fault::RateLimited {
            retry_after: None,
            should_retry: None,
        });
        let limited = create(&d, p, None, FORM).await;
        assert_eq!(limited.header("retry-after"), None, "{}", p.name());
        faults.push(Fault::ShouldRetry(500, false));
        let no_retry = create(&d, p, None, FORM).await;
        assert_shape(p, &no_retry, 500);
        let flag = (p == Provider::Stripe).then_some("false");
        assert_eq!(no_retry.header("stripe-should-retry"), flag, "{}", p.name());
        for (status, name) in [
            (500, "INTERNAL_SERVER_ERROR"),
            (502, "SERVICE_UNAVAILABLE"),
            (503, "SERVICE_UNAVAILABLE"),
            (504, "SERVICE_UNAVAILABLE"),
        ] {
            faults.push(Fault::Status(status));
            let failed = create(&d, p, None, FORM).await;
            assert_shape(p, &failed, status);
            if p == Provider::PayPal {
                assert_eq!(failed.json()["name"], name);
            }
        }
        faults.push(Fault::FailDuringExecution(500));
        let failed = create(&d, p, Some("f"), FORM).await;
        assert_shape(p, &failed, 500);
        // A saved failure replays with its media type, under PayPal too (its latest status).
        let replayed = create(&d, p, Some("f"), FORM).await;
        assert_shape(p, &replayed, 500);
        assert_eq!(d.ledger().entries().len(), 0, "{}", p.name());
    }
}
