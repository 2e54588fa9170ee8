//! The provider double through its public API, over real sockets with a plain hyper client:
//! the idempotency rules, a lost reply and its replay, the limiter, scopes, the diagnostics,
//! TLS and the `payguard-provider` binary. Raw-socket fault tests live in `src/wire_tests.rs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use payguard_double::client::{KEY, get, intents, post, send, start, try_send};
use payguard_double::{self as double, DoubleConfig, EffectKind, Fault, RateLimit};

#[tokio::test]
async fn a_replay_returns_the_saved_reply_and_executes_nothing() {
    let d = start().await;
    let first = send(post(
        intents(&d),
        KEY,
        Some("k1"),
        "amount=100&currency=usd",
    ))
    .await;
    assert_eq!(first.status, 200);
    assert!(first.header("request-id").unwrap().starts_with("req_"));
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = send(post(
        intents(&d),
        KEY,
        Some("k1"),
        "currency=usd&amount=100",
    ))
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_ne!(again.header("request-id"), first.header("request-id"));
    assert_eq!(d.ledger().count(EffectKind::PaymentIntentCreated), 1);
    assert_eq!(d.ledger().effects_for_key("k1").len(), 1);
}

#[tokio::test]
async fn a_key_reused_with_other_parameters_or_endpoint_is_an_idempotency_error() {
    let d = start().await;
    send(post(intents(&d), KEY, Some("k"), "amount=100&currency=usd")).await;
    let other_params = send(post(intents(&d), KEY, Some("k"), "amount=200&currency=usd")).await;
    assert_eq!(other_params.status, 400);
    assert_eq!(other_params.json()["error"]["type"], "idempotency_error");
    let other_endpoint = send(post(
        format!("{}/v1/refunds", d.url()),
        KEY,
        Some("k"),
        "amount=100&currency=usd",
    ))
    .await;
    assert_eq!(other_endpoint.json()["error"]["type"], "idempotency_error");
    let too_long = send(post(
        intents(&d),
        KEY,
        Some(&"x".repeat(256)),
        "amount=1&currency=usd",
    ))
    .await;
    assert_eq!(too_long.status, 400);
    assert_eq!(d.ledger().entries().len(), 1);
}

#[tokio::test]
async fn a_concurrent_request_with_the_key_gets_409_then_the_replay() {
    let d = start().await;
    d.faults().push_for(
        "POST /v1/payment_intents",
        Fault::Stall(Duration::from_millis(400)),
    );
    let first = tokio::spawn(send(post(
        intents(&d),
        KEY,
        Some("k"),
        "amount=100&currency=usd",
    )));
    while d.requests_seen() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let during = send(post(intents(&d), KEY, Some("k"), "amount=100&currency=usd")).await;
    assert_eq!(during.status, 409);
    assert_eq!(during.code(), "idempotency_key_in_use");
    assert_eq!(during.json()["error"]["type"], "invalid_request_error");
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    let after = send(post(intents(&d), KEY, Some("k"), "amount=100&currency=usd")).await;
    assert_eq!(
        (after.header("idempotent-replayed"), &after.body),
        (Some("true"), &first.body)
    );
    assert_eq!(d.ledger().entries().len(), 1);
}

#[tokio::test]
async fn a_reset_after_processing_keeps_the_effect_and_the_retry_replays_it() {
    let d = start().await;
    d.faults().push(Fault::ResetAfterProcessing);
    let lost = try_send(post(
        intents(&d),
        KEY,
        Some("order-1"),
        "amount=900&currency=usd",
    ))
    .await;
    assert!(lost.is_err(), "the reply was lost");
    assert_eq!(
        d.ledger().count(EffectKind::PaymentIntentCreated),
        1,
        "but the effect happened"
    );
    let retry = send(post(
        intents(&d),
        KEY,
        Some("order-1"),
        "amount=900&currency=usd",
    ))
    .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        retry.json()["id"],
        d.ledger().entries()[0].object_id.as_str()
    );
    assert_eq!(d.ledger().entries().len(), 1);
}

