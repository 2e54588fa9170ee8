//! The official SDKs, unchanged but for their base address, through payguard to the provider
//! double: stripe-node (npm, pinned in tests/sdk/node/package-lock.json) and stripe-python
//! (PyPI, pinned in tests/run.sh). Each creates, confirms, reads back and refunds payment
//! intents with its own retries off and on, and under a fault profile; the double's ledger must
//! show every effect exactly once. Each must also turn payguard's own errors into its typed
//! exceptions.
//!
//! Missing tools fail these tests with the command that installs them: a CI without node or the
//! SDKs must not pass by skipping. `tests/run.sh` installs both.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use payguard::double::{self, DoubleConfig, DoubleHandle, EffectKind, Fault, Profile};
use serde_json::Value;
use support::*;

#[derive(Clone, Copy, Debug)]
enum Sdk {
    Node,
    Python,
}

fn sdk_dir(sdk: Sdk) -> PathBuf {
    let sub = match sdk {
        Sdk::Node => "node",
        Sdk::Python => "python",
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(sub)
}

/// Runs the SDK's script against payguard on `port`; returns its JSON lines.
async fn run_sdk(sdk: Sdk, port: u16, args: &[&str]) -> Vec<Value> {
    let dir = sdk_dir(sdk);
    let (program, script, install) = match sdk {
        Sdk::Node => ("node", "sdk.mjs", "npm ci --prefix tests/sdk/node"),
        Sdk::Python => ("python3", "sdk.py", "pip install stripe==16.1.0"),
    };
    if let Sdk::Node = sdk {
        assert!(
            dir.join("node_modules/stripe/package.json").exists(),
            "stripe-node is not installed: run `{install}` (tests/run.sh does)"
        );
    }
    let run = tokio::process::Command::new(program)
        .arg(script)
        .arg(port.to_string())
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("{program} {script} {args:?} ran over two minutes"))
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): install it (tests/run.sh does)"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {script} {args:?} failed ({}); is the SDK installed (`{install}`)?\n\
         stdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nstderr:\n{stderr}"))
        })
        .collect()
}

/// No local limiter or breaker: these tests are about the SDKs and the ledger, and a breaker
/// tripped by injected faults would turn a flow into a test of the breaker.
const QUIET_LIMITS: &str = "[rate_limit]\nenabled = false\n[breaker]\nenabled = false\n";

/// Runs `orders` full flows through payguard and checks the ledger: for every order one
/// payment intent, one charge and one refund, and nothing twice.
async fn flows(sdk: Sdk, provider: &DoubleHandle, retries: u32, orders: usize, prefix: &str) {
    let retry = "[retry]\nbase_delay = \"5ms\"\nmax_delay = \"50ms\"\njitter_seed = 7\n";
    let proxy = start_proxy(&config_toml(
        &provider.url(),
        &format!("{QUIET_LIMITS}{retry}"),
    ))
    .await;
    let lines = run_sdk(
        sdk,
        proxy.addr.port(),
        &["flow", &retries.to_string(), &orders.to_string(), prefix],
    )
    .await;
    assert_eq!(lines.len(), orders, "one line per order: {lines:?}");
    for line in &lines {
        assert_eq!(line["ok"], true, "{sdk:?}: {line}");
        assert_eq!(line["confirmed"], "succeeded", "{line}");
        assert_eq!(line["read"], "succeeded", "{line}");
        assert_eq!(line["refunded_intent"], line["intent"], "{line}");
    }
    let ledger = provider.ledger();
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());
    for line in &lines {
        let order = line["order"].as_str().unwrap();
        let intent = line["intent"].as_str().unwrap();
        let effects: Vec<_> = ledger
            .entries()
            .into_iter()
            .filter(|e| {
                e.order_id.as_deref() == Some(order) || e.payment_intent.as_deref() == Some(intent)
            })
            .collect();
        for kind in [
            EffectKind::PaymentIntentCreated,
            EffectKind::Charge,
            EffectKind::RefundCreated,
        ] {
            let n = effects.iter().filter(|e| e.kind == kind).count();
            assert_eq!(n, 1, "{sdk:?} order {order}: {kind:?} x{n}: {effects:?}");
        }
    }
    // Nothing but these orders' effects: three each.
    assert_eq!(ledger.entries().len(), 3 * orders, "{:?}", ledger.entries());
}

async fn clean_flows(sdk: Sdk, retries: u32) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    flows(sdk, &provider, retries, 3, &format!("clean-{retries}")).await;
}

