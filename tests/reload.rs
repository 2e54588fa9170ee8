//! Config reload without a restart: a changed file (or SIGHUP) swaps the new config in
//! atomically, in-flight requests finish under the old one, and an invalid file changes
//! nothing.

mod support;

use std::time::{Duration, Instant};

use payguard_double::{self as double, DoubleConfig};
use support::process::spawn_payguard;
use support::*;

async fn metrics_text(proxy: &Proxy) -> String {
    String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap()
}

/// Waits (bounded) until the admin metrics contain `line`.
async fn wait_for_metric(proxy: &Proxy, line: &str) {
    let started = Instant::now();
    while !metrics_text(proxy).await.contains(line) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no {line} after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(upstream: &str, extra: &str) -> String {
    config_toml(
        upstream,
        &format!("[server]\nreload_poll_interval = \"50ms\"\n{extra}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_swapped_in_and_in_flight_requests_keep_their_config() {
    let old = double::spawn(DoubleConfig::default()).await.unwrap();
    let new = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config(&old.url(), "")).unwrap();
    let proxy = start_proxy_watching(&path).await;

    let slow = proxy.url("/_double/slow?ms=1000");
    let in_flight = tokio::spawn(async move { get(&slow).await });
    while old.requests_seen() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    std::fs::write(&path, config(&new.url(), "")).unwrap();
    wait_for_metric(
        &proxy,
        "payguard_config_reloads_total{result=\"applied\"} 1",
    )
    .await;
    assert_eq!(get(&proxy.url("/_double/echo")).await.status, 200);
    assert_eq!(
        new.requests_seen(),
        1,
        "new requests go to the new upstream"
    );
    assert_eq!(
        in_flight.await.unwrap().status,
        200,
        "the in-flight request finished"
    );
    assert_eq!(old.requests_seen(), 1, "under its old config");

    // An invalid file is refused; the running config stays.
    std::fs::write(&path, "[upstream]\nurl = \"ftp://nope\"\n").unwrap();
    wait_for_metric(
        &proxy,
        "payguard_config_reloads_total{result=\"invalid\"} 1",
    )
    .await;
    assert_eq!(get(&proxy.url("/_double/echo")).await.status, 200);
    assert_eq!(new.requests_seen(), 2);

    // A listener change is valid but needs a restart: applied for the rest, flagged.
    std::fs::write(
        &path,
        config(&new.url(), "[listen]\nproxy = \"127.0.0.1:1\""),
    )
    .unwrap();
    wait_for_metric(&proxy, "payguard_config_restart_required 1").await;
    assert_eq!(
        get(&proxy.url("/_double/echo")).await.status,
        200,
        "still serving where it was"
    );
}

#[tokio::test]
async fn sighup_reloads_the_real_binary() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    // File polling off: only the signal can trigger this reload.
    let base = "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[server]\nreload_poll_interval = \"0s\"\n";
    let write = |routes: &str| {
        let toml = config_toml(&provider.url(), &format!("{base}{routes}"))
            .replace("level = \"warn\"", "level = \"info\"");
        std::fs::write(&path, toml).unwrap();
    };
    write("");
    let mut process = spawn_payguard(&path).await;

    write("[[route]]\nname = \"echoes\"\nmatch = \"GET /_double/echo\"\n");
    let pid = process.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let metrics_url = format!("http://{}/metrics", process.admin);
    let started = Instant::now();
    loop {
        let text = String::from_utf8(get(&metrics_url).await.body.to_vec()).unwrap();
        if text.contains("payguard_config_reloads_total{result=\"applied\"} 1") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no reload after SIGHUP:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(&format!("http://{}/_double/echo", process.proxy))
            .await
            .status,
        200
    );
    let text = String::from_utf8(get(&metrics_url).await.body.to_vec()).unwrap();
    // Counted under the new route (its zeroed series alone would appear at the reload).
    assert!(
        text.contains(
            "payguard_requests_total{origin=\"upstream\",route=\"echoes\",status_class=\"2xx\"} 1"
        ),
        "the new route is in force:\n{text}"
    );

    process.child.kill().await.unwrap();
    let log = process.log.await.unwrap().join("\n");
    assert!(
        log.contains("config reloaded") && log.contains("SIGHUP"),
        "{log}"
    );
}

#[tokio::test]
async fn a_reload_that_leaves_the_breaker_alone_keeps_it_open() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(payguard_double::Fault::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let limits = "[retry]\nmax_attempts = 1\n[breaker]\nconsecutive_failures = 1\nbreak_duration = \"60s\"\n";
    std::fs::write(&path, config(&provider.url(), limits)).unwrap();
    let proxy = start_proxy_watching(&path).await;
    assert_eq!(get(&proxy.url("/_double/echo")).await.status, 503);
    assert_payguard_error(
        &get(&proxy.url("/_double/echo")).await,
        503,
        "payguard_circuit_open",
    );

    // A new route changes nothing about the breaker: it stays open across the reload.
    let route = "[[route]]\nname = \"reads\"\nmatch = \"GET /v1/*\"\n";
    std::fs::write(&path, config(&provider.url(), &format!("{limits}{route}"))).unwrap();
    wait_for_metric(
        &proxy,
        "payguard_config_reloads_total{result=\"applied\"} 1",
    )
    .await;
    assert_payguard_error(
        &get(&proxy.url("/_double/echo")).await,
        503,
        "payguard_circuit_open",
    );
    assert_eq!(provider.requests_seen(), 1);
}

#[tokio::test]
async fn a_reload_changes_a_routes_retry_policy_live() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let route = |attempts: u32| {
        format!(
            "[rate_limit]\nenabled = false\n[retry]\nbase_delay = \"1ms\"\n\
             [[route]]\nname = \"echo\"\nmatch = \"GET /_double/echo\"\n[route.retry]\nmax_attempts = {attempts}\n"
        )
    };
    std::fs::write(&path, config(&provider.url(), &route(1))).unwrap();
    let proxy = start_proxy_watching(&path).await;
    let url = proxy.url("/_double/echo");

    provider.faults().push(payguard_double::Fault::Status(503));
    let before = get(&url).await;
    assert_eq!(
        (
            before.status.as_u16(),
            before.headers["payguard-attempts"].to_str().unwrap()
        ),
        (503, "1")
    );

    std::fs::write(&path, config(&provider.url(), &route(3))).unwrap();
    wait_for_metric(
        &proxy,
        "payguard_config_reloads_total{result=\"applied\"} 1",
    )
    .await;
    provider.faults().push(payguard_double::Fault::Status(503));
    provider.faults().push(payguard_double::Fault::Status(503));
    let after = get(&url).await;
    assert_eq!(
        (
            after.status.as_u16(),
            after.headers["payguard-attempts"].to_str().unwrap()
        ),
        (200, "3")
    );
}

#[tokio::test]
async fn a_reload_adds_an_upstream_and_the_route_to_it() {
    let api = double::spawn(DoubleConfig::default()).await.unwrap();
    let files = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config(&api.url(), "")).unwrap();
    let proxy = start_proxy_watching(&path).await;
    let url = proxy.url("/_double/echo?file=1");
    assert_eq!(get(&url).await.status, 200);
    assert_eq!((api.requests_seen(), files.requests_seen()), (1, 0));

    let files_route = format!(
        "[upstreams.files]\nurl = \"{}\"\n\
         [[route]]\nname = \"files\"\nmatch = \"GET /_double/echo\"\nupstream = \"files\"\n",
        files.url()
    );
    std::fs::write(&path, config(&api.url(), &files_route)).unwrap();
    wait_for_metric(
        &proxy,
        "payguard_config_reloads_total{result=\"applied\"} 1",
    )
    .await;
    assert_eq!(get(&url).await.status, 200);
    assert_eq!((api.requests_seen(), files.requests_seen()), (1, 1));
    // The new upstream's limiter and breaker are there, under its own name.
    let text = metrics_text(&proxy).await;
    assert!(
        text.contains("payguard_breaker_state{breaker=\"upstream:files\"} 0"),
        "{text}"
    );
}
