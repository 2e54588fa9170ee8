//! What payguard refuses, it refuses before anything reaches the provider.

mod support;

use payguard_double::{self as double, DoubleConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes on a fresh connection and returns the whole reply as text.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the headers and the (small) JSON body have arrived.
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("reply within 5s")
            .unwrap();
        reply.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&reply);
        if n == 0 || (text.contains("\r\n\r\n") && text.trim_end().ends_with('}')) {
            return text.into_owned();
        }
    }
}

#[tokio::test]
async fn forward_proxy_requests_for_other_hosts_are_refused() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;

    let reply = raw(
        proxy.addr,
        "GET http://example.com/v1/charges HTTP/1.1\r\nHost: example.com\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("payguard_forward_proxy_refused"), "{reply}");

    let reply = raw(
        proxy.addr,
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");

    // An absolute-form request naming payguard itself is ordinary and is forwarded.
    let own = format!(
        "GET http://{}/_double/echo HTTP/1.1\r\nHost: {}\r\n\r\n",
        proxy.addr, proxy.addr
    );
    assert!(raw(proxy.addr, &own).await.starts_with("HTTP/1.1 200"));
    assert_eq!(
        provider.requests_seen(),
        1,
        "only the request naming payguard was forwarded"
    );
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_nothing_is_sent() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(
        &provider.url(),
        "[server]\nmax_request_body_bytes = 1024",
    ))
    .await;

    // Declared too large by Content-Length: refused before the body is read.
    let reply = post_form(&proxy.url("/v1/payment_intents"), &"a".repeat(1025)).await;
    assert_payguard_error(&reply, 413, "payguard_body_too_large");
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

    // Chunked, with no length up front: refused once the limit is crossed.
    let chunk = format!("190\r\n{}\r\n", "x".repeat(400));
    let chunked = format!(
        "POST /v1/refunds HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        proxy.addr,
        chunk.repeat(4)
    );
    let reply = raw(proxy.addr, &chunked).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("payguard_body_too_large"), "{reply}");

    // A body at the limit is fine.
    let reply = post_form(&proxy.url("/_double/echo"), &"a".repeat(1024)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        provider.requests_seen(),
        1,
        "neither oversized request reached the provider"
    );
}
