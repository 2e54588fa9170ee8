//! The PostgreSQL journal: the `journal` table in the database the PostgreSQL store uses,
//! shared by every replica, so an entry a replica left behind (killed, rolled away) is
//! listed, resolved or given up by another, and survives a restart of the database.
//!
//! An update is one transaction: the entry is read `FOR UPDATE`, the change (plain Rust, the
//! same for every backend) decides, and the row is written, so two replicas' updates of one
//! entry queue on its row lock and none is lost. A new entry goes in with `INSERT … ON
//! CONFLICT DO NOTHING`; losing that race to another writer starts the transaction over on
//! the row it wrote. Reads that change nothing (the resolver's re-read, `in_doubt`) take no
//! lock and no transaction.
//!
//! Durability is the embedded journal's rule: `durable` changes commit synchronously, the
//! others with `synchronous_commit = off` (lost only in a crash of the database, with the
//! same consequences as there).
//!
//! **The resolver's lease** lives in `journal_leases`, apart from the entries (a lease may be
//! taken on an id before or after its entry exists, as in Redis). Taking one is `SELECT … FOR
//! UPDATE SKIP LOCKED` on the lease row: a replica that finds another replica taking the same
//! lease at that instant skips the entry this round instead of queueing behind it, and a row
//! held by a live other holder is not taken. Lease times are the database's clock, the one
//! every replica shares.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::store::{Change, JournalError, JournalFuture, JournalStore, Write};
use super::{Entry, Id};
use crate::idempotency::postgres::pool::{self, TRIES, shard};
use crate::idempotency::postgres::{PgFailure, PgPool};

pub struct PostgresJournal {
    pool: Arc<PgPool>,
    sql: Arc<Sql>,
    /// This process's name on the leases it takes: random, so two replicas never share it.
    holder: String,
    max_entries: i64,
}

struct Sql {
    read: String,
    lock: String,
    insert: String,
    update: String,
    delete: String,
    room: String,
    list: String,
    lease_row: String,
    lease: String,
    release: String,
}

impl Sql {
    fn new(s: &str) -> Sql {
        let count = |sign: &str| {
            format!("UPDATE {s}.counts SET n = n {sign} 1 WHERE name = 'journal' AND shard = $1")
        };
        Sql {
            read: format!("SELECT entry FROM {s}.journal WHERE id = $1"),
            lock: format!("SELECT entry FROM {s}.journal WHERE id = $1 FOR UPDATE"),
            insert: format!(
                "INSERT INTO {s}.journal (id, entry) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING"
            ),
            update: format!("UPDATE {s}.journal SET entry = $2, updated_at = now() WHERE id = $1"),
            delete: format!(
                "WITH gone AS (DELETE FROM {s}.journal WHERE id = $2 RETURNING 1) {} \
                 AND EXISTS (SELECT 1 FROM gone)",
                count("-")
            ),
            room: format!(
                "{} AND (SELECT sum(n) FROM {s}.counts WHERE name = 'journal')::bigint < $2",
                count("+")
            ),
            list: format!("SELECT id, entry FROM {s}.journal"),
            lease_row: format!(
                "INSERT INTO {s}.journal_leases (id, holder, lease_until) \
                 VALUES ($1, '', '-infinity') ON CONFLICT (id) DO NOTHING"
            ),
            lease: format!(
                "UPDATE {s}.journal_leases SET holder = $2, \
                 lease_until = now() + $3::bigint * interval '1 millisecond' \
                 WHERE id = (SELECT id FROM {s}.journal_leases WHERE id = $1 \
                 AND (holder = $2 OR lease_until <= now()) FOR UPDATE SKIP LOCKED)"
            ),
            release: format!("DELETE FROM {s}.journal_leases WHERE id = $1 AND holder = $2"),
        }
    }
}

