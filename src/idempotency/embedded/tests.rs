//! The embedded store: the conformance suite, what survives reopening its file, and what a
//! claim costs the file (nothing) and shows a concurrent claimer (in flight or completed).

use super::*;

/// Opens a store and waits until its key filter is built, so claims of new keys skip the
/// file: the path a running store takes.
async fn open_indexed(path: &std::path::Path, max: usize) -> EmbeddedStore {
    let store = EmbeddedStore::open(path, max).unwrap();
    for _ in 0..1_000 {
        if store.indexed() {
            return store;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the key filter was not built within 5 s");
}

#[tokio::test]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    // Twice: as soon as the store is open (claims may still read the file), and once its key
    // filter is built (claims of new keys read nothing).
    for indexed in [false, true] {
        super::super::conformance::run_all(|max| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.path().join(format!("store-{n}.redb"));
            async move {
                match indexed {
                    true => open_indexed(&path, max).await,
                    false => EmbeddedStore::open(&path, max).unwrap(),
                }
            }
        })
        .await;
    }
}

#[tokio::test]
async fn the_filter_built_at_open_knows_every_stored_key_and_the_prune_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let keys: Vec<[u8; 32]> = (0..300u64)
        .map(|i| super::super::fingerprint::record_key(&[3; 32], &i.to_le_bytes()))
        .collect();
    let store = EmbeddedStore::open(&path, 1_000).unwrap();
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(store.claim(claim_of(k, 1)).await.unwrap(), Claim::Claimed);
        // The first half lapses at 1,000, the rest lives on.
        let expires = if i < 150 { 1_000 } else { 1_000_000 };
        assert!(store.complete(k, 1, ok_response(), expires).await.unwrap());
    }
    drop(store);
    let store = open_indexed(&path, 1_000).await;
    let at = |now| ClaimRequest {
        now,
        lease_until: now + 100,
        ..claim_of(&keys[0], 2)
    };
    for k in &keys {
        let replayed = store.claim(ClaimRequest { key: k, ..at(0) }).await.unwrap();
        assert!(matches!(replayed, Claim::Completed { .. }), "{replayed:?}");
    }
    assert_eq!(store.prune(2_000).await.unwrap(), 150);
    for (i, k) in keys.iter().enumerate() {
        let answer = store
            .claim(ClaimRequest {
                key: k,
                ..at(2_000)
            })
            .await
            .unwrap();
        match i < 150 {
            true => assert_eq!(answer, Claim::Claimed, "key {i} was pruned"),
            false => assert!(
                matches!(answer, Claim::Completed { .. }),
                "key {i}: {answer:?}"
            ),
        }
    }
}

#[tokio::test]
async fn records_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/store.redb");
    let key = [7u8; 32];
    let store = EmbeddedStore::open(&path, 10).unwrap();
    let req = ClaimRequest {
        key: &key,
        fingerprint: &[1; 32],
        owner: 1,
        lease_until: 1_000,
        now: 0,
    };
    assert_eq!(store.claim(req).await.unwrap(), Claim::Claimed);
    let response = StoredResponse {
        status: 200,
        headers: vec![],
        body: b"{}".to_vec(),
    };
    assert!(
        store
            .complete(&key, 1, response.clone(), 5_000)
            .await
            .unwrap()
    );
    drop(store);
    let reopened = EmbeddedStore::open(&path, 10).unwrap();
    let again = reopened
        .claim(ClaimRequest { owner: 2, ..req })
        .await
        .unwrap();
    assert_eq!(
        again,
        Claim::Completed {
            fingerprint: [1; 32],
            response
        }
    );
}

/// A claim of `key` by `owner` whose lease never ends (also the writer's tests').
pub(crate) fn claim_of(key: &[u8; 32], owner: u128) -> ClaimRequest<'_> {
    ClaimRequest {
        key,
        fingerprint: &[1; 32],
        owner,
        lease_until: u64::MAX,
        now: 0,
    }
}

fn ok_response() -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![],
        body: b"{}".to_vec(),
    }
}

#[tokio::test]
async fn a_claim_writes_nothing_and_is_lost_on_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = EmbeddedStore::open(&path, 10).unwrap();
    let file = store.database();
    let (kept, lost) = ([1u8; 32], [2u8; 32]);
    assert_eq!(
        store.claim(claim_of(&kept, 1)).await.unwrap(),
        Claim::Claimed
    );
    assert_eq!(
        store.claim(claim_of(&lost, 1)).await.unwrap(),
        Claim::Claimed
    );
    store.release(&lost, 1).await.unwrap();
    assert_eq!(file.commits(), 0, "claims and releases stay off the file");
    assert!(
        store
            .complete(&kept, 1, ok_response(), 5_000)
            .await
            .unwrap()
    );
    assert_eq!(file.commits(), 1, "the completion is the one write");
    assert_eq!(
        store.claim(claim_of(&lost, 2)).await.unwrap(),
        Claim::Claimed
    );
    drop((store, file));
    // A crash loses the claim, which is harmless: the retry is forwarded under its key.
    let reopened = EmbeddedStore::open(&path, 10).unwrap();
    assert_eq!(
        reopened.claim(claim_of(&lost, 3)).await.unwrap(),
        Claim::Claimed
    );
    assert!(matches!(
        reopened.claim(claim_of(&kept, 3)).await.unwrap(),
        Claim::Completed { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_racing_a_completion_sees_it_in_flight_or_completed() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(open_indexed(&dir.path().join("s.redb"), 100).await);
    for round in 0..50u8 {
        let key = [round; 32];
        assert_eq!(
            store.claim(claim_of(&key, 1)).await.unwrap(),
            Claim::Claimed
        );
        let claimers: Vec<_> = (0..4u128)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    loop {
                        match store.claim(claim_of(&key, 10 + i)).await.unwrap() {
                            Claim::InFlight { .. } => tokio::task::yield_now().await,
                            Claim::Completed { .. } => return,
                            Claim::Claimed => panic!("round {round}: claimed a key in flight"),
                        }
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(store.complete(&key, 1, ok_response(), 5_000).await.unwrap());
        for claimer in claimers {
            claimer.await.unwrap();
        }
    }
}
