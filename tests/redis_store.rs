//! The Redis store against a real `redis-server`: the conformance suite every backend passes,
//! a differential run against the in-memory store (the plain reading of the rules in
//! `store.rs`), TTLs on every key, and the shared limiter's reservations.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use payguard::idempotency::conformance;
use payguard::idempotency::redis::RedisStore;
use payguard::idempotency::store::{BindRequest, ClaimRequest, Store};
use payguard::shared::RedisPool;
use support::differential::response;
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

/// The same random operations on both stores give the same answers: the scripts apply the
/// rules of store.rs, which the memory store applies directly.
#[tokio::test]
async fn scripts_decide_as_the_shared_rules_do() {
    let server = RedisServer::start().await;
    let redis = RedisStore::new(pool(&server, "diff:"), 6);
    support::differential::against_memory(&redis, 6, "Redis").await;
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
