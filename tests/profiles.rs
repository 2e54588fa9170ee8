//! payguard's provider profiles (issue #11) against the double speaking the same dialect: the
//! dedup, replay, conflict and key-injection guarantees hold under each profile, each spelled the provider's
//! way. The double's dialects are an independent model (`payguard_double::Provider`), so a
//! mistake in a profile's data shows up here instead of being mirrored.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use payguard_double::{self as double, DoubleConfig, DoubleHandle, EffectKind, Fault, Provider};
use support::*;

/// Fast, seeded retries, as in tests/retries.rs.
const RETRY: &str =
    "[retry]\nmax_attempts = 4\nbase_delay = \"1ms\"\nmax_delay = \"5ms\"\njitter_seed = 1\n";
const FORM: &str = "amount=4200&currency=usd";

/// The double in `p`'s dialect, and payguard in front of it with the matching profile.
async fn setup(p: Provider, latency: Duration) -> (DoubleHandle, Proxy) {
    let cfg = DoubleConfig {
        provider: p,
        latency,
        ..DoubleConfig::default()
    };
    let provider = double::spawn(cfg).await.unwrap();
    let profile = format!("[upstream]\nprofile = \"{}\"\n", p.name());
    let toml = config_toml(&provider.url(), RETRY).replacen("[upstream]\n", &profile, 1);
    (provider, start_proxy(&toml).await)
}

/// A form POST carrying `key` in the profile's key header.
fn keyed(p: Provider, url: &str, key: &str, form: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("authorization", "Bearer sk_test_profiles")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(p.key_header(), key)
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap()
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).map(|v| v.to_str().unwrap())
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// (a) Twenty concurrent identical keyed POSTs: one effect, twenty identical successes.
async fn dedup(p: Provider) {
    // A slow provider, so the duplicates arrive while the first request is in flight.
    let (provider, proxy) = setup(p, Duration::from_millis(300)).await;
    let url = proxy.url("/v1/payment_intents");
    let sends: Vec<_> = (0..20)
        .map(|_| tokio::spawn(send(keyed(p, &url, "order-42", FORM))))
        .collect();
    let mut replies = Vec::new();
    for task in sends {
        replies.push(task.await.unwrap());
    }
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}: {}", p.name(), text(reply));
        assert_eq!(reply.body, replies[0].body, "{}: one answer", p.name());
    }
    let effects = provider.ledger().entries();
    assert_eq!(effects.len(), 1, "{}: {effects:?}", p.name());
    assert_eq!(effects[0].kind, EffectKind::PaymentIntentCreated);
}

/// (b) A reply lost after processing is retried under the same key; the app's own retry then
/// gets the same answer, from payguard's store for stripe and ietf.
async fn replay(p: Provider) {
    let (provider, proxy) = setup(p, Duration::ZERO).await;
    let url = proxy.url("/v1/payment_intents");
    provider.faults().push(Fault::ResetAfterProcessing);
    let first = send(keyed(p, &url, "lost-reply", FORM)).await;
    assert_eq!(first.status, 200, "{}: {}", p.name(), text(&first));
    assert_eq!(provider.ledger().entries().len(), 1, "{}", p.name());
    let log = provider.requests();
    assert_eq!(
        log.len(),
        2,
        "{}: the reset, then payguard's retry",
        p.name()
    );
    for seen in &log {
        assert_eq!(
            seen.header(p.key_header()),
            Some("lost-reply"),
            "{}",
            p.name()
        );
    }

    let again = send(keyed(p, &url, "lost-reply", FORM)).await;
    assert_eq!(again.status, 200, "{}: {}", p.name(), text(&again));
    assert_eq!(again.json(), first.json(), "{}: the same answer", p.name());
    let attempts = header(&again, "payguard-attempts");
    match p {
        Provider::Stripe | Provider::Ietf => {
            assert_eq!(attempts, Some("0"), "{}: answered from the store", p.name());
            assert_eq!(provider.requests_seen(), 2, "{}", p.name());
        }
        // PayPal answers a completed id with its latest status, so payguard asks it.
        Provider::PayPal => assert_eq!(attempts, Some("1"), "paypal: forwarded"),
    }
    assert_eq!(provider.ledger().entries().len(), 1, "{}", p.name());
}

