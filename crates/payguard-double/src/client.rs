//! The one test client of the double and of payguard's tests: plain hyper over real sockets, a
//! fresh connection per request (so one test's reset never meets a pooled connection), and raw
//! TCP for seeing resets exactly. Public so the sidecar's tests use this and keep no copy.

use std::io::ErrorKind;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{DoubleConfig, DoubleHandle, spawn};

/// The API key the helpers send.
pub const KEY: &str = "sk_test_double";

/// A whole reply: head and collected body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn code(&self) -> Value {
        self.json()["error"]["code"].clone()
    }
}

/// Sends on a fresh connection, so one test's reset never meets a pooled connection.
pub async fn try_send(request: Request<Full<Bytes>>) -> Result<Reply, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("{e:?}"))?
        .to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub async fn send(request: Request<Full<Bytes>>) -> Reply {
    try_send(request).await.expect("a reply")
}

/// A Stripe-style form POST with an API key and, optionally, an idempotency key.
pub fn post(
    url: String,
    key: &str,
    idempotency_key: Option<&str>,
    form: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::post(url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(k) = idempotency_key {
        builder = builder.header("idempotency-key", k);
    }
    builder
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap()
}

pub fn get(url: String, key: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("authorization", format!("Bearer {key}"))
        .body(Full::default())
        .unwrap()
}

pub async fn start() -> DoubleHandle {
    spawn(DoubleConfig::default()).await.unwrap()
}

pub fn intents(d: &DoubleHandle) -> String {
    format!("{}/v1/payment_intents", d.url())
}

/// Writes a raw request and reads until the connection ends; returns the bytes and how it ended.
pub async fn raw(addr: SocketAddr, request: &str) -> (Vec<u8>, Result<(), ErrorKind>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (received, Ok(())),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => return (received, Err(e.kind())),
        }
    }
}

pub fn raw_create(addr: SocketAddr) -> String {
    let form = "amount=100&currency=usd";
    format!(
        "POST /v1/payment_intents HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
}
