//! An upstream that answers garbage or hangs up. The app gets payguard's Stripe-shaped 502; a
//! request that may have executed is retried only under its idempotency key, a truncated
//! answer is never stored for replay, and the next request goes through.

mod support;

use support::raw::{RawUpstream, Script, ok_reply};
use support::*;

/// Retries that wait next to nothing, so a retried request finishes at once.
const FAST_RETRY: &str = "[retry]\nmax_attempts = 3\nbase_delay = \"1ms\"\nmax_delay = \"2ms\"\n";
/// And no key injection: a keyless POST then may not be replayed once sent.
const NO_KEYS: &str = "[idempotency]\nstore = \"memory\"\ninject_keys = false\n";

/// Replies that are not HTTP, or not complete.
fn bad_replies() -> Vec<(&'static str, Script)> {
    let huge_head = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
    vec![
        ("garbage", Script::Reply(b"garbage\r\n\r\n".to_vec())),
        (
            "binary",
            Script::Reply((0u8..=255).cycle().take(4096).collect()),
        ),
        (
            "bad status",
            Script::Reply(b"HTTP/1.1 abc OK\r\n\r\n".to_vec()),
        ),
        (
            "half a head",
            Script::Reply(b"HTTP/1.1 200 OK\r\nContent-Ty".to_vec()),
        ),
        ("huge head", Script::Reply(huge_head.into_bytes())),
        (
            "two lengths",
            Script::Reply(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 9\r\n\r\n{}".to_vec(),
            ),
        ),
        ("hang-up", Script::Hangup),
    ]
}

#[tokio::test]
async fn a_sent_keyless_post_is_not_retried_after_garbage() {
    for (name, script) in bad_replies() {
        // The first connection misbehaves; any later one would answer properly.
        let upstream = RawUpstream::spawn(move |n| match n {
            0 => script.clone(),
            _ => Script::Reply(ok_reply("{}")),
        })
        .await;
        let config = config_toml(&upstream.url(), &format!("{FAST_RETRY}{NO_KEYS}"));
        let proxy = start_proxy(&config).await;
        let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
        assert_payguard_error(&reply, 502, "payguard_upstream_failed");
        assert_eq!(
            upstream.requests().len(),
            1,
            "{name}: retried without a key"
        );

        // The pool is not poisoned: the next request gets the good connection.
        let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
        assert_eq!(reply.status, 200, "{name}");
    }
}

#[tokio::test]
async fn a_keyed_request_is_retried_under_the_same_key_after_garbage() {
    for (name, script) in bad_replies() {
        let upstream = RawUpstream::spawn(move |n| match n {
            0 => script.clone(),
            _ => Script::Reply(ok_reply(r#"{"id":"pi_1"}"#)),
        })
        .await;
        let proxy = start_proxy(&config_toml(&upstream.url(), FAST_RETRY)).await;
        let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
        assert_eq!(
            reply.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let seen = upstream.requests();
        assert_eq!(seen.len(), 2, "{name}");
        let key = seen[0]
            .header("idempotency-key")
            .expect("payguard gave it a key");
        assert_eq!(
            seen[1].header("idempotency-key"),
            Some(key),
            "{name}: same key"
        );
    }
}

#[tokio::test]
async fn a_truncated_answer_is_an_error_and_never_replayed() {
    // Promises 100 bytes, sends 5, hangs up; then answers properly.
    let upstream = RawUpstream::spawn(|n| match n {
        0 => Script::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec()),
        _ => Script::Reply(ok_reply(r#"{"id":"pi_1"}"#)),
    })
    .await;
    let config = config_toml(&upstream.url(), "[retry]\nmax_attempts = 1");
    let proxy = start_proxy(&config).await;
    let request = || {
        http::Request::post(proxy.url("/v1/payment_intents"))
            .header("authorization", "Bearer sk_test_payguard")
            .header("idempotency-key", "order-42")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                b"amount=100",
            )))
            .unwrap()
    };
    let reply = send(request()).await;
    assert_outcome_unknown(&reply, &[502]);

    // The app's retry under the same key reaches the provider: nothing truncated was kept.
    let reply = send(request()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], br#"{"id":"pi_1"}"#);
    assert_eq!(reply.headers.get("idempotent-replayed"), None);
    assert_eq!(upstream.requests().len(), 2);
}
