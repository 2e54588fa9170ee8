//! The resolver with the PostgreSQL store: the journal is in the database too, shared by
//! every replica. An entry left behind by a replica `kill -9`ed with a payment in doubt is
//! resolved by another replica, once, and its answer replayed from the database; and a
//! resolver leaves alone an entry another replica's resolver holds the lease on. The journal
//! backend itself is tested in `postgres_journal.rs`.

mod support;

use std::sync::Arc;

use payguard::config::Config;
use payguard::journal::Journal;
use payguard::journal::postgres::PostgresJournal;
use payguard::journal::seal::Sealer;
use payguard::proxy::ProxyState;
use payguard_double::{self as double, DoubleConfig, EffectKind, Fault};
use support::postgres::{TestDb, start_replicas};
use support::resolver::{FAST, RESENDS, payment, wait_for};
use support::*;

/// [`FAST`], but the resolver looks once, at startup, then sleeps an hour: a replica that
/// leaves its unresolved entries to others.
fn idle() -> String {
    let idle = FAST.replace("interval = \"20ms\"", "interval = \"1h\"");
    assert_ne!(idle, FAST, "FAST sets the interval");
    idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_a_killed_replica_left_is_settled_by_another() {
    let db = TestDb::create();
    // The next two answers are lost after the provider executed the request: with two
    // attempts, payguard ends in doubt and journals the payment as pending.
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::ResetAfterProcessing);
    provider.faults().push(Fault::ResetAfterProcessing);
    let (mut a, _a_dir) = start_replicas(1, &provider.url(), &db.url(), RESENDS, &idle()).await;
    let a = a.remove(0);
    let url = format!("http://{}/v1/payment_intents", a.proxy);
    let form = "amount=4300&currency=usd";
    let lost = send(payment(&url, "killed-handover", form)).await;
    assert_outcome_unknown(&lost, &[502]);
    wait_for(&a.admin, "killed-handover", "pending").await;
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
    // Replica A dies with the payment unresolved: no drain, no goodbye.
    let mut a = a;
    a.child.kill().await.unwrap();

    let (mut b, _b_dir) = start_replicas(1, &provider.url(), &db.url(), RESENDS, FAST).await;
    let b = b.remove(0);
    let row = wait_for(&b.admin, "killed-handover", "resolved").await;
    assert_eq!(row["outcome"], "200");
    let ledger = provider.ledger();
    assert_eq!(
        ledger.count(EffectKind::PaymentIntentCreated),
        1,
        "one effect"
    );
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());
    // The app's retry, through B, is the resolved answer, replayed from the database.
    let seen = provider.requests_seen();
    let retry = send(payment(
        &format!("http://{}/v1/payment_intents", b.proxy),
        "killed-handover",
        form,
    ))
    .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.headers["payguard-attempts"], "0");
    assert_eq!(provider.requests_seen(), seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_leaves_alone_an_entry_another_replicas_resolver_holds() {
    let db = TestDb::create();
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let toml = config_toml(
        &provider.url(),
        &format!(
            "{FAST}[postgres]\nurl = \"{}\"\n[idempotency]\nstore = \"postgres\"\n{RESENDS}",
            db.url()
        ),
    );
    let b = ProxyState::new(&Config::parse(&toml, "test config", None).unwrap()).unwrap();
    // Replica A's journal: another pool and lease holder on the same database.
    let a = Journal::new(
        Arc::new(PostgresJournal::new(db.pool("payguard"), 100)),
        Sealer::new(None),
    );
    support::resolver::a_held_entry_is_left_alone(&provider, &b, a).await;
}
