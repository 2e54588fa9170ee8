//! Slow clients: a slowloris trickling its request head, a connection that never says
//! anything, and a body that never finishes. Each loses its connection within its timeout,
//! nothing is sent upstream, and other clients are served all along.

mod support;

use std::time::{Duration, Instant};

use payguard_double::{self as double, DoubleConfig};
use support::raw::{read_message, read_until_closed};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Short timeouts, so the test waits well under a second for each.
const SLOW: &str = "[server]\nheader_read_timeout = \"300ms\"\n[rate_limit]\nenabled = false\n\
                    [retry]\nattempt_timeout = \"500ms\"\ndeadline = \"800ms\"";

/// How long past its timeout a slow connection may linger before the test calls it unbounded.
const SLACK: Duration = Duration::from_secs(3);

/// Writes `bytes` one at a time, `every` apart, until the peer stops taking them; returns
/// whether it had to stop early.
async fn trickle(stream: &mut TcpStream, bytes: &[u8], every: Duration) -> bool {
    for byte in bytes {
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

#[tokio::test]
async fn slowloris_connections_are_closed_while_others_are_served() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), SLOW)).await;
    let addr = proxy.addr;

    // Twenty clients trickling a head one byte every 50ms: it would take them ~5s.
    let head = "POST /v1/payment_intents HTTP/1.1\r\nHost: payguard\r\nX-Padding: \
                aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let slowloris: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async move {
                let started = Instant::now();
                let mut stream = TcpStream::connect(addr).await.unwrap();
                trickle(&mut stream, head.as_bytes(), Duration::from_millis(50)).await;
                // Cut off or not, the connection must be gone soon after the timeout.
                let rest = read_until_closed(&mut stream, SLACK).await;
                (started.elapsed(), rest)
            })
        })
        .collect();

    // Meanwhile an ordinary client is served, several times over.
    for _ in 0..5 {
        let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
        assert_eq!(reply.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for task in slowloris {
        let (elapsed, rest) = task.await.unwrap();
        let rest = rest.expect("the slow connection was closed");
        // hyper closes a timed-out head without an answer; a 408 would be fine too.
        let text = String::from_utf8_lossy(&rest);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text:?}"
        );
        assert!(
            elapsed < Duration::from_secs(4),
            "closed only after {elapsed:?}"
        );
    }
    assert_eq!(
        provider.requests_seen(),
        5,
        "only the ordinary requests went upstream"
    );
}

#[tokio::test]
async fn a_connection_that_never_starts_a_request_is_closed() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), SLOW)).await;

    // Silent; a partial HTTP/2 preface (HTTP/1 or 2 cannot be told yet); a full preface and
    // then nothing; empty lines (which HTTP/1 skips before a request line).
    let openers: [&[u8]; 4] = [
        b"",
        b"PRI * HTTP/2.0\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\r\n\r\n\r\n",
    ];
    // On the admin listener too, which usually faces the whole pod network; plus a head
    // trickled there that never ends.
    let mut idle = Vec::new();
    for addr in [proxy.addr, proxy.admin] {
        for opener in openers
            .iter()
            .chain([&&b"GET /metrics HTTP/1.1\r\nX-Slow: "[..]])
        {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(opener).await.unwrap();
            idle.push((*opener, stream));
        }
    }
    let started = Instant::now();
    for (opener, stream) in &mut idle {
        let closed = read_until_closed(stream, SLACK).await;
        assert!(
            closed.is_ok(),
            "{opener:?} held its connection past {SLACK:?}"
        );
    }
    assert!(started.elapsed() < SLACK);
    assert_eq!(get(&proxy.admin_url("/metrics")).await.status, 200);

    // A keep-alive connection is not cut while its request is being answered, and serves
    // a second request right after the first.
    let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
    assert_eq!(reply.status, 200);
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    for _ in 0..2 {
        let request =
            "GET /v1/balance HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer sk_test_x\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = read_message(&mut stream).await.expect("answered");
        assert!(reply.status() < 500, "{reply:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(provider.requests_seen(), 3);
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408_within_the_deadline() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), SLOW)).await;

    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = "POST /v1/payment_intents HTTP/1.1\r\nHost: p\r\nContent-Length: 1000\r\n\
                Authorization: Bearer sk_test_x\r\n\r\namount=1";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // Keep trickling in the background; the answer must not wait for it.
    let (mut read, mut write) = stream.into_split();
    let trickler = tokio::spawn(async move {
        while write.write_all(b"0").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let reply = tokio::time::timeout(SLACK, read_message(&mut read))
        .await
        .expect("answered before the body ends")
        .expect("a reply");
    trickler.abort();
    assert_eq!(reply.status(), 408, "{reply:?}");
    assert_eq!(
        reply.header("payguard-error"),
        Some("payguard_body_timeout")
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        provider.requests_seen(),
        0,
        "an incomplete request is never sent"
    );

    let reply = post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
    assert_eq!(reply.status, 200);
}
