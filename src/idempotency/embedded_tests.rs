//! The embedded store: the conformance suite, what survives reopening its file, and what a
//! claim costs the file (nothing) and shows a concurrent claimer (in flight or completed).

use super::*;

#[tokio::test]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    super::super::conformance::run_all(|max| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = dir.path().join(format!("store-{n}.redb"));
        async move { EmbeddedStore::open(&path, max).unwrap() }
    })
    .await;
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

fn claim_of(key: &[u8; 32], owner: u128) -> ClaimRequest<'_> {
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
    assert_eq!(store.claim(claim_of(&kept, 1)).await.unwrap(), Claim::Claimed);
    assert_eq!(store.claim(claim_of(&lost, 1)).await.unwrap(), Claim::Claimed);
    store.release(&lost, 1).await.unwrap();
    assert_eq!(file.commits(), 0, "claims and releases stay off the file");
    assert!(store.complete(&kept, 1, ok_response(), 5_000).await.unwrap());
    assert_eq!(file.commits(), 1, "the completion is the one write");
    assert_eq!(store.claim(claim_of(&lost, 2)).await.unwrap(), Claim::Claimed);
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
    let store = std::sync::Arc::new(EmbeddedStore::open(&dir.path().join("s.redb"), 100).unwrap());
    for round in 0..50u8 {
        let key = [round; 32];
        assert_eq!(store.claim(claim_of(&key, 1)).await.unwrap(), Claim::Claimed);
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
