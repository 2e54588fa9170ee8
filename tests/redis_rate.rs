//! The shared rate limit: three real payguard processes, one Redis, every replica offered far
//! more than the limit. Measured at the provider double from when each request arrived, their
//! combined traffic stays at or under the provider's limit in every 1 s window, while using
//! at least 95% of it. Also: without Redis, a shared limiter keeps to its local
//! fallback share, and reaches Redis again once it is back.
//!
//! Timing-sensitive, so `.config/nextest.toml` runs this binary's tests alone.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use payguard::ratelimit::shared::BackendMetrics;
use payguard::ratelimit::{LimitSpec, Limiter, SharedSpec};
use payguard::shared::RedisPool;
use payguard::shared::{RedisSpec, RedisUrl};
use payguard_double::busiest_window;
use payguard_double::{self as double, DoubleConfig};
use support::redis::RedisServer;
use support::replicas::{admin, metric, post, start_replicas};

/// The provider's ceiling: the most it may see in any one-second window.
const LIMIT: usize = 104;
/// payguard's shared limit: `rate + burst - 1` = 100, four sends under the ceiling. The
/// limiter's schedule puts a send exactly on every window's edge, so the jitter between a
/// grant and its arrival at the provider (scheduling, the hop, a busy machine) can slip
/// another into a window; the headroom absorbs 40 ms of it and still uses 96% of the ceiling.
const RATE: u32 = 100;
const BURST: u32 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_together_stay_under_the_shared_limit_and_use_it() {
    let redis = RedisServer::start().await;
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let limit = format!(
        "[rate_limit]\nbackend = \"redis\"\nrate = {RATE}.0\nburst = {BURST}\n\
         max_wait = \"20s\"\nadaptive = false\n[retry]\ndeadline = \"30s\""
    );
    let (replicas, _dir) = start_replicas(3, &provider.url(), &redis.url(), "", &limit).await;
    let replicas = Arc::new(replicas);

    // Warm-up: each replica opens its connections to Redis and to the provider (15 at once,
    // as in the run), so cold connects do not skew the first sends. Then a quiet spell longer
    // than a second: the measured run starts from an idle limiter and shares no window with
    // the warm-up.
    for _ in 0..2 {
        let warm: Vec<_> = (0..45)
            .map(|i| {
                let replicas = replicas.clone();
                tokio::spawn(
                    async move { post(&replicas[i % 3], None, "amount=1&currency=usd").await },
                )
            })
            .collect();
        for w in warm {
            assert_eq!(w.await.unwrap().status, 200);
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let measured_from = Instant::now();

    // 15 clients per replica, each sending again as soon as it is answered: 45 queued, almost
    // half a second of backlog at the limit, so the limiter never idles.
    let run = Duration::from_secs(6);
    let stop = Instant::now() + run;
    let clients: Vec<_> = (0..45)
        .map(|i| {
            let replicas = replicas.clone();
            tokio::spawn(async move {
                // Staggered starts, as traffic ramps up: not 45 connections at one instant,
                // whose handling would delay the very first sends behind each other.
                tokio::time::sleep(Duration::from_millis(10 * i as u64)).await;
                let mut sent = 0;
                while Instant::now() < stop {
                    let reply = post(&replicas[i % 3], None, "amount=100&currency=usd").await;
                    assert_eq!(reply.status, 200, "{:?}", reply.body);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut answered = 0;
    for client in clients {
        answered += client.await.unwrap();
    }

    let mut times: Vec<Instant> = provider
        .requests()
        .iter()
        .map(|r| r.received)
        .filter(|t| *t >= measured_from)
        .collect();
    times.sort();
    assert_eq!(times.len(), answered);
    let busiest = busiest_window(&times, Duration::from_secs(1));
    assert!(busiest <= LIMIT, "{busiest} in one second, limit {LIMIT}");
    // Utilisation: the sustained rate from first to last arrival, against the limit.
    let span = (*times.last().unwrap() - times[0]).as_secs_f64();
    let rate = (times.len() - 1) as f64 / span;
    assert!(
        rate >= 0.95 * LIMIT as f64,
        "{rate:.1}/s is under 95% of the limit {LIMIT}/s ({} requests in {span:.2}s)",
        times.len()
    );
    assert!(
        span >= run.as_secs_f64() - 1.0,
        "the run lasted: {span:.2}s"
    );
    eprintln!(
        "{} requests in {span:.2}s: {rate:.1}/s sustained, busiest second {busiest}, limit {LIMIT}",
        times.len()
    );
    for replica in replicas.iter() {
        let (_, text) = admin(replica, "/metrics").await;
        let series = "payguard_ratelimit_backend_errors_total{limiter=\"upstream\"}";
        assert_eq!(
            metric(&text, series),
            0.0,
            "every reservation reached Redis"
        );
    }
}

#[tokio::test]
async fn without_redis_a_shared_limiter_keeps_to_its_fallback_share() {
    let mut redis = RedisServer::start().await;
    let pool = Arc::new(
        RedisPool::new(&RedisSpec {
            url: RedisUrl(redis.url()),
            password_env: None,
            key_prefix: "fallback:".into(),
            connect_timeout: Duration::from_millis(200),
            command_timeout: Duration::from_millis(200),
            pool_size: 1,
            replicas: 2,
        })
        .unwrap(),
    );
    let errors = prometheus::IntCounter::new("errors", "errors").unwrap();
    let healthy = prometheus::IntGauge::new("healthy", "healthy").unwrap();
    let limiter = Limiter::with_backend(
        "upstream",
        LimitSpec {
            rate: 1000.0,
            burst: 1,
            max_wait: Some(Duration::from_secs(5)),
            adaptive: false,
            min_rate: 1.0,
            shared: Some(SharedSpec {
                fallback_rate: 10.0,
            }),
        },
        Some(&pool),
        || BackendMetrics {
            errors: errors.clone(),
            healthy: healthy.clone(),
        },
    );
    limiter.acquire(Duration::from_secs(1)).await.unwrap();
    assert_eq!(limiter.backend_healthy(), Some(true));

    redis.kill9().await;
    // At the fallback's 10/s, five sends take at least 0.4 s (the first goes at once).
    let started = Instant::now();
    for _ in 0..5 {
        limiter.acquire(Duration::from_secs(5)).await.unwrap();
    }
    assert!(
        started.elapsed() >= Duration::from_millis(390),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(limiter.backend_healthy(), Some(false));
    assert_eq!(healthy.get(), 0);
    assert!(
        errors.get() >= 5,
        "every reservation's failure counted: {}",
        errors.get()
    );

    redis.restart().await;
    let back = Instant::now();
    while limiter.backend_healthy() != Some(true) {
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "Redis is used again"
        );
        let _ = limiter.acquire(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(healthy.get(), 1);
}
