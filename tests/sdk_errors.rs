//! The official SDKs meet payguard's own errors (429 from its limiter, 502 unreachable
//! upstream, 503 open breaker, 504 deadline, 409 key in use) and must raise their typed
//! exceptions for them, with payguard's code readable. See tests/sdk.rs for the SDKs and how
//! they are installed.

mod support;

use std::time::Duration;

use payguard_double::{self as double, DoubleConfig, Fault};
use support::sdk::Sdk;
use support::*;

/// No local limiter or breaker unless the case is about them.
const QUIET_LIMITS: &str = "[rate_limit]\nenabled = false\n[breaker]\nenabled = false\n";

/// One of payguard's own errors and what the SDK must make of it.
struct Case {
    status: u16,
    code: &'static str,
}

/// The exception class each SDK raises for a status, as their sources decide it (read from
/// the installed versions): stripe-node 23.1.0 `cjs/Error.js` `generateV1Error`, stripe-python
/// 16.1.0 `_api_requestor.py` `specific_v1_api_error` and Debian's 5.0.0 `api_requestor.py`
/// `specific_api_error` all map 429 to their rate-limit error and every status they do not
/// name (409, 5xx) to their API error.
fn expected_class(sdk: Sdk, status: u16) -> &'static str {
    match (sdk, status) {
        (Sdk::Node, 429) => "StripeRateLimitError",
        (Sdk::Node, _) => "StripeAPIError",
        (Sdk::Python | Sdk::Debian, 429) => "RateLimitError",
        (Sdk::Python | Sdk::Debian, _) => "APIError",
    }
}

async fn check(sdk: Sdk, port: u16, call: &str, case: Case) {
    let lines = sdk.run(port, &["error", call]).await;
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
    // A keyed request that may have executed: the SDK sees payguard's "outcome unknown".
    let case = Case {
        status: 504,
        code: "payguard_outcome_unknown",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debian_raises_typed_errors_for_payguards_answers() {
    payguard_errors(Sdk::Debian).await;
}
