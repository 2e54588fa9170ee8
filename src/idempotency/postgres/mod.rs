//! The PostgreSQL store: the records and keyless bindings in a table shared by every replica,
//! durable across a restart or a failover of the database, which is what a shop that already
//! runs managed PostgreSQL (with a standby) trusts with money. The journal sits in the same
//! database ([`crate::journal::postgres`]).
//!
//! **Driver.** tokio-postgres with deadpool-postgres: the maintained async driver of the
//! tokio ecosystem payguard is built on, with prepared statements cached per connection (one
//! round trip per statement), and a small pool whose fast recycling drops connections the
//! server closed. sqlx would bring a second runtime layer, compile-time query checking that
//! needs a database at build time, and much more code for the dozen statements here. TLS goes
//! through tokio-postgres-rustls on the project's rustls (ring, webpki roots).
//!
//! **Semantics.** A claim and a binding read the row `FOR UPDATE` inside a transaction and
//! apply the very rules of `store.rs` ([`decide_claim`], [`decide_bind`]); an absent key is
//! inserted with `INSERT … ON CONFLICT DO NOTHING`, and a concurrent insert of the same key
//! (which that statement waits for) makes the transaction start over and find the row.
//! Completion and release are single statements that touch the row only while it is the
//! owner's claim (`owns`, `decide_complete`), so a holder whose lease (`until_ms`, its locked
//! until) ran out and was taken over cannot overwrite the newer owner. The conformance suite
//! and a differential test against the memory store (`tests/postgres_store.rs`) hold the SQL
//! to the rules.
//!
//! **Durability** follows the embedded store's reasoning: bindings (written before the first
//! attempt) and completed records commit durably; a claim commits with `synchronous_commit =
//! off`, since a claim lost in a database crash only lets the app's retry go out under the
//! same key, which the provider deduplicates.
//!
//! **The bound.** `max_records` is checked against per-shard counts kept in the same
//! transactions ([`sql`]), never by counting rows on the request path; concurrent inserts of
//! different keys may overshoot it by at most their number. The prune deletes expired rows in
//! batches of [`PRUNE_BATCH`], one replica at a time (an advisory lock), skipping rows a
//! request holds.

pub mod migrate;
pub mod pool;
mod rows;
mod sql;

use std::sync::Arc;

use super::fingerprint::Digest;
use super::store::{
    BindRequest, Claim, ClaimRequest, Record, Store, StoreError, StoreFuture, StoredResponse,
};
pub use pool::{PgFailure, PgPool, PostgresSpec, PostgresUrl};
use pool::{TRIES, shard};
use rows::{millis, owner_bytes, record};
use sql::Sql;

/// Rows deleted per prune statement, so one never holds many locks or runs long.
pub const PRUNE_BATCH: i64 = 500;

pub struct PostgresStore {
    pool: Arc<PgPool>,
    sql: Arc<Sql>,
    max_records: i64,
}

fn backend(e: PgFailure) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl PostgresStore {
    pub fn new(pool: Arc<PgPool>, max_records: usize) -> PostgresStore {
        PostgresStore {
            sql: Arc::new(Sql::new(pool.schema())),
            pool,
            max_records: i64::try_from(max_records).unwrap_or(i64::MAX),
        }
    }

    /// Reads `key`'s row for update, applies `decide`, writes its record, in one transaction.
    /// `None`: the store is full.
    async fn decide<T: Send + 'static>(
        &self,
        operation: &'static str,
        key: Digest,
        durable: bool,
        decide: impl Fn(Option<Record>) -> (T, Option<Record>) + Send + 'static,
    ) -> Result<T, StoreError> {
        let (sql, max) = (self.sql.clone(), self.max_records);
        let answer = self
            .pool
            .run(operation, move |mut c| async move {
                for _ in 0..TRIES {
                    let txn = pool::begin(&mut c, durable).await?;
                    let lock = txn.prepare_cached(&sql.lock).await?;
                    let existing = match txn.query_opt(&lock, &[&key.as_slice()]).await? {
                        Some(row) => Some(record(&row)?),
                        None => None,
                    };
                    let is_new = existing.is_none();
                    let (answer, write) = decide(existing);
                    let Some(write) = write else {
                        txn.commit().await?;
                        return Ok(Some(answer));
                    };
                    let v = rows::values(&write)?;
                    let params = [
                        &key.as_slice() as &(dyn tokio_postgres::types::ToSql + Sync),
                        &v.kind,
                        &v.fingerprint,
                        &v.owner,
                        &v.until_ms,
                        &v.response,
                        &v.bound_key,
                    ];
                    if is_new {
                        let insert = txn.prepare_cached(&sql.insert).await?;
                        if txn.execute(&insert, &params).await? == 0 {
                            // Another request inserted the key meanwhile: start over on it.
                            continue;
                        }
                        // Last before the commit, so the count's row lock is held briefly.
                        if !pool::take_room(&txn, &sql.room, &key, max).await? {
                            return Ok(None); // rolled back on drop
                        }
                    } else {
                        let update = txn.prepare_cached(&sql.update).await?;
                        txn.execute(&update, &params).await?;
                    }
                    txn.commit().await?;
                    return Ok(Some(answer));
                }
                Err(PgFailure::Db(format!(
                    "a key kept being inserted under {TRIES} tries in a row"
                )))
            })
            .await
            .map_err(backend)?;
        answer.ok_or(StoreError::Full(self.max_records as usize))
    }

    /// The row under `key`, read without a lock.
    async fn read(&self, key: Digest) -> Result<Option<Record>, StoreError> {
        let sql = self.sql.clone();
        self.pool
            .run("read", move |c| async move {
                let read = c.prepare_cached(&sql.read).await?;
                match c.query_opt(&read, &[&key.as_slice()]).await? {
                    Some(row) => Ok(Some(record(&row)?)),
                    None => Ok(None),
                }
            })
            .await
            .map_err(backend)
    }
}

