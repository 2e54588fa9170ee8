//! The storage every journal backend implements: an atomic read-modify-write of one entry,
//! a listing, and (for a backend several replicas share) the resolver's lease.
//!
//! The change is a plain function of the current entry, so a backend without transactions
//! (Redis with WATCH/MULTI, say) can run it again on a conflict; it must therefore be `Fn`.
//! Backends: [`super::memory`], [`super::embedded`] (a table in the idempotency store's
//! redb file) and [`super::redis`] (shared by every replica). A shared backend also grants
//! the resolver's lease on an entry ([`super::lease`]), so one replica at a time acts on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{Entry, Id};

/// A future returned by a journal operation.
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
    /// [`Self::update`] as a future that owns what it needs, so it can outlive the caller
    /// (a task of its own). A backend whose writes queue when called (embedded) queues it
    /// here, before the future is first polled; the others start it when it is.
    fn update_owned(
        self: Arc<Self>,
        id: Id,
        durable: bool,
        change: Change,
    ) -> JournalFuture<'static, Option<Entry>>
    where
        Self: 'static,
    {
        Box::pin(async move { self.update(id, durable, change).await })
    }
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
