//! Connection resets (real RSTs, `SO_LINGER` 0) between payguard and the provider, part way
//! through the request and part way through the response body, from our own fault proxy
//! (`tests/support/faultproxy.rs`). Each test checks the three promises under a network fault:
//! no effect happens twice, the app gets its answer within the deadline, and once the fault is
//! gone the app's resend under its key completes cleanly.

mod support;

use std::time::Duration;

use payguard_double::{self as double, DoubleConfig, DoubleHandle};
use support::chaos::{charges, timed_payment};
use support::faultproxy::{Direction, FaultProxy, Mode};
use support::*;

const DEADLINE: Duration = Duration::from_secs(2);
/// Scheduling slack on a shared 2-core machine, beyond the deadline.
const SLACK: Duration = Duration::from_millis(750);

async fn setup() -> (DoubleHandle, FaultProxy, Proxy) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let faults = FaultProxy::spawn(provider.addr()).await;
    // A fresh connection per attempt, so each attempt meets the fault proxy's current mode.
    let toml = config_toml(&faults.url(), &format!(
        "[rate_limit]\nenabled = false\n[breaker]\nenabled = false\n\
         [retry]\ndeadline = \"{}ms\"\nattempt_timeout = \"1s\"\nbase_delay = \"10ms\"\njitter_seed = 3\n",
        DEADLINE.as_millis()
    ))
    .replace("[upstream]\n", "[upstream]\npool_max_idle_per_host = 0\n");
    let proxy = start_proxy(&toml).await;
    (provider, faults, proxy)
}

async fn pay(proxy: &Proxy, key: &str, order: &str) -> (Reply, Duration) {
    timed_payment(&proxy.url(""), key, order).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_request_executes_nothing_and_the_resend_executes_once() {
    let (provider, faults, proxy) = setup().await;
    for body_bytes in [0, 10] {
        let order = format!("mid-request-{body_bytes}");
        faults.set(Mode::ResetAfter {
            direction: Direction::Request,
            body_bytes,
        });
        let before = faults.resets();
        let (reply, took) = pay(&proxy, &order, &order).await;
        assert!(took < DEADLINE + SLACK, "answered after {took:?}");
        assert_outcome_unknown(&reply, &[502]);
        assert!(
            faults.resets() - before >= 2,
            "payguard retried under its key"
        );
        assert_eq!(
            charges(&provider, &order),
            0,
            "a cut request never executes"
        );

        faults.set(Mode::Pass);
        let (reply, _) = pay(&proxy, &order, &order).await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(charges(&provider, &order), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_response_body_charges_once_and_the_resend_is_replayed() {
    let (provider, faults, proxy) = setup().await;
    faults.set(Mode::ResetAfter {
        direction: Direction::Response,
        body_bytes: 20,
    });
    let (reply, took) = pay(&proxy, "mid-body", "mid-body").await;
    assert!(took < DEADLINE + SLACK, "answered after {took:?}");
    assert_eq!(
        reply.status,
        502,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(faults.resets() >= 1);
    // The provider executed before the reply was cut: the effect stands, once.
    assert_eq!(charges(&provider, "mid-body"), 1);

    faults.set(Mode::Pass);
    let (reply, _) = pay(&proxy, "mid-body", "mid-body").await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(
        reply
            .headers
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..]),
        "the provider replayed its saved answer"
    );
    let ledger = provider.ledger();
    assert_eq!(
        reply.json()["id"].as_str(),
        Some(ledger.entries()[0].object_id.as_str())
    );
    assert_eq!(charges(&provider, "mid-body"), 1);
}
