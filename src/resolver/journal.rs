//! The journal: the storage trait every backend implements, and the lifecycle operations
//! built on it, shared by the request path ([`Ticket`]) and the resolver.
//!
//! A backend offers two operations: an atomic read-modify-write of one entry and a listing.
//! The change is a plain function of the current entry, so a backend without transactions
//! (Redis with WATCH/MULTI, say) can run it again on a conflict; it must therefore be `Fn`.
//! Backends: [`super::memory`], [`super::embedded`] (a table in the idempotency store's
//! redb file) and [`super::redis`] (shared by every replica). A shared backend also grants
//! the resolver's lease on an entry ([`super::lease`]), so one replica at a time acts on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use std::time::Duration;
use tokio::sync::watch;

use super::seal::Sealer;
use super::{Entry, Id, Payload, State, Verdict};
use crate::idempotency::{Clock, after};

/// The longest a request waits for its journal entry to be written before it is sent anyway.
const WRITE_WAIT: Duration = Duration::from_secs(2);

pub type JournalFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, JournalError>> + Send + 'a>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    #[error("the journal is full ({0} entries)")]
    Full(usize),
    #[error("journal failure: {0}")]
    Backend(String),
    #[error("a journal payload could not be opened: {0}")]
    Unreadable(String),
}

/// What a change does to the entry it looked at.
pub enum Write {
    Keep,
    Put(Box<Entry>),
    Delete,
}

/// A change to one entry, given its current value.
pub type Change = Box<dyn Fn(Option<Entry>) -> Write + Send + Sync>;

/// Storage for journal entries.
pub trait JournalStore: Send + Sync {
    /// Applies `change` to the entry under `id` atomically and returns the entry as it is
    /// afterwards. `durable` writes are on disk before this returns; others may be lost in a
    /// crash (see the embedded backend for which is which). A new entry beyond the bound
    /// fails with [`JournalError::Full`].
    fn update(&self, id: Id, durable: bool, change: Change) -> JournalFuture<'_, Option<Entry>>;
    /// Every entry, in no particular order.
    fn list(&self) -> JournalFuture<'_, Vec<(Id, Entry)>>;
    /// Takes the resolver's lease on `id` for `ttl`: whether this process may act on the
    /// entry now. A backend shared by several processes grants it to one holder at a time
    /// (again to the same holder) until released or run out. A backend of one process grants
    /// it always: that process's resolver steps one entry at a time anyway.
    fn lease(&self, _id: Id, _ttl: Duration) -> JournalFuture<'_, bool> {
        Box::pin(async { Ok(true) })
    }
    /// Gives this process's lease on `id` back before it runs out.
    fn release(&self, _id: Id) -> JournalFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

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

    /// A ticket for a request about to be journaled: nothing is written until its first
    /// attempt is about to leave ([`Ticket::before_send`]).
    pub fn ticket(&self, id: Id, opening: Opening) -> Ticket {
        Ticket {
            journal: self.clone(),
            id,
            resendable: opening.payload.is_some(),
            phase: Mutex::new(Phase::Ready(Box::new(opening))),
            sent: AtomicBool::new(false),
            done: false,
        }
    }

    /// Writes the open entry durably, for the tests of the journal's own bound.
    #[cfg(test)]
    pub(super) async fn open_for_test(&self, id: Id, opening: Opening) -> Result<(), JournalError> {
        self.open(id, opening).await
    }

    /// Writes the open entry durably. An app's retry of an unresolved request reopens its
    /// entry, keeping its history.
    async fn open(&self, id: Id, opening: Opening) -> Result<(), JournalError> {
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
            }
            Write::Put(Box::new(entry))
        });
        self.store.update(id, true, change).await.map(drop)
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

