//! The PostgreSQL store against a real server (a database of the test's own on
//! 127.0.0.1:5432): the conformance suite every backend passes, a differential run against
//! the in-memory store (the plain reading of the rules in `store.rs`), the migrations (run
//! once by replicas starting together, a newer schema refused), batched pruning, and an
//! unreachable database as a backend error within the timeout.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use payguard::idempotency::conformance;
use payguard::idempotency::postgres::{PRUNE_BATCH, PgFailure, PgPool, PostgresStore};
use payguard::idempotency::store::{BindRequest, Store, StoreError};
use support::postgres::{TestDb, spec};

#[tokio::test]
async fn postgres_store_conforms() {
    let db = TestDb::create();
    let n = AtomicUsize::new(0);
    conformance::run_all(|max| {
        // A schema per case: each starts from an empty, freshly migrated store.
        let schema = format!("conf{}", n.fetch_add(1, Ordering::Relaxed));
        let store = PostgresStore::new(db.pool(&schema), max);
        async move { store }
    })
    .await;
}

/// The same random operations on both stores give the same answers: the SQL applies the
/// rules of store.rs, which the memory store applies directly.
#[tokio::test]
async fn statements_decide_as_the_shared_rules_do() {
    let db = TestDb::create();
    let postgres = PostgresStore::new(db.pool("diff"), 6);
    support::differential::against_memory(&postgres, 18, "PostgreSQL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let db = TestDb::create();
    let pools: Vec<_> = (0..4).map(|_| db.pool("together")).collect();
    let runs: Vec<_> = pools
        .iter()
        .cloned()
        .map(|p| tokio::spawn(async move { p.migrate().await }))
        .collect();
    for run in runs {
        run.await
            .unwrap()
            .expect("every replica's migration succeeds");
    }
    assert_eq!(
        db.psql("SELECT string_agg(version::text, ',') FROM together.schema_version"),
        "1"
    );
    // A newer payguard migrated the database; this one refuses it, whatever it is asked.
    db.psql("INSERT INTO together.schema_version (version) VALUES (99)");
    let older = db.pool("together");
    let refused = older.migrate().await.unwrap_err();
    assert!(matches!(
        refused,
        PgFailure::SchemaTooNew {
            found: 99,
            known: 1,
            ..
        }
    ));
    let message = refused.to_string();
    assert!(
        message.contains("version 99, newer than this payguard knows (up to 1)"),
        "{message}"
    );
    let store = PostgresStore::new(older, 10);
    let err = store.count().await.unwrap_err().to_string();
    assert!(err.contains("newer than this payguard knows"), "{err}");
}

#[tokio::test]
async fn expired_rows_are_pruned_in_bounded_batches() {
    let db = TestDb::create();
    let store = PostgresStore::new(db.pool("batches"), 10_000);
    let total = 2 * PRUNE_BATCH as usize + 37;
    for i in 0..total {
        let key: [u8; 32] = std::array::from_fn(|b| (i >> (8 * (b % 4))) as u8);
        let bind = BindRequest {
            key: &key,
            candidate: "k",
            expires_at: 100,
            now: 0,
            replace: None,
        };
        store.bind(bind).await.unwrap();
    }
    let live = BindRequest {
        key: &[0xee; 32],
        candidate: "live",
        expires_at: 10_000,
        now: 0,
        replace: None,
    };
    store.bind(live).await.unwrap();
    assert_eq!(store.count().await.unwrap(), total + 1);
    assert_eq!(store.prune(200).await.unwrap(), total);
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(db.psql("SELECT count(*) FROM batches.records"), "1");
}

#[tokio::test]
async fn an_unreachable_database_is_a_backend_error_within_the_timeout() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/none");
    let pool = PgPool::new(&spec(&url, "payguard"), None).unwrap();
    let store = PostgresStore::new(std::sync::Arc::new(pool), 10);
    let started = Instant::now();
    let err = store.count().await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "bounded");
}
