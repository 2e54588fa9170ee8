//! One suite of store semantics, run against every backend, so a backend cannot drift from
//! the rules the request path relies on.

use std::future::Future;

use super::fingerprint::Digest;
use super::store::{BindRequest, Claim, ClaimRequest, Store, StoreError, StoredResponse};

const K: [u8; 32] = [1; 32];
const FP: [u8; 32] = [9; 32];

fn claim(owner: u128, lease_until: u64, now: u64) -> ClaimRequest<'static> {
    ClaimRequest {
        key: &K,
        fingerprint: &FP,
        owner,
        lease_until,
        now,
    }
}

fn response(body: &str) -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: body.as_bytes().to_vec(),
    }
}

/// Runs every case; `make(max_records)` builds a fresh, empty store.
pub async fn run_all<F, Fut, S>(make: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    claims_and_completion(&make(100).await).await;
    leases_expire_and_stale_owners_cannot_write(&make(100).await).await;
    release_frees_the_key_for_its_owner_only(&make(100).await).await;
    bindings_keep_the_first_key_until_they_expire(&make(100).await).await;
    expired_records_are_pruned(&make(100).await).await;
    the_bound_is_enforced(&make(2).await).await;
    claims_count_toward_the_bound(&make(2).await).await;
}

async fn claims_and_completion(store: &impl Store) {
    assert_eq!(store.claim(claim(1, 100, 0)).await.unwrap(), Claim::Claimed);
    assert_eq!(
        store.claim(claim(2, 100, 10)).await.unwrap(),
        Claim::InFlight { fingerprint: FP }
    );
    assert!(
        !store.complete(&K, 2, response("no"), 1000).await.unwrap(),
        "not the owner"
    );
    assert!(store.complete(&K, 1, response("yes"), 1000).await.unwrap());
    assert_eq!(
        store.claim(claim(3, 100, 20)).await.unwrap(),
        Claim::Completed {
            fingerprint: FP,
            response: response("yes")
        }
    );
    // Past its expiry the completed record no longer answers; the key starts afresh.
    assert_eq!(
        store.claim(claim(4, 2000, 1000)).await.unwrap(),
        Claim::Claimed
    );
}

async fn leases_expire_and_stale_owners_cannot_write(store: &impl Store) {
    assert_eq!(store.claim(claim(1, 100, 0)).await.unwrap(), Claim::Claimed);
    assert_eq!(
        store.claim(claim(2, 300, 100)).await.unwrap(),
        Claim::Claimed,
        "lease over"
    );
    assert!(
        !store
            .complete(&K, 1, response("stale"), 1000)
            .await
            .unwrap()
    );
    assert!(
        store
            .complete(&K, 2, response("fresh"), 1000)
            .await
            .unwrap()
    );
    let Claim::Completed { response: r, .. } = store.claim(claim(3, 400, 200)).await.unwrap()
    else {
        panic!("expected the completed record");
    };
    assert_eq!(r, response("fresh"));
}

async fn release_frees_the_key_for_its_owner_only(store: &impl Store) {
    assert_eq!(store.claim(claim(1, 100, 0)).await.unwrap(), Claim::Claimed);
    store.release(&K, 2).await.unwrap();
    assert_eq!(
        store.claim(claim(2, 100, 1)).await.unwrap(),
        Claim::InFlight { fingerprint: FP }
    );
    store.release(&K, 1).await.unwrap();
    assert_eq!(store.claim(claim(2, 100, 2)).await.unwrap(), Claim::Claimed);
}

/// A binding request without a key to replace.
fn bind<'a>(key: &'a Digest, candidate: &'a str, expires_at: u64, now: u64) -> BindRequest<'a> {
    BindRequest {
        key,
        candidate,
        expires_at,
        now,
        replace: None,
    }
}

async fn bindings_keep_the_first_key_until_they_expire(store: &impl Store) {
    let b = [5u8; 32];
    assert_eq!(
        store.bind(bind(&b, "first", 100, 0)).await.unwrap(),
        "first"
    );
    assert_eq!(
        store.bind(bind(&b, "second", 100, 50)).await.unwrap(),
        "first"
    );
    assert_eq!(
        store.bind(bind(&b, "third", 300, 100)).await.unwrap(),
        "third"
    );
    // A binding is replaced only when it names the key to replace.
    let other = BindRequest {
        replace: Some("first"),
        ..bind(&b, "fourth", 400, 150)
    };
    assert_eq!(store.bind(other).await.unwrap(), "third");
    let named = BindRequest {
        replace: Some("third"),
        ..bind(&b, "fourth", 400, 150)
    };
    assert_eq!(store.bind(named).await.unwrap(), "fourth");
    assert_eq!(
        store.bind(bind(&b, "fifth", 400, 160)).await.unwrap(),
        "fourth"
    );
}

async fn expired_records_are_pruned(store: &impl Store) {
    store.claim(claim(1, 100, 0)).await.unwrap();
    store.bind(bind(&[2; 32], "k", 500, 0)).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 2);
    assert_eq!(store.prune(50).await.unwrap(), 0);
    assert_eq!(store.prune(200).await.unwrap(), 1, "the lapsed claim goes");
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(store.prune(500).await.unwrap(), 1);
    assert_eq!(store.count().await.unwrap(), 0);
}

async fn the_bound_is_enforced(store: &impl Store) {
    store.bind(bind(&[1; 32], "a", 100, 0)).await.unwrap();
    store.bind(bind(&[2; 32], "b", 1000, 0)).await.unwrap();
    let full = store.bind(bind(&[3; 32], "c", 1000, 10)).await;
    assert!(matches!(full, Err(StoreError::Full(_))), "{full:?}");
    // An existing key can still be updated at the bound.
    assert_eq!(
        store.bind(bind(&[2; 32], "b2", 1000, 10)).await.unwrap(),
        "b"
    );
    // Expired records are not cleared on the request path; once pruned there is room again.
    assert!(matches!(
        store.bind(bind(&[3; 32], "c", 1000, 200)).await,
        Err(StoreError::Full(_))
    ));
    assert_eq!(store.prune(200).await.unwrap(), 1);
    assert_eq!(
        store.bind(bind(&[3; 32], "c", 1000, 200)).await.unwrap(),
        "c"
    );
}

async fn claims_count_toward_the_bound(store: &impl Store) {
    let other = [3u8; 32];
    let claim_other = |owner| ClaimRequest {
        key: &other,
        ..claim(owner, 100, 0)
    };
    store.bind(bind(&[2; 32], "b", 1000, 0)).await.unwrap();
    assert_eq!(store.claim(claim(1, 100, 0)).await.unwrap(), Claim::Claimed);
    let full = store.claim(claim_other(2)).await;
    assert!(matches!(full, Err(StoreError::Full(_))), "{full:?}");
    // A released claim makes room; a completion takes the place its claim held.
    store.release(&K, 1).await.unwrap();
    assert_eq!(store.claim(claim_other(2)).await.unwrap(), Claim::Claimed);
    assert!(
        store
            .complete(&other, 2, response("x"), 1000)
            .await
            .unwrap()
    );
    assert_eq!(store.count().await.unwrap(), 2);
}
