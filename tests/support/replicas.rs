//! Several real payguard processes sharing one Redis and one provider double, as pods with a
//! sidecar each would in a Deployment.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::process::{Process, spawn_payguard};
use super::{Reply, send};

/// `n` payguard processes started from one config: `[redis]` at `redis_url`, the Redis store,
/// ephemeral ports, info logs, and `extra` TOML (tables the base does not have).
pub async fn start_replicas(
    n: usize,
    provider_url: &str,
    redis_url: &str,
    idempotency: &str,
    extra: &str,
) -> (Vec<Process>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let toml = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"{provider_url}\"\n[log]\nlevel = \"info\"\n\
         [redis]\nurl = \"{redis_url}\"\nkey_prefix = \"test:\"\ncommand_timeout = \"250ms\"\n\
         replicas = {n}\n\
         [idempotency]\nstore = \"redis\"\n{idempotency}\n{extra}\n"
    );
    std::fs::write(&file, toml).unwrap();
    let mut replicas = Vec::with_capacity(n);
    for _ in 0..n {
        replicas.push(spawn_payguard(&file).await);
    }
    (replicas, dir)
}

/// A Stripe-style form POST through a replica, with an idempotency key when given.
pub async fn post(replica: &Process, key: Option<&str>, form: &str) -> Reply {
    let mut request = Request::post(format!("http://{}/v1/payment_intents", replica.proxy))
        .header("authorization", "Bearer sk_test_replicas")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    send(
        request
            .body(Full::new(Bytes::from(form.to_owned())))
            .unwrap(),
    )
    .await
}

/// `GET` on a replica's admin listener: status and body.
pub async fn admin(replica: &Process, path: &str) -> (u16, String) {
    let reply = super::get(&format!("http://{}{path}", replica.admin)).await;
    (
        reply.status.as_u16(),
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

/// Polls `/readyz` until it answers exactly "ready" or `within` runs out.
pub async fn wait_ready(replica: &Process, within: Duration) -> (u16, String) {
    let started = std::time::Instant::now();
    loop {
        let answer = admin(replica, "/readyz").await;
        if answer == (200, "ready\n".into()) || started.elapsed() > within {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a metric series in Prometheus text (0 when absent).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}
