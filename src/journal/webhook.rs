//! Signed notifications of finished entries: when an unresolved request is resolved or given
//! up, a JSON event is POSTed to `resolver.webhook.url`.
//!
//! - **Signed.** `Payguard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
//!   `"<t>.<body>"` with the configured secret, the scheme Stripe's own webhooks use, so a
//!   receiver can check both origin and freshness.
//! - **Idempotent by event id.** The id is the entry's id and its outcome: an entry finishes
//!   once, so every delivery of one event, retries included, carries the same id (also in
//!   `Payguard-Event-Id`); a receiver ignores ids it has seen.
//! - **Retried.** A delivery that fails or answers anything but 2xx is tried again after
//!   `base_delay`, doubled each time (at most a minute), up to `max_attempts`.
//!
//! Deliveries run one at a time on a background task fed by a bounded queue; the queue lives
//! in memory, so notifications still queued when payguard stops are lost (the listing and
//! metrics still show the outcome). Events carry no payload, API key or body.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ring::hmac;
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Entry, Id, State, short_id};

/// Notifications waiting beyond this are dropped (with a warning): a dead receiver must not
/// hold payguard's memory.
const QUEUE: usize = 1024;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_DELAY: Duration = Duration::from_secs(60);

/// The HMAC key that signs webhook notifications. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(pub Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

/// The validated `[resolver.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    pub url: http::Uri,
    pub secret: WebhookSecret,
    /// Deliveries of one notification, the first included.
    pub max_attempts: u32,
    /// The wait before the second delivery, doubled after each failure (at most a minute).
    pub base_delay: Duration,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: String,
    /// `unresolved.resolved` or `unresolved.gave_up`.
    #[serde(rename = "type")]
    pub kind: String,
    pub entry: String,
    pub route: String,
    pub method: String,
    pub path: String,
    pub key: String,
    /// The provider's status when resolved; the reason when given up.
    pub outcome: String,
    pub attempts: u32,
    pub created_ms: u64,
    pub finished_ms: u64,
}

impl Event {
    /// The event for a finished entry; `None` while it is not finished.
    pub fn new(id: &Id, entry: &Entry) -> Option<Event> {
        let (kind, outcome) = match entry.state {
            State::Resolved { status } => ("resolved", status.to_string()),
            State::GaveUp { reason } => ("gave_up", reason.label().to_owned()),
            _ => return None,
        };
        let short = short_id(id);
        Some(Event {
            id: format!("evt_{short}_{kind}"),
            kind: format!("unresolved.{kind}"),
            entry: short,
            route: entry.route.clone(),
            method: entry.method.clone(),
            path: entry.target.split('?').next().unwrap_or("/").to_owned(),
            key: entry.key.clone(),
            outcome,
            attempts: entry.attempts,
            created_ms: entry.created_ms,
            finished_ms: entry.updated_ms,
        })
    }
}

/// The `Payguard-Signature` value for `body` sent at `t` (Unix seconds).
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = hmac::sign(&key, &signed);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// The sending side of the queue; the delivery task starts with the first event.
pub struct Webhook {
    spec: Arc<WebhookSpec>,
    tx: mpsc::Sender<Event>,
    rx: Mutex<Option<mpsc::Receiver<Event>>>,
}

impl Webhook {
    pub fn new(spec: WebhookSpec) -> Webhook {
        let (tx, rx) = mpsc::channel(QUEUE);
        Webhook {
            spec: Arc::new(spec),
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }

    pub fn spec(&self) -> &WebhookSpec {
        &self.spec
    }

    /// Queues `event` for delivery. Must be called within the tokio runtime.
    pub fn notify(&self, event: Event) {
        let rx = self
            .rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(rx) = rx {
            tokio::spawn(deliver_all(self.spec.clone(), rx));
        }
        if let Err(e) = self.tx.try_send(event) {
            tracing::warn!(error = %e, "webhook queue full or closed; a notification is dropped");
        }
    }
}

async fn deliver_all(spec: Arc<WebhookSpec>, mut rx: mpsc::Receiver<Event>) {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    let tls = match tls {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!(error = %e, "webhook: cannot build a TLS client; notifications are off");
            return;
        }
    };
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    // The spawning Webhook may be replaced on reload; its queue drains, then this task ends.
    while let Some(event) = rx.recv().await {
        let Ok(body) = serde_json::to_vec(&event) else {
            continue;
        };
        let mut delay = spec.base_delay;
        for attempt in 1..=spec.max_attempts {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let request = Request::post(spec.url.clone())
                .header("content-type", "application/json")
                .header("payguard-event-id", &event.id)
                .header("payguard-signature", signature(&spec.secret.0, t, &body))
                .body(Full::new(Bytes::from(body.clone())));
            let Ok(request) = request else { break };
            let sent = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
                let response = client.request(request).await?;
                let status = response.status();
                // Read (and discard) the answer, so the connection can be reused.
                let _ = response.into_body().collect().await;
                anyhow::Ok(status)
            })
            .await;
            match sent {
                Ok(Ok(status)) if status.is_success() => break,
                other => {
                    let error = match other {
                        Ok(Ok(status)) => format!("answered {status}"),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {ATTEMPT_TIMEOUT:?}"),
                    };
                    tracing::warn!(event = event.id, attempt, error, "webhook delivery failed");
                }
            }
            if attempt < spec.max_attempts {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_time_and_body() {
        let sig = signature(b"whsec_0123456789abcdef", 1700000000, b"{}");
        let (t, v1) = sig.split_once(',').unwrap();
        assert_eq!(t, "t=1700000000");
        let tag = v1.strip_prefix("v1=").unwrap();
        assert_eq!(tag.len(), 64);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"whsec_0123456789abcdef");
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&tag[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert!(hmac::verify(&key, b"1700000000.{}", &bytes).is_ok());
        assert_ne!(sig, signature(b"whsec_0123456789abcdef", 1700000001, b"{}"));
    }
}
