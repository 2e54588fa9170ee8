//! The embedded durable store, the default: one redb file on a volume that survives a
//! container restart, so replays and keyless bindings outlive a crash of payguard.
//!
//! What goes in the file, and how durably, follows from what a crash may lose:
//!
//! - a binding for a keyless request must be on disk before its first attempt leaves, or a
//!   crash could let the app's resend through under a new key: written with fsync
//!   (`Durability::Immediate`);
//! - a completed record is what replays are served from after a restart: fsync'd too;
//! - a claim (the key is in flight) need not survive at all: after a crash the app's retry
//!   finds no claim and is forwarded under the same key, which the provider deduplicates.
//!   So claims never touch the file. They are kept in a map in this process, which is the
//!   file's only user (redb locks it), so the map sees every claim there is. A keyed request
//!   then costs one read of the file and one durable write (its completion), not three
//!   transactions, and a release or a duplicate that finds the key in flight costs none.
//!
//! A claim and the file must agree on what a claimer sees: a completion commits its record
//! first and drops the claim only once the record is visible (on the writer, right after the
//! commit), and a claim looks at the map and reads the file under the map's lock. So a claim
//! finds the key in flight, or completed, never neither.
//!
//! Reads run on tokio's blocking pool (redb is synchronous). Writes go through the file's one
//! writer ([`super::writer`]), which commits whatever writes are queued together in one
//! transaction: concurrent completions (and journal writes) share one fsync instead of
//! queueing behind each other's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::fingerprint::Digest;
use super::store::{
    BindRequest, Claim, ClaimRequest, Record, Store, StoreError, StoreFuture, StoredResponse,
};
use super::writer::{StoreFile, WriteFailed};

const CACHE_BYTES: usize = 16 * 1024 * 1024;

const RECORDS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("records");

pub struct EmbeddedStore {
    file: StoreFile,
    claims: Claims,
    max_records: usize,
}

/// A key in flight in this process: who holds it, for what, until when.
#[derive(Clone, Copy)]
struct Held {
    fingerprint: Digest,
    owner: u128,
    lease_until: u64,
}

/// The claims, shared with the writer's after-commit step of a completion.
#[derive(Clone, Default)]
struct Claims(Arc<Mutex<HashMap<Digest, Held>>>);

impl Claims {
    fn lock(&self) -> MutexGuard<'_, HashMap<Digest, Held>> {
        // Every change replaces or removes a whole entry, so a panic under the lock leaves
        // the map consistent: keep serving.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops `owner`'s claim of `key`; a claim taken over by another owner stays.
    fn drop_owned(&self, key: &Digest, owner: u128) {
        let mut claims = self.lock();
        if claims.get(key).is_some_and(|held| held.owner == owner) {
            claims.remove(key);
        }
    }
}

/// Whether an encoded record has expired. One that cannot be decoded (written by an
/// incompatible version) is treated as expired, so pruning clears it instead of failing.
fn expired(encoded: &[u8], now: u64) -> bool {
    Record::decode(encoded).map_or(true, |r| r.expired(now))
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl From<WriteFailed> for StoreError {
    fn from(e: WriteFailed) -> StoreError {
        StoreError::Backend(e.0)
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store file, creating its directory when needed.
    pub fn open(path: &Path, max_records: usize) -> Result<EmbeddedStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| backend(format!("creating {}: {e}", dir.display())))?;
        }
        // redb's page cache defaults to 1 GiB; a sidecar with a small memory limit needs a cap.
        // Records are small and hot keys are recent, so a modest cache holds the working set.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| backend(format!("opening {}: {e}", path.display())))?;
        // Create the table up front so read transactions never meet a missing table.
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(RECORDS).map_err(backend)?;
        txn.commit().map_err(backend)?;
        let file = StoreFile::new(db).map_err(|e| backend(format!("starting the writer: {e}")))?;
        Ok(EmbeddedStore {
            file,
            claims: Claims::default(),
            max_records,
        })
    }

    /// The open file, for other tables kept in it (the resolver's journal): they share its
    /// writer, so their writes commit in the same transactions as the records'.
    pub fn database(&self) -> StoreFile {
        self.file.clone()
    }

    /// Runs `f` on the blocking pool with the database.
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.file.db().clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| backend(format!("store task failed: {e}")))?
    }

    /// The record under `key` in the file, and how many records the file holds.
    fn read(db: &Database, key: &Digest) -> Result<(Option<Record>, usize), StoreError> {
        let txn = db.begin_read().map_err(backend)?;
        let table = txn.open_table(RECORDS).map_err(backend)?;
        let value = table.get(key).map_err(backend)?;
        let record = value.map(|v| Record::decode(v.value())).transpose()?;
        Ok((record, table.len().map_err(backend)? as usize))
    }

    /// Inserts `record` under `key` in the writer's transaction; the insert is the last step,
    /// so a failure has written nothing (the writer's contract).
    fn put(txn: &WriteTransaction, key: &Digest, record: &Record) -> Result<(), StoreError> {
        let encoded = record.encode()?;
        let mut table = txn.open_table(RECORDS).map_err(backend)?;
        table.insert(key, encoded.as_slice()).map_err(backend)?;
        Ok(())
    }
}

