//! The bound on load (`[server] max_requests_in_flight`, `max_buffered_bytes`,
//! `max_connections`): past it a request is answered 503 `payguard_overloaded` at once, with
//! `Retry-After` and `Stripe-Should-Retry: true`, and a flood of large bodies cannot push the
//! process's memory past the bound.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use payguard_double::{self as double, DoubleConfig};
use support::process::spawn_payguard;
use support::*;

/// A provider slow enough that requests stay in flight while the test sends more.
async fn slow_provider(latency: Duration) -> double::DoubleHandle {
    double::spawn(DoubleConfig {
        latency,
        ..DoubleConfig::default()
    })
    .await
    .unwrap()
}

fn upload(url: String, bytes: usize) -> http::Request<Full<Bytes>> {
    http::Request::post(url)
        .header("authorization", "Bearer sk_test_load")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(vec![b'a'; bytes])))
        .unwrap()
}

fn assert_overloaded(reply: &Reply) {
    assert_payguard_error(reply, 503, "payguard_overloaded");
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(reply.headers["stripe-should-retry"], "true");
}

#[tokio::test]
async fn requests_past_the_bound_are_answered_503_at_once_and_places_come_back() {
    let provider = slow_provider(Duration::from_millis(800)).await;
    let proxy = start_proxy(&config_toml(
        &provider.url(),
        "[server]\nmax_requests_in_flight = 2\n",
    ))
    .await;
    let started = std::time::Instant::now();
    let url = proxy.url("/v1/customers");
    let replies = futures_join(6, |_| {
        let url = url.clone();
        async move { get(&url).await }
    })
    .await;
    let (refused, served): (Vec<_>, Vec<_>) = replies.iter().partition(|r| r.status == 503);
    assert_eq!(served.len(), 2, "two places in flight");
    for reply in &refused {
        assert_overloaded(reply);
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // The refusals reached nothing; the places are free again once the two are answered.
    assert_eq!(provider.requests().len(), 2);
    assert_ne!(get(&proxy.url("/v1/customers")).await.status, 503);
    let metrics =
        String::from_utf8_lossy(&get(&proxy.admin_url("/metrics")).await.body).into_owned();
    assert!(
        metrics.contains("payguard_overload_refusals_total{bound=\"requests_in_flight\"} 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_past_the_buffered_bytes_left_is_refused_before_it_is_read() {
    let provider = slow_provider(Duration::from_millis(800)).await;
    let proxy = start_proxy(&config_toml(
        &provider.url(),
        "[server]\nmax_request_body_bytes = 100000\nmax_buffered_bytes = 150000\n",
    ))
    .await;
    let url = proxy.url("/v1/files");
    let replies = futures_join(3, |_| send(upload(url.clone(), 90_000))).await;
    let refused: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(refused.len(), 2, "only one 90 kB body fits in 150 kB");
    refused.iter().for_each(|r| assert_overloaded(r));
    // Small bodies still fit beside the one in flight.
    assert_eq!(provider.requests().len(), 1);
}

/// Runs `n` requests at once and collects their replies.
async fn futures_join<F, Fut>(n: usize, request: F) -> Vec<Reply>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(request(i))).collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

/// The peak resident set of a process, from `/proc`.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 96 clients each upload 1 MiB at once to a payguard bounded at 2 MiB of buffered bodies,
/// while the provider holds the admitted ones for two seconds. Unbounded, payguard would hold
/// all 96 MiB; bounded, its peak grows by the bound and its own working set, nothing like it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_large_bodies_cannot_push_rss_past_the_bound() {
    const MIB: usize = 1 << 20;
    let provider = slow_provider(Duration::from_secs(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let toml = config_toml(
        &provider.url(),
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [server]\nmax_request_body_bytes = 1048576\nmax_buffered_bytes = 2097152\n",
    )
    .replace("level = \"warn\"", "level = \"info\"");
    std::fs::write(&file, toml).unwrap();
    let running = spawn_payguard(&file).await;
    let pid = running.child.id().unwrap();
    let url = format!("http://{}/v1/files", running.proxy);
    // Warm up: one admitted upload, so the baseline holds payguard's own working set.
    send(upload(url.clone(), MIB)).await;
    let baseline = peak_rss_kib(pid);

    let tasks: Vec<_> = (0..96)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { support::client().request(upload(url, MIB)).await })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        if let Ok(Ok(response)) = task.await {
            refused += usize::from(response.status() == 503);
        }
    }
    let grown_mib = (peak_rss_kib(pid).saturating_sub(baseline)) / 1024;
    assert!(refused >= 80, "{refused} of 96 refused");
    assert!(
        grown_mib < 2 + 24,
        "peak RSS grew by {grown_mib} MiB over {baseline} KiB for a 2 MiB bound"
    );
}
