//! Group commit for the embedded store's redb file: one writer thread, and every write of
//! the file (idempotency records and the resolver's journal alike) goes through it.
//!
//! redb allows one write transaction at a time, and a durable commit costs an fsync. With one
//! transaction per write, 32 keyed requests at once queue behind each other's fsyncs: each
//! keyed POST makes up to three durable writes (journal entry, completion, journal settle),
//! so the last in the queue waits for dozens. Here the writer takes one queued write, drains
//! whatever else is queued by then, runs them all in one transaction and commits once: one
//! fsync answers the whole batch. Only then is any of them answered, so nobody hears "done"
//! before their write is on disk.
//!
//! A batch is durable (`Durability::Immediate`) when any of its writes needs to be; the
//! writes that need not be (the journal's changes a crash may lose, see
//! [`crate::journal::embedded`]) then ride along in the durable commit, and a batch of only
//! those commits without fsync, as they did alone.
//!
//! The contract for a write: it either succeeds, or fails having written nothing. The writes
//! here read, decide and make their one insert or remove last, so a failure (a full table, a
//! record that cannot be decoded) comes before anything is written. A failed commit fails
//! every write of the batch.
//!
//! A write reaches the file through [`Tables`], which opens each table once per transaction
//! and keeps it open for the rest of the batch: redb's `open_table` looks the table up and
//! writes back the roots staged so far, ~4,000 instructions each time, and a batch of 23
//! writes opened its two tables 23 times (callgrind, `bench/overhead/instructions.sh`).
//!
//! Reads do not queue here: [`StoreFile::read`] runs them on tokio's blocking pool, beside the
//! writer (redb's read transactions never wait for it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{
    Database, Durability, Table, TableDefinition, TableError, TableHandle, WriteTransaction,
};
use tokio::sync::oneshot;

/// The most writes one transaction takes: bounds how long the first of a batch waits for
/// the others to run (each is one key's read and write, microseconds).
const MAX_BATCH: usize = 256;

/// The shape of every table in the file: a 32-byte digest to encoded bytes.
pub type KeyTable = TableDefinition<'static, &'static [u8; 32], &'static [u8]>;

/// An open table of the file, in the writer's transaction.
pub type OpenTable<'t> = Table<'t, &'static [u8; 32], &'static [u8]>;

/// The tables of one transaction, each opened on its first use and closed before the commit.
pub struct Tables<'t> {
    txn: &'t WriteTransaction,
    open: Vec<(KeyTable, OpenTable<'t>)>,
}

impl<'t> Tables<'t> {
    fn new(txn: &'t WriteTransaction) -> Tables<'t> {
        Tables {
            txn,
            open: Vec::with_capacity(2),
        }
    }

    /// The table `def`, opened (or created) now if no earlier write of the batch opened it.
    pub fn open(&mut self, def: KeyTable) -> Result<&mut OpenTable<'t>, TableError> {
        let at = match self.open.iter().position(|(d, _)| d.name() == def.name()) {
            Some(at) => at,
            None => {
                self.open.push((def, self.txn.open_table(def)?));
                self.open.len() - 1
            }
        };
        Ok(&mut self.open[at].1)
    }
}

/// Why a write failed in the writer rather than in its own work: the transaction could not
/// begin or commit, or the writer is gone.
#[derive(Debug, Clone)]
pub struct WriteFailed(pub String);

/// The open redb file and its one writer. Clones share both; the thread stops, and the file
/// closes, when the last clone is dropped (a restart in the same process reopens it).
#[derive(Clone)]
pub struct StoreFile(Arc<Shared>);