/// (c) The same key with another body: the profile's mismatch status in its shape.
async fn conflict(p: Provider) {
    let (provider, proxy) = setup(p, Duration::ZERO).await;
    let url = proxy.url("/v1/payment_intents");
    assert_eq!(send(keyed(p, &url, "k1", FORM)).await.status, 200);
    let other = send(keyed(p, &url, "k1", "amount=999&currency=usd")).await;
    let what = format!("{}: {}", p.name(), text(&other));
    let expected = if p == Provider::Stripe { 400 } else { 422 };
    assert_eq!(other.status, expected, "{what}");
    assert_eq!(
        header(&other, "payguard-error"),
        Some("payguard_idempotency_key_reused"),
        "{what}"
    );
    let body = other.json();
    match p {
        Provider::Stripe => {
            assert_eq!(header(&other, "content-type"), Some("application/json"));
            assert_eq!(body["error"]["type"], "idempotency_error", "{what}");
        }
        Provider::Ietf => {
            let media = header(&other, "content-type").unwrap_or_default();
            assert!(media.starts_with("application/problem+json"), "{what}");
            assert!(
                body["type"].is_string() && body["title"].is_string(),
                "{what}"
            );
            assert_eq!(body["status"], 422, "{what}");
        }
        Provider::PayPal => {
            assert_eq!(body["name"], "UNPROCESSABLE_ENTITY", "{what}");
            assert!(
                body["message"].is_string() && body["debug_id"].is_string(),
                "{what}"
            );
            assert!(body["details"][0]["issue"].is_string(), "{what}");
        }
    }
    assert_eq!(
        provider.ledger().entries().len(),
        1,
        "{what}: no extra effect"
    );
}

/// (d) A keyless POST gets a key in the profile's header, the same on the retry of a 503, so
/// the provider executes it once.
async fn injected_key(p: Provider) {
    let (provider, proxy) = setup(p, Duration::ZERO).await;
    provider.faults().push(Fault::Status(503));
    let reply = post_form(&proxy.url("/v1/payment_intents"), FORM).await;
    assert_eq!(reply.status, 200, "{}: {}", p.name(), text(&reply));
    assert_eq!(
        header(&reply, "payguard-attempts"),
        Some("2"),
        "{}",
        p.name()
    );
    let chosen = header(&reply, "payguard-idempotency-key").expect("key returned");
    let log = provider.requests();
    assert_eq!(log.len(), 2, "{}", p.name());
    for seen in &log {
        assert_eq!(seen.header(p.key_header()), Some(chosen), "{}", p.name());
    }
    // Only the profile's header: another provider's would mean nothing to this one.
    let other = match p {
        Provider::PayPal => "idempotency-key",
        _ => "paypal-request-id",
    };
    assert_eq!(log[0].header(other), None, "{}", p.name());
    assert_eq!(provider.ledger().entries().len(), 1, "{}", p.name());
}

/// The four tests under each profile, as `<profile>::<test>`.
macro_rules! per_profile {
    ($($profile:ident => $provider:expr),* $(,)?) => {$(
        mod $profile {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dedup() {
                super::dedup($provider).await
            }

            #[tokio::test]
            async fn replay() {
                super::replay($provider).await
            }

            #[tokio::test]
            async fn conflict() {
                super::conflict($provider).await
            }

            #[tokio::test]
            async fn injected_key() {
                super::injected_key($provider).await
            }
        }
    )*};
}

per_profile! {
    stripe => Provider::Stripe,
    ietf => Provider::Ietf,
    paypal => Provider::PayPal,
}
