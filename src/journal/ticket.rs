//! The ticket a journaled request holds: the entry is written when its first attempt is about
//! to leave, and settled (or, when dropped unsettled, marked or removed) by the request itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::lifecycle::{Journal, Opening};
use super::{Entry, Id, Verdict};

/// The longest a request waits for its journal entry to be written before it is sent anyway.
const WRITE_WAIT: Duration = Duration::from_secs(2);

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
    /// A ticket for a request about to be journaled under `id`: nothing is written until its
    /// first attempt is about to leave ([`Ticket::before_send`]).
    pub fn new(journal: Journal, id: Id, opening: Opening) -> Ticket {
        Ticket {
            journal,
            id,
            resendable: opening.payload.is_some(),
            phase: Mutex::new(Phase::Ready(Box::new(opening))),
            sent: AtomicBool::new(false),
            done: false,
        }
    }

    pub fn id(&self) -> Id {
        self.id
    }

    /// Whether an attempt left with this ticket's entry written.
    pub fn sent(&self) -> bool {
        self.sent.load(Ordering::Relaxed)
    }

    /// Called before each attempt leaves: the first call writes the entry durably (seen
    /// through by a task of its own, so a request cancelled meanwhile cannot leave a
    /// half-known write behind) and waits for it; every call marks the request as sent. A
    /// journal failure is logged and the request goes on: the provider still deduplicates
    /// it, only the resolver will not know.
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
                    // Started here, so the write is queued before this task yields; the
                    // spawned task only waits for it.
                    let write = self.journal.open(self.id, *opening);
                    tokio::spawn(async move {
                        if let Err(e) = write.await {
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
