//! What the Redis backends add per request, against one Redis round trip (`PING`) measured in
//! the same run on the same connection: the floor any Redis-backed operation pays.
//!
//! `bash bench/redis/run.sh` starts a redis-server of its own and runs this with its URL;
//! `cargo run --release --example bench-redis -- redis://127.0.0.1:PORT/0 [N]` runs it against
//! any server (it writes only under the `bench:` prefix). Prints a Markdown table.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use payguard::idempotency::redis::RedisStore;
use payguard::idempotency::store::{ClaimRequest, Store, StoredResponse};
use payguard::ratelimit::shared::BackendMetrics;
use payguard::ratelimit::{LimitSpec, Limiter, SharedSpec};
use payguard::shared::RedisPool;
use payguard::shared::{RedisSpec, RedisUrl};

struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    Stats {
        mean: samples.iter().sum::<Duration>() / samples.len() as u32,
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn row(name: &str, s: &Stats, ping: &Stats) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "| {name} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} |",
        us(s.mean),
        us(s.p50),
        us(s.p99),
        s.p50.as_secs_f64() / ping.p50.as_secs_f64(),
        us(s.p50.saturating_sub(ping.p50)),
    );
}

async fn time<F: Future<Output = ()>>(n: usize, mut f: impl FnMut(usize) -> F) -> Stats {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        f(i).await;
        samples.push(started.elapsed());
    }
    stats(samples)
}

fn key(i: usize) -> [u8; 32] {
    let mut key = [7u8; 32];
    key[..8].copy_from_slice(&(i as u64).to_be_bytes());
    key
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    let n: usize = args.next().map_or(Ok(5000), |a| a.parse())?;
    // One connection, so every row shares the path PING measures.
    let pool = Arc::new(RedisPool::new(&RedisSpec {
        url: RedisUrl(url),
        password_env: None,
        key_prefix: format!("bench:{}:", std::process::id()),
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        pool_size: 1,
        replicas: 1,
    })?);
    let store = RedisStore::new(pool.clone(), 10_000_000);
    let limiter = Limiter::with_backend(
        "bench",
        LimitSpec {
            // Never waits: this measures the reservation's cost, not the rate.
            rate: 1e9,
            burst: 1_000_000,
            max_wait: Some(Duration::from_secs(1)),
            adaptive: false,
            min_rate: 1.0,
            shared: Some(SharedSpec { fallback_rate: 1.0 }),
        },
        Some(&pool),
        || BackendMetrics {
            errors: prometheus::IntCounter::new("e", "e").expect("counter"),
            healthy: prometheus::IntGauge::new("h", "h").expect("gauge"),
        },
    );
    let response = StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: vec![b'x'; 600],
    };
    let now = 1u64 << 40;
    let claim = |i: usize| {
        let k = key(i);
        let store = &store;
        async move {
            let req = ClaimRequest {
                key: &k,
                fingerprint: &[1; 32],
                owner: 1,
                lease_until: now + 60_000,
                now,
            };
            store.claim(req).await.expect("claim");
        }
    };

    // Warm-up: connection, script cache (EVALSHA after the first EVAL), allocator.
    for i in 0..500 {
        pool.ping().await?;
        claim(n + i).await;
        limiter.acquire(Duration::from_secs(1)).await.ok();
    }
    let ping = time(n, |_| async { pool.ping().await.expect("ping") }).await;
    let claims = time(n, claim).await;
    let pairs = time(n, |i| {
        let (store, response) = (&store, response.clone());
        async move {
            claim(2 * n + i).await;
            let k = key(2 * n + i);
            let done = store.complete(&k, 1, response, now + 86_400_000).await;
            assert!(done.expect("complete"));
        }
    })
    .await;
    let acquires = time(n, |_| async {
        limiter
            .acquire(Duration::from_secs(1))
            .await
            .expect("granted");
    })
    .await;
    assert_eq!(
        limiter.backend_healthy(),
        Some(true),
        "every reservation reached Redis"
    );
    store.prune(u64::MAX).await?;

    println!(
        "| operation ({n} sequential) | mean µs | p50 µs | p99 µs | p50 / PING p50 | p50 added over PING µs |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    row("PING (one round trip)", &ping, &ping);
    row("store: claim (new key)", &claims, &ping);
    row("store: claim + complete (one keyed request)", &pairs, &ping);
    row("limiter: shared reservation", &acquires, &ping);
    Ok(())
}
