//! The in-memory journal, used with the in-memory idempotency store: entries live as long as
//! the process, so a crash loses them (as it loses the idempotency records beside them).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::store::{Change, JournalError, JournalFuture, JournalStore, Write};
use super::{Entry, Id};

pub struct MemoryJournal {
    // A std mutex: every operation is a short map access that never awaits while holding it.
    entries: Mutex<HashMap<Id, Entry>>,
    max_entries: usize,
}

impl MemoryJournal {
    pub fn new(max_entries: usize) -> MemoryJournal {
        MemoryJournal {
            entries: Mutex::new(HashMap::new()),
            max_entries,
        }
    }
}

impl JournalStore for MemoryJournal {
    fn update(&self, id: Id, _durable: bool, change: Change) -> JournalFuture<'_, Option<Entry>> {
        let result = {
            let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            let existing = map.get(&id).cloned();
            let is_new = existing.is_none();
            match change(existing.clone()) {
                Write::Keep => Ok(existing),
                Write::Delete => Ok(map.remove(&id).and(None)),
                Write::Put(_) if is_new && map.len() >= self.max_entries => {
                    Err(JournalError::Full(self.max_entries))
                }
                Write::Put(entry) => {
                    map.insert(id, (*entry).clone());
                    Ok(Some(*entry))
                }
            }
        };
        Box::pin(async move { result })
    }

    fn list(&self) -> JournalFuture<'_, Vec<(Id, Entry)>> {
        let all = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, e)| (*id, e.clone()))
            .collect();
        Box::pin(async move { Ok(all) })
    }
}
