//! Rate limiting and circuit breaking against the provider double: payguard stays under the
//! provider's limit, backs off when the provider still says 429, and stops calling a provider
//! that is down until it recovers. The exact arithmetic (any 1 s window, 95% use, FIFO order,
//! every breaker transition) is unit-tested under paused time in `src/ratelimit` and
//! `src/breaker`; these tests show the same over real sockets.

mod support;

use std::time::{Duration, Instant};

use payguard_double::{self as double, DoubleConfig, Fault, RateLimit};
use support::*;

async fn metrics(proxy: &Proxy) -> String {
    String::from_utf8(get(&proxy.admin_url("/metrics")).await.body.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_per_second_offered_stay_under_the_providers_limit() {
    // The provider allows 12/s (burst 2); payguard is set to 10/s, burst 1.
    let provider = double::spawn(DoubleConfig {
        rate_limit: Some(RateLimit {
            per_second: 12.0,
            burst: 2,
        }),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    let limits =
        "[rate_limit]\nrate = 10.0\nburst = 1\nmax_wait = \"2s\"\n[breaker]\nenabled = false";
    let proxy = start_proxy(&config_toml(&provider.url(), limits)).await;
    let url = proxy.url("/_double/echo");

    // 50 requests in one second.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        tokio::time::sleep_until((started + Duration::from_millis(20) * i).into()).await;
        let url = url.clone();
        tasks.push(tokio::spawn(async move { get(&url).await }));
    }
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let passed = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();

    assert_eq!(
        provider.rate_limited(),
        0,
        "the provider never had to refuse"
    );
    assert_eq!(passed + refused.len(), 50);
    // Everything that was let through went at 10/s: the first at once, then one per 100 ms.
    let window = elapsed.as_secs_f64();
    assert!(
        passed as f64 <= 10.0 * window + 1.0,
        "{passed} sent in {window:.2}s"
    );
    assert!(
        passed as f64 >= 0.95 * 10.0 * (window - 0.2),
        "{passed} sent in {window:.2}s: the limit was not used"
    );
    for reply in refused {
        assert_payguard_error(reply, 429, "rate_limit");
        assert_eq!(reply.json()["error"]["type"], "rate_limit_error");
        assert!(reply.headers.contains_key("retry-after"));
        assert_eq!(reply.headers["payguard-attempts"], "0", "nothing was sent");
    }
    assert!(
        metrics(&proxy)
            .await
            .contains("payguard_ratelimit_rejected_total{limiter=\"upstream\"}")
    );
}

/// The upstream limiter's rate as the gauge shows it.
async fn effective_rate(proxy: &Proxy) -> f64 {
    let text = metrics(proxy).await;
    let line = text
        .lines()
        .find(|l| l.starts_with("payguard_ratelimit_effective_rate{limiter=\"upstream\"}"))
        .unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_429s_lower_the_rate_and_lock_timeouts_do_not() {
    // Half of all sends answered 429, for about 3 s: real evidence of a ceiling when the code
    // is rate_limit; contention on one object, saying nothing of the rate, when lock_timeout.
    let rate_limited = Fault::RateLimited {
        retry_after: None,
        should_retry: None,
    };
    for (fault, lowered) in [(rate_limited, true), (Fault::LockTimeout, false)] {
        let provider = double::spawn(DoubleConfig::default()).await.unwrap();
        let mix = vec![(fault.clone(), 1)];
        let profile = double::Profile {
            rate: 0.5,
            mix,
            seed: 3,
        };
        provider.faults().set_profile(profile).unwrap();
        let limits = "[rate_limit]\nrate = 50.0\nburst = 1\n\
                      [retry]\nbase_delay = \"1ms\"\nmax_delay = \"5ms\"\nmax_attempts = 10";
        let proxy = start_proxy(&config_toml(&provider.url(), limits)).await;
        assert_eq!(effective_rate(&proxy).await, 50.0);
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            let reply = get(&proxy.url("/_double/echo")).await;
            assert_eq!(reply.status, 200, "retried after the 429s");
        }
        let rate = effective_rate(&proxy).await;
        assert_eq!(rate < 50.0, lowered, "{fault:?}: the rate is {rate}");
        if lowered {
            assert!(
                rate >= 25.0,
                "at most by half, never below the floor: {rate}"
            );
        }
    }
}

const BREAKER: &str = "[retry]\nmax_attempts = 1\n[rate_limit]\nenabled = false\n\
                       [breaker]\nconsecutive_failures = 3\nbreak_duration = \"400ms\"\nhalf_open_probes = 1";

#[tokio::test]
async fn an_open_breaker_sends_nothing_then_a_probe_closes_it() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    for _ in 0..3 {
        provider.faults().push(Fault::Status(503));
    }
    let proxy = start_proxy(&config_toml(&provider.url(), BREAKER)).await;
    let url = proxy.url("/_double/echo");
    for _ in 0..3 {
        assert_eq!(get(&url).await.status, 503);
    }
    // Open: refused at once, with the time left, and the provider sees nothing.
    for _ in 0..5 {
        let reply = get(&url).await;
        assert_payguard_error(&reply, 503, "payguard_circuit_open");
        assert_eq!(reply.headers["retry-after"], "1");
    }
    assert_eq!(provider.requests_seen(), 3);
    assert!(
        metrics(&proxy)
            .await
            .contains("payguard_breaker_state{breaker=\"upstream\"} 2")
    );

    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(get(&url).await.status, 200, "the half-open probe succeeds");
    assert_eq!(get(&url).await.status, 200, "closed again");
    let text = metrics(&proxy).await;
    for line in [
        "payguard_breaker_state{breaker=\"upstream\"} 0",
        "payguard_breaker_transitions_total{breaker=\"upstream\",to=\"open\"} 1",
        "payguard_breaker_transitions_total{breaker=\"upstream\",to=\"half_open\"} 1",
        "payguard_breaker_transitions_total{breaker=\"upstream\",to=\"closed\"} 1",
        "payguard_breaker_refused_total{breaker=\"upstream\"} 5",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn client_errors_never_trip_the_breaker() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let proxy = start_proxy(&config_toml(&provider.url(), BREAKER)).await;
    for _ in 0..20 {
        // Missing amount: the provider's 400.
        assert_eq!(
            post_form(&proxy.url("/v1/payment_intents"), "currency=usd")
                .await
                .status,
            400
        );
    }
    assert_eq!(provider.requests_seen(), 20);
    assert!(
        metrics(&proxy)
            .await
            .contains("payguard_breaker_state{breaker=\"upstream\"} 0")
    );
}

#[tokio::test]
async fn a_route_can_have_its_own_limiter_and_breaker() {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let route = "[rate_limit]\nenabled = false\n[retry]\nmax_attempts = 1\n\
                 [[route]]\nname = \"refunds\"\nmatch = \"POST /v1/refunds\"\n\
                 [route.breaker]\nconsecutive_failures = 1\nbreak_duration = \"10s\"";
    let proxy = start_proxy(&config_toml(&provider.url(), route)).await;
    provider.faults().push(Fault::Status(500));
    // The 500 leaves the keyed refund in doubt: payguard's "outcome unknown".
    let reply = post_form(&proxy.url("/v1/refunds"), "payment_intent=pi_x").await;
    assert_outcome_unknown(&reply, &[502]);
    let refused = post_form(&proxy.url("/v1/refunds"), "payment_intent=pi_x").await;
    assert_payguard_error(&refused, 503, "payguard_circuit_open");
    // Other routes are not affected by the refunds breaker.
    assert_eq!(
        post_form(&proxy.url("/v1/payment_intents"), "amount=1&currency=usd")
            .await
            .status,
        200
    );
    assert!(
        metrics(&proxy)
            .await
            .contains("payguard_breaker_state{breaker=\"refunds\"} 2")
    );
}
