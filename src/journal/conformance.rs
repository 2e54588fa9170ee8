//! One suite of journal semantics, run against every backend (memory and embedded in the
//! unit tests, Redis in `tests/resolver_redis.rs` against a real server), so a backend cannot
//! drift from what the request path and the resolver rely on. Public, and hidden from the
//! docs, only so integration tests can reach it, as `idempotency::conformance` is.

use std::time::Duration;

use super::lease::Taken;
use super::{Entry, Id, Journal, Opening, Payload, State, Ticket, Verdict};

/// Opens an entry as the request path does: a ticket, written before its first attempt.
async fn open(journal: &Journal, id: Id, opening: Opening) -> Ticket {
    let ticket = Ticket::new(journal.clone(), id, opening);
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
    drop(Ticket::new(journal.clone(), [7; 32], opening("k7", true)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let listed = journal.list().await.unwrap();
    assert!(listed.iter().all(|(id, _)| *id != [7; 32]));
}

/// What a backend shared by several processes must add: `a` and `b` are two processes'
/// journals on one empty backend, with the same sealing key. Each sees and changes the
/// other's entries, and the resolver's lease lets one of them at a time act on an entry.
pub async fn shared(a: Journal, b: Journal) {
    let unknown = || Verdict::Unknown("connection lost".into());
    // An entry one replica left pending is listed, readable and given up by the other.
    let t = open(&a, [1; 32], opening("s1", true)).await;
    t.settle(unknown(), 1, 0).await;
    let listed = b.list().await.unwrap();
    let (id, entry) = listed.iter().find(|(id, _)| *id == [1; 32]).unwrap();
    assert_eq!(entry.state.label(), "pending");
    assert_eq!(b.payload(id, entry).unwrap().unwrap().body, b"amount=1");
    let gave_up = b
        .modify([1; 32], true, |e| {
            e.finish(
                State::GaveUp {
                    reason: super::GiveUp::Operator,
                },
                1,
            );
            true
        })
        .await
        .unwrap();
    assert!(gave_up.is_some());
    let seen = a.get([1; 32]).await.unwrap().unwrap();
    assert_eq!((seen.state.label(), seen.payload), ("gave_up", None));

    // Updates of one entry from both at once are atomic: none is lost.
    let t = open(&a, [4; 32], opening("s4", true)).await;
    t.settle(unknown(), 0, 0).await;
    let bump = |journal: &Journal| {
        let journal = journal.clone();
        async move {
            let bumped = journal.modify([4; 32], false, |e| {
                e.attempts += 1;
                true
            });
            bumped.await.unwrap();
        }
    };
    let bumps: Vec<_> = (0..20)
        .map(|i| tokio::spawn(bump(if i % 2 == 0 { &a } else { &b })))
        .collect();
    for bump in bumps {
        bump.await.unwrap();
    }
    assert_eq!(b.get([4; 32]).await.unwrap().unwrap().attempts, 20);

    // One holder at a time; the holder may renew; a release lets the other in.
    let long = Duration::from_secs(30);
    assert!(a.lease([2; 32], long).await.unwrap());
    assert!(!b.lease([2; 32], long).await.unwrap(), "a holds it");
    assert!(a.lease([2; 32], long).await.unwrap(), "a renews its own");
    b.release([2; 32]).await.unwrap();
    assert!(
        !b.lease([2; 32], long).await.unwrap(),
        "b cannot release a's"
    );
    a.release([2; 32]).await.unwrap();
    assert!(b.lease([2; 32], long).await.unwrap());
    assert!(!a.lease([2; 32], long).await.unwrap());

    // A holder that never gives its lease back (it died) keeps it only until it runs out.
    assert!(a.lease([3; 32], Duration::from_millis(200)).await.unwrap());
    assert!(!b.lease([3; 32], long).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.lease([3; 32], long).await.unwrap());

    // Two resolvers reach the same due entry at once: one acts, the other skips it. The one
    // that acts takes a while, as a re-send does, and leaves the entry not due.
    for n in 10..30u8 {
        let t = open(&a, [n; 32], opening(&format!("race{n}"), true)).await;
        t.settle(unknown(), 1, 0).await;
        let act = |journal: &Journal| {
            let journal = journal.clone();
            move |_: Entry, now: u64| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let stepped = journal.modify([n; 32], false, move |e| {
                    e.rounds += 1;
                    e.state = State::Pending {
                        next_at: now + 3_600_000,
                    };
                    true
                });
                stepped.await.unwrap();
            }
        };
        let (x, y) = tokio::join!(
            a.under_lease([n; 32], long, act(&a)),
            b.under_lease([n; 32], long, act(&b)),
        );
        let mut taken = [x.unwrap(), y.unwrap()];
        taken.sort_by_key(|t| *t as u8);
        assert_eq!(taken, [Taken::Acted, Taken::Elsewhere], "entry {n}");
        assert_eq!(b.get([n; 32]).await.unwrap().unwrap().rounds, 1);
        // Given back: the next round finds it leased by nobody, and no longer due.
        let again = b.under_lease([n; 32], long, act(&b)).await.unwrap();
        assert_eq!(again, Taken::NotDue);
    }
}
