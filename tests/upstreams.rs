//! Several upstreams: routes pick one, and each has its own limiter, breaker and pool, so a
//! files host that is down or throttled never holds back the API host. Two provider doubles
//! stand in for api.stripe.com and files.stripe.com.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use payguard_double::{self as double, DoubleConfig, DoubleHandle, Fault};
use support::*;

/// payguard in front of `api` (the default upstream) and `files`, with the files upstream's
/// limiter and breaker set by `files_limits` (TOML under `[upstreams.files]`).
async fn two_upstreams(api: &DoubleHandle, files: &DoubleHandle, files_limits: &str) -> Proxy {
    let extra = format!(
        "[retry]\nbase_delay = \"10ms\"\nmax_delay = \"20ms\"\n\
         [rate_limit]\nrate = 1000.0\nburst = 100\n\
         [breaker]\nconsecutive_failures = 100\n\
         [upstreams.files]\nurl = \"{}\"\n{files_limits}\n\
         [[route]]\nname = \"file_uploads\"\nmatch = \"POST /v1/files\"\nupstream = \"files\"\n\
         [[route]]\nname = \"payment_intents\"\nmatch = \"POST /v1/payment_intents\"\n",
        files.url()
    );
    start_proxy(&config_toml(&api.url(), &extra)).await
}

async fn metrics(proxy: &Proxy) -> String {
    String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap()
}

fn paths(double: &DoubleHandle) -> Vec<String> {
    double.requests().into_iter().map(|r| r.path).collect()
}

#[tokio::test]
async fn routes_reach_their_own_upstream() {
    let api = double::spawn(DoubleConfig::default()).await.unwrap();
    let files = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = two_upstreams(&api, &files, "").await;

    let created = post_form(&proxy.url("/v1/payment_intents"), "amount=500&currency=usd").await;
    assert_eq!(created.status, 200);
    // The files double has no /v1/files endpoint: its 404 is proof enough of who answered.
    let upload = post_form(&proxy.url("/v1/files"), "purpose=dispute_evidence").await;
    assert_eq!(upload.status, 404);
    // Unmatched requests go to the default upstream.
    let read = get(&proxy.url("/_double/echo")).await;
    assert_eq!(read.status, 200);

    assert_eq!(paths(&api), ["/v1/payment_intents", "/_double/echo"]);
    assert_eq!(paths(&files), ["/v1/files"]);
    // Each upstream gets the Host of its own origin, and the app's key travels with it.
    let seen = &files.requests()[0];
    let host = seen.header("host").unwrap();
    assert_eq!(host, files.addr().to_string());
    assert!(seen.header("idempotency-key").is_some(), "key injected");
}

