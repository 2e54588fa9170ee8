//! The in-memory store: a map under a mutex. For tests and for deployments that accept losing
//! records on restart (the provider still deduplicates by key for 24 hours).
//!
//! A std `Mutex`, not tokio's: every operation is a short map access that never awaits while
//! holding the lock, which is exactly the case the std mutex is cheaper for.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::fingerprint::Digest;
use super::store::{
    BindRequest, Claim, ClaimRequest, Record, Store, StoreError, StoreFuture, StoredResponse,
};
use super::store::{decide_bind, decide_claim, decide_complete, owns};

pub struct MemoryStore {
    records: Mutex<HashMap<Digest, Record>>,
    max_records: usize,
}

impl MemoryStore {
    pub fn new(max_records: usize) -> MemoryStore {
        MemoryStore {
            records: Mutex::new(HashMap::new()),
            max_records,
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<Digest, Record>> {
        // A panic while holding the lock cannot leave a half-written record: each operation
        // replaces whole values. So a poisoned map is still consistent; keep serving.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses a new key when the map is at its bound. Expired records are removed by the
    /// periodic prune, never here: a scan on the request path would make every request pay
    /// for a full store.
    fn make_room(&self, map: &HashMap<Digest, Record>, key: &Digest) -> Result<(), StoreError> {
        if map.len() < self.max_records || map.contains_key(key) {
            Ok(())
        } else {
            Err(StoreError::Full(map.len()))
        }
    }
}

impl Store for MemoryStore {
    fn claim<'a>(&'a self, req: ClaimRequest<'a>) -> StoreFuture<'a, Claim> {
        let result = (|| {
            let mut map = self.map();
            let (claim, write) = decide_claim(map.get(req.key).cloned(), &req);
            if let Some(record) = write {
                self.make_room(&map, req.key)?;
                map.insert(*req.key, record);
            }
            Ok(claim)
        })();
        Box::pin(async move { result })
    }

    fn complete<'a>(
        &'a self,
        key: &'a Digest,
        owner: u128,
        response: StoredResponse,
        expires_at: u64,
    ) -> StoreFuture<'a, bool> {
        let mut map = self.map();
        let (done, write) = decide_complete(map.get(key).cloned(), owner, response, expires_at);
        if let Some(record) = write {
            map.insert(*key, record);
        }
        Box::pin(async move { Ok(done) })
    }

    fn release<'a>(&'a self, key: &'a Digest, owner: u128) -> StoreFuture<'a, ()> {
        let mut map = self.map();
        if owns(map.get(key), owner) {
            map.remove(key);
        }
        Box::pin(async { Ok(()) })
    }

    fn bind<'a>(&'a self, req: BindRequest<'a>) -> StoreFuture<'a, String> {
        let result = (|| {
            let mut map = self.map();
            let (bound, write) = decide_bind(map.get(req.key).cloned(), &req);
            if let Some(record) = write {
                self.make_room(&map, req.key)?;
                map.insert(*req.key, record);
            }
            Ok(bound)
        })();
        Box::pin(async move { result })
    }

    fn prune(&self, now: u64) -> StoreFuture<'_, usize> {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, r| !r.expired(now));
        let removed = before - map.len();
        Box::pin(async move { Ok(removed) })
    }

    fn count(&self) -> StoreFuture<'_, usize> {
        let len = self.map().len();
        Box::pin(async move { Ok(len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_conforms() {
        super::super::conformance::run_all(|max| async move { MemoryStore::new(max) }).await;
    }
}
