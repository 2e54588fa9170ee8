//! The Redis journal, used with the Redis idempotency store: one journal shared by every
//! replica, so an entry outlives the pod that wrote it (a rolling deploy, a crash) and any
//! replica can list it, resolve it or give it up.
//!
//! Keys, under the pool's prefix: `journal:<hex id>` holds an entry, postcard-encoded as in
//! the embedded journal; `journal:index` is the set of ids, for [`JournalStore::list`] and
//! the `max_entries` bound; `journal-lease:<hex id>` is the resolver's lease on an entry
//! ([`super::lease`]): a replica's random token, with a Redis expiry.
//!
//! **Why a compare-and-set script and not WATCH/MULTI/EXEC.** The change is Rust, so it runs
//! here between a read and a write, and the write must fail if the entry changed in between.
//! WATCH gives that only on a connection of its own: WATCH state belongs to the connection,
//! and the project's connections are multiplexed (`ConnectionManager`), shared by every task,
//! so another task's EXEC would clear this one's WATCH and its write would land unchecked
//! (redis-rs issues #565 and #1257); a reconnection between WATCH and EXEC loses it too. So
//! an update reads the entry (`GET`), runs the change, and commits with `swap.lua`, which
//! writes only if the entry is still the bytes that were read, and otherwise reports a
//! conflict: the change runs again on a fresh read, as the trait allows. Same semantics as
//! WATCH (optimistic, re-run on conflict), two round trips, on the shared pool with its
//! timeout and reconnection, and no connection held across the change.
//!
//! **Durability is Redis's.** Every write is acknowledged by Redis before the caller goes
//! on, but whether it survives a Redis restart is the operator's choice: without the
//! append-only file a Redis restart empties the journal, as it empties the records; what
//! `durable` means in the embedded journal (on disk before this returns) takes
//! `appendfsync always`, and with `everysec` a crash may lose the last second of writes. The
//! `durable` flag asks nothing more of Redis here. Entries carry no Redis expiry: a journal
//! entry that vanished by TTL would be an unresolved payment nobody hears of; the resolver
//! finishes and removes them, and `max_entries` bounds them meanwhile.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rand::Rng;
use redis::Script;

use super::store::{Change, JournalError, JournalFuture, JournalStore, Write};
use super::{Entry, Id};
use crate::shared::{RedisFailure, RedisPool};

static SWAP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/swap.lua")));
static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/lease.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
static TIDY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/tidy.lua")));

/// Reads and commits of one update before it gives up. A conflict means another replica (or
/// task) changed the entry in between; for one entry that is its request and a resolver at
/// most, so the second try nearly always commits. Between tries a random wait, growing to
/// [`MAX_BACKOFF_MS`], spreads writers that would otherwise collide again in lockstep.
const TRIES: u32 = 32;
const MAX_BACKOFF_MS: u64 = 64;
/// Entries fetched per `MGET` when listing, so no one command carries the whole journal.
const LIST_BATCH: usize = 256;

pub struct RedisJournal {
    pool: Arc<RedisPool>,
    index: String,
    /// This process's name on the leases it takes: random, so two replicas never share it.
    holder: String,
    max_entries: usize,
}

fn backend(e: RedisFailure) -> JournalError {
    JournalError::Backend(e.to_string())
}

fn hex(id: &Id) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Id> {
    let mut id = [0u8; 32];
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    for (byte, pair) in id.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(id)
}

fn decode(bytes: &[u8]) -> Result<Entry, JournalError> {
    postcard::from_bytes(bytes)
        .map_err(|e| JournalError::Backend(format!("decoding an entry: {e}")))
}

fn encode(entry: &Entry) -> Result<Vec<u8>, JournalError> {
    postcard::to_stdvec(entry).map_err(|e| JournalError::Backend(format!("encoding an entry: {e}")))
}

/// What `swap.lua` did.
enum Swap {
    Done,
    Conflict,
    Full,
}

impl RedisJournal {
    pub fn new(pool: Arc<RedisPool>, max_entries: usize) -> RedisJournal {
        RedisJournal {
            index: pool.key("journal:index"),
            holder: format!("{:032x}", rand::rng().random::<u128>()),
            pool,
            max_entries,
        }
    }

    fn entry_key(&self, id: &Id) -> String {
        self.pool.key(&format!("journal:{}", hex(id)))
    }

    fn lease_key(&self, id: &Id) -> String {
        self.pool.key(&format!("journal-lease:{}", hex(id)))
    }