fn backend(e: PgFailure) -> JournalError {
    JournalError::Backend(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<Entry, PgFailure> {
    postcard::from_bytes(bytes).map_err(|e| PgFailure::Db(format!("decoding an entry: {e}")))
}

fn encode(entry: &Entry) -> Result<Vec<u8>, PgFailure> {
    postcard::to_stdvec(entry).map_err(|e| PgFailure::Db(format!("encoding an entry: {e}")))
}

impl PostgresJournal {
    pub fn new(pool: Arc<PgPool>, max_entries: usize) -> PostgresJournal {
        PostgresJournal {
            sql: Arc::new(Sql::new(pool.schema())),
            pool,
            holder: format!("{:032x}", rand::rng().random::<u128>()),
            max_entries: i64::try_from(max_entries).unwrap_or(i64::MAX),
        }
    }

    /// The entry as it is, read without a lock.
    async fn read(&self, id: Id) -> Result<Option<Entry>, JournalError> {
        let sql = self.sql.clone();
        self.pool
            .run("journal_read", move |c| async move {
                let read = c.prepare_cached(&sql.read).await?;
                match c.query_opt(&read, &[&id.as_slice()]).await? {
                    Some(row) => Ok(Some(decode(row.try_get(0)?)?)),
                    None => Ok(None),
                }
            })
            .await
            .map_err(backend)
    }

    async fn apply(
        &self,
        id: Id,
        durable: bool,
        change: Change,
    ) -> Result<Option<Entry>, JournalError> {
        // A change that writes even over "absent" is a request opening its entry: straight
        // to the transaction. Any other reads first, and a read that changes nothing ends there.
        if !matches!(change(None), Write::Put(_)) {
            let existing = self.read(id).await?;
            if let Write::Keep = change(existing.clone()) {
                return Ok(existing);
            }
        }
        let (sql, max) = (self.sql.clone(), self.max_entries);
        let answer = self
            .pool
            .run("journal_update", move |mut c| async move {
                for _ in 0..TRIES {
                    let txn = pool::begin(&mut c, durable).await?;
                    let lock = txn.prepare_cached(&sql.lock).await?;
                    let existing = match txn.query_opt(&lock, &[&id.as_slice()]).await? {
                        Some(row) => Some(decode(row.try_get(0)?)?),
                        None => None,
                    };
                    let after = match change(existing.clone()) {
                        Write::Keep => return Ok(Some(existing)),
                        Write::Delete if existing.is_none() => return Ok(Some(None)),
                        Write::Delete => {
                            let delete = txn.prepare_cached(&sql.delete).await?;
                            txn.execute(&delete, &[&shard(&id), &id.as_slice()]).await?;
                            None
                        }
                        Write::Put(entry) => {
                            let bytes = encode(&entry)?;
                            if existing.is_some() {
                                let update = txn.prepare_cached(&sql.update).await?;
                                txn.execute(&update, &[&id.as_slice(), &bytes]).await?;
                            } else {
                                let insert = txn.prepare_cached(&sql.insert).await?;
                                if txn.execute(&insert, &[&id.as_slice(), &bytes]).await? == 0 {
                                    continue; // written meanwhile: start over on that row
                                }
                                if !pool::take_room(&txn, &sql.room, &id, max).await? {
                                    return Ok(None); // full; rolled back on drop
                                }
                            }
                            Some(*entry)
                        }
                    };
                    txn.commit().await?;
                    return Ok(Some(after));
                }
                Err(PgFailure::Db(format!(
                    "an entry kept being inserted under {TRIES} tries in a row"
                )))
            })
            .await
            .map_err(backend)?;
        answer.ok_or(JournalError::Full(self.max_entries as usize))
    }

    async fn all(&self) -> Result<Vec<(Id, Entry)>, JournalError> {
        let sql = self.sql.clone();
        self.pool
            .run("journal_list", move |c| async move {
                let list = c.prepare_cached(&sql.list).await?;
                let mut all = Vec::new();
                for row in c.query(&list, &[]).await? {
                    let id: &[u8] = row.try_get(0)?;
                    // An entry written by an incompatible version is skipped, not fatal, as
                    // in the other journals.
                    if let (Ok(id), Ok(entry)) = (Id::try_from(id), decode(row.try_get(1)?)) {
                        all.push((id, entry));
                    }
                }
                Ok(all)
            })
            .await
            .map_err(backend)
    }
}

impl JournalStore for PostgresJournal {
    fn update(&self, id: Id, durable: bool, change: Change) -> JournalFuture<'_, Option<Entry>> {
        Box::pin(self.apply(id, durable, change))
    }

    fn list(&self) -> JournalFuture<'_, Vec<(Id, Entry)>> {
        Box::pin(self.all())
    }

    fn lease(&self, id: Id, ttl: Duration) -> JournalFuture<'_, bool> {
        let (sql, holder) = (self.sql.clone(), self.holder.clone());
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        Box::pin(async move {
            self.pool
                .run("journal_lease", move |c| async move {
                    let row = c.prepare_cached(&sql.lease_row).await?;
                    c.execute(&row, &[&id.as_slice()]).await?;
                    let lease = c.prepare_cached(&sql.lease).await?;
                    Ok(c.execute(&lease, &[&id.as_slice(), &holder, &ms]).await? == 1)
                })
                .await
                .map_err(backend)
        })
    }

    fn release(&self, id: Id) -> JournalFuture<'_, ()> {
        let (sql, holder) = (self.sql.clone(), self.holder.clone());
        Box::pin(async move {
            self.pool
                .run("journal_release", move |c| async move {
                    let release = c.prepare_cached(&sql.release).await?;
                    c.execute(&release, &[&id.as_slice(), &holder]).await?;
                    Ok(())
                })
                .await
                .map_err(backend)
        })
    }
}
