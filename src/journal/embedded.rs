//! The embedded journal: a `journal` table in the idempotency store's redb file, so one file
//! on one volume holds everything payguard must remember across a crash.
//!
//! Durability follows from what a crash may lose, as in the idempotency store:
//!
//! - the open entry must be on disk before the first attempt leaves, or a crash mid-request
//!   would leave nothing to resolve: fsync'd (`Durability::Immediate`);
//! - every change that stops the resolver from acting on an entry it may re-send (the delete
//!   after a definitive answer, a resolution, a give-up) is fsync'd too: lost in a crash, the
//!   entry would come back open or pending and be sent again, perhaps after the app was told
//!   "not executed" and paid under a new key;
//! - the rest need not be: a report-only entry coming back is listed again, an entry moved
//!   from open to pending comes back open and counts as pending once its lease ends. They
//!   commit without fsync and reach the disk with the next durable commit.
//!
//! Its writes go through the file's one writer ([`crate::idempotency::writer`]), so a journal
//! write and the records' writes queued beside it share one transaction and one fsync.
//!
//! The file holds payloads (API keys and bodies, sealed when a key is configured), so it is
//! made readable by its owner only.

use std::path::Path;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::store::{Change, JournalError, JournalFuture, JournalStore, Write};
use super::{Entry, Id};
use crate::idempotency::writer::{KeyTable, StoreFile, WriteFailed};

const JOURNAL: KeyTable = KeyTable::new("journal");

pub struct EmbeddedJournal {
    file: StoreFile,
    max_entries: usize,
}

fn backend(e: impl std::fmt::Display) -> JournalError {
    JournalError::Backend(e.to_string())
}

impl From<WriteFailed> for JournalError {
    fn from(e: WriteFailed) -> JournalError {
        JournalError::Backend(e.0)
    }
}

fn decode(bytes: &[u8]) -> Result<Entry, JournalError> {
    postcard::from_bytes(bytes).map_err(|e| backend(format!("decoding an entry: {e}")))
}

impl EmbeddedJournal {
    /// Uses the file already open at `path` (the idempotency store's), and its writer.
    pub fn new(file: StoreFile, path: &Path, max_entries: usize) -> Result<Self, JournalError> {
        restrict(path)?;
        // At start-up, outside the writer: redb makes this wait for any batch in progress.
        let txn = file.db().begin_write().map_err(backend)?;
        txn.open_table(JOURNAL).map_err(backend)?;
        txn.commit().map_err(backend)?;
        Ok(EmbeddedJournal { file, max_entries })
    }
}

/// Owner read/write only: the file may hold API keys.
fn restrict(path: &Path) -> Result<(), JournalError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| backend(format!("making {} private: {e}", path.display())))
}

impl EmbeddedJournal {
    /// The change, queued for the writer now; the future owns nothing of `self`.
    fn write(
        &self,
        id: Id,
        durable: bool,
        change: Change,
    ) -> impl Future<Output = Result<Option<Entry>, JournalError>> + Send + 'static {
        let max = self.max_entries;
        // The change's one insert or remove is its last step: a failure has written nothing.
        self.file.write(durable, move |tables| {
            let after = {
                let table = tables.open(JOURNAL).map_err(backend)?;
                let existing = table
                    .get(&id)
                    .map_err(backend)?
                    .map(|v| decode(v.value()))
                    .transpose()?;
                let is_new = existing.is_none();
                match change(existing.clone()) {
                    Write::Keep => return Ok(existing),
                    Write::Delete => {
                        table.remove(&id).map_err(backend)?;
                        None
                    }
                    Write::Put(entry) => {
                        if is_new && table.len().map_err(backend)? as usize >= max {
                            return Err(JournalError::Full(max));
                        }
                        let bytes = postcard::to_stdvec(&entry)
                            .map_err(|e| backend(format!("encoding an entry: {e}")))?;
                        table.insert(&id, bytes.as_slice()).map_err(backend)?;
                        Some(*entry)
                    }
                }
            };
            Ok(after)
        })
    }
}

impl JournalStore for EmbeddedJournal {
    fn update(&self, id: Id, durable: bool, change: Change) -> JournalFuture<'_, Option<Entry>> {
        Box::pin(self.write(id, durable, change))
    }

    fn update_owned(
        self: Arc<Self>,
        id: Id,
        durable: bool,
        change: Change,
    ) -> JournalFuture<'static, Option<Entry>> {
        Box::pin(self.write(id, durable, change))
    }

    fn list(&self) -> JournalFuture<'_, Vec<(Id, Entry)>> {
        Box::pin(self.file.read(|db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(JOURNAL).map_err(backend)?;
            let mut all = Vec::new();
            for row in table.iter().map_err(backend)? {
                let (id, value) = row.map_err(backend)?;
                // An entry written by an incompatible version is skipped, not fatal.
                if let Ok(entry) = decode(value.value()) {
                    all.push((*id.value(), entry));
                }
            }
            Ok(all)
        }))
    }
}
