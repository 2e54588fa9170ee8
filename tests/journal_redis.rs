//! The Redis journal against a real `redis-server`: the lifecycle suite every journal backend
//! passes, what a shared backend adds (two replicas' journals see each other's entries, and
//! the resolver's lease lets one at a time act), its key layout and bound, and a Redis
//! failure as a backend error. The resolver across replicas is in `resolver_redis.rs`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use payguard::journal::conformance;
use payguard::journal::redis::RedisJournal;
use payguard::journal::seal::EncryptionKey;
use payguard::journal::seal::Sealer;
use payguard::journal::{Change, Write};
use payguard::journal::{Entry, Journal, JournalError, State, Ticket};
use payguard::shared::RedisPool;
use support::redis::RedisServer;

const KEY: EncryptionKey = EncryptionKey([9; 32]);

fn journal(pool: &Arc<RedisPool>, max_entries: usize) -> Journal {
    let store = RedisJournal::new(pool.clone(), max_entries);
    Journal::new(Arc::new(store), Sealer::new(Some(&KEY)))
}

/// One command on the test's own connection, as an operator's `redis-cli` would send it.
async fn raw<T: redis::FromRedisValue>(pool: &RedisPool, args: &[&str]) -> T {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    pool.run(|mut c| async move {
        let mut cmd = redis::cmd(&args[0]);
        for arg in &args[1..] {
            cmd.arg(arg);
        }
        cmd.query_async(&mut c).await
    })
    .await
    .unwrap()
}

/// Every key under `prefix`, by name.
async fn keys(pool: &RedisPool, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = raw(pool, &["KEYS", &format!("{prefix}*")]).await;
    keys.sort();
    keys
}

fn pending(key: &str) -> Change {
    let mut entry = conformance::opening(key, false).entry;
    entry.state = State::Pending { next_at: 0 };
    Box::new(move |_| Write::Put(Box::new(entry.clone())))
}

#[tokio::test]
async fn the_redis_journal_passes_the_lifecycle_suite_and_keeps_payloads_sealed() {
    let server = RedisServer::start().await;
    let pool = server.pool("life:");
    conformance::lifecycle(journal(&pool, 100)).await;
    // Every key is under the prefix, and no payload is in clear in Redis.
    for key in keys(&pool, "").await {
        assert!(key.starts_with("life:journal"), "{key}");
        if raw::<String>(&pool, &["TYPE", &key]).await == "string" {
            let value: Vec<u8> = raw(&pool, &["GET", &key]).await;
            assert!(!String::from_utf8_lossy(&value).contains("sk_test_x"));
        }
    }
}

#[tokio::test]
async fn two_journals_on_one_redis_share_entries_and_lease_each_one_to_one_resolver() {
    let server = RedisServer::start().await;
    // Two pools, as two replicas have: nothing shared but the server.
    let (a, b) = (server.pool("shared:"), server.pool("shared:"));
    conformance::shared(journal(&a, 100), journal(&b, 100)).await;
}

#[tokio::test]
async fn entries_are_one_key_each_without_expiry_and_the_bound_holds_across_replicas() {
    let server = RedisServer::start().await;
    let pool = server.pool("bound:");
    let (a, b) = (journal(&pool, 2), journal(&server.pool("bound:"), 2));
    a.store()
        .update([1; 32], true, pending("k1"))
        .await
        .unwrap();
    b.store()
        .update([2; 32], true, pending("k2"))
        .await
        .unwrap();
    let full = a.store().update([3; 32], true, pending("k3")).await;
    assert!(matches!(full, Err(JournalError::Full(2))), "{full:?}");
    // Rewriting an entry already there is no new entry.
    b.store()
        .update([1; 32], false, pending("k1"))
        .await
        .unwrap();
    let hex = |n: u8| format!("{n:02x}").repeat(32);
    assert_eq!(
        keys(&pool, "bound:").await,
        [
            format!("bound:journal:{}", hex(1)),
            format!("bound:journal:{}", hex(2)),
            "bound:journal:index".to_owned(),
        ]
    );
    // No expiry: an unresolved payment must not vanish by TTL.
    let ttl: i64 = raw(&pool, &["PTTL", &format!("bound:journal:{}", hex(1))]).await;
    assert_eq!(ttl, -1);

    // An entry deleted behind payguard's back: the listing skips it and frees its place.
    let _: i64 = raw(&pool, &["DEL", &format!("bound:journal:{}", hex(2))]).await;
    let listed: Vec<Entry> = b
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, "k1");
    a.store()
        .update([3; 32], true, pending("k3"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_redis_that_is_gone_is_a_backend_error_and_a_ticket_goes_on() {
    let mut server = RedisServer::start().await;
    let journal = journal(&server.pool("gone:"), 100);
    server.kill9().await;
    let listed = journal.list().await;
    assert!(
        matches!(listed, Err(JournalError::Backend(_))),
        "{listed:?}"
    );
    let updated = journal.store().update([1; 32], true, pending("k1")).await;
    assert!(
        matches!(updated, Err(JournalError::Backend(_))),
        "{updated:?}"
    );
    let leased = journal.lease([1; 32], Duration::from_secs(1)).await;
    assert!(
        matches!(leased, Err(JournalError::Backend(_))),
        "{leased:?}"
    );
    // The request path: the failed write is logged, the request is sent all the same.
    let ticket = Ticket::new(journal.clone(), [1; 32], conformance::opening("k1", true));
    tokio::time::timeout(Duration::from_secs(10), ticket.before_send())
        .await
        .expect("a journal failure does not hold the request");
    assert_eq!(
        ticket
            .settle(payguard::journal::Verdict::Definitive(200), 1, 0)
            .await,
        None
    );
}