#[tokio::test]
async fn each_upstream_has_its_own_breaker() {
    let api = double::spawn(DoubleConfig::default()).await.unwrap();
    let files = double::spawn(DoubleConfig::default()).await.unwrap();
    let limits = "[upstreams.files.breaker]\nconsecutive_failures = 2\nbreak_duration = \"30s\"";
    let proxy = two_upstreams(&api, &files, limits).await;

    // The files host fails every attempt: two failures open its breaker.
    for _ in 0..4 {
        files.faults().push(Fault::Status(503));
    }
    let upload = proxy.url("/v1/files");
    let failed = post_form(&upload, "purpose=dispute_evidence").await;
    // Two 503s under the injected key: the upload may have executed.
    assert_outcome_unknown(&failed, &[502]);
    assert_eq!(failed.headers["payguard-attempts"], "2");
    let refused = post_form(&upload, "purpose=dispute_evidence").await;
    assert_payguard_error(&refused, 503, "payguard_circuit_open");
    assert_eq!(files.requests_seen(), 2, "nothing sent while open");

    // The API host is untouched by it.
    let created = post_form(&proxy.url("/v1/payment_intents"), "amount=500&currency=usd").await;
    assert_eq!(created.status, 200);
    let text = metrics(&proxy).await;
    assert!(
        text.contains("payguard_breaker_state{breaker=\"upstream:files\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("payguard_breaker_state{breaker=\"upstream\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn each_upstream_has_its_own_limiter() {
    let api = double::spawn(DoubleConfig::default()).await.unwrap();
    let files = double::spawn(DoubleConfig::default()).await.unwrap();
    // One send every 10 s, and no waiting for it.
    let limits = "[upstreams.files.rate_limit]\nrate = 0.1\nmin_rate = 0.1\nburst = 1\n\
                  max_wait = \"0s\"";
    let proxy = two_upstreams(&api, &files, limits).await;

    let upload = proxy.url("/v1/files");
    assert_eq!(post_form(&upload, "purpose=a").await.status, 404);
    let limited = post_form(&upload, "purpose=b").await;
    assert_payguard_error(&limited, 429, "rate_limit");
    assert_eq!(files.requests_seen(), 1);

    // Ten API requests at once pass the API host's own, generous limiter.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let url = proxy.url("/v1/payment_intents");
        tasks.spawn(
            async move { post_form(&url, &format!("amount={}&currency=usd", 100 + i)).await },
        );
    }
    while let Some(reply) = tasks.join_next().await {
        assert_eq!(reply.unwrap().status, 200);
    }
    let text = metrics(&proxy).await;
    assert!(
        text.contains("payguard_ratelimit_rejected_total{limiter=\"upstream:files\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("payguard_ratelimit_rejected_total{limiter=\"upstream\"} 0"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_upstream_or_profile_is_refused_at_load() {
    let text = config_toml(
        "http://127.0.0.1:1",
        "[upstreams.files]\nurl = \"http://127.0.0.1:2\"\nprofile = \"square\"\n\
         [[route]]\nname = \"uploads\"\nmatch = \"POST /v1/files\"\nupstream = \"file\"\n",
    );
    let error = payguard::config::Config::parse(&text, "t", None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`upstreams.files.profile`")
            && error.contains("unknown profile \"square\"; built in: stripe, ietf, paypal"),
        "{error}"
    );
    assert!(
        error.contains("`route[0].upstream`") && error.contains("named upstreams: files"),
        "{error}"
    );
    // [upstream]'s limiter is the top-level [rate_limit], said so rather than ignored.
    let text = config_toml("http://127.0.0.1:1", "")
        .replace("[log]", "[upstream.rate_limit]\nrate = 1.0\n[log]");
    let error = payguard::config::Config::parse(&text, "t", None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("top-level [rate_limit]"), "{error}");
}

/// A body of `len` bytes that tests can recognise byte for byte.
fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test]
async fn uploads_over_the_buffer_are_streamed_once_and_counted() {
    let api = double::spawn(DoubleConfig::default()).await.unwrap();
    let files = double::spawn(DoubleConfig::default()).await.unwrap();
    // A 64 KiB replay buffer, and uploads up to 4 MiB on the files route.
    let extra = format!(
        "[server]\nmax_request_body_bytes = 65536\n\
         [retry]\nbase_delay = \"10ms\"\nmax_delay = \"20ms\"\n\
         [upstreams.files]\nurl = \"{}\"\n\
         [[route]]\nname = \"file_uploads\"\nmatch = \"POST /v1/files\"\nupstream = \"files\"\n\
         max_upload_bytes = 4194304\n",
        files.url()
    );
    let proxy = start_proxy(&config_toml(&api.url(), &extra)).await;
    let upload = |body: Bytes| {
        let request = Request::post(proxy.url("/v1/files"))
            .header("authorization", "Bearer sk_test_payguard")
            .header("content-type", "multipart/form-data; boundary=x")
            .header("idempotency-key", "upload-1")
            .body(Full::new(body))
            .unwrap();
        send(request)
    };

    // 1 MiB reaches the files host whole, in one attempt.
    let body = pattern(1 << 20);
    let reply = upload(body.clone()).await;
    assert_eq!(reply.status, 404, "the files double's answer");
    assert_eq!(reply.headers["payguard-attempts"], "1");
    let seen = files.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, body, "every byte, in order");

    // A failure after sending is not retried: payguard holds no copy to send again.
    files.faults().push(Fault::Status(503));
    let failed = upload(pattern(200_000)).await;
    // Sent under its key and answered 503: in doubt, and the app's retry under the key is
    // the provider's to deduplicate.
    assert_outcome_unknown(&failed, &[502]);
    assert_eq!(failed.headers["payguard-attempts"], "1");
    assert_eq!(files.requests_seen(), 2, "one attempt, no retry");
    // A small request on the same route is buffered, and retried as usual.
    files.faults().push(Fault::Status(503));
    let small = post_form(&proxy.url("/v1/files"), "purpose=a").await;
    assert_eq!(small.headers["payguard-attempts"], "2");

    // Over the route's limit: refused before anything is sent.
    let too_big = upload(pattern((4 << 20) + 1)).await;
    assert_payguard_error(&too_big, 413, "payguard_body_too_large");
    assert_eq!(files.requests_seen(), 4);
    // And on a route without max_upload_bytes, over the buffer is 413 as before.
    let request = Request::post(proxy.url("/v1/payment_intents"))
        .header("authorization", "Bearer sk_test_payguard")
        .body(Full::new(pattern(100_000)))
        .unwrap();
    assert_payguard_error(&send(request).await, 413, "payguard_body_too_large");
    assert_eq!(api.requests_seen(), 0);

    let text = metrics(&proxy).await;
    assert!(
        text.contains("payguard_streamed_uploads_total{route=\"file_uploads\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("payguard_streamed_upload_bytes_total{route=\"file_uploads\"} 1248576"),
        "{text}"
    );
}

/// A request body fed from a channel, so a test decides when each chunk leaves the app.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

/// An upstream that reports (on the channel) as soon as the first body bytes arrive, then
/// reads the rest and answers with the byte count.
async fn reporting_upstream(first_bytes: tokio::sync::mpsc::Sender<usize>) -> String {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let first_bytes = first_bytes.clone();
            async move {
                let mut body = request.into_body();
                let mut received = 0;
                while let Some(frame) = body.frame().await {
                    let data = frame.unwrap().into_data().unwrap_or_default();
                    if received == 0 && !data.is_empty() {
                        let _ = first_bytes.send(data.len()).await;
                    }
                    received += data.len();
                }
                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                    received.to_string(),
                ))))
            }
        });
        let io = hyper_util::rt::TokioIo::new(stream);
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await;
    });
    url
}

