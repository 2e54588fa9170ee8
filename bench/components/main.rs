//! Component benchmarks: what the limiter, the breaker and the idempotency stores cost per
//! request, and how accurately the limiter holds its rate in real time.
//!
//! `cargo run --release --example bench-components` prints a Markdown table; the numbers go
//! into BENCHMARKS.md. Each measurement runs on one task so it reads the cost of the component
//! itself, not of contention.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use payguard::breaker::{Breaker, BreakerSpec, Outcome};
use payguard::idempotency::embedded::EmbeddedStore;
use payguard::idempotency::memory::MemoryStore;
use payguard::idempotency::store::{ClaimRequest, Store, StoredResponse};
use payguard::ratelimit::{LimitSpec, Limiter};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} |",
        samples.len(),
        mean.as_secs_f64() * 1e6,
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6
    );
}

/// The record key of the `i`th request.
fn key(i: usize) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&(i as u64).to_be_bytes());
    key
}

/// Claims `key` for `owner`, with a lease and times that never expire.
async fn claim(store: &dyn Store, key: &[u8; 32], owner: u128) {
    let request = ClaimRequest {
        key,
        fingerprint: &[1; 32],
        owner,
        lease_until: u64::MAX,
        now: 0,
    };
    store.claim(request).await.expect("claim");
}

/// One request's store work when it claims a fresh key and completes it.
async fn store_costs(name: &str, store: &dyn Store, n: usize) {
    let response = StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: vec![b'x'; 600],
    };
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        claim(store, &key(i), 1).await;
        store
            .complete(&key(i), 1, response.clone(), u64::MAX)
            .await
            .expect("complete");
        samples.push(started.elapsed());
    }
    row(&format!("{name}: claim + complete (a new key)"), samples);
    let mut replays = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        claim(store, &key(i), 2).await;
        replays.push(started.elapsed());
    }
    row(
        &format!("{name}: claim of a completed key (a replay)"),
        replays,
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000usize);
    println!("| component | samples | mean µs | p50 µs | p99 µs |");
    println!("| --- | --- | --- | --- | --- |");

    let unlimited = Limiter::new(LimitSpec {
        rate: 1e9,
        burst: 1_000_000,
        max_wait: Some(Duration::from_secs(1)),
        adaptive: true,
        min_rate: 1.0,
        shared: None,
    });
    let mut samples = Vec::with_capacity(n * 10);
    for _ in 0..n * 10 {
        let started = Instant::now();
        unlimited
            .acquire(Duration::from_secs(1))
            .await
            .expect("a token is free");
        samples.push(started.elapsed());
    }
    row("limiter: acquire with a token free", samples);

    let breaker = Breaker::new(BreakerSpec {
        failure_rate: 0.5,
        min_calls: 20,
        window: Duration::from_secs(10),
        consecutive_failures: 5,
        break_duration: Duration::from_secs(5),
        half_open_probes: 2,
        max_wait_open: Duration::ZERO,
    });
    let samples = (0..n * 10)
        .map(|_| {
            let started = Instant::now();
            let now = tokio::time::Instant::now();
            if let (Ok(ticket), _) = breaker.admit(now) {
                breaker.record(ticket, Outcome::Success, now);
            }
            started.elapsed()
        })
        .collect();
    row("breaker: admit + record", samples);

    store_costs("memory store", &MemoryStore::new(1_000_000), n).await;
    let dir = std::env::temp_dir().join(format!("payguard-bench-{}", std::process::id()));
    let embedded = EmbeddedStore::open(&dir.join("bench.redb"), 1_000_000).expect("open the store");
    store_costs(
        "embedded store (redb; claim unsynced, completion fsync'd)",
        &embedded,
        n,
    )
    .await;
    drop(embedded);
    let _ = std::fs::remove_dir_all(&dir);

    accuracy().await;
}

/// 50 attempts per second offered to a 10/s limiter (burst 1) for 10 real seconds.
async fn accuracy() {
    let limiter = Arc::new(Limiter::new(LimitSpec {
        rate: 10.0,
        burst: 1,
        max_wait: Some(Duration::from_secs(60)),
        adaptive: false,
        min_rate: 1.0,
        shared: None,
    }));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..500u32 {
        tokio::time::sleep_until((start + Duration::from_millis(20) * i).into()).await;
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move {
            limiter
                .acquire(Duration::from_secs(60))
                .await
                .ok()
                .map(|_| start.elapsed())
        }));
    }
    let mut grants: Vec<Duration> = Vec::new();
    for task in tasks {
        if let Ok(Some(t)) = task.await {
            grants.push(t);
        }
    }
    grants.sort();
    let in_ten = grants
        .iter()
        .filter(|t| **t < Duration::from_secs(10))
        .count();
    let busiest = payguard_double::busiest_window(&grants, Duration::from_secs(1));
    println!();
    println!(
        "limiter accuracy (real time): 50/s offered to 10/s, burst 1, for 10 s: {in_ten} sends in the first 10 s ({:.1}% of 100), busiest 1 s window {busiest}",
        in_ten as f64
    );
}