impl Store for PostgresStore {
    fn claim<'a>(&'a self, req: ClaimRequest<'a>) -> StoreFuture<'a, Claim> {
        let (key, rule) = (*req.key, req.rule());
        Box::pin(async move {
            // A live record just answers, without a transaction: duplicates stay cheap.
            if let (answer, None) = rule(self.read(key).await?) {
                return Ok(answer);
            }
            self.decide("claim", key, false, rule).await
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a Digest,
        owner: u128,
        response: StoredResponse,
        expires_at: u64,
    ) -> StoreFuture<'a, bool> {
        let (key, sql) = (*key, self.sql.clone());
        Box::pin(async move {
            let encoded = response.encode()?;
            let done = self
                .pool
                .run("complete", move |c| async move {
                    let complete = c.prepare_cached(&sql.complete).await?;
                    let owner = owner_bytes(owner);
                    let params = [
                        &key.as_slice() as &(dyn tokio_postgres::types::ToSql + Sync),
                        &owner.as_slice(),
                        &encoded,
                        &millis(expires_at),
                    ];
                    Ok(c.execute(&complete, &params).await?)
                })
                .await
                .map_err(backend)?;
            Ok(done == 1)
        })
    }

    fn release<'a>(&'a self, key: &'a Digest, owner: u128) -> StoreFuture<'a, ()> {
        let (key, sql) = (*key, self.sql.clone());
        Box::pin(async move {
            self.pool
                .run("release", move |c| async move {
                    let release = c.prepare_cached(&sql.release).await?;
                    let owner = owner_bytes(owner);
                    c.execute(
                        &release,
                        &[&key.as_slice(), &owner.as_slice(), &shard(&key)],
                    )
                    .await?;
                    Ok(())
                })
                .await
                .map_err(backend)
        })
    }

    fn bind<'a>(&'a self, req: BindRequest<'a>) -> StoreFuture<'a, String> {
        let (key, rule) = (*req.key, req.rule());
        // Durable: the binding must be on disk before the first attempt leaves.
        Box::pin(self.decide("bind", key, true, rule))
    }

    fn prune(&self, now: u64) -> StoreFuture<'_, usize> {
        let sql = self.sql.clone();
        Box::pin(async move {
            let mut removed = 0usize;
            loop {
                let sql = sql.clone();
                let batch = self
                    .pool
                    .run("prune", move |mut c| async move {
                        let txn = c.transaction().await?;
                        // One replica prunes at a time; the others find the lock taken.
                        let lock = txn.prepare_cached(&sql.prune_lock).await?;
                        if !txn.query_one(&lock, &[]).await?.try_get::<_, bool>(0)? {
                            return Ok(0);
                        }
                        let prune = txn.prepare_cached(&sql.prune).await?;
                        let row = txn.query_one(&prune, &[&millis(now), &PRUNE_BATCH]).await?;
                        let n: i64 = row.try_get(0)?;
                        txn.commit().await?;
                        Ok(n)
                    })
                    .await
                    .map_err(backend)?;
                removed += usize::try_from(batch).unwrap_or(0);
                if batch < PRUNE_BATCH {
                    return Ok(removed);
                }
            }
        })
    }

    fn count(&self) -> StoreFuture<'_, usize> {
        let sql = self.sql.clone();
        Box::pin(async move {
            let n: i64 = self
                .pool
                .run("count", move |c| async move {
                    let count = c.prepare_cached(&sql.count).await?;
                    Ok(c.query_one(&count, &[]).await?.try_get(0)?)
                })
                .await
                .map_err(backend)?;
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }
}
