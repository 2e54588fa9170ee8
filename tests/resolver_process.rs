//! The resolver with the real `payguard` binary: a request in flight when payguard is killed
//! with `kill -9` is resolved by the next process, and `payguard unresolved` shows each state.

mod support;

use std::time::Duration;

use payguard_double::{self as double, DoubleConfig, EffectKind, Fault};
use support::process::{BIN, spawn_payguard};
use support::resolver::{FAST, RESENDS, payment, resolving, wait_for};
use support::*;

/// Runs `payguard unresolved <args>` and returns its stdout; asserts it succeeded.
async fn unresolved(args: &[&str]) -> String {
    let out = tokio::process::Command::new(BIN)
        .arg("unresolved")
        .args(args)
        .output()
        .await
        .expect("payguard runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "payguard unresolved {args:?}: {stderr}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A config file in `dir` for the payguard binary: ephemeral ports, info logs, the embedded
/// store in `dir` (`idempotency` adds keys to its table), re-sending resolver rounds.
fn embedded_config(dir: &std::path::Path, provider: &str, idempotency: &str) -> std::path::PathBuf {
    let file = dir.join("config.toml");
    let extra = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [idempotency]\nstore = \"embedded\"\npath = \"store.redb\"\n{idempotency}{RESENDS}{FAST}"
    );
    let toml = config_toml(provider, &extra).replace("level = \"warn\"", "level = \"info\"");
    std::fs::write(&file, toml).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_payguard_is_killed_is_resolved_after_restart() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    // The provider holds the first request long enough to kill payguard while it waits.
    provider.faults().push(Fault::Stall(Duration::from_secs(2)));
    let dir = tempfile::tempdir().unwrap();
    let file = embedded_config(dir.path(), &provider.url(), "coalesce_wait = \"200ms\"\n");

    let mut first = spawn_payguard(&file).await;
    let url = format!("http://{}/v1/payment_intents", first.proxy);
    let form = "amount=5000&currency=usd&confirm=true";
    let in_flight = tokio::spawn(client().request(payment(&url, "crash-order", form)));
    while provider.requests_seen() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.kill().await.unwrap(); // SIGKILL: no drain, nothing settled
    assert!(
        in_flight.await.unwrap().is_err(),
        "the app saw the connection die"
    );

    // No app retry: the next process finds the entry its predecessor left open.
    let second = spawn_payguard(&file).await;
    let row = wait_for(&second.admin, "crash-order", "resolved").await;
    assert_eq!(row["outcome"], "200");
    let ledger = provider.ledger();
    assert_eq!(
        ledger.count(EffectKind::PaymentIntentCreated),
        1,
        "{:?}",
        ledger.entries()
    );
    assert_eq!(ledger.count(EffectKind::Charge), 1);
    assert!(ledger.duplicates().is_empty());

    let json = unresolved(&["--admin", &second.admin, "--json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["key"], "crash-order");
    assert_eq!(rows[0]["state"], "resolved");

    // The app's retry is answered from the store.
    let seen = provider.requests_seen();
    let retry_url = format!("http://{}/v1/payment_intents", second.proxy);
    let reply = send(payment(&retry_url, "crash-order", form)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["payguard-attempts"], "0");
    assert_eq!(provider.requests_seen(), seen);
    assert_eq!(
        reply.json()["id"].as_str(),
        Some(ledger.entries()[0].object_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payguard_unresolved_shows_pending_resolved_and_gave_up() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let route = "[[route]]\nname = \"refunds\"\nmatch = \"POST /v1/refunds\"\n\
                 [route.resolver]\nenabled = false\n";
    let proxy = start_proxy(&config_toml(&provider.url(), &resolving(route))).await;
    let admin = proxy.admin.to_string();

    // Two report-only refunds left pending, one payment the resolver settles.
    let intent = send(payment(
        &proxy.url("/v1/payment_intents"),
        "pay-1",
        "amount=100&currency=usd&confirm=true",
    ))
    .await;
    let pi = intent.json()["id"].as_str().unwrap().to_owned();
    // Two different refunds: identical ones under two keys would be one refund to the
    // duplicate window.
    for (key, amount) in [("refund-1", 10), ("refund-2", 11)] {
        provider.faults().push(Fault::ResetAfterProcessing);
        provider.faults().push(Fault::ResetAfterProcessing);
        let form = format!("payment_intent={pi}&amount={amount}");
        assert_eq!(
            send(payment(&proxy.url("/v1/refunds"), key, &form))
                .await
                .status,
            502
        );
    }
    provider.faults().push(Fault::ResetBeforeProcessing);
    provider.faults().push(Fault::ResetBeforeProcessing);
    let form = "amount=300&currency=usd";
    assert_eq!(
        send(payment(&proxy.url("/v1/payment_intents"), "pay-2", form))
            .await
            .status,
        502
    );
    wait_for(&admin, "pay-2", "resolved").await;
    let give_up_id = wait_for(&admin, "refund-2", "pending").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let gave_up = unresolved(&["--admin", &admin, "give-up", &give_up_id]).await;
    assert!(
        gave_up.contains("gave_up") && gave_up.contains("operator"),
        "{gave_up}"
    );
    // Giving up twice is refused.
    let again = tokio::process::Command::new(BIN)
        .args(["unresolved", "--admin", &admin, "give-up", &give_up_id])
        .output()
        .await
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already gave_up"));

    let table = unresolved(&["--admin", &admin]).await;
    let line = |key: &str| {
        table
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("{key} in\n{table}"))
            .to_owned()
    };
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        line("refund-1").contains("pending (report only)"),
        "{table}"
    );
    assert!(line("refund-1").contains("connection lost"), "{table}");
    assert!(
        line("pay-2").contains("resolved") && line("pay-2").contains("200"),
        "{table}"
    );
    assert!(line("refund-2").contains("gave_up") && line("refund-2").contains("operator"));
    assert!(!table.contains("sk_test") && !table.contains("amount"));

    let json = unresolved(&["--admin", &admin, "--json"]).await;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let states: Vec<&str> = rows.iter().map(|r| r["state"].as_str().unwrap()).collect();
    // Unresolved first, then the finished ones, oldest first.
    assert_eq!(states, ["pending", "gave_up", "resolved"], "{json}");
    assert_eq!(
        provider.ledger().count(EffectKind::RefundCreated),
        2,
        "report-only: never re-sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_entry_does_not_come_back_after_a_kill() {
    // The provider refuses the payment with a 429 it says not to retry: nothing executed, the
    // app is told so and may pay again some other way. The entry is deleted; were the delete
    // lost in a SIGKILL, the entry would come back open and the next process would send the
    // payment on its own. So the delete is durable before anything relies on it.
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::RateLimited {
        retry_after: None,
        should_retry: Some(false),
    });
    let dir = tempfile::tempdir().unwrap();
    let file = embedded_config(dir.path(), &provider.url(), "");

    let mut first = spawn_payguard(&file).await;
    let url = format!("http://{}/v1/payment_intents", first.proxy);
    let form = "amount=700&currency=usd&metadata[order_id]=o-429";
    let reply = send(payment(&url, "told-429", form)).await;
    assert_eq!(reply.status, 429);
    first.child.kill().await.unwrap();

    let second = spawn_payguard(&file).await;
    // Past the open entry's lease (the 2 s deadline + 2 s) and a few resolver rounds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let json = unresolved(&["--admin", &second.admin, "--json"]).await;
    assert_eq!(json.trim(), "[]", "{json}");
    assert_eq!(provider.requests_seen(), 1, "sent once, by the app");
    assert!(provider.ledger().entries().is_empty(), "nothing executed");
}