#[tokio::test]
async fn the_limiter_answers_429_before_idempotency() {
    let limit = RateLimit {
        per_second: 5.0,
        burst: 1,
    };
    let d = double::spawn(DoubleConfig {
        rate_limit: Some(limit),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(
        send(post(intents(&d), KEY, Some("a"), "amount=1&currency=usd"))
            .await
            .status,
        200
    );
    let limited = send(post(intents(&d), KEY, Some("b"), "amount=1&currency=usd")).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.json()["error"]["type"], "rate_limit_error");
    assert_eq!(limited.code(), "rate_limit");
    assert_eq!(d.rate_limited(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let later = send(post(intents(&d), KEY, Some("b"), "amount=1&currency=usd")).await;
    assert_eq!(
        (later.status.as_u16(), later.header("idempotent-replayed")),
        (200, None),
        "the 429 was not saved"
    );
    assert_eq!(d.ledger().entries().len(), 2);
}

#[tokio::test]
async fn another_key_or_account_can_neither_replay_nor_read() {
    let d = start().await;
    let mine = send(post(intents(&d), KEY, Some("k"), "amount=100&currency=usd"))
        .await
        .json();
    let theirs = send(post(
        intents(&d),
        "sk_test_other",
        Some("k"),
        "amount=100&currency=usd",
    ))
    .await;
    assert_eq!(theirs.header("idempotent-replayed"), None);
    assert_ne!(theirs.json()["id"], mine["id"]);
    let url = format!("{}/{}", intents(&d), mine["id"].as_str().unwrap());
    assert_eq!(send(get(url.clone(), KEY)).await.json()["amount"], 100);
    let other = send(get(url.clone(), "sk_test_other")).await;
    assert_eq!(
        (other.status.as_u16(), other.code()),
        (404, "resource_missing".into())
    );
    let mut connected = get(url.clone(), KEY);
    connected
        .headers_mut()
        .insert("stripe-account", "acct_1".parse().unwrap());
    assert_eq!(send(connected).await.status, 404);
    // Basic auth with the key as the user name is the same caller.
    let basic = Request::get(url)
        .header("authorization", "Basic c2tfdGVzdF9kb3VibGU6")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(basic).await.status, 200);
    let anonymous = send(Request::get(intents(&d)).body(Full::default()).unwrap()).await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn echo_and_large_pass_everything_through() {
    let d = start().await;
    let echo = Request::put(format!("{}/_double/echo?a=1&b=%20", d.url()))
        .header("x-echo-trace", "t1")
        .header("x-other", "o")
        .body(Full::new(Bytes::from_static(b"raw body")))
        .unwrap();
    let reply = send(echo).await;
    assert_eq!(reply.header("x-echo-trace"), Some("t1"));
    assert_eq!(reply.header("x-other"), None);
    let json = reply.json();
    assert_eq!(
        (json["method"].as_str(), json["path"].as_str()),
        (Some("PUT"), Some("/_double/echo"))
    );
    assert_eq!(
        (json["query"].as_str(), json["body"].as_str()),
        (Some("a=1&b=%20"), Some("raw body"))
    );
    assert_eq!(json["headers"]["x-other"][0], "o");

    let size = 1_000_003usize;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let url = format!("{}/_double/large?bytes={size}", d.url());
    let response = client
        .request(Request::get(url).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(
        response.headers()["content-length"],
        size.to_string().as_str()
    );
    let (mut body, mut frames, mut received) = (response.into_body(), 0, Vec::new());
    while let Some(frame) = body.frame().await {
        frames += 1;
        received.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    assert_eq!(received.len(), size);
    assert!(
        received
            .iter()
            .enumerate()
            .all(|(i, b)| usize::from(*b) == i % 251),
        "the pattern"
    );
    // The client's reads coalesce chunks, so this only shows the body was not one blob; the
    // double's 16 KiB chunking itself is unit-tested in `double::body`.
    assert!(frames > 1, "streamed in pieces, got {frames} frames");

    let log = d.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].method.as_str(), log[0].query.as_deref()),
        ("PUT", Some("a=1&b=%20"))
    );
    assert_eq!(
        (log[0].header("x-echo-trace"), &log[0].body[..]),
        (Some("t1"), &b"raw body"[..])
    );
    assert_eq!(d.requests_seen(), 2);
}

#[tokio::test]
async fn tls_serves_the_same_api() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let d = double::spawn(DoubleConfig {
        tls: Some(Arc::new(server)),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(d.url(), format!("https://localhost:{}", d.addr().port()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let client_tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(client_tls)
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let response = client
        .request(post(intents(&d), KEY, Some("t"), "amount=5&currency=usd"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(d.ledger().entries().len(), 1);
    // Plain HTTP to a TLS port gets nowhere.
    assert!(
        try_send(get(format!("http://{}/_double/echo", d.addr()), KEY))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_binary_serves_and_prints_its_ledger_on_sigterm() {
    use std::io::{BufRead, BufReader};
    // std::process keeps this independent of tokio's `process` feature; the blocking reads run
    // on the blocking pool.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_payguard-provider"))
        .args(["--listen", "127.0.0.1:0", "--rate-limit", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (first, mut stdout) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        (line, stdout)
    })
    .await
    .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let reply = send(post(
        format!("{url}/v1/payment_intents"),
        KEY,
        None,
        "amount=1&currency=usd",
    ))
    .await;
    assert_eq!(reply.status, 200);

    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (status, summary) = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        (child.wait().unwrap(), rest)
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(summary.contains("payment intents created: 1"), "{summary}");
    assert!(summary.contains("duplicate effects: 0"), "{summary}");
}
