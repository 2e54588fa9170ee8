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
//!   then costs one durable write (its completion) where it cost three transactions, and a
//!   release or a duplicate that finds the key in flight costs none.
//!
//! A claim and the file must agree on what a claimer sees: a completion commits its record
//! first and drops the claim only once the record is visible (on the writer, right after the
//! commit), and a claim that read the file while a claim of its key was dropped reads it
//! again ([`index::FileRead`]). So a claim finds the key in flight, or completed, never
//! neither.
//!
//! A claim of a key the file has no record under, the common case, reads nothing: a Bloom
//! filter of the file's keys says so ([`index`]). Other reads run on tokio's blocking pool
//! (redb is synchronous). Writes go through the file's one writer ([`super::writer`]), which
//! commits whatever writes are queued together in one transaction: concurrent completions
//! (and journal writes) share one fsync instead of queueing behind each other's.

mod index;

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::fingerprint::Digest;
use super::store::decide_complete;
use super::store::{
    BindRequest, Claim, ClaimRequest, Record, Store, StoreError, StoreFuture, StoredResponse,
};
use super::writer::{KeyTable, StoreFile, Tables, WriteFailed};
use index::{FileRead, Index, Indexer, KeyFilter};

const CACHE_BYTES: usize = 4 * 1024 * 1024;

const RECORDS: KeyTable = KeyTable::new("records");

pub struct EmbeddedStore {
    /// Dropped first: it stops its scan and lets go of the file before the writer does.
    _indexer: Indexer,
    file: StoreFile,
    index: Index,
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
        // The cache fills as the file grows, so its cap is what payguard's memory settles at:
        // 16 MiB took a 50,000-record store past 30 MiB RSS. Claims of new keys read nothing
        // (the key filter) and the writer's other reads come from the kernel's page cache,
        // so 4 MiB costs no latency (bench/overhead/keyed.sh: p50 3.19 ms against 3.21).
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| backend(format!("opening {}: {e}", path.display())))?;
        // Create the table up front so read transactions never meet a missing table.
        let txn = db.begin_write().map_err(backend)?;
        let stored = txn
            .open_table(RECORDS)
            .map_err(backend)?
            .len()
            .map_err(backend)?;
        txn.commit().map_err(backend)?;
        let file = StoreFile::new(db).map_err(|e| backend(format!("starting the writer: {e}")))?;
        let index = Index::new(max_records, stored as usize);
        let indexer = Indexer::start(file.db().clone(), index.clone())
            .map_err(|e| backend(format!("starting the indexer: {e}")))?;
        Ok(EmbeddedStore {
            _indexer: indexer,
            file,
            index,
            max_records,
        })
    }

    /// Whether the filter of the file's keys is complete, so new keys are claimed without a
    /// read (for tests: it is built in the background at open).
    #[cfg(test)]
    fn indexed(&self) -> bool {
        self.index.lock().indexed
    }

    /// The open file, for other tables kept in it (the resolver's journal): they share its
    /// writer, so their writes commit in the same transactions as the records'.
    pub fn database(&self) -> StoreFile {
        self.file.clone()
    }

    fn read(db: &Database, key: &Digest) -> Result<Option<Record>, StoreError> {
        let txn = db.begin_read().map_err(backend)?;
        let table = txn.open_table(RECORDS).map_err(backend)?;
        let value = table.get(key).map_err(backend)?;
        value.map(|v| Record::decode(v.value())).transpose()
    }

    /// Inserts `record` under `key` in the writer's transaction, and returns how many records
    /// the table then holds. The insert is the last step that can fail, so a failure has
    /// written nothing (the writer's contract).
    fn put(tables: &mut Tables<'_>, key: &Digest, record: &Record) -> Result<usize, StoreError> {
        let encoded = record.encode()?;
        let table = tables.open(RECORDS).map_err(backend)?;
        table.insert(key, encoded.as_slice()).map_err(backend)?;
        Ok(table.len().map_err(backend)? as usize)
    }
}

