//! The Redis store: one record per key, shared by every replica, so a duplicate that lands on
//! another pod is replayed or joined instead of forwarded.
//!
//! Each operation is one Lua script (`lua/*.lua`) that reads the record, applies the rule of
//! `store.rs` ([`decide_claim`](super::store::decide_claim), `decide_complete`, `owns`,
//! `decide_bind`) and writes the result, atomically, since Redis runs a script without
//! interleaving. The scripts mirror those functions line by line; the conformance suite and
//! `tests/redis_store.rs` (which compares script and function over many generated cases)
//! hold them to it.
//!
//! Times: the rules use the caller's `now`, like every backend (leases are seconds long,
//! replicas' clocks agree to milliseconds under NTP). Every record also carries a Redis TTL:
//! its own expiry plus [`GRACE`], so Redis drops whatever the periodic prune misses and
//! nothing grows without bound. A sorted-set index (record by expiry) gives the prune and the
//! `max_records` bound without scanning the keyspace.

use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::Script;

use super::fingerprint::Digest;
use super::store::{
    BindRequest, Claim, ClaimRequest, Store, StoreError, StoreFuture, StoredResponse,
};
use crate::shared::{RedisFailure, RedisPool};

/// How long Redis keeps a record past its own expiry before dropping it by TTL. Covers clock
/// skew between replicas; the logical expiry, checked by the scripts, is what counts.
const GRACE_MS: u64 = 60_000;
/// Records removed per prune script, so one call never blocks Redis for long.
const PRUNE_BATCH: usize = 1000;

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));
static COMPLETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/complete.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
static BIND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/bind.lua")));
static PRUNE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/prune.lua")));

pub struct RedisStore {
    pool: Arc<RedisPool>,
    index: String,
    max_records: usize,
}

fn backend(e: RedisFailure) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn hex(digest: &Digest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Redis TTL of a record whose logical life ends at `until` (Unix ms).
fn ttl_ms(until: u64) -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    until.saturating_sub(wall).saturating_add(GRACE_MS)
}

/// A script's answer, as a list of byte strings: a tag, then its values.
fn tagged(reply: &[Vec<u8>]) -> (&[u8], &[Vec<u8>]) {
    match reply.split_first() {
        Some((tag, rest)) => (tag.as_slice(), rest),
        None => (b"", &[]),
    }
}

fn digest(bytes: Option<&Vec<u8>>) -> Result<Digest, StoreError> {
    bytes
        .and_then(|b| Digest::try_from(b.as_slice()).ok())
        .ok_or_else(|| StoreError::Backend("a record in Redis has no valid fingerprint".into()))
}

fn full(count: Option<&Vec<u8>>) -> StoreError {
    let held = count
        .and_then(|c| std::str::from_utf8(c).ok()?.parse().ok())
        .unwrap_or(0);
    StoreError::Full(held)
}

impl RedisStore {
    pub fn new(pool: Arc<RedisPool>, max_records: usize) -> RedisStore {
        RedisStore {
            index: pool.key("idem:index"),
            pool,
            max_records,
        }
    }

    fn record(&self, key: &Digest) -> String {
        self.pool.key(&format!("idem:{}", hex(key)))
    }

    /// Runs one of the scripts on `key`'s record and the index, with `args`.
    async fn script<T: redis::FromRedisValue>(
        &self,
        script: &'static Script,
        key: &Digest,
        args: Vec<Vec<u8>>,
    ) -> Result<T, StoreError> {
        let (record, index) = (self.record(key), self.index.clone());
        self.pool
            .run(|mut c| async move {
                let mut call = script.key(record);
                call.key(index);
                for arg in args {
                    call.arg(arg);
                }
                call.invoke_async(&mut c).await
            })
            .await
            .map_err(backend)
    }
}

fn text(value: impl ToString) -> Vec<u8> {
    value.to_string().into_bytes()
}

impl Store for RedisStore {
    fn claim<'a>(&'a self, req: ClaimRequest<'a>) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let args = vec![
                text(req.now),
                req.fingerprint.to_vec(),
                text(req.owner),
                text(req.lease_until),
                text(self.max_records),
                text(ttl_ms(req.lease_until)),
            ];
            let reply: Vec<Vec<u8>> = self.script(&CLAIM, req.key, args).await?;
            match tagged(&reply) {
                (b"claimed", _) => Ok(Claim::Claimed),
                (b"inflight", rest) => Ok(Claim::InFlight {
                    fingerprint: digest(rest.first())?,
                }),
                (b"completed", rest) => {
                    let response = rest.get(1).ok_or_else(|| {
                        StoreError::Backend("a completed record in Redis has no response".into())
                    })?;
                    Ok(Claim::Completed {
                        fingerprint: digest(rest.first())?,
                        response: StoredResponse::decode(response)?,
                    })
                }
                (b"full", rest) => Err(full(rest.first())),
                _ => Err(StoreError::Backend("unexpected answer from claim".into())),
            }
        })
    }

    fn complete<'a>(
        &'a self,
        key: &'a Digest,
        owner: u128,
        response: StoredResponse,
        expires_at: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let encoded = response.encode()?;
            let args = vec![
                text(owner),
                encoded,
                text(expires_at),
                text(ttl_ms(expires_at)),
            ];
            let done: i64 = self.script(&COMPLETE, key, args).await?;
            Ok(done == 1)
        })
    }

    fn release<'a>(&'a self, key: &'a Digest, owner: u128) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _: i64 = self.script(&RELEASE, key, vec![text(owner)]).await?;
            Ok(())
        })
    }

    fn bind<'a>(&'a self, req: BindRequest<'a>) -> StoreFuture<'a, String> {
        Box::pin(async move {
            // An empty replace names no key: payguard's and the SDKs' keys are never empty.
            let args = vec![
                req.candidate.as_bytes().to_vec(),
                text(req.expires_at),
                text(req.now),
                text(self.max_records),
                text(ttl_ms(req.expires_at)),
                req.replace.unwrap_or("").as_bytes().to_vec(),
            ];
            let reply: Vec<Vec<u8>> = self.script(&BIND, req.key, args).await?;
            match tagged(&reply) {
                (b"bound", [bound, ..]) => String::from_utf8(bound.clone())
                    .map_err(|_| StoreError::Backend("a bound key in Redis is not text".into())),
                (b"full", rest) => Err(full(rest.first())),
                _ => Err(StoreError::Backend("unexpected answer from bind".into())),
            }
        })
    }

    fn prune(&self, now: u64) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let mut removed = 0;
            loop {
                let index = self.index.clone();
                let batch: usize = self
                    .pool
                    .run(|mut c| async move {
                        PRUNE
                            .key(index)
                            .arg(now)
                            .arg(PRUNE_BATCH)
                            .invoke_async(&mut c)
                            .await
                    })
                    .await
                    .map_err(backend)?;
                removed += batch;
                if batch < PRUNE_BATCH {
                    return Ok(removed);
                }
            }
        })
    }

    fn count(&self) -> StoreFuture<'_, usize> {
        Box::pin(async move {
            let index = self.index.clone();
            self.pool
                .run(
                    |mut c| async move { redis::cmd("ZCARD").arg(index).query_async(&mut c).await },
                )
                .await
                .map_err(backend)
        })
    }
}
