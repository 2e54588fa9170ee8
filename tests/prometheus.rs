//! payguard's metrics checked by the real Prometheus tools: `promtool check metrics` lints the
//! exposition, a real Prometheus server scrapes a running payguard and answers a PromQL query,
//! every metric the shipped alerts and dashboard use exists, and cardinality stays bounded
//! however many distinct paths and keys pass through.
//!
//! These need `promtool` and `prometheus` (Debian package `prometheus`); `tests/run.sh`
//! installs it. A missing tool fails the test rather than skipping it.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use payguard_double::{self as double, DoubleConfig, Fault};
use support::*;

/// No limiter or breaker in the way of bulk traffic; fast retries.
const QUIET: &str =
    "[rate_limit]\nenabled = false\n[breaker]\nenabled = false\n[retry]\nbase_delay = \"1ms\"";

fn tool(name: &str) -> Command {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .is_ok_and(|o| o.status.success()),
        "{name} is missing: apt-get install prometheus (tests/run.sh does)"
    );
    Command::new(name)
}

async fn metrics_text(proxy: &Proxy) -> String {
    String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap()
}

/// A proxy that has seen retries, replays, a refusal and a conflict, so most families have
/// series.
async fn busy_proxy() -> (Proxy, double::DoubleHandle) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    // Limiter and breaker on (their families must exist), the limiter out of the way.
    let config = "[rate_limit]\nrate = 1000.0\nburst = 100\n[retry]\nbase_delay = \"1ms\"";
    let proxy = start_proxy(&config_toml(&provider.url(), config)).await;
    provider.faults().push(Fault::Status(503));
    for _ in 0..2 {
        post_form(&proxy.url("/v1/payment_intents"), "amount=100&currency=usd").await;
    }
    let keyed = || {
        Request::post(proxy.url("/v1/payment_intents"))
            .header("authorization", "Bearer sk_test_prom")
            .header("idempotency-key", "prom-1")
            .body(Full::new(Bytes::from_static(b"amount=1&currency=usd")))
            .unwrap()
    };
    send(keyed()).await;
    send(keyed()).await;
    (proxy, provider)
}

#[tokio::test]
async fn promtool_finds_nothing_to_lint() {
    let (proxy, _provider) = busy_proxy().await;
    let text = metrics_text(&proxy).await;
    let mut child = tool("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}\n---\n{text}"
    );
}

#[tokio::test]
async fn alerts_and_dashboard_use_only_metrics_payguard_exports() {
    let (proxy, _provider) = busy_proxy().await;
    let exported: BTreeSet<String> = metrics_text(&proxy)
        .await
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "deploy/prometheus/alerts.yaml",
        "deploy/grafana/payguard.json",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let used: BTreeSet<String> = text
            .match_indices("payguard_")
            .map(|(i, _)| {
                text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .map(|name| {
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s));
                base.unwrap_or(&name).to_owned()
            })
            .collect();
        assert!(!used.is_empty(), "{file} uses no payguard metric?");
        for name in used {
            assert!(
                exported.contains(&name),
                "{file} uses {name}, which payguard does not export"
            );
        }
    }
    let rules = format!("{root}/deploy/prometheus/alerts.yaml");
    let check = tool("promtool")
        .args(["check", "rules", &rules])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let test = tool("promtool")
        .args([
            "test",
            "rules",
            &format!("{root}/deploy/prometheus/alerts_test.yaml"),
        ])
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cardinality_stays_bounded_over_ten_thousand_distinct_paths_and_keys() {
    let provider = double::spawn(DoubleConfig {
        record_requests: false,
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), QUIET)).await;
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let request = |i: usize| {
        let url = proxy.url(&format!("/v1/payment_intents/pi_{i}/confirm"));
        Request::post(url)
            .header("authorization", format!("Bearer sk_test_tenant_{}", i % 50))
            .header("idempotency-key", format!("key-{i}"))
            .body(Full::new(Bytes::from(format!("n={i}"))))
            .unwrap()
    };
    for i in 0..100 {
        send(request(i)).await;
    }
    let after_hundred = series(&metrics_text(&proxy).await);
    let client = client();
    let mut batch = Vec::new();
    for i in 100..10_000 {
        batch.push(client.request(request(i)));
        if batch.len() == 64 {
            for response in futures_join(std::mem::take(&mut batch)).await {
                assert!(response.is_ok());
            }
        }
    }
    futures_join(batch).await;
    let text = metrics_text(&proxy).await;
    assert_eq!(
        series(&text),
        after_hundred,
        "no new series from 9,900 more distinct paths and keys"
    );
    assert!(!text.contains("pi_") && !text.contains("key-") && !text.contains("sk_test"));
    assert!(provider.requests_seen() >= 10_000);
}

/// Awaits a batch of futures concurrently (spawned on the runtime).
async fn futures_join<F: std::future::Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_retry_counters() {
    let (proxy, _provider) = busy_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: payguard\n    static_configs:\n      - targets: ['{}']\n",
        proxy.admin
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let mut server = tool("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/api/v1/query?query=sum%28payguard_retries_total%29");
    let started = Instant::now();
    let value = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Prometheus never returned the counter"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        let Ok(response) = client()
            .request(Request::get(&url).body(Full::default()).unwrap())
            .await
        else {
            continue;
        };
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(v) = json["data"]["result"][0]["value"][1].as_str() {
            break v.to_owned();
        }
    };
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(value, "1", "one retry (the 503) went through PromQL");
}
