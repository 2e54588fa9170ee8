//! What one keyed request costs in each shared-or-durable store: the embedded file, Redis and
//! PostgreSQL, at 1 and at 32 requests in flight.
//!
//! A keyed request here is what the request path asks of its store and journal around one
//! provider call, nothing else: claim the key, open the journal entry (durable, before the
//! attempt leaves), settle it with a definitive answer, and complete the key with a 600-byte
//! response. The provider, HTTP and payguard's own work are left out (bench/overhead measures
//! those), so the figures compare the stores alone.
//!
//! `bash bench/postgres/run.sh` starts a redis-server of its own, makes a database of its own
//! on the machine's PostgreSQL and runs this; by hand:
//! `cargo run --release --example bench-postgres -- POSTGRES_URL REDIS_URL DIR [N]`.
//! Prints a Markdown table.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use payguard::idempotency::embedded::EmbeddedStore;
use payguard::idempotency::postgres::{PgPool, PostgresStore};
use payguard::idempotency::postgres::{PostgresSpec, PostgresUrl};
use payguard::idempotency::redis::RedisStore;
use payguard::idempotency::store::{ClaimRequest, Store, StoredResponse};
use payguard::journal::Opening;
use payguard::journal::seal::Sealer;
use payguard::journal::{Entry, Journal, JournalStore, Ticket, Verdict};
use payguard::shared::RedisPool;
use payguard::shared::{RedisSpec, RedisUrl};

/// One store and its journal, as `ProxyState` pairs them.
struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    journal: Journal,
}

fn key(run: u64, i: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&i.to_be_bytes());
    key[8..16].copy_from_slice(&run.to_be_bytes());
    // The first byte varies, as a SHA-256's does (it picks the PostgreSQL count shard).
    key[0] = (i % 251) as u8;
    key
}

/// One keyed request's store and journal work.
async fn keyed_request(b: &Backend, k: [u8; 32], now: u64) {
    let response = StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: vec![b'x'; 600],
    };
    let req = ClaimRequest {
        key: &k,
        fingerprint: &[1; 32],
        owner: 1,
        lease_until: now + 60_000,
        now,
    };
    b.store.claim(req).await.expect("claim");
    let opening = Opening {
        entry: Entry::new(
            "default".into(),
            "POST".into(),
            "/v1/payment_intents".into(),
            "bench".into(),
            k,
            false,
        ),
        payload: None,
        lease: Duration::from_secs(60),
    };
    let ticket = Ticket::new(b.journal.clone(), k, opening);
    ticket.before_send().await;
    ticket.settle(Verdict::Definitive(200), 1, 0).await;
    let done = b.store.complete(&k, 1, response, now + 86_400_000).await;
    assert!(done.expect("complete"), "completed by its owner");
}

/// `n` keyed requests, `concurrency` at a time: per-request latencies and requests/s.
async fn run(b: &Arc<Backend>, run: u64, n: u64, concurrency: u64) -> (Vec<Duration>, f64) {
    let now = 1u64 << 41;
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let b = b.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut i = w;
                while i < n {
                    let t = Instant::now();
                    keyed_request(&b, key(run, i), now).await;
                    samples.push(t.elapsed());
                    i += concurrency;
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n as usize);
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    all.sort();
    (all, rate)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let pg_url = args.next().expect("a postgres:// URL");
    let redis_url = args.next().expect("a redis:// URL");
    let dir = std::path::PathBuf::from(args.next().expect("a directory for the embedded file"));
    let n: u64 = args.next().map_or(Ok(2000), |a| a.parse())?;

    let path = dir.join("bench.redb");
    let embedded = EmbeddedStore::open(&path, 10_000_000)?;
    let embedded_journal =
        payguard::journal::embedded::EmbeddedJournal::new(embedded.database(), &path, 1 << 20)?;
    let redis = Arc::new(RedisPool::new(&RedisSpec {
        url: RedisUrl(redis_url),
        password_env: None,
        key_prefix: format!("bench:{}:", std::process::id()),
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        pool_size: 2,
        replicas: 1,
    })?);
    let pg = Arc::new(PgPool::new(
        &PostgresSpec {
            url: PostgresUrl(pg_url),
            password_env: None,
            // payguard's default.
            pool_size: 8,
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            schema: "payguard".into(),
            tls: false,
        },
        None,
    )?);
    pg.migrate().await?;
    let journal = |store: Arc<dyn JournalStore>| Journal::new(store, Sealer::new(None));
    let backends = [
        Backend {
            name: "embedded (redb file)",
            store: Arc::new(embedded),
            journal: journal(Arc::new(embedded_journal)),
        },
        Backend {
            name: "Redis",
            store: Arc::new(RedisStore::new(redis.clone(), 10_000_000)),
            journal: journal(Arc::new(payguard::journal::redis::RedisJournal::new(
                redis,
                1 << 20,
            ))),
        },
        Backend {
            name: "PostgreSQL",
            store: Arc::new(PostgresStore::new(pg.clone(), 10_000_000)),
            journal: journal(Arc::new(payguard::journal::postgres::PostgresJournal::new(
                pg,
                1 << 20,
            ))),
        },
    ];

    println!(
        "| store | in flight | requests/s | mean µs | p50 µs | p99 µs | ({n} keyed requests) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (i, backend) in backends.into_iter().enumerate() {
        let backend = Arc::new(backend);
        // Warm-up: connections, prepared statements and scripts, the allocator.
        run(&backend, 100 + i as u64, 200, 8).await;
        for (r, concurrency) in [(1u64, 1u64), (2, 32)] {
            let (samples, rate) = run(&backend, 10 * i as u64 + r, n, concurrency).await;
            let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
            let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
            println!(
                "| {} | {concurrency} | {rate:.0} | {:.0} | {:.0} | {:.0} | |",
                backend.name,
                us(mean),
                us(at(0.5)),
                us(at(0.99)),
            );
        }
        backend.store.prune(u64::MAX).await?;
    }
    Ok(())
}
