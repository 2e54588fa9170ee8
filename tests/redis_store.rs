//! The Redis store against a real `redis-server`: the conformance suite every backend passes,
//! a differential run against the in-memory store (the plain reading of the rules in
//! `store.rs`), TTLs on every key, and the shared limiter's reservations.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use payguard::idempotency::conformance;
use payguard::idempotency::memory::MemoryStore;
use payguard::idempotency::redis::RedisStore;
use payguard::idempotency::store::{BindRequest, ClaimRequest, Store, StoredResponse};
use payguard::shared::RedisPool;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::redis::RedisServer;

fn pool(server: &RedisServer, prefix: &str) -> Arc<RedisPool> {
    server.pool(prefix)
}

#[tokio::test]
async fn redis_store_conforms() {
    let server = RedisServer::start().await;
    let n = AtomicUsize::new(0);
    conformance::run_all(|max| {
        // A fresh prefix per case: each starts from an empty store.
        let prefix = format!("conf{}:", n.fetch_add(1, Ordering::Relaxed));
        let store = RedisStore::new(pool(&server, &prefix), max);
        async move { store }
    })
    .await;
}

fn response(n: u32) -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

/// The same random operations on both stores give the same answers: the scripts apply the
/// rules of store.rs, which the memory store applies directly.
#[tokio::test]
async fn scripts_decide_as_the_shared_rules_do() {
    let server = RedisServer::start().await;
    let redis = RedisStore::new(pool(&server, "diff:"), 6);
    let memory = MemoryStore::new(6);
    let mut rng = StdRng::seed_from_u64(6);
    let keys: Vec<[u8; 32]> = (0..8u8).map(|i| [i; 32]).collect();
    let prints = [[1u8; 32], [2u8; 32]];
    let mut now = 1_000u64;
    for step in 0..1500u32 {
        // Coarse steps, so times often fall exactly on a lease's or record's end: the
        // boundaries are where a script could drift from the rules.
        now += 10 * rng.random_range(0..4);
        let key = &keys[rng.random_range(0..keys.len())];
        let owner = rng.random_range(1..4u128);
        let until = now + 10 * rng.random_range(1..12);
        let (op, a, b) = match rng.random_range(0..6) {
            0 | 1 => {
                let req = ClaimRequest {
                    key,
                    fingerprint: &prints[rng.random_range(0..2)],
                    owner,
                    lease_until: until,
                    now,
                };
                let (a, b) = (memory.claim(req).await, redis.claim(req).await);
                ("claim", format!("{a:?}"), format!("{b:?}"))
            }
            2 => {
                let r = response(step);
                let a = memory.complete(key, owner, r.clone(), until).await;
                let b = redis.complete(key, owner, r, until).await;
                ("complete", format!("{a:?}"), format!("{b:?}"))
            }
            3 => {
                let a = memory.release(key, owner).await;
                let b = redis.release(key, owner).await;
                ("release", format!("{a:?}"), format!("{b:?}"))
            }
            4 => {
                let candidate = format!("k{step}");
                // Every other bind replaces a recent candidate, which may or may not be bound.
                let replaced = format!("k{}", step.saturating_sub(4));
                let req = BindRequest {
                    key,
                    candidate: &candidate,
                    expires_at: until,
                    now,
                    replace: (step % 2 == 0).then_some(replaced.as_str()),
                };
                let a = memory.bind(req).await;
                let b = redis.bind(req).await;
                ("bind", format!("{a:?}"), format!("{b:?}"))
            }
            _ => {
                let a = memory.prune(now).await;
                let b = redis.prune(now).await;
                ("prune", format!("{a:?}"), format!("{b:?}"))
            }
        };
        assert_eq!(a, b, "step {step}: {op}: memory and Redis disagree");
        assert_eq!(
            memory.count().await.unwrap(),
            redis.count().await.unwrap(),
            "step {step}: record counts differ"
        );
    }
}

/// Every key payguard writes expires on its own, the index included.
#[tokio::test]
async fn every_key_carries_a_ttl() {
    let server = RedisServer::start().await;
    let pool = pool(&server, "ttl:");
    let store = RedisStore::new(pool.clone(), 100);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let key = [3u8; 32];
    let req = ClaimRequest {
        key: &key,
        fingerprint: &[1; 32],
        owner: 1,
        lease_until: now + 5_000,
        now,
    };
    store.claim(req).await.unwrap();
    store
        .complete(&key, 1, response(1), now + 3_600_000)
        .await
        .unwrap();
    let bind = BindRequest {
        key: &[4; 32],
        candidate: "k",
        expires_at: now + 10_000,
        now,
        replace: None,
    };
    store.bind(bind).await.unwrap();
    let keys: Vec<String> = pool
        .run(|mut c| async move { redis::cmd("KEYS").arg("ttl:*").query_async(&mut c).await })
        .await
        .unwrap();
    assert_eq!(keys.len(), 3, "two records and the index: {keys:?}");
    for k in keys {
        let ttl: i64 = pool
            .run(|mut c| async move { redis::cmd("PTTL").arg(k).query_async(&mut c).await })
            .await
            .unwrap();
        assert!(ttl > 0, "a key without expiry: {ttl}");
        // At most the longest record's life plus the grace minute.
        assert!(ttl <= 3_600_000 + 61_000, "{ttl}");
    }
}
