//! The embedded store: the conformance suite, and what survives reopening its file.

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