impl Store for EmbeddedStore {
    fn claim<'a>(&'a self, req: ClaimRequest<'a>) -> StoreFuture<'a, Claim> {
        let (key, now, max, rule) = (*req.key, req.now, self.max_records, req.rule());
        let mut read = {
            let mut state = self.index.lock();
            // A duplicate of a key in flight here, or a key the file has never held, is
            // answered without a read.
            let in_flight = state.held.get(&key).filter(|r| !r.expired(now));
            if in_flight.is_some() || (state.indexed && !state.filter.may_hold(&key)) {
                let answer = state.claim(key, None, now, max, rule);
                return Box::pin(async move { answer });
            }
            FileRead::begin(&self.index, &mut state, key)
        };
        Box::pin(async move {
            loop {
                let in_file = self.file.read(move |db| Self::read(db, &key)).await?;
                // The look at the claims and the claim itself under one hold of the lock, so
                // two claims cannot both win.
                let mut state = self.index.lock();
                if !read.stale(&state) {
                    return state.claim(key, in_file, now, max, rule.clone());
                }
            }
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a Digest,
        owner: u128,
        response: StoredResponse,
        expires_at: u64,
    ) -> StoreFuture<'a, bool> {
        let (key, index, settled) = (*key, self.index.clone(), self.index.clone());
        let write = move |tables: &mut Tables<'_>| {
            let record = {
                let mut state = index.lock();
                let claim = state.held.get(&key).cloned();
                let (_, record) = decide_complete(claim, owner, response, expires_at);
                let Some(record) = record else {
                    return Ok(false);
                };
                // In the filter before the record can be seen; a failed commit leaves a
                // harmless false "maybe".
                state.filter.insert(&key);
                record
            };
            let stored = Self::put(tables, &key, &record)?;
            index.lock().stored = stored;
            Ok(true)
        };
        // The claim goes once the record is committed, so claimers always see one of the two.
        let then = move |done: &Result<bool, StoreError>| {
            if matches!(done, Ok(true)) {
                settled.settle(&key, owner);
            }
        };
        Box::pin(self.file.write_then(true, write, then))
    }

    fn release<'a>(&'a self, key: &'a Digest, owner: u128) -> StoreFuture<'a, ()> {
        self.index.drop_owned(key, owner);
        Box::pin(async { Ok(()) })
    }

    fn bind<'a>(&'a self, req: BindRequest<'a>) -> StoreFuture<'a, String> {
        let (key, max, rule) = (*req.key, self.max_records, req.rule());
        let index = self.index.clone();
        Box::pin(self.file.write(true, move |tables| {
            let (bound, write, is_new) = {
                let table = tables.open(RECORDS).map_err(backend)?;
                let existing = table.get(&key).map_err(backend)?;
                let is_new = existing.is_none();
                let existing = existing.map(|v| Record::decode(v.value())).transpose()?;
                let (bound, write) = rule(existing);
                (bound, write, is_new)
            };
            let Some(record) = write else {
                return Ok(bound);
            };
            {
                let mut state = index.lock();
                if is_new && state.stored + state.held.len() >= max {
                    return Err(StoreError::Full(max));
                }
                state.filter.insert(&key);
            }
            let stored = Self::put(tables, &key, &record)?;
            index.lock().stored = stored;
            Ok(bound)
        }))
    }

    fn prune(&self, now: u64) -> StoreFuture<'_, usize> {
        let dropped = {
            let mut state = self.index.lock();
            let before = state.held.len();
            state.held.retain(|_, claim| !claim.expired(now));
            before - state.held.len()
        };
        let (index, max) = (self.index.clone(), self.max_records);
        // Durable, as it was alone: a pruned record must not come back after a crash half way.
        Box::pin(self.file.write(true, move |tables| {
            let table = tables.open(RECORDS).map_err(backend)?;
            let before = table.len().map_err(backend)?;
            // The filter is rebuilt from the records kept, which clears the deleted keys. Should
            // the commit fail, the expired records it leaves are ones a claim treats as absent.
            let mut filter = KeyFilter::new(max);
            table
                .retain(|key, v| {
                    let keep = !expired(v, now);
                    if keep {
                        filter.insert(key);
                    }
                    keep
                })
                .map_err(backend)?;
            let after = table.len().map_err(backend)?;
            let mut state = index.lock();
            (state.filter, state.indexed, state.stored) = (filter, true, after as usize);
            Ok(dropped + (before - after) as usize)
        }))
    }

    fn count(&self) -> StoreFuture<'_, usize> {
        let index = self.index.clone();
        Box::pin(self.file.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(RECORDS).map_err(backend)?;
            Ok(table.len().map_err(backend)? as usize + index.lock().held.len())
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests;