/// The journal entry of a request, held by the request it describes.
///
/// The entry is written only when the first attempt has passed the gates and is about to
/// leave, so a request its app abandons while it queues leaves nothing behind. Settle it with
/// the request's verdict once its answer has reached the app, body included. Dropping it
/// unsettled (the app hung up, payguard stopped) marks the entry pending if an attempt may
/// have left (the request may have executed) and removes it if none did.
pub struct Ticket {
    journal: Journal,
    id: Id,
    /// Whether the resolver may re-send the entry: then the change that settles it is made
    /// durable before anything relies on it.
    resendable: bool,
    phase: Mutex<Phase>,
    /// Set once the entry is durable and an attempt is about to go out.
    sent: AtomicBool,
    done: bool,
}

enum Phase {
    /// Not written yet.
    Ready(Box<Opening>),
    /// Being written, or written: the receiver says when the write has ended.
    Opening(watch::Receiver<bool>),
}

impl Ticket {
    pub fn id(&self) -> Id {
        self.id
    }

    /// Whether an attempt left with this ticket's entry written.
    pub fn sent(&self) -> bool {
        self.sent.load(Ordering::Relaxed)
    }

    /// Called before each attempt leaves: the first call writes the entry durably (in a task
    /// of its own, so a request cancelled meanwhile cannot leave a half-known write behind)
    /// and waits for it; every call marks the request as sent. A journal failure is logged and
    /// the request goes on: the provider still deduplicates it, only the resolver will not know.
    pub async fn before_send(&self) {
        let mut written = {
            let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
            match &*phase {
                Phase::Opening(rx) => rx.clone(),
                Phase::Ready(_) => {
                    let (tx, rx) = watch::channel(false);
                    let Phase::Ready(opening) =
                        std::mem::replace(&mut *phase, Phase::Opening(rx.clone()))
                    else {
                        return;
                    };
                    let (journal, id) = (self.journal.clone(), self.id);
                    tokio::spawn(async move {
                        if let Err(e) = journal.open(id, *opening).await {
                            tracing::warn!(error = %e, "could not journal a request; it will not be resolved if it ends unresolved");
                        }
                        let _ = tx.send(true);
                    });
                    rx
                }
            }
        };
        // Bounded like every store operation: a hung disk must not hold the payment. The
        // request then goes on unjournaled, as when the write fails.
        let wait = tokio::time::timeout(WRITE_WAIT, written.wait_for(|done| *done)).await;
        if wait.is_err() {
            tracing::warn!("the journal did not answer within {WRITE_WAIT:?}; sending unjournaled");
        }
        self.sent.store(true, Ordering::Relaxed);
    }

    /// Settles the entry; returns it when this answer resolved an earlier unresolved request.
    pub async fn settle(mut self, verdict: Verdict, attempts: u32, retry_at: u64) -> Option<Entry> {
        self.done = true;
        let Some(mut written) = self.written() else {
            // Nothing was ever written: nothing to settle.
            return None;
        };
        let _ = written.wait_for(|done| *done).await;
        match self
            .journal
            .settle(self.id, verdict, attempts, retry_at, self.resendable)
            .await
        {
            Ok(resolved) => resolved,
            Err(e) => {
                tracing::warn!(error = %e, "could not update the unresolved-requests journal");
                None
            }
        }
    }

    /// The write's progress, once one was started.
    fn written(&self) -> Option<watch::Receiver<bool>> {
        match &*self.phase.lock().unwrap_or_else(PoisonError::into_inner) {
            Phase::Ready(_) => None,
            Phase::Opening(rx) => Some(rx.clone()),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(mut written) = self.written() else {
            return;
        };
        let (journal, id, durable) = (self.journal.clone(), self.id, self.resendable);
        // Nothing left payguard when the entry was not yet durable: the app's request was
        // abandoned before it was sent, and payguard never sends such a request on its own.
        let verdict = match self.sent.load(Ordering::Relaxed) {
            true => Verdict::Unknown(
                "abandoned after it was sent (app hung up or payguard stopped)".into(),
            ),
            false => Verdict::NothingSent,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // After the write, or the removal could come first and the entry outlive it.
                let _ = written.wait_for(|done| *done).await;
                let now = journal.now_ms();
                if let Err(e) = journal.settle(id, verdict, 0, now, durable).await {
                    tracing::warn!(error = %e, "could not settle an abandoned request's journal entry");
                }
            });
        }
    }
}
