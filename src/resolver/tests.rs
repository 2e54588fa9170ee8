use std::sync::Arc;
use std::time::Duration;

use http::Response;

use super::embedded::EmbeddedJournal;
use super::journal::{JournalError, Opening};
use super::memory::MemoryJournal;
use super::report::Listing;
use super::seal::Sealer;
use super::task::backoff;
use super::*;
use crate::profile::STRIPE;
use crate::retry::Refusal;
use crate::retry::RequestFacts;

fn response(status: u16, should_retry: Option<&str>) -> Result<Response<()>, AttemptError> {
    let mut r = Response::builder().status(status);
    if let Some(v) = should_retry {
        r = r.header("stripe-should-retry", v);
    }
    Ok(r.body(()).unwrap())
}

fn keyed() -> RequestFacts<'static> {
    RequestFacts {
        replay_safe: true,
        keyed: true,
        profile: &STRIPE,
    }
}

#[test]
fn verdicts_read_the_loops_final_outcome() {
    let of = |outcome: &Result<Response<()>, AttemptError>| Verdict::of(outcome, keyed());
    assert_eq!(of(&response(200, None)), Verdict::Definitive(200));
    assert_eq!(of(&response(402, None)), Verdict::Definitive(402));
    // A 429 executed nothing; a request that never left, nothing either.
    assert_eq!(of(&response(429, None)), Verdict::NothingSent);
    let not_sent = Err(AttemptError::NotSent("refused".into()));
    assert_eq!(of(&not_sent), Verdict::NothingSent);
    let refused = Err(AttemptError::Refused(Refusal::CircuitOpen(Duration::ZERO)));
    assert_eq!(of(&refused), Verdict::NothingSent);
    // The loop's doubt, as the app was told it.
    let unknown = Err(AttemptError::Unknown {
        detail: "connection lost: reset".into(),
        timed_out: false,
    });
    assert!(matches!(of(&unknown), Verdict::Unknown(e) if e.contains("reset")));
    // A replay of the provider's own record is its final word, whatever its status.
    let mut replayed = response(500, None);
    if let Ok(r) = &mut replayed {
        r.headers_mut().insert(
            "idempotent-replayed",
            http::HeaderValue::from_static("true"),
        );
    }
    assert_eq!(of(&replayed), Verdict::Definitive(500));
}

/// Opens an entry as the request path does: a ticket, written before its first attempt.
async fn open(journal: &Journal, id: Id, opening: Opening) -> Ticket {
    let ticket = journal.ticket(id, opening);
    ticket.before_send().await;
    ticket
}

#[test]
fn resolver_backoff_doubles_up_to_its_cap() {
    let (base, max) = (Duration::from_secs(30), Duration::from_secs(300));
    let waits: Vec<u64> = (1..=6).map(|r| backoff(base, max, r).as_secs()).collect();
    assert_eq!(waits, [30, 60, 120, 240, 300, 300]);
    assert_eq!(backoff(base, max, 1000), max);
}

fn opening(key: &str, resend: bool) -> Opening {
    Opening {
        entry: Entry::new(
            "charges".into(),
            "POST".into(),
            "/v1/charges?expand=x".into(),
            key.into(),
            [3; 32],
            resend,
        ),
        payload: resend.then(|| Payload {
            headers: vec![("authorization".into(), b"Bearer sk_test_x".to_vec())],
            body: b"amount=1".to_vec(),
        }),
        lease: Duration::from_secs(60),
    }
}