/// A flaky network and provider front end: a third of all requests meet a reset before or
/// after processing, a 500, a 503 or a 429. payguard retries under the SDK's key, the SDK may
/// retry on top; the double dedups by key. Seeded, so the same faults strike every run.
async fn faulty_flows(sdk: Sdk, retries: u32) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider
        .faults()
        .set_profile(Profile::transient(0.3, 11))
        .unwrap();
    flows(sdk, &provider, retries, 8, &format!("faulty-{retries}")).await;
    let injected = provider.faults().injected();
    assert!(injected >= 5, "the profile struck only {injected} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_flows_without_sdk_retries() {
    clean_flows(Sdk::Node, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_flows_with_sdk_retries() {
    clean_flows(Sdk::Node, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_flows_under_faults_without_sdk_retries() {
    faulty_flows(Sdk::Node, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_flows_under_faults_with_sdk_retries() {
    faulty_flows(Sdk::Node, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_flows_without_sdk_retries() {
    clean_flows(Sdk::Python, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_flows_with_sdk_retries() {
    clean_flows(Sdk::Python, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_flows_under_faults_without_sdk_retries() {
    faulty_flows(Sdk::Python, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_flows_under_faults_with_sdk_retries() {
    faulty_flows(Sdk::Python, 2).await;
}

/// One of payguard's own errors and what the SDK must make of it.
struct Case {
    status: u16,
    code: &'static str,
}

/// The exception class each SDK raises for a status, as their sources decide it (read from
/// the installed versions): stripe-node 23.1.0 `cjs/Error.js` `generateV1Error` and
/// stripe-python 16.1.0 `_api_requestor.py` `specific_v1_api_error` both map 429 to their
/// rate-limit error and every status they do not name (409, 5xx) to their API error.
fn expected_class(sdk: Sdk, status: u16) -> &'static str {
    match (sdk, status) {
        (Sdk::Node, 429) => "StripeRateLimitError",
        (Sdk::Node, _) => "StripeAPIError",
        (Sdk::Python, 429) => "RateLimitError",
        (Sdk::Python, _) => "APIError",
    }
}

async fn check(sdk: Sdk, port: u16, call: &str, case: Case) {
    let lines = run_sdk(sdk, port, &["error", call]).await;
    let [line] = lines.as_slice() else {
        panic!("one line expected: {lines:?}")
    };
    assert_eq!(line["ok"], false, "{sdk:?} expected {}: {line}", case.code);
    assert_eq!(line["class"], expected_class(sdk, case.status), "{line}");
    assert_eq!(line["status"], case.status, "{line}");
    assert_eq!(line["code"], case.code, "{line}");
    assert_eq!(line["payguard_error"], case.code, "{line}");
}

/// An address nothing listens on: bound, read, released.
async fn dead_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

async fn payguard_errors(sdk: Sdk) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();

    // 429: payguard's own limiter, its one token spent by a request before the SDK's.
    let limited = "[rate_limit]\nrate = 0.05\nburst = 1\nmax_wait = \"0s\"\nmin_rate = 0.01\n";
    let proxy = start_proxy(&config_toml(&provider.url(), limited)).await;
    let spent = post_form(&proxy.url("/v1/payment_intents"), "amount=1&currency=usd").await;
    assert_eq!(spent.status, 200);
    let case = Case {
        status: 429,
        code: "rate_limit",
    };
    check(sdk, proxy.addr.port(), "create", case).await;

    // 502: the upstream refuses every connection.
    let dead = dead_upstream().await;
    let retry = "[retry]\nbase_delay = \"1ms\"\nmax_delay = \"5ms\"\n";
    let proxy = start_proxy(&config_toml(&dead, &format!("{QUIET_LIMITS}{retry}"))).await;
    let case = Case {
        status: 502,
        code: "payguard_upstream_unreachable",
    };
    check(sdk, proxy.addr.port(), "create", case).await;

    // 503: the breaker, opened by two failed requests, refuses the SDK's.
    let breaker = "[rate_limit]\nenabled = false\n[retry]\nmax_attempts = 1\n\
                   [breaker]\nconsecutive_failures = 2\nbreak_duration = \"60s\"";
    let proxy = start_proxy(&config_toml(&dead, breaker)).await;
    for _ in 0..2 {
        let failed = post_form(&proxy.url("/v1/payment_intents"), "amount=1&currency=usd").await;
        assert_eq!(failed.status, 502);
    }
    let case = Case {
        status: 503,
        code: "payguard_circuit_open",
    };
    check(sdk, proxy.addr.port(), "create", case).await;

    // 504: the provider holds the request past the deadline.
    provider.faults().push(Fault::Stall(Duration::from_secs(3)));
    let slow = "[retry]\nmax_attempts = 1\nattempt_timeout = \"300ms\"\ndeadline = \"400ms\"\n";
    let proxy = start_proxy(&config_toml(
        &provider.url(),
        &format!("{QUIET_LIMITS}{slow}"),
    ))
    .await;
    let case = Case {
        status: 504,
        code: "payguard_upstream_timeout",
    };
    check(sdk, proxy.addr.port(), "create", case).await;

    // 409: a second request under a key whose first request is still at the provider.
    provider.faults().push(Fault::Stall(Duration::from_secs(2)));
    let wait = "[idempotency]\nstore = \"memory\"\ncoalesce_wait = \"100ms\"\n";
    let proxy = start_proxy(&config_toml(
        &provider.url(),
        &format!("{QUIET_LIMITS}{wait}"),
    ))
    .await;
    let case = Case {
        status: 409,
        code: "idempotency_key_in_use",
    };
    check(sdk, proxy.addr.port(), "in_use", case).await;
    // The stalled first request went through once; nothing else reached the ledger twice.
    assert!(provider.ledger().duplicates().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_raises_typed_errors_for_payguards_answers() {
    payguard_errors(Sdk::Node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_raises_typed_errors_for_payguards_answers() {
    payguard_errors(Sdk::Python).await;
}