    async fn read(&self, key: String) -> Result<Option<Vec<u8>>, JournalError> {
        self.pool
            .run(|mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
            .await
            .map_err(backend)
    }

    /// Commits `write` (`None`: delete) if the entry is still `read`.
    async fn swap(
        &self,
        id: &Id,
        read: Option<&[u8]>,
        write: Option<Vec<u8>>,
    ) -> Result<Swap, JournalError> {
        let (key, index) = (self.entry_key(id), self.index.clone());
        let mut call = SWAP.key(key);
        call.key(index)
            .arg(hex(id))
            .arg(if read.is_some() { "1" } else { "0" })
            .arg(read.unwrap_or_default())
            .arg(if write.is_some() { "put" } else { "delete" })
            .arg(write.unwrap_or_default())
            .arg(self.max_entries);
        let answer: String = self
            .pool
            .run(|mut c| async move { call.invoke_async(&mut c).await })
            .await
            .map_err(backend)?;
        match answer.as_str() {
            "done" => Ok(Swap::Done),
            "conflict" => Ok(Swap::Conflict),
            "full" => Ok(Swap::Full),
            other => Err(JournalError::Backend(format!(
                "unexpected answer from the journal script: {other}"
            ))),
        }
    }

    async fn apply(&self, id: Id, change: Change) -> Result<Option<Entry>, JournalError> {
        // A request's opening writes a new entry, on the request's path before its first
        // attempt: it is committed without reading first, as a change of "absent" that the
        // script checks. If the entry exists after all (an app's retry reopening it), or the
        // change does nothing to "absent", the entry is read as usual.
        if let Write::Put(entry) = change(None) {
            match self.swap(&id, None, Some(encode(&entry)?)).await? {
                Swap::Done => return Ok(Some(*entry)),
                Swap::Full => return Err(JournalError::Full(self.max_entries)),
                Swap::Conflict => {}
            }
        }
        for tried in 0..TRIES {
            let read = self.read(self.entry_key(&id)).await?;
            let existing = read.as_deref().map(decode).transpose()?;
            let (write, after) = match change(existing.clone()) {
                Write::Keep => return Ok(existing),
                Write::Delete if existing.is_none() => return Ok(None),
                Write::Delete => (None, None),
                Write::Put(entry) => (Some(encode(&entry)?), Some(*entry)),
            };
            match self.swap(&id, read.as_deref(), write).await? {
                Swap::Done => return Ok(after),
                Swap::Full => return Err(JournalError::Full(self.max_entries)),
                Swap::Conflict => {
                    let cap = (1u64 << tried.min(6)).min(MAX_BACKOFF_MS);
                    let wait = rand::rng().random_range(0..=cap);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
        }
        Err(JournalError::Backend(format!(
            "an entry kept changing under {TRIES} updates in a row"
        )))
    }

    async fn all(&self) -> Result<Vec<(Id, Entry)>, JournalError> {
        let index = self.index.clone();
        let members: Vec<String> = self
            .pool
            .run(|mut c| async move { redis::cmd("SMEMBERS").arg(index).query_async(&mut c).await })
            .await
            .map_err(backend)?;
        let mut all = Vec::with_capacity(members.len());
        let mut gone = Vec::new();
        for batch in members.chunks(LIST_BATCH) {
            let keys: Vec<String> = batch
                .iter()
                .map(|m| self.pool.key(&format!("journal:{m}")))
                .collect();
            let values: Vec<Option<Vec<u8>>> = self
                .pool
                .run(|mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await })
                .await
                .map_err(backend)?;
            for (member, value) in batch.iter().zip(values) {
                match (unhex(member), value) {
                    // An entry written by an incompatible version is skipped, not fatal, as in
                    // the embedded journal.
                    (Some(id), Some(bytes)) => all.extend(decode(&bytes).ok().map(|e| (id, e))),
                    (_, None) => gone.push(member.clone()),
                    (None, Some(_)) => {}
                }
            }
        }
        if !gone.is_empty() {
            self.tidy(gone).await?;
        }
        Ok(all)
    }

    /// Drops index members whose entry no longer exists.
    async fn tidy(&self, members: Vec<String>) -> Result<(), JournalError> {
        let mut call = TIDY.key(self.index.clone());
        call.arg(self.pool.key("journal:")).arg(members);
        let dropped: usize = self
            .pool
            .run(|mut c| async move { call.invoke_async(&mut c).await })
            .await
            .map_err(backend)?;
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "the Redis journal's index named entries that are gone (deleted or evicted outside payguard)"
            );
        }
        Ok(())
    }
}

impl JournalStore for RedisJournal {
    fn update(&self, id: Id, _durable: bool, change: Change) -> JournalFuture<'_, Option<Entry>> {
        Box::pin(self.apply(id, change))
    }

    fn list(&self) -> JournalFuture<'_, Vec<(Id, Entry)>> {
        Box::pin(self.all())
    }

    fn lease(&self, id: Id, ttl: Duration) -> JournalFuture<'_, bool> {
        let mut call = LEASE.key(self.lease_key(&id));
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        call.arg(&self.holder).arg(ms);
        Box::pin(async move {
            let granted: i64 = self
                .pool
                .run(|mut c| async move { call.invoke_async(&mut c).await })
                .await
                .map_err(backend)?;
            Ok(granted == 1)
        })
    }

    fn release(&self, id: Id) -> JournalFuture<'_, ()> {
        let mut call = RELEASE.key(self.lease_key(&id));
        call.arg(&self.holder);
        Box::pin(async move {
            let _: i64 = self
                .pool
                .run(|mut c| async move { call.invoke_async(&mut c).await })
                .await
                .map_err(backend)?;
            Ok(())
        })
    }
}
