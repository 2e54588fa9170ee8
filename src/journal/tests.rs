use std::sync::Arc;
use std::time::Duration;

use http::Response;

use super::conformance::{lifecycle, opening};
use super::embedded::EmbeddedJournal;
use super::memory::MemoryJournal;
use super::seal::Sealer;
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
    let key = super::seal::EncryptionKey([9; 32]);
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
    let put: super::store::Change =
        Box::new(move |_| super::store::Write::Put(Box::new(entry.clone())));
    journal.store().update([1; 32], true, put).await.unwrap();
    // Full: a second entry is refused, and the request would go on unjournaled.
    let full = journal.open([2; 32], opening("k2", true)).await;
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

#[tokio::test]
async fn a_journal_of_one_process_always_grants_the_lease_and_acts_on_due_entries_only() {
    use super::lease::Taken;
    let journal = Journal::new(Arc::new(MemoryJournal::new(10)), Sealer::new(None));
    let ttl = Duration::from_secs(5);
    assert!(journal.lease([1; 32], ttl).await.unwrap());
    assert!(journal.lease([1; 32], ttl).await.unwrap());
    // Nothing there: leased, but nothing to act on.
    let absent = journal.under_lease([1; 32], ttl, |_, _| async {}).await;
    assert_eq!(absent.unwrap(), Taken::NotDue);
    let ticket = Ticket::new(journal.clone(), [1; 32], opening("k1", true));
    ticket.before_send().await;
    ticket.settle(Verdict::Unknown("lost".into()), 1, 0).await;
    let acted = journal.under_lease([1; 32], ttl, |e, _| async move {
        assert_eq!(e.key, "k1");
    });
    assert_eq!(acted.await.unwrap(), Taken::Acted);
}