impl Store for EmbeddedStore {
    fn claim<'a>(&'a self, req: ClaimRequest<'a>) -> StoreFuture<'a, Claim> {
        let (key, now, max, rule) = (*req.key, req.now, self.max_records, req.rule());
        // A duplicate of a key in flight here is answered from the map, without a read.
        if let Some(held) = self.claims.lock().get(&key).filter(|h| h.lease_until > now) {
            let answer = Claim::InFlight {
                fingerprint: held.fingerprint,
            };
            return Box::pin(async move { Ok(answer) });
        }
        let claims = self.claims.clone();
        Box::pin(self.blocking(move |db| {
            // Under the lock from the look to the insert, so two claims cannot both win, and
            // a completion cannot drop its claim between our look at the map and at the file.
            let mut held = claims.lock();
            let (in_file, stored) = Self::read(db, &key)?;
            let live = held.get(&key).filter(|h| h.lease_until > now);
            let existing = match live {
                Some(h) => Some(Record::InFlight {
                    fingerprint: h.fingerprint,
                    owner: h.owner,
                    lease_until: h.lease_until,
                }),
                // An expired claim of ours is taken over like any expired record.
                None => in_file,
            };
            let (answer, write) = rule(existing);
            if let Some(Record::InFlight {
                fingerprint,
                owner,
                lease_until,
            }) = write
            {
                // At the bound, refuse; expired records go in the periodic prune, never in a
                // scan on the request path.
                if !held.contains_key(&key) && held.len() + stored >= max {
                    return Err(StoreError::Full(max));
                }
                let claim = Held {
                    fingerprint,
                    owner,
                    lease_until,
                };
                held.insert(key, claim);
            }
            Ok(answer)
        }))
    }

    fn complete<'a>(
        &'a self,
        key: &'a Digest,
        owner: u128,
        response: StoredResponse,
        expires_at: u64,
    ) -> StoreFuture<'a, bool> {
        let (key, claims, settled) = (*key, self.claims.clone(), self.claims.clone());
        let write = move |txn: &WriteTransaction| {
            // Only the owner's claim becomes a record; one taken over after its lease ran out
            // belongs to the newer owner.
            let fingerprint = match claims.lock().get(&key) {
                Some(held) if held.owner == owner => held.fingerprint,
                _ => return Ok(false),
            };
            let record = Record::Completed {
                fingerprint,
                response,
                expires_at,
            };
            Self::put(txn, &key, &record).map(|()| true)
        };
        // The claim goes once the record is committed, so claimers always see one of the two.
        let then = move |done: &Result<bool, StoreError>| {
            if matches!(done, Ok(true)) {
                settled.drop_owned(&key, owner);
            }
        };
        Box::pin(self.file.write_then(true, write, then))
    }

    fn release<'a>(&'a self, key: &'a Digest, owner: u128) -> StoreFuture<'a, ()> {
        self.claims.drop_owned(key, owner);
        Box::pin(async { Ok(()) })
    }

    fn bind<'a>(&'a self, req: BindRequest<'a>) -> StoreFuture<'a, String> {
        let (key, max, rule) = (*req.key, self.max_records, req.rule());
        let claims = self.claims.clone();
        Box::pin(self.file.write(true, move |txn| {
            let (bound, write) = {
                let table = txn.open_table(RECORDS).map_err(backend)?;
                let existing = table.get(&key).map_err(backend)?;
                let is_new = existing.is_none();
                let existing = existing.map(|v| Record::decode(v.value())).transpose()?;
                let stored = table.len().map_err(backend)? as usize;
                let (bound, write) = rule(existing);
                if write.is_some() && is_new && stored + claims.lock().len() >= max {
                    return Err(StoreError::Full(max));
                }
                (bound, write)
            };
            if let Some(record) = write {
                Self::put(txn, &key, &record)?;
            }
            Ok(bound)
        }))
    }

    fn prune(&self, now: u64) -> StoreFuture<'_, usize> {
        let dropped = {
            let mut claims = self.claims.lock();
            let before = claims.len();
            claims.retain(|_, held| held.lease_until > now);
            before - claims.len()
        };
        // Durable, as it was alone: a pruned record must not come back after a crash half way.
        Box::pin(self.file.write(true, move |txn| {
            let mut table = txn.open_table(RECORDS).map_err(backend)?;
            let before = table.len().map_err(backend)?;
            table.retain(|_, v| !expired(v, now)).map_err(backend)?;
            Ok(dropped + (before - table.len().map_err(backend)?) as usize)
        }))
    }

    fn count(&self) -> StoreFuture<'_, usize> {
        let claims = self.claims.clone();
        Box::pin(self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(RECORDS).map_err(backend)?;
            Ok(table.len().map_err(backend)? as usize + claims.lock().len())
        }))
    }
}

#[cfg(test)]
#[path = "embedded_tests.rs"]
mod tests;
