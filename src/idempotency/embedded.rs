//! The embedded durable store, the default: one redb file on a volume that survives a
//! container restart, so replays and keyless bindings outlive a crash of payguard.
//!
//! redb is synchronous, so each operation runs on tokio's blocking pool. Which writes are
//! fsync'd (`Durability::Immediate`) follows from what a crash may lose:
//!
//! - a binding for a keyless request must be on disk before its first attempt leaves, or a
//!   crash could let the app's resend through under a new key: durable;
//! - a completed record is what replays are served from after a restart: durable;
//! - a claim (the key is in flight) and its release need not be: after a crash the app's
//!   retry finds no claim and is forwarded under the same key, which the provider
//!   deduplicates. They commit without fsync (`Durability::None`), and reach the disk with
//!   the next durable commit. That halves the fsyncs of a keyed request.
//!
//! Reads that need no write (a replay, a key still in flight) use a read transaction and cost
//! no fsync; that keeps coalesced waiters cheap.
//!
//! Writes go through the file's one writer ([`super::writer`]), which commits whatever writes
//! are queued together in one transaction: concurrent completions (and journal writes) share
//! one fsync instead of queueing behind each other's.

use std::path::Path;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::fingerprint::Digest;
use super::store::{
    BindRequest, Claim, ClaimRequest, Record, Store, StoreError, StoreFuture, StoredResponse,
};
use super::store::{decide_complete, owns};
use super::writer::{StoreFile, WriteFailed};

const CACHE_BYTES: usize = 16 * 1024 * 1024;

const RECORDS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("records");

pub struct EmbeddedStore {
    file: StoreFile,
    max_records: usize,
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
        Ok(EmbeddedStore { file, max_records })
    }

    /// The open file, for other tables kept in it (the resolver's journal): they share its
    /// writer, so their writes commit in the same transactions as the records'.
    pub fn database(&self) -> StoreFile {
        self.file.clone()
    }

    /// Runs `f` on the blocking pool with the database (reads, and the claim's look before
    /// it writes).
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

    fn read(db: &Database, key: &Digest) -> Result<Option<Record>, StoreError> {
        let txn = db.begin_read().map_err(backend)?;
        let table = txn.open_table(RECORDS).map_err(backend)?;
        let value = table.get(key).map_err(backend)?;
        value.map(|v| Record::decode(v.value())).transpose()
    }

    /// Reads, decides and writes one key, in the writer's transaction. The write is the last
    /// step, so a failure has written nothing (the writer's contract).
    fn update<T>(
        txn: &WriteTransaction,
        key: &Digest,
        max_records: usize,
        decide: impl FnOnce(Option<Record>) -> (T, Option<Record>),
    ) -> Result<T, StoreError> {
        let answer = {
            let mut table = txn.open_table(RECORDS).map_err(backend)?;
            let existing = table
                .get(key)
                .map_err(backend)?
                .map(|v| Record::decode(v.value()))
                .transpose()?;
            let is_new = existing.is_none();
            let (answer, write) = decide(existing);
            if let Some(record) = write {
                // At the bound, refuse; expired records go in the periodic prune, never in a
                // scan on the request path.
                if is_new && table.len().map_err(backend)? as usize >= max_records {
                    return Err(StoreError::Full(max_records));
                }
                table
                    .insert(key, record.encode()?.as_slice())
                    .map_err(backend)?;
            }
            answer
        };
        Ok(answer)
    }
}

impl Store for EmbeddedStore {
    fn claim<'a>(&'a self, req: ClaimRequest<'a>) -> StoreFuture<'a, Claim> {
        let (key, max, rule) = (*req.key, self.max_records, req.rule());
        let file = self.file.clone();
        Box::pin(async move {
            // Fast path without a write: a live record just answers.
            let look = rule.clone();
            let looked = self.blocking(move |db| {
                Ok(match look(Self::read(db, &key)?) {
                    (answer, None) => Some(answer),
                    _ => None,
                })
            });
            if let Some(answer) = looked.await? {
                return Ok(answer);
            }
            // Not fsync'd: a lost claim is harmless (see above).
            file.write(false, move |txn| Self::update(txn, &key, max, rule))
                .await
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a Digest,
        owner: u128,
        response: StoredResponse,
        expires_at: u64,
    ) -> StoreFuture<'a, bool> {
        let (key, max) = (*key, self.max_records);
        Box::pin(self.file.write(true, move |txn| {
            Self::update(txn, &key, max, |existing| {
                decide_complete(existing, owner, response, expires_at)
            })
        }))
    }

    fn release<'a>(&'a self, key: &'a Digest, owner: u128) -> StoreFuture<'a, ()> {
        let (key, file) = (*key, self.file.clone());
        Box::pin(async move {
            let owned = self.blocking(move |db| Ok(owns(Self::read(db, &key)?.as_ref(), owner)));
            if !owned.await? {
                return Ok(());
            }
            // Not fsync'd, like the claim it releases.
            file.write(false, move |txn| {
                let mut table = txn.open_table(RECORDS).map_err(backend)?;
                let current = table
                    .get(&key)
                    .map_err(backend)?
                    .map(|v| Record::decode(v.value()))
                    .transpose()?;
                if owns(current.as_ref(), owner) {
                    table.remove(&key).map_err(backend)?;
                }
                Ok(())
            })
            .await
        })
    }

    fn bind<'a>(&'a self, req: BindRequest<'a>) -> StoreFuture<'a, String> {
        let (key, max, rule) = (*req.key, self.max_records, req.rule());
        Box::pin(
            self.file
                .write(true, move |txn| Self::update(txn, &key, max, rule)),
        )
    }

    fn prune(&self, now: u64) -> StoreFuture<'_, usize> {
        // Durable, as it was alone: a pruned record must not come back after a crash half way.
        Box::pin(self.file.write(true, move |txn| {
            let mut table = txn.open_table(RECORDS).map_err(backend)?;
            let before = table.len().map_err(backend)?;
            table.retain(|_, v| !expired(v, now)).map_err(backend)?;
            Ok((before - table.len().map_err(backend)?) as usize)
        }))
    }

    fn count(&self) -> StoreFuture<'_, usize> {
        Box::pin(self.blocking(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(RECORDS).map_err(backend)?;
            Ok(table.len().map_err(backend)? as usize)
        }))
    }
}

#[cfg(test)]
#[path = "embedded_tests.rs"]
mod tests;
