//! The resolver with the PostgreSQL store: the journal is in the database too, shared by
//! every replica. An entry left behind by a replica `kill -9`ed with a payment in doubt is
//! resolved by another replica, once, and its answer replayed from the database; and a
//! resolver leaves alone an entry another replica's resolver holds the lease on. The journal
//! backend itself is tested in `postgres_journal.rs`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use payguard::config::Config;
use payguard::journal::Opening;
use payguard::journal::postgres::PostgresJournal;
use payguard::journal::seal::Sealer;
use payguard::journal::{Entry, Journal, Payload, State, Ticket, Verdict};
use payguard::proxy::ProxyState;
use payguard::resolver::task;
use payguard::route::DEFAULT_ROUTE;
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
    let id = [7; 32];
    let headers = [
        ("authorization", "Bearer sk_test_held"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("idempotency-key", "held-key"),
    ];
    let opening = Opening {
        entry: Entry::new(
            DEFAULT_ROUTE.into(),
            "POST".into(),
            "/v1/payment_intents".into(),
            "held-key".into(),
            [1; 32],
            true,
        ),
        payload: Some(Payload {
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: b"amount=900&currency=usd".to_vec(),
        }),
        lease: Duration::from_secs(30),
    };
    let ticket = Ticket::new(a.clone(), id, opening);
    ticket.before_send().await;
    ticket.settle(Verdict::Unknown("lost".into()), 1, 0).await;

    // A's resolver holds it (mid-re-send): B's round skips it.
    assert!(a.lease(id, Duration::from_secs(30)).await.unwrap());
    task::round(&b).await;
    assert_eq!(provider.requests_seen(), 0, "B sent nothing");
    let entry = b.journal().get(id).await.unwrap().unwrap();
    assert_eq!((entry.state.label(), entry.rounds), ("pending", 0));

    // Given back: B's next round re-sends it, once, and it is resolved.
    a.release(id).await.unwrap();
    task::round(&b).await;
    assert_eq!(provider.requests_seen(), 1);
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
    let entry = a.get(id).await.unwrap().unwrap();
    assert_eq!(entry.state, State::Resolved { status: 200 });
    assert_eq!(entry.rounds, 1);
}
