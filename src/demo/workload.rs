//! The order workload: a shop's app sending one payment per order, as naive as most are.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Options;
use payguard_double::{EffectKind, Ledger};

/// How one run went, from the app's side and from the provider's ledger.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub orders: usize,
    /// Orders whose payment the app saw succeed.
    pub completed: usize,
    /// Requests the provider saw for them, retries included.
    pub attempts: u64,
    /// Each order's time from the app's first send to its final answer.
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    /// Charges in the provider's ledger.
    pub charges: usize,
    /// Orders the provider charged more than once.
    pub charged_twice: usize,
}

impl Outcome {
    pub fn completion(&self) -> f64 {
        self.completed as f64 / self.orders.max(1) as f64
    }

    pub fn mean_attempts(&self) -> f64 {
        self.attempts as f64 / self.orders.max(1) as f64
    }

    /// The `q` quantile of the order latencies (nearest rank).
    pub fn latency_quantile(&self, q: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(rank - 1).copied().unwrap_or_default()
    }

    /// Adds what the provider's ledger says happened.
    pub(super) fn record(&mut self, ledger: &Ledger) {
        self.charges = ledger.count(EffectKind::Charge);
        self.charged_twice = ledger
            .duplicates()
            .iter()
            .filter(|d| d.kind == EffectKind::Charge)
            .filter(|d| matches!(d.by, payguard_double::DuplicateBy::Order(_)))
            .count();
    }
}

/// One order's result.
struct Sent {
    ok: bool,
    attempts: u64,
    latency: Duration,
}

/// Sends every order to `base`, `options.concurrency` at a time. Each order is one request
/// (plus up to `naive_retries` fresh resends when it fails); through payguard, the
/// `Payguard-Attempts` header says how many attempts it took upstream.
pub(super) async fn run(
    base: &str,
    options: &Options,
    naive_retries: u32,
    progress: impl Fn(usize, usize) + Send + Sync + 'static,
) -> Outcome {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(progress);
    let total = options.orders;
    let started = Instant::now();
    let workers: Vec<_> = (0..options.concurrency.min(total))
        .map(|_| {
            let (client, next, finished) = (client.clone(), next.clone(), finished.clone());
            let progress = progress.clone();
            let url = format!("{base}/v1/payment_intents");
            tokio::spawn(async move {
                let mut sent = Vec::new();
                loop {
                    let order = next.fetch_add(1, Ordering::Relaxed);
                    if order >= total {
                        break sent;
                    }
                    sent.push(send_order(&client, &url, order, naive_retries).await);
                    progress(finished.fetch_add(1, Ordering::Relaxed) + 1, total);
                }
            })
        })
        .collect();
    let mut outcome = Outcome {
        orders: total,
        ..Outcome::default()
    };
    for worker in workers {
        // A worker only panics on a bug; its orders then count as not completed.
        for sent in worker.await.unwrap_or_default() {
            outcome.completed += usize::from(sent.ok);
            outcome.attempts += sent.attempts;
            outcome.latencies.push(sent.latency);
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

async fn send_order(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    order: usize,
    naive_retries: u32,
) -> Sent {
    let started = Instant::now();
    let form = format!("amount=1999&currency=usd&confirm=true&metadata[order_id]=order-{order}");
    let mut attempts = 0;
    for _ in 0..=naive_retries {
        let request = Request::post(url)
            .header("authorization", "Bearer sk_test_payguard_demo")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form.clone())));
        let Ok(request) = request else { break };
        let response = client.request(request).await;
        let Ok(response) = response else {
            attempts += 1;
            continue;
        };
        attempts += response
            .headers()
            .get("payguard-attempts")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(1);
        let ok = response.status().is_success();
        // Read the body so the connection goes back to the pool.
        let _ = response.into_body().collect().await;
        if ok {
            return Sent {
                ok,
                attempts,
                latency: started.elapsed(),
            };
        }
    }
    Sent {
        ok: false,
        attempts,
        latency: started.elapsed(),
    }
}
