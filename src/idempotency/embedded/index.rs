//! What the embedded store keeps in memory beside its file: the claims of this process, a
//! Bloom filter of the keys the file holds records under, and the keys claims are reading
//! from the file just now ([`FileRead`]).
//!
//! Claims live only here (see the parent module for why that is safe). The filter exists so a
//! claim of a key the file has never seen, which is what almost every new payment is, can be
//! answered without reading the file: a read runs on tokio's blocking pool, and the hop there
//! and back cost a keyed POST more than half a millisecond with 32 in flight. A filter can
//! only err one way, so a "maybe" just means the claim reads the file as it always did.
//!
//! The filter is kept true by the writer: a record's key goes in before the transaction that
//! writes it commits, and the periodic prune rebuilds it from the records it keeps. At open it
//! is built in the background from the file ([`Indexer`]); until that scan ends, claims read
//! the file. Keys that were deleted stay in the filter until the next prune: a false "maybe".

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable};

use super::super::fingerprint::Digest;
use super::super::store::{Claim, Record, StoreError, owns};
use super::RECORDS;

/// A Bloom filter over record keys. The keys are SHA-256 digests, uniformly random already,
/// so its probe positions are taken from the key's own bytes instead of hashing it again.
pub struct KeyFilter {
    words: Vec<u64>,
}

/// 10 bits and 7 probes per key: about 1% false positives at capacity.
const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;
/// The most keys a filter is sized for: 10 MB.
const MAX_KEYS: usize = 8_000_000;

