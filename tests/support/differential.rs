//! The differential test every shared backend runs against the memory store.

use payguard::idempotency::memory::MemoryStore;
use payguard::idempotency::store::{BindRequest, ClaimRequest, Store, StoredResponse};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn response(n: u32) -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

/// Runs the same 1500 random operations on `store` (bounded at 6 records) and on a memory
/// store, and asserts every answer and record count agree: a backend that expresses the
/// rules of store.rs in its own language (Lua, SQL) must decide exactly as they do.
pub async fn against_memory(store: &dyn Store, seed: u64, name: &str) {
    let memory = MemoryStore::new(6);
    let mut rng = StdRng::seed_from_u64(seed);
    let keys: Vec<[u8; 32]> = (0..8u8).map(|i| [i; 32]).collect();
    let prints = [[1u8; 32], [2u8; 32]];
    let mut now = 1_000u64;
    for step in 0..1500u32 {
        // Coarse steps, so times often fall exactly on a lease's or record's end: the
        // boundaries are where a backend could drift from the rules.
        now += 10 * rng.random_range(0..4);
        let key = &keys[rng.random_range(0..keys.len())];
        let owner = rng.random_range(1..4u128);
        let until = now + 10 * rng.random_range(1..12);
        let (op, a, b) = match rng.random_range(0..6) {
            0 | 1 => {
                let req = ClaimRequest {
                    key,
                    fingerprint: &prints[rng.random_range(0..2)],
                    owner,
                    lease_until: until,
                    now,
                };
                let (a, b) = (memory.claim(req).await, store.claim(req).await);
                ("claim", format!("{a:?}"), format!("{b:?}"))
            }
            2 => {
                let r = response(step);
                let a = memory.complete(key, owner, r.clone(), until).await;
                let b = store.complete(key, owner, r, until).await;
                ("complete", format!("{a:?}"), format!("{b:?}"))
            }
            3 => {
                let a = memory.release(key, owner).await;
                let b = store.release(key, owner).await;
                ("release", format!("{a:?}"), format!("{b:?}"))
            }
            4 => {
                let candidate = format!("k{step}");
                // Every other bind replaces a recent candidate, which may or may not be bound.
                let replaced = format!("k{}", step.saturating_sub(4));
                let req = BindRequest {
                    key,
                    candidate: &candidate,
                    expires_at: until,
                    now,
                    replace: (step % 2 == 0).then_some(replaced.as_str()),
                };
                let a = memory.bind(req).await;
                let b = store.bind(req).await;
                ("bind", format!("{a:?}"), format!("{b:?}"))
            }
            _ => {
                let a = memory.prune(now).await;
                let b = store.prune(now).await;
                ("prune", format!("{a:?}"), format!("{b:?}"))
            }
        };
        assert_eq!(a, b, "step {step}: {op}: memory and {name} disagree");
        assert_eq!(
            memory.count().await.unwrap(),
            store.count().await.unwrap(),
            "step {step}: record counts differ"
        );
    }
}
