//! The resolver's lease: with a journal shared by several replicas, one replica at a time
//! acts on an entry.
//!
//! Every replica runs a resolver over the same entries. Without a rule, two of them would
//! re-send one pending entry in the same round, count its rounds and attempts twice, and
//! report its outcome twice. The provider and the idempotency layer would still keep the
//! payment single (both re-sends carry the same key), so the lease is about doing the work
//! once, not about safety: a lease that runs out while its holder is still busy (a Redis
//! stall, a paused process) lets a second replica in, and the key still deduplicates.
//!
//! The rule, the same for every backend, so `task.rs` reads the same whatever the store:
//! take the entry's lease ([`JournalStore::lease`](super::JournalStore::lease)); when another
//! live holder has it, skip the entry this round; else read the entry again (the round's
//! listing may be stale: another replica may have just re-sent or finished it), act on it if
//! it is still due, and give the lease back. A holder that dies keeps it only until it runs
//! out. Backends of one process grant it always.

use std::future::Future;
use std::time::Duration;

use super::store::{JournalError, Write};
use super::{Entry, Id, Journal};

/// What the resolver holds an entry for beyond its re-send's own deadline: the journal writes
/// before and after the re-send (a few Redis commands, each within its `command_timeout`).
pub const MARGIN: Duration = Duration::from_secs(5);

/// What became of an entry the resolver wanted to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// This process held the lease and acted on the entry.
    Acted,
    /// Another live holder has it: it is being handled elsewhere.
    Elsewhere,
    /// Leased, but the entry was gone or no longer due when read again.
    NotDue,
}

impl Journal {
    /// The entry under `id` as it is now.
    pub async fn get(&self, id: Id) -> Result<Option<Entry>, JournalError> {
        self.store()
            .update(id, false, Box::new(|_| Write::Keep))
            .await
    }

    /// Takes the resolver's lease on `id` for `ttl`; see [`super::JournalStore::lease`].
    pub async fn lease(&self, id: Id, ttl: Duration) -> Result<bool, JournalError> {
        self.store().lease(id, ttl).await
    }

    /// Gives the lease on `id` back.
    pub async fn release(&self, id: Id) -> Result<(), JournalError> {
        self.store().release(id).await
    }

    /// Runs `act` on the entry under `id`, as read again now and only if it is still due,
    /// while holding the resolver's lease on it for `ttl`; gives the lease back afterwards.
    pub async fn under_lease<F, Fut>(
        &self,
        id: Id,
        ttl: Duration,
        act: F,
    ) -> Result<Taken, JournalError>
    where
        F: FnOnce(Entry, u64) -> Fut,
        Fut: Future<Output = ()>,
    {
        if !self.lease(id, ttl).await? {
            return Ok(Taken::Elsewhere);
        }
        let now = self.now_ms();
        let taken = match self.get(id).await {
            Ok(Some(entry)) if entry.due(now) => {
                act(entry, now).await;
                Ok(Taken::Acted)
            }
            Ok(_) => Ok(Taken::NotDue),
            Err(e) => Err(e),
        };
        // A lease not given back runs out by itself: holding it longer only delays the next
        // replica, it never lets two in.
        if let Err(e) = self.release(id).await {
            tracing::debug!(error = %e, "resolver: could not give a lease back; it will run out");
        }
        taken
    }
}
