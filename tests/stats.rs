//! `payguard stats` and `/stats` against a live sidecar: the real binary reads the admin
//! listener of an in-process payguard that has forwarded known traffic to the double.

mod support;

use std::process::Stdio;
use std::time::Duration;

use payguard::stats::Report;
use payguard_double::{self as double, DoubleConfig, Fault};
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const ROUTES: &str = "[retry]\nbase_delay = \"1ms\"\nmax_delay = \"2ms\"\njitter_seed = 1\n\
                      [[route]]\nname = \"payment_intents\"\nmatch = \"POST /v1/payment_intents\"\n";

/// Three payments: one straight through, one after a 500 and a reset, and one refused by
/// the provider (a 400 is not retried), so every column has something to show.
async fn sidecar_with_traffic() -> (Proxy, double::DoubleHandle) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), ROUTES)).await;
    let url = proxy.url("/v1/payment_intents");
    assert_eq!(post_form(&url, "amount=100&currency=usd").await.status, 200);
    provider.faults().push(Fault::Status(500));
    provider.faults().push(Fault::ResetBeforeProcessing);
    assert_eq!(post_form(&url, "amount=200&currency=usd").await.status, 200);
    assert_eq!(post_form(&url, "currency=usd").await.status, 400);
    (proxy, provider)
}

fn payguard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_payguard"));
    command.kill_on_drop(true).env_remove("PAYGUARD_ADMIN");
    command
}

async fn stats(args: &[&str]) -> std::process::Output {
    payguard().arg("stats").args(args).output().await.unwrap()
}

#[tokio::test]
async fn the_table_shows_each_routes_retries_and_errors() {
    let (proxy, _provider) = sidecar_with_traffic().await;
    let out = stats(&["--admin", &proxy.admin.to_string()]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ROUTE"), "{text}");
    let row: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("payment_intents"))
        .unwrap_or_else(|| panic!("no route row in {text}"))
        .split_whitespace()
        .collect();
    // route, requests, ok, attempts, attempts per request, retries.
    assert_eq!(
        row[..6],
        ["payment_intents", "3", "66.7%", "5", "1.67", "2"],
        "{text}"
    );
    assert!(
        text.contains("4xx from provider 1, 5xx from provider 1, connection lost 1"),
        "{text}"
    );
    assert!(
        text.contains("limiters: upstream 9.8/s, 0 rejected"),
        "{text}"
    );
    assert!(text.contains("breakers: upstream closed"), "{text}");
}

#[tokio::test]
async fn json_is_the_admin_endpoints_report() {
    let (proxy, _provider) = sidecar_with_traffic().await;
    let out = stats(&["--admin", &format!("http://{}/", proxy.admin), "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Report = serde_json::from_slice(&out.stdout).unwrap();
    let route = report
        .routes
        .iter()
        .find(|r| r.route == "payment_intents")
        .unwrap();
    assert_eq!(
        (
            route.requests,
            route.succeeded,
            route.attempts,
            route.retries
        ),
        (3, 2, 5, 2)
    );
    assert_eq!(
        (
            route.succeeded_first_attempt,
            route.succeeded_after_retry,
            route.failed
        ),
        (1, 1, 1)
    );
    assert_eq!(route.keys_injected, 3);
    assert!(route.p99_latency_ms.is_some());

    let endpoint = get(&proxy.admin_url("/stats")).await;
    assert_eq!(endpoint.headers["content-type"], "application/json");
    let served: Report = serde_json::from_slice(&endpoint.body).unwrap();
    assert_eq!(served.routes, report.routes);
}

#[tokio::test]
async fn watch_redraws_with_new_traffic() {
    let (proxy, _provider) = sidecar_with_traffic().await;
    let mut child = payguard()
        .args([
            "stats",
            "--admin",
            &proxy.admin.to_string(),
            "--watch",
            "50ms",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_row = async || loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("watch keeps printing");
        if let Some(row) = line.strip_prefix("payment_intents") {
            break row.split_whitespace().next().unwrap().to_owned();
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(10), next_row())
        .await
        .unwrap();
    assert_eq!(first, "3");
    post_form(&proxy.url("/v1/payment_intents"), "amount=300&currency=usd").await;
    let updated = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if next_row().await == "4" {
                break;
            }
        }
    });
    assert!(
        updated.await.is_ok(),
        "a later frame counts the new request"
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_sidecar_is_a_clear_failure() {
    // A port just freed: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = stats(&["--admin", &free.to_string()]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach http://{free}/stats")),
        "{stderr}"
    );
}
