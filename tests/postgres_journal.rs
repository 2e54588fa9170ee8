//! The PostgreSQL journal against a real server: the lifecycle suite every journal backend
//! passes, what a shared backend adds (two replicas' journals see each other's entries, and
//! the resolver's lease lets one at a time act), the bound across replicas, payloads sealed
//! in the table, and an unreachable database as a backend error that never holds a request.

mod support;

use std::sync::Arc;
use std::time::Duration;

use payguard::idempotency::postgres::PgPool;
use payguard::journal::conformance;
use payguard::journal::postgres::PostgresJournal;
use payguard::journal::seal::EncryptionKey;
use payguard::journal::seal::Sealer;
use payguard::journal::{Change, Write};
use payguard::journal::{Journal, JournalError, State, Ticket, Verdict};
use support::postgres::{TestDb, spec};

const KEY: EncryptionKey = EncryptionKey([9; 32]);

fn journal(pool: &Arc<PgPool>, max_entries: usize) -> Journal {
    let store = PostgresJournal::new(pool.clone(), max_entries);
    Journal::new(Arc::new(store), Sealer::new(Some(&KEY)))
}

fn pending(key: &str) -> Change {
    let mut entry = conformance::opening(key, false).entry;
    entry.state = State::Pending { next_at: 0 };
    Box::new(move |_| Write::Put(Box::new(entry.clone())))
}

#[tokio::test]
async fn the_postgres_journal_passes_the_lifecycle_suite_and_keeps_payloads_sealed() {
    let db = TestDb::create();
    conformance::lifecycle(journal(&db.pool("life"), 100)).await;
    // No payload is in clear in the table (the suite leaves some entries behind).
    let rows = db.psql("SELECT count(*) FROM life.journal");
    assert_ne!(rows, "0", "the suite leaves entries to look at");
    let clear = db
        .psql("SELECT count(*) FROM life.journal WHERE position('sk_test_x'::bytea IN entry) > 0");
    assert_eq!(clear, "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_journals_on_one_database_share_entries_and_lease_each_one_to_one_resolver() {
    let db = TestDb::create();
    // Two pools, as two replicas have: nothing shared but the database.
    let (a, b) = (db.pool("shared"), db.pool("shared"));
    conformance::shared(journal(&a, 100), journal(&b, 100)).await;
}

#[tokio::test]
async fn the_bound_holds_across_replicas_and_deletes_free_room() {
    let db = TestDb::create();
    let (a, b) = (journal(&db.pool("bound"), 2), journal(&db.pool("bound"), 2));
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
    assert_eq!(db.psql("SELECT count(*) FROM bound.journal"), "2");
    // A removed entry frees its place, for either replica.
    b.remove([2; 32]).await.unwrap();
    a.store()
        .update([3; 32], true, pending("k3"))
        .await
        .unwrap();
    let mut keys: Vec<String> = a
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["k1", "k3"]);
}

#[tokio::test]
async fn a_database_that_is_gone_is_a_backend_error_and_a_ticket_goes_on() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/none");
    let pool = Arc::new(PgPool::new(&spec(&url, "payguard"), None).unwrap());
    let journal = journal(&pool, 100);
    let listed = journal.list().await;
    assert!(
        matches!(listed, Err(JournalError::Backend(_))),
        "{listed:?}"
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
    assert_eq!(ticket.settle(Verdict::Definitive(200), 1, 0).await, None);
}
