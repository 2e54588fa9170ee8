//! No secret ever reaches payguard's logs or metrics: not the API key (in `Authorization`,
//! bearer or basic), not the `Stripe-Account`, not card data in a body, not proxy credentials
//! or a URL's userinfo; under ordinary traffic, provider faults and every hostile input of the
//! `hostile_*` tests, with the real binary logging JSON at trace level (the most any operator
//! could turn on, debug included).

mod support;

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use payguard_double::{self as double, DoubleConfig, Fault};
use support::process::BIN;
use support::raw::{exchange, read_until_closed};
use support::{Reply, get, send};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const API_KEY: &str = "sk_live_51SeCrEtApIkEy0123456789";
const BASIC_KEY: &str = "sk_live_BaSiCsEcReT987";
/// `BASIC_KEY` followed by a colon, base64: how Basic auth carries the key.
const BASIC_B64: &str = "c2tfbGl2ZV9CYVNpQ3NFY1JlVDk4Nzo=";
const ACCOUNT: &str = "acct_1SeCrEtAcCoUnT42";
const CARD: &str = "4000056655665556";
const CVC: &str = "cvc9173";
const PROXY_AUTH: &str = "cHJveHk6UHJPeFlzRWNSZVQ=";
const USERINFO: &str = "UsErInFoSeCrEt";

fn authorization() -> String {
    format!("Bearer {API_KEY}")
}

fn form() -> String {
    format!("amount=100&currency=usd&card[number]={CARD}&card[cvc]={CVC}")
}

