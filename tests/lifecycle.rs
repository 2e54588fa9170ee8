//! Starting, checking and stopping: `payguard check`, and draining on shutdown.

mod support;

use std::time::Duration;

use payguard_double::{self as double, DoubleConfig};
use support::process::{BIN, Process, spawn_payguard};
use support::*;

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), "")).await;
    let addr = proxy.addr;

    let url = format!("http://{addr}/_double/slow?ms=400");
    let in_flight = tokio::spawn(async move { get(&url).await });
    // Wait until the provider has the request, so it is truly in flight.
    while provider.requests_seen() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server = proxy.begin_shutdown();
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "the in-flight request completed");
    server.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn sigterm_drains_then_exits_zero() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let toml = config_toml(
        &provider.url(),
        // One worker: the current-thread runtime drains as the multi-thread one does.
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[server]\nworker_threads = 1",
    )
    .replace("level = \"warn\"", "level = \"info\"");
    std::fs::write(&file, toml).unwrap();

    let Process {
        mut child,
        proxy,
        admin,
        log,
        ..
    } = spawn_payguard(&file).await;

    let url = format!("http://{proxy}/_double/slow?ms=600");
    let in_flight = tokio::spawn(async move { get(&url).await });
    while provider.requests_seen() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        get(&format!("http://{admin}/readyz")).await.status,
        503,
        "draining is not ready"
    );

    assert_eq!(
        in_flight.await.unwrap().status,
        200,
        "the in-flight request finished"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let log = log.await.unwrap().join("\n");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("drained"), "{log}");
}

#[test]
fn check_accepts_the_shipped_config() {
    let out = std::process::Command::new(BIN)
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_names_the_key_and_line_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let bad = "[upstream]\nurl = \"ftp://api.stripe.com\"\nconnect_timeout = \"0s\"\n\n[[route]]\nname = \"refunds\"\nmatch = \"post /v1/refunds\"\n";
    std::fs::write(&file, bad).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2: `upstream.url`: scheme must be https or http"),
        "{err}"
    );
    assert!(
        err.contains("line 3: `upstream.connect_timeout`: must be greater than 0"),
        "{err}"
    );
    assert!(err.contains("line 7: `route[0].match`"), "{err}");

    std::fs::write(
        &file,
        "[upstream]\nurl = \"https://api.stripe.com\"\nretries = 3\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check")
        .arg("-c")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3: `upstream.retries`: unknown field `retries`"),
        "{err}"
    );
}