struct Shared {
    db: Arc<Database>,
    queue: Option<mpsc::Sender<Box<dyn Pending>>>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has answered what was queued; joining it
        // means its handle on the database is gone when this returns.
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl StoreFile {
    /// Starts the writer thread of `db`.
    pub fn new(db: Database) -> std::io::Result<StoreFile> {
        let db = Arc::new(db);
        let commits = Arc::new(AtomicU64::new(0));
        let (queue, jobs) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("payguard-redb-writer".into())
            .spawn({
                let (db, commits) = (db.clone(), commits.clone());
                move || run(&db, &jobs, &commits)
            })?;
        Ok(StoreFile(Arc::new(Shared {
            db,
            queue: Some(queue),
            thread: Some(thread),
            commits,
        })))
    }

    /// The database, for read transactions.
    pub fn db(&self) -> &Arc<Database> {
        &self.0.db
    }

    /// Runs the read `f` on tokio's blocking pool (redb is synchronous): reads do not pass the
    /// writer, they run beside it.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<WriteFailed> + Send + 'static,
        F: FnOnce(&Database) -> Result<T, E> + Send + 'static,
    {
        let db = self.0.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .unwrap_or_else(|e| Err(WriteFailed(format!("store task failed: {e}")).into()))
    }

    /// Transactions committed so far (for tests of the batching).
    pub fn commits(&self) -> u64 {
        self.0.commits.load(Ordering::Relaxed)
    }

    /// Queues `work` for the writer and returns its result once the transaction it ran in is
    /// committed (with an fsync when `durable`). Queued when called, not when first polled, so
    /// the order of calls is the order of writes.
    pub fn write<T, E, F>(
        &self,
        durable: bool,
        work: F,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<WriteFailed> + Send + 'static,
        F: FnOnce(&mut Tables<'_>) -> Result<T, E> + Send + 'static,
    {
        self.write_then(durable, work, |_: &Result<T, E>| {})
    }

    /// [`Self::write`], and `then` runs on the writer with the write's final result as soon as
    /// its transaction has committed (or failed), before the caller hears it and whether or not
    /// the caller still waits. It is for state kept beside the file that must change exactly
    /// when the write becomes visible to readers, not before and not never.
    pub fn write_then<T, E, F, A>(
        &self,
        durable: bool,
        work: F,
        then: A,
    ) -> impl Future<Output = Result<T, E>> + Send + 'static
    where
        T: Send + 'static,
        E: From<WriteFailed> + Send + 'static,
        F: FnOnce(&mut Tables<'_>) -> Result<T, E> + Send + 'static,
        A: FnOnce(&Result<T, E>) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Job {
            durable,
            work: Some(work),
            then: Some(then),
            result: None,
            reply,
        });
        let queued = match &self.0.queue {
            Some(queue) => queue.send(job).is_ok(),
            None => false,
        };
        async move {
            if !queued {
                return Err(WriteFailed("the store's writer has stopped".into()).into());
            }
            answer.await.unwrap_or_else(|_| {
                Err(WriteFailed("the store's writer stopped before answering".into()).into())
            })
        }
    }
}

/// A queued write, its type erased so one queue carries every kind.
trait Pending: Send {
    fn durable(&self) -> bool;
    fn run(&mut self, tables: &mut Tables<'_>);
    /// Answers the caller: its own result if the batch committed, else the commit's failure.
    fn answer(self: Box<Self>, committed: Result<(), &WriteFailed>);
}

struct Job<T, E, F, A> {
    durable: bool,
    work: Option<F>,
    then: Option<A>,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F, A> Pending for Job<T, E, F, A>
where
    T: Send,
    E: From<WriteFailed> + Send,
    F: FnOnce(&mut Tables<'_>) -> Result<T, E> + Send,
    A: FnOnce(&Result<T, E>) + Send,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn run(&mut self, tables: &mut Tables<'_>) {
        if let Some(work) = self.work.take() {
            self.result = Some(work(tables));
        }
    }

    fn answer(mut self: Box<Self>, committed: Result<(), &WriteFailed>) {
        let result = match (committed, self.result.take()) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(WriteFailed("the write did not run".into()).into()),
            (Err(e), _) => Err(e.clone().into()),
        };
        if let Some(then) = self.then.take() {
            then(&result);
        }
        // The caller may have given up waiting (its timeout): nothing to tell.
        let _ = self.reply.send(result);
    }
}

/// The writer thread: one batch per loop, until every [`StoreFile`] is dropped.
fn run(db: &Database, jobs: &mpsc::Receiver<Box<dyn Pending>>, commits: &AtomicU64) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
        let committed = commit(db, &mut batch);
        if committed.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        for job in batch {
            job.answer(committed.as_ref().map(|_| ()));
        }
    }
}

/// Runs the batch in one transaction and commits it.
fn commit(db: &Database, batch: &mut [Box<dyn Pending>]) -> Result<(), WriteFailed> {
    let failed = |e: &dyn std::fmt::Display| WriteFailed(e.to_string());
    let mut txn = db.begin_write().map_err(|e| failed(&e))?;
    let durability = match batch.iter().any(|job| job.durable()) {
        true => Durability::Immediate,
        false => Durability::None,
    };
    txn.set_durability(durability).map_err(|e| failed(&e))?;
    // The tables close here: redb refuses to commit with any still open.
    {
        let mut tables = Tables::new(&txn);
        for job in batch.iter_mut() {
            job.run(&mut tables);
        }
    }
    txn.commit().map_err(|e| failed(&e))
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