/// The lifecycle every backend must support.
async fn lifecycle(journal: Journal) {
    let unknown = || Verdict::Unknown("connection lost".into());
    // A definitive first answer leaves nothing behind.
    let t = open(&journal, [1; 32], opening("k1", true)).await;
    assert!(t.settle(Verdict::Definitive(200), 1, 0).await.is_none());
    assert!(journal.list().await.unwrap().is_empty());

    // An unknown outcome leaves a pending entry with its payload, in clear or sealed.
    let t = open(&journal, [2; 32], opening("k2", true)).await;
    assert!(t.settle(unknown(), 3, 0).await.is_none());
    let all = journal.list().await.unwrap();
    let (id, entry) = &all[0];
    assert_eq!((entry.attempts, entry.state.label()), (3, "pending"));
    assert!(entry.unresolved(journal.now_ms()) && entry.due(journal.now_ms()));
    let payload = journal.payload(id, entry).unwrap().unwrap();
    assert_eq!(payload.body, b"amount=1");

    // The app's retry reopens it, keeping its history; its definitive answer resolves it and
    // drops the payload.
    let t = open(&journal, [2; 32], opening("k2", true)).await;
    let reopened = &journal.list().await.unwrap()[0].1;
    assert!(matches!(reopened.state, State::Open { .. }) && reopened.was_pending);
    assert!(!reopened.unresolved(journal.now_ms()), "its lease is live");
    assert!(t.settle(Verdict::Definitive(201), 1, 0).await.is_some());
    let resolved = &journal.list().await.unwrap()[0].1;
    assert_eq!(resolved.state, State::Resolved { status: 201 });
    assert_eq!((resolved.attempts, resolved.payload.is_none()), (4, true));

    // The resolver settles an entry while the app's retry of it is in flight: the retry's
    // answer then changes nothing and is not counted a second time.
    let t = open(&journal, [6; 32], opening("k6", true)).await;
    t.settle(unknown(), 1, 0).await;
    let app_retry = open(&journal, [6; 32], opening("k6", true)).await;
    let by_resolver = journal
        .modify([6; 32], false, |e| {
            e.finish(State::Resolved { status: 200 }, 1);
            true
        })
        .await
        .unwrap();
    assert!(by_resolver.is_some());
    assert!(
        app_retry
            .settle(Verdict::Definitive(200), 1, 0)
            .await
            .is_none()
    );
    let unchanged = journal.modify([6; 32], false, |_| false).await.unwrap();
    assert_eq!(unchanged, None, "modify reports only changes");
    journal.remove([6; 32]).await.unwrap();

    // Record-only: no payload is ever kept.
    let t = open(&journal, [4; 32], opening("k4", false)).await;
    t.settle(unknown(), 1, 0).await;
    let listed = journal.list().await.unwrap();
    let (id, entry) = listed.iter().find(|(id, _)| *id == [4; 32]).unwrap();
    assert_eq!(journal.payload(id, entry).unwrap(), None);

    // A ticket dropped unsettled after its request was sent (the app hung up) marks the
    // entry pending: the request may have executed.
    let t = open(&journal, [5; 32], opening("k5", true)).await;
    drop(t);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let listed = journal.list().await.unwrap();
    let (_, e) = listed.iter().find(|(id, _)| *id == [5; 32]).unwrap();
    assert_eq!(e.state.label(), "pending");
    assert!(e.last_error.as_deref().unwrap().contains("abandoned"));

    // One dropped before anything was sent (abandoned in the limiter's queue) leaves nothing.
    drop(journal.ticket([7; 32], opening("k7", true)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let listed = journal.list().await.unwrap();
    assert!(listed.iter().all(|(id, _)| *id != [7; 32]));

    // The listing shows no payload, no query string, and orders unresolved first.
    let listing = Listing::new(&journal.list().await.unwrap(), journal.now_ms());
    let json = serde_json::to_string(&listing).unwrap();
    assert!(!json.contains("sk_test") && !json.contains("amount") && !json.contains("expand"));
    assert_eq!(listing.entries.last().unwrap().state, "resolved");
    assert!(listing.table().contains("report only"));
}

#[tokio::test]
async fn memory_journal_lifecycle() {
    lifecycle(Journal::new(
        Arc::new(MemoryJournal::new(100)),
        Sealer::new(None),
    ))
    .await;
}

#[tokio::test]
async fn embedded_journal_lifecycle_sealed_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = crate::idempotency::embedded::EmbeddedStore::open(&path, 100).unwrap();
    let backend = EmbeddedJournal::new(store.database(), &path, 100).unwrap();
    let key = crate::config::EncryptionKey([9; 32]);
    lifecycle(Journal::new(Arc::new(backend), Sealer::new(Some(&key)))).await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !String::from_utf8_lossy(&bytes).contains("sk_test_x"),
        "sealed payloads never reach the file in clear"
    );
}

#[tokio::test]
async fn entries_survive_reopening_the_file_and_the_bound_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let open = || {
        let store = crate::idempotency::embedded::EmbeddedStore::open(&path, 100).unwrap();
        let backend = EmbeddedJournal::new(store.database(), &path, 1).unwrap();
        (store, Journal::new(Arc::new(backend), Sealer::new(None)))
    };
    let (store, journal) = open();
    // An open entry, as a process killed mid-request leaves it (its ticket never settled).
    let mut entry = opening("k1", true).entry;
    entry.state = State::Open { lease_until: 1 };
    let put: super::journal::Change =
        Box::new(move |_| super::journal::Write::Put(Box::new(entry.clone())));
    journal.store().update([1; 32], true, put).await.unwrap();
    // Full: a second entry is refused, and the request would go on unjournaled.
    let full = journal.open_for_test([2; 32], opening("k2", true)).await;
    assert!(matches!(full, Err(JournalError::Full(1))));
    drop((store, journal));
    let (_store, journal) = open();
    let listed = journal.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(matches!(listed[0].1.state, State::Open { .. }));
    assert_eq!(listed[0].1.key, "k1");
    assert!(
        listed[0].1.unresolved(journal.now_ms()),
        "its lease ran out: pending"
    );
}