#[tokio::test]
async fn an_upload_reaches_the_provider_while_the_app_is_still_sending() {
    let (report, mut first_bytes) = tokio::sync::mpsc::channel(1);
    let files = reporting_upstream(report).await;
    let extra = format!(
        "[server]\nmax_request_body_bytes = 65536\n\
         [upstreams.files]\nurl = \"{files}\"\n\
         [[route]]\nname = \"file_uploads\"\nmatch = \"POST /v1/files\"\nupstream = \"files\"\n\
         max_upload_bytes = 1048576\n"
    );
    let proxy = start_proxy(&config_toml("http://127.0.0.1:1", &extra)).await;
    let (chunks, body) = tokio::sync::mpsc::channel(4);
    let request = Request::post(proxy.url("/v1/files"))
        .header("authorization", "Bearer sk_test_payguard")
        .header("content-length", (256 * 1024).to_string())
        .body(ChannelBody(body))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<ChannelBody>();
    let sending = tokio::spawn(async move { client.request(request).await });

    // The first 32 KiB reach the provider before the app sends another byte: payguard did not
    // wait for the whole body (a buffering proxy would wait for all 256 KiB, forever here).
    chunks
        .send(Bytes::from(vec![7u8; 32 * 1024]))
        .await
        .unwrap();
    let arrived = tokio::time::timeout(std::time::Duration::from_secs(10), first_bytes.recv())
        .await
        .expect("the first bytes reach the upstream while the app is still sending");
    assert!(arrived.is_some_and(|n| n > 0));
    for _ in 0..7 {
        chunks
            .send(Bytes::from(vec![7u8; 32 * 1024]))
            .await
            .unwrap();
    }
    drop(chunks);
    let response = sending.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["payguard-attempts"], "1");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, (256 * 1024).to_string());
}