impl KeyFilter {
    /// Sized for `capacity` keys (the store's `max_records`): 1.25 MB per million, and at most
    /// [`MAX_KEYS`]' worth, so a huge `max_records` cannot take the memory a sidecar has.
    /// Past its size the filter says "maybe" more often, and claims read the file more.
    pub fn new(capacity: usize) -> KeyFilter {
        let words = (capacity.clamp(64, MAX_KEYS) * BITS_PER_KEY).div_ceil(64);
        KeyFilter {
            words: vec![0; words],
        }
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    pub fn insert(&mut self, key: &Digest) {
        for bit in probes(key, self.bits()) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False only when `key` was never inserted.
    pub fn may_hold(&self, key: &Digest) -> bool {
        probes(key, self.bits()).all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

/// The key's probe positions among `bits`, by double hashing on two words of the digest.
fn probes(key: &Digest, bits: u64) -> impl Iterator<Item = usize> {
    let word = |i: usize| u64::from_le_bytes(key[i..i + 8].try_into().unwrap_or([0; 8]));
    let (a, b) = (word(0), word(8) | 1);
    (0..PROBES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % bits) as usize)
}

pub struct State {
    /// This process's claims: every `Record::InFlight` there is.
    pub held: HashMap<Digest, Record>,
    pub filter: KeyFilter,
    /// Whether `filter` covers the whole file yet.
    pub indexed: bool,
    /// Records in the file after the last write: the bound, checked without a read.
    pub stored: usize,
    /// Keys claims are reading from the file, outside the lock ([`FileRead`]).
    reading: HashMap<Digest, Reading>,
}

/// The claims reading one key from the file, and how many claims of it were dropped after
/// their completion committed since the first of them began.
#[derive(Default)]
struct Reading {
    readers: usize,
    settled: u64,
}

impl State {
    /// The claim rule over this process's live claim of `key` or, without one, the file's
    /// record; a new claim is refused at the bound. Expired records go in the periodic prune,
    /// never in a scan on the request path.
    pub fn claim(
        &mut self,
        key: Digest,
        in_file: Option<Record>,
        now: u64,
        max: usize,
        rule: impl FnOnce(Option<Record>) -> (Claim, Option<Record>),
    ) -> Result<Claim, StoreError> {
        // An expired claim of ours is taken over like any expired record.
        let live = self.held.get(&key).filter(|r| !r.expired(now)).cloned();
        let (answer, write) = rule(live.or(in_file));
        if let Some(claim) = write {
            if !self.held.contains_key(&key) && self.held.len() + self.stored >= max {
                return Err(StoreError::Full(max));
            }
            self.held.insert(key, claim);
        }
        Ok(answer)
    }
}

/// The state, shared by the store, its writer's jobs and the indexer.
#[derive(Clone)]
pub struct Index(Arc<Mutex<State>>);

impl Index {
    pub fn new(capacity: usize, stored: usize) -> Index {
        Index(Arc::new(Mutex::new(State {
            held: HashMap::new(),
            filter: KeyFilter::new(capacity),
            indexed: false,
            stored,
            reading: HashMap::new(),
        })))
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Every change replaces or removes whole values, so a panic under the lock leaves the
        // state consistent: keep serving.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops `owner`'s claim of `key`; a claim taken over by another owner stays.
    pub fn drop_owned(&self, key: &Digest, owner: u128) {
        let mut state = self.lock();
        if owns(state.held.get(key), owner) {
            state.held.remove(key);
        }
    }

    /// Drops `owner`'s claim of `key` once the record completing it is committed, and tells
    /// the claims reading the key from the file meanwhile: their read may predate the record.
    pub fn settle(&self, key: &Digest, owner: u128) {
        let mut state = self.lock();
        if owns(state.held.get(key), owner) {
            state.held.remove(key);
            if let Some(reading) = state.reading.get_mut(key) {
                reading.settled += 1;
            }
        }
    }
}

/// A claim's read of a key from the file, made without holding the lock: a read can wait on
/// the disk, and every claim takes the lock on the request's own thread. What the lock gave,
/// that a completion cannot drop its claim between a claimer's look at the claims and its
/// read of the file, this gives by telling the read to begin again when one did.
pub struct FileRead {
    index: Index,
    key: Digest,
    seen: u64,
}

impl FileRead {
    /// Registers a read of `key`, in the same hold of the lock as the claimer's look at the
    /// claims.
    pub fn begin(index: &Index, state: &mut State, key: Digest) -> FileRead {
        let reading = state.reading.entry(key).or_default();
        reading.readers += 1;
        FileRead {
            index: index.clone(),
            key,
            seen: reading.settled,
        }
    }

    /// Whether a claim of the key was settled since the read began (or was last found
    /// stale): the file may then hold a record the read missed, so it must be made again.
    pub fn stale(&mut self, state: &State) -> bool {
        let settled = state
            .reading
            .get(&self.key)
            .map_or(self.seen, |r| r.settled);
        std::mem::replace(&mut self.seen, settled) != settled
    }
}

impl Drop for FileRead {
    fn drop(&mut self) {
        let mut state = self.index.lock();
        if let Some(reading) = state.reading.get_mut(&self.key) {
            reading.readers -= 1;
            if reading.readers == 0 {
                state.reading.remove(&self.key);
            }
        }
    }
}

/// The background scan that fills the filter from the file at open. Dropped, it stops and is
/// joined, so the file can be reopened as soon as the store is gone.
pub struct Indexer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    pub fn start(db: Arc<Database>, index: Index) -> std::io::Result<Indexer> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("payguard-redb-index".into())
            .spawn(move || {
                if let Err(e) = scan(&db, &index, &stopping) {
                    // Claims keep reading the file: slower, never wrong.
                    tracing::warn!(error = %e, "could not index the idempotency store's keys");
                }
            })?;
        Ok(Indexer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Inserts every key of a snapshot of the file, a chunk per lock. Keys written after the
/// snapshot was taken were inserted by their own writes.
fn scan(db: &Database, index: &Index, stop: &AtomicBool) -> Result<(), redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(RECORDS)?;
    let mut chunk = Vec::with_capacity(1024);
    for row in table.iter()? {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        chunk.push(*row?.0.value());
        if chunk.len() == chunk.capacity() {
            let mut state = index.lock();
            chunk.drain(..).for_each(|key| state.filter.insert(&key));
        }
    }
    let mut state = index.lock();
    chunk.iter().for_each(|key| state.filter.insert(key));
    state.indexed = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Digest {
        crate::idempotency::fingerprint::record_key(&[7; 32], &i.to_le_bytes())
    }

    #[test]
    fn a_read_overtaken_by_a_completion_is_made_again() {
        let index = Index::new(100, 0);
        let (mine, other) = (key(1), key(2));
        let begin = |k| FileRead::begin(&index, &mut index.lock(), k);
        let (mut read, mut elsewhere) = (begin(mine), begin(other));
        // While the read is out, another request claims the key and completes it.
        let claim = |owner| {
            move |_| {
                let record = Record::InFlight {
                    fingerprint: [0; 32],
                    owner,
                    lease_until: 10,
                };
                (Claim::Claimed, Some(record))
            }
        };
        index.lock().claim(mine, None, 0, 100, claim(7)).unwrap();
        index.settle(&mine, 8);
        assert!(!read.stale(&index.lock()), "not the owner: nothing settled");
        index.settle(&mine, 7);
        assert!(read.stale(&index.lock()));
        assert!(!read.stale(&index.lock()), "the read made again stands");
        assert!(
            !elsewhere.stale(&index.lock()),
            "another key's read is not disturbed"
        );
        drop((read, elsewhere));
        assert!(
            index.lock().reading.is_empty(),
            "finished reads leave nothing behind"
        );
    }

    #[test]
    fn the_filter_never_forgets_and_rarely_imagines() {
        let mut filter = KeyFilter::new(10_000);
        (0..10_000).for_each(|i| filter.insert(&key(i)));
        assert!((0..10_000).all(|i| filter.may_hold(&key(i))));
        let imagined = (10_000..110_000)
            .filter(|&i| filter.may_hold(&key(i)))
            .count();
        assert!(imagined < 2_000, "{imagined} false positives in 100,000");
    }
}
