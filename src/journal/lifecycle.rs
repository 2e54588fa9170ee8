//! The journal's lifecycle operations, built on a [`JournalStore`]: open, settle, modify,
//! remove, list, and reading a sealed payload back. Shared by the request path (through a
//! [`super::Ticket`]) and the resolver.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::seal::Sealer;
use super::store::{Change, JournalError, JournalStore, Write};
use super::{Entry, Id, Payload, State, Verdict};
use crate::idempotency::{Clock, after};

/// The journal as the rest of payguard uses it.
#[derive(Clone)]
pub struct Journal {
    store: Arc<dyn JournalStore>,
    sealer: Arc<Sealer>,
    clock: Clock,
}

/// A new entry's facts, before it is written.
pub struct Opening {
    pub entry: Entry,
    /// `None` when the route does not re-send: nothing needs keeping.
    pub payload: Option<Payload>,
    /// How long the request may run before its process is presumed dead.
    pub lease: Duration,
}

impl Journal {
    pub fn new(store: Arc<dyn JournalStore>, sealer: Sealer) -> Journal {
        Journal {
            store,
            sealer: Arc::new(sealer),
            clock: Clock::new(),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn store(&self) -> &Arc<dyn JournalStore> {
        &self.store
    }

    /// Writes the open entry durably. An app's retry of an unresolved request reopens its
    /// entry, keeping its history. The write is started before this returns (queued, on the
    /// embedded store), and the future that reports it owns what it needs, so a task of its
    /// own can see it through.
    pub(super) fn open(
        &self,
        id: Id,
        opening: Opening,
    ) -> impl Future<Output = Result<(), JournalError>> + Send + 'static {
        let write = self.open_write(id, opening);
        async move { write?.await.map(drop) }
    }

    fn open_write(
        &self,
        id: Id,
        opening: Opening,
    ) -> Result<super::store::JournalFuture<'static, Option<super::Entry>>, JournalError> {
        let now = self.now_ms();
        let payload = match &opening.payload {
            Some(p) => Some(self.sealer.seal(&id, p)?),
            None => None,
        };
        let mut fresh = opening.entry;
        fresh.state = State::Open {
            lease_until: after(now, opening.lease),
        };
        fresh.sealed = payload.is_some() && self.sealer.seals();
        fresh.payload = payload;
        fresh.created_ms = now;
        fresh.updated_ms = now;
        let change: Change = Box::new(move |existing| {
            let mut entry = fresh.clone();
            if let Some(old) = existing.filter(|e| !e.state.finished()) {
                entry.created_ms = old.created_ms;
                entry.attempts = old.attempts;
                entry.rounds = old.rounds;
                entry.was_pending = true;
                // The duplicate window runs from the binding the first request made, which a
                // retry never extends: a re-send must not outlast it.
                entry.window_until = entry
                    .window_until
                    .map(|until| old.window_until.map_or(until, |first| first.min(until)));
            }
            Write::Put(Box::new(entry))
        });
        Ok(self.store.clone().update_owned(id, true, change))
    }

    /// Applies a request's verdict to its entry: a definitive answer deletes it (or resolves
    /// it, when it had been unresolved before), an unknown one leaves it pending. Returns
    /// the entry when this verdict resolved it (not the resolver or another request meanwhile).
    /// `durable` when the entry may be re-sent: a delete or a resolution lost in a crash would
    /// bring it back for the resolver to send again.
    pub async fn settle(
        &self,
        id: Id,
        verdict: Verdict,
        attempts: u32,
        retry_at: u64,
        durable: bool,
    ) -> Result<Option<Entry>, JournalError> {
        let now = self.now_ms();
        let resolved = Arc::new(AtomicBool::new(false));
        let flag = resolved.clone();
        let change: Change = Box::new(move |existing| {
            // The change may run again on a conflict: decide afresh every time.
            flag.store(false, Ordering::Relaxed);
            let Some(mut entry) = existing else {
                return Write::Keep;
            };
            if entry.state.finished() {
                return Write::Keep;
            }
            entry.attempts += attempts;
            entry.updated_ms = now;
            match &verdict {
                Verdict::Definitive(_) | Verdict::NothingSent if !entry.was_pending => {
                    Write::Delete
                }
                Verdict::Definitive(status) => {
                    entry.finish(State::Resolved { status: *status }, now);
                    flag.store(true, Ordering::Relaxed);
                    Write::Put(Box::new(entry))
                }
                Verdict::NothingSent => {
                    // This request reached nothing, but an earlier one may have: still pending.
                    entry.state = State::Pending { next_at: retry_at };
                    Write::Put(Box::new(entry))
                }
                Verdict::Unknown(error) => {
                    entry.last_error = Some(error.clone());
                    entry.state = State::Pending { next_at: retry_at };
                    entry.was_pending = true;
                    Write::Put(Box::new(entry))
                }
            }
        });
        let after = self.store.update(id, durable, change).await?;
        Ok(after.filter(|_| resolved.load(Ordering::Relaxed)))
    }

    /// Changes an entry with `f`, which returns whether it changed anything. Returns the
    /// entry as changed, or `None` when it is absent or `f` left it alone.
    pub async fn modify(
        &self,
        id: Id,
        durable: bool,
        f: impl Fn(&mut Entry) -> bool + Send + Sync + 'static,
    ) -> Result<Option<Entry>, JournalError> {
        let changed = Arc::new(AtomicBool::new(false));
        let flag = changed.clone();
        let change: Change = Box::new(move |existing| {
            let Some(mut entry) = existing else {
                flag.store(false, Ordering::Relaxed);
                return Write::Keep;
            };
            let change = f(&mut entry);
            flag.store(change, Ordering::Relaxed);
            match change {
                true => Write::Put(Box::new(entry)),
                false => Write::Keep,
            }
        });
        let after = self.store.update(id, durable, change).await?;
        Ok(after.filter(|_| changed.load(Ordering::Relaxed)))
    }

    /// Removes an entry whatever its state.
    pub async fn remove(&self, id: Id) -> Result<(), JournalError> {
        self.store
            .update(id, false, Box::new(|_| Write::Delete))
            .await
            .map(|_| ())
    }

    /// Whether an earlier request with this entry's key is still in doubt: a later request
    /// that executed nothing must then not tell the app "not executed". `own` says the asking
    /// request wrote the entry itself: then only an earlier doubt it reopened counts.
    pub async fn in_doubt(&self, id: Id, own: bool) -> bool {
        let read = self.store.update(id, false, Box::new(|_| Write::Keep));
        matches!(read.await, Ok(Some(e)) if !e.state.finished() && (!own || e.was_pending))
    }

    pub async fn list(&self) -> Result<Vec<(Id, Entry)>, JournalError> {
        self.store.list().await
    }

    /// The payload of an entry, opened.
    pub fn payload(&self, id: &Id, entry: &Entry) -> Result<Option<Payload>, JournalError> {
        match &entry.payload {
            None => Ok(None),
            Some(bytes) => self.sealer.open(id, bytes, entry.sealed).map(Some),
        }
    }
}
