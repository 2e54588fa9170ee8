//! One suite of journal semantics, run against every backend (memory and embedded in the
//! unit tests, Redis in `tests/resolver_redis.rs` against a real server), so a backend cannot
//! drift from what the request path and the resolver rely on. Public, and hidden from the
//! docs, only so integration tests can reach it, as `idempotency::conformance` is.

use std::time::Duration;

use super::journal::Opening;
use super::report::Listing;
use super::{Entry, Id, Journal, Payload, State, Ticket, Verdict};

/// Opens an entry as the request path does: a ticket, written before its first attempt.
async fn open(journal: &Journal, id: Id, opening: Opening) -> Ticket {
    let ticket = journal.ticket(id, opening);
    ticket.before_send().await;
    ticket
}

/// A keyed charge's opening; with `resend`, its payload (an API key and a body) too.
pub fn opening(key: &str, resend: bool) -> Opening {
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

/// The lifecycle every backend must support, from an empty journal.
pub async fn lifecycle(journal: Journal) {
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
