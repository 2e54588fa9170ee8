//! Hostile requests from the app's side: smuggling attempts, malformed and absolute-form
//! request lines, oversized heads and bodies. Each is refused cleanly: a 4xx (or a closed
//! connection), nothing or exactly one well-framed request upstream, and the next client served.

mod support;

use support::raw::{RawUpstream, Script, exchange, ok_reply, read_message, read_until_closed};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// payguard in front of a raw upstream that answers every request with a small 200 and keeps
/// what it received.
async fn setup(extra: &str) -> (Proxy, RawUpstream) {
    let upstream = RawUpstream::spawn(|_| Script::Reply(ok_reply(r#"{"ok":true}"#))).await;
    let proxy = start_proxy(&config_toml(&upstream.url(), extra)).await;
    (proxy, upstream)
}

/// A well-formed request still goes through: the proxy is not wedged by what came before.
async fn still_serves(proxy: &Proxy) {
    let reply = post_form(&proxy.url("/v1/refunds"), "payment_intent=pi_1").await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_request() {
    let (proxy, upstream) = setup("").await;
    // The classic CL.TE desync: a front end honouring Content-Length would read the chunked
    // body's tail as the start of a second request.
    let attack = "POST /v1/refunds HTTP/1.1\r\nHost: payguard\r\nContent-Length: 4\r\n\
                  Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
                  GET /v1/smuggled HTTP/1.1\r\nHost: payguard\r\n\r\n";
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream.write_all(attack.as_bytes()).await.unwrap();
    let reply = read_message(&mut stream).await.expect("a reply");
    // Transfer-Encoding wins (RFC 9112 6.3), and the connection is closed after the answer
    // (6.1), so what follows the chunked body is never read as a request.
    assert_eq!(reply.status(), 200, "{reply:?}");
    assert_eq!(reply.header("connection"), Some("close"));
    let rest = read_until_closed(&mut stream, support::raw::PATIENCE).await;
    assert_eq!(rest.map(|b| b.is_empty()), Ok(true), "closed, nothing more");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1, "one request upstream: {seen:?}");
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(seen[0].header("content-length"), Some("5"));
    assert_eq!(seen[0].header("transfer-encoding"), None);
    still_serves(&proxy).await;
}

#[tokio::test]
async fn ambiguous_framing_is_refused_before_payguard_sees_a_request() {
    let (proxy, upstream) = setup("").await;
    let attacks = [
        // Two different lengths.
        "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\nContent-Length: 11\r\n\r\nabcdefghijk",
        // One header listing two lengths.
        "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nContent-Length: 3, 11\r\n\r\nabcdefghijk",
        // obs-fold (RFC 9112 5.2): a continuation line hiding a header.
        "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nX-Note: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
        // A transfer coding that does not end in chunked leaves the length unknown.
        "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        // A malformed chunk size.
        "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nContent-Length: -1\r\n\r\n",
    ];
    for attack in attacks {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(attack.as_bytes()).await.unwrap();
        let reply = read_until_closed(&mut stream, support::raw::PATIENCE)
            .await
            .expect("the connection is closed");
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400"),
            "{attack:?} got {text:?}"
        );
    }
    assert!(upstream.requests().is_empty(), "nothing went upstream");
    still_serves(&proxy).await;
}

#[tokio::test]
async fn the_upstream_always_gets_one_request_framed_by_content_length() {
    let (proxy, upstream) = setup("").await;
    // Chunked in, with a trailer and hop-by-hop headers naming others.
    let request = "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\
                   Connection: keep-alive, x-hop\r\nX-Hop: secret-hop\r\nTE: trailers\r\n\r\n\
                   3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n";
    let reply = exchange(proxy.addr, request.as_bytes()).await;
    assert_eq!(reply.status(), 200, "{reply:?}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    let forwarded = &seen[0];
    assert_eq!(forwarded.body, b"abcde");
    assert_eq!(forwarded.header("content-length"), Some("5"));
    for hop in ["transfer-encoding", "x-hop", "te", "x-trailer"] {
        assert_eq!(forwarded.header(hop), None, "{hop} crossed: {forwarded:?}");
    }
}

#[tokio::test]
async fn malformed_request_lines_get_400_and_nothing_is_sent() {
    let (proxy, upstream) = setup("").await;
    let lines = [
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET /v1/charges\r\n\r\n",
        "GET /v1/charges HTTP/9.9\r\nHost: p\r\n\r\n",
        "GET /v1/ch arges HTTP/1.1\r\nHost: p\r\n\r\n",
        "GET /v1/\x01charges HTTP/1.1\r\nHost: p\r\n\r\n",
        "G\u{e9}T /v1/charges HTTP/1.1\r\nHost: p\r\n\r\n",
        "GET /v1/charges HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        "GET /v1/charges HTTP/1.1\r\n: empty-name\r\n\r\n",
        "GET /v1/charges HTTP/1.1\nHost: p\n\rX\r\n\r\n",
    ];
    for line in lines {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        stream.write_all(line.as_bytes()).await.unwrap();
        let reply = read_until_closed(&mut stream, support::raw::PATIENCE)
            .await
            .unwrap_or_else(|()| panic!("{line:?}: the connection is still open"));
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.1 505"),
            "{line:?} got {text:?}"
        );
    }
    assert!(upstream.requests().is_empty(), "nothing went upstream");
    still_serves(&proxy).await;
}

#[tokio::test]
async fn absolute_authority_and_asterisk_forms_never_reach_another_host() {
    let (proxy, upstream) = setup("").await;
    let me = proxy.addr;
    let cases = [
        (
            format!("GET http://example.com/v1/charges HTTP/1.1\r\nHost: {me}\r\n\r\n"),
            400,
        ),
        // A Host naming payguard does not launder an absolute target naming another host.
        (
            format!("GET http://169.254.169.254/latest HTTP/1.1\r\nHost: {me}\r\n\r\n"),
            400,
        ),
        // Userinfo trying to look like payguard's address.
        (
            format!("GET http://{me}@evil.example/ HTTP/1.1\r\nHost: {me}\r\n\r\n"),
            400,
        ),
        (
            "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".into(),
            405,
        ),
        (format!("CONNECT {me} HTTP/1.1\r\nHost: {me}\r\n\r\n"), 405),
        (
            format!("GET evil.example:80 HTTP/1.1\r\nHost: {me}\r\n\r\n"),
            400,
        ),
    ];
    for (request, status) in &cases {
        let reply = exchange(proxy.addr, request.as_bytes()).await;
        assert_eq!(reply.status(), *status, "{request:?}: {reply:?}");
    }
    assert!(upstream.requests().is_empty(), "nothing went upstream");

    // `OPTIONS *` is about the server: passed to the configured upstream as it is, or refused.
    let reply = exchange(
        proxy.addr,
        format!("OPTIONS * HTTP/1.1\r\nHost: {me}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(reply.status() < 500, "{reply:?}");
    for seen in upstream.requests() {
        assert!(seen.head.starts_with("OPTIONS * HTTP/1.1\r\n"), "{seen:?}");
    }
    still_serves(&proxy).await;
}

#[tokio::test]
async fn oversized_heads_get_431_and_oversized_bodies_413_without_being_read() {
    let (proxy, upstream) = setup("[server]\nmax_request_body_bytes = 4096").await;

    // One enormous header, and very many small ones.
    let huge = format!(
        "GET /v1/charges HTTP/1.1\r\nHost: p\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /v1/charges HTTP/1.1\r\nHost: p\r\n{many}\r\n");
    for request in [huge, many] {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        // The server may stop reading and close before the whole head is written.
        let _ = stream.write_all(request.as_bytes()).await;
        let reply = read_until_closed(&mut stream, support::raw::PATIENCE)
            .await
            .expect("the connection is closed");
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431"),
            "{text:?}"
        );
    }

    // A declared length far over the limit is refused from the head alone: the client sends
    // no body at all and still gets its answer.
    let declared = "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nContent-Length: 1000000000000\r\n\r\n";
    let reply = exchange(proxy.addr, declared.as_bytes()).await;
    assert_eq!(reply.status(), 413, "{reply:?}");
    assert_eq!(
        reply.header("payguard-error"),
        Some("payguard_body_too_large")
    );

    // Chunked without end: refused once the limit is crossed, not read to the end.
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let head = "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
    for _ in 0..5 {
        stream.write_all(chunk.as_bytes()).await.unwrap();
    }
    let reply = tokio::time::timeout(support::raw::PATIENCE, read_message(&mut stream))
        .await
        .expect("answered while the body is still open")
        .expect("a reply");
    assert_eq!(reply.status(), 413, "{reply:?}");

    assert!(upstream.requests().is_empty(), "nothing went upstream");
    still_serves(&proxy).await;
}

#[tokio::test]
async fn an_oversized_http2_head_is_refused_and_the_connection_keeps_serving() {
    let (proxy, upstream) = setup("").await;
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let request = |padding: usize| {
        http::Request::post(proxy.url("/v1/refunds"))
            .header("authorization", "Bearer sk_test_payguard")
            .header("x-padding", "a".repeat(padding))
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"a=1")))
            .unwrap()
    };
    // Over the 16 KiB header list payguard advertises: refused, never forwarded.
    match h2.request(request(64 * 1024)).await {
        Ok(response) => assert_eq!(response.status(), 431),
        Err(e) => assert!(!e.is_connect(), "{e}"),
    }
    assert!(upstream.requests().is_empty(), "nothing went upstream");
    let response = h2
        .request(request(10))
        .await
        .expect("served after the refusal");
    assert_eq!(response.status(), 200);
}