/// A POST carrying every secret, through `client` (HTTP/1.1 or h2c).
async fn secret_post(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    basic: bool,
) -> Reply {
    let auth = if basic {
        format!("Basic {BASIC_B64}")
    } else {
        authorization()
    };
    let request = http::Request::post(url)
        .header("authorization", auth)
        .header("stripe-account", ACCOUNT)
        .header("proxy-authorization", format!("Basic {PROXY_AUTH}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form())))
        .unwrap();
    let response = client.request(request).await.expect("answered");
    let status = response.status();
    let headers = response.headers().clone();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// Raw requests with the secrets in every place a hostile client might put them.
fn hostile_requests(addr: std::net::SocketAddr) -> Vec<String> {
    let (auth, body) = (authorization(), form());
    let len = body.len();
    let secret_headers = format!("Authorization: {auth}\r\nStripe-Account: {ACCOUNT}\r\n");
    vec![
        // Smuggling: CL + TE, two lengths, obs-fold.
        format!(
            "POST /v1/refunds HTTP/1.1\r\nHost: p\r\n{secret_headers}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{len:x}\r\n{body}\r\n0\r\n\r\n"
        ),
        format!(
            "POST /v1/refunds HTTP/1.1\r\nHost: p\r\n{secret_headers}Content-Length: 3\r\nContent-Length: {len}\r\n\r\n{body}"
        ),
        format!(
            "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nX-Fold: a\r\n {auth}\r\n{secret_headers}Content-Length: {len}\r\n\r\n{body}"
        ),
        // Malformed and absolute-form lines, CONNECT with proxy credentials.
        format!("POST /v1/refunds HTTP/9.9\r\n{secret_headers}Content-Length: {len}\r\n\r\n{body}"),
        format!(
            "GET http://user:{USERINFO}@evil.example/v1/charges HTTP/1.1\r\nHost: {addr}\r\n{secret_headers}\r\n"
        ),
        format!(
            "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nProxy-Authorization: Basic {PROXY_AUTH}\r\n\r\n"
        ),
        // Oversized: a body over the limit, a head over hyper's.
        format!(
            "POST /v1/refunds HTTP/1.1\r\nHost: p\r\n{secret_headers}Content-Length: 9000\r\n\r\n{}",
            body.repeat(200)
        ),
        format!(
            "POST /v1/refunds HTTP/1.1\r\nHost: p\r\n{secret_headers}X-Big: {}\r\n\r\n",
            auth.repeat(20_000)
        ),
    ]
}

#[tokio::test]
async fn secrets_never_reach_logs_or_metrics() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("payguard.toml");
    let toml = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"{}\"\n\
         [server]\nmax_request_body_bytes = 4096\nheader_read_timeout = \"300ms\"\n\
         [log]\nformat = \"json\"\nlevel = \"trace\"\n\
         [retry]\nbase_delay = \"1ms\"\nmax_delay = \"2ms\"\nattempt_timeout = \"300ms\"\ndeadline = \"1s\"\n\
         [idempotency]\nstore = \"memory\"\nmax_records = 5\n",
        provider.url()
    );
    std::fs::write(&config, toml).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("payguard starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let (proxy, admin) = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("payguard logs its addresses")
            .unwrap()
            .expect("payguard is running");
        log.push(line.clone());
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if json["message"] == "payguard is serving" {
            let addr = |k: &str| {
                json[k]
                    .as_str()
                    .unwrap()
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
            };
            break (addr("proxy"), addr("admin"));
        }
    };
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            log.push(line);
        }
        log
    });
    let url = |path: &str| format!("http://{proxy}{path}");

    // Ordinary traffic over HTTP/1.1 and h2c, bearer and basic, then provider faults.
    let h1 = support::client();
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for (client, basic) in [(&h1, false), (&h1, true), (&h2, false), (&h2, true)] {
        let reply = secret_post(client, &url("/v1/payment_intents"), basic).await;
        assert!(
            reply.status.as_u16() < 500,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
    }
    for fault in [
        Fault::Status(500),
        Fault::ResetBeforeProcessing,
        Fault::ResetAfterProcessing,
        Fault::TruncatedBody,
        Fault::Stall(Duration::from_secs(2)),
        Fault::KeyInUse,
    ] {
        provider.faults().push(fault);
        secret_post(&h1, &url("/v1/payment_intents"), false).await;
    }
    // A key flood past the store's bound of 5.
    for n in 0..10 {
        let request = http::Request::post(url("/v1/refunds"))
            .header("authorization", authorization())
            .header("stripe-account", ACCOUNT)
            .header("idempotency-key", format!("flood-{n}"))
            .body(Full::new(Bytes::from(form())))
            .unwrap();
        send(request).await;
    }

    // Hostile input.
    for request in hostile_requests(proxy) {
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        let _ = stream.write_all(request.as_bytes()).await;
        let _ = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    }
    // A slowloris with the key in its unfinished head, and a body that never ends.
    let mut slow = TcpStream::connect(proxy).await.unwrap();
    let head = format!(
        "POST /v1/refunds HTTP/1.1\r\nAuthorization: {}\r\n",
        authorization()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    assert!(
        read_until_closed(&mut slow, Duration::from_secs(5))
            .await
            .is_ok()
    );
    let endless = format!(
        "POST /v1/refunds HTTP/1.1\r\nHost: p\r\nAuthorization: {}\r\nContent-Length: 4000\r\n\r\ncard[number]={CARD}",
        authorization()
    );
    assert_eq!(exchange(proxy, endless.as_bytes()).await.status(), 408);

    let metrics =
        String::from_utf8_lossy(&get(&format!("http://{admin}/metrics")).await.body).into_owned();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    let log = reader.await.unwrap().join("\n");

    // The capture is not vacuous: requests, refusals and debug events are all in it.
    for expected in [
        "\"path\":\"/v1/payment_intents\"",
        "payguard answered with an error",
        "request body exceeds",
        "the request body did not arrive",
        "read header from client timeout",
        "\"level\":\"DEBUG\"",
        "payguard_idempotency_records",
    ] {
        assert!(
            log.contains(expected) || metrics.contains(expected),
            "{expected} missing"
        );
    }
    for secret in [
        API_KEY, BASIC_KEY, BASIC_B64, ACCOUNT, CARD, CVC, PROXY_AUTH, USERINFO,
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
}
