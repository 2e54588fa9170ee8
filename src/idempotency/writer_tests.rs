//! The group commit, shown without timing: the writer is held in a write of the test's own
//! while the others queue (they are queued when called), so what shares a transaction is
//! decided by the test, not by how fast the machine is.

use std::sync::mpsc;

use super::{StoreFile, WriteFailed};
use crate::idempotency::embedded::EmbeddedStore;
use crate::idempotency::embedded::tests::claim_of as claim;
use crate::idempotency::store::{Claim, Store, StoredResponse};
use crate::journal::embedded::EmbeddedJournal;
use crate::journal::{Entry, JournalStore};
use crate::journal::{JournalError, Write};

const N: usize = 32;

fn key(i: usize) -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&(i as u64).to_be_bytes());
    key
}

fn response(i: usize) -> StoredResponse {
    StoredResponse {
        status: 200,
        headers: vec![],
        body: format!("{{\"n\":{i}}}").into_bytes(),
    }
}

fn entry(i: usize) -> Entry {
    crate::journal::conformance::opening(&format!("k{i}"), false).entry
}

fn put(journal: &EmbeddedJournal, i: usize) -> crate::journal::JournalFuture<'_, Option<Entry>> {
    let entry = entry(i);
    journal.update(
        key(i),
        true,
        Box::new(move |_| Write::Put(Box::new(entry.clone()))),
    )
}

/// Holds the writer inside a transaction until the returned sender is used (or dropped).
fn hold(
    file: &StoreFile,
) -> (
    mpsc::Sender<()>,
    impl Future<Output = Result<(), WriteFailed>>,
) {
    let (started_tx, started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let held = file.write(false, move |_| {
        let _ = started_tx.send(());
        let _ = released.recv();
        Ok(())
    });
    // Queued at once; wait until the writer is inside it.
    started.recv().expect("the writer runs the holding write");
    (release, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_completions_and_journal_writes_share_one_durable_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let keys: Vec<[u8; 32]> = (0..N).map(key).collect();
    {
        let store = EmbeddedStore::open(&path, 1_000).unwrap();
        let file = store.database();
        let journal = EmbeddedJournal::new(file.clone(), &path, 1_000).unwrap();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                store.claim(claim(k, i as u128)).await.unwrap(),
                Claim::Claimed
            );
        }
        let (release, held) = hold(&file);
        let before = file.commits();
        let completes: Vec<_> = (0..N)
            .map(|i| store.complete(&keys[i], i as u128, response(i), u64::MAX))
            .collect();
        let puts: Vec<_> = (0..N).map(|i| put(&journal, i)).collect();
        release.send(()).unwrap();
        held.await.unwrap();
        for complete in completes {
            assert!(complete.await.unwrap(), "the claim's owner completes it");
        }
        for put in puts {
            assert!(put.await.unwrap().is_some());
        }
        // The holding write's own commit, then one for all 2N queued behind it.
        assert_eq!(
            file.commits() - before,
            2,
            "{N} completions and {N} journal writes"
        );
    }
    // Everything answered is in the file: reopened, every key replays and every entry lists.
    let store = EmbeddedStore::open(&path, 1_000).unwrap();
    for (i, k) in keys.iter().enumerate() {
        match store.claim(claim(k, 999)).await.unwrap() {
            Claim::Completed { response: r, .. } => assert_eq!(r, response(i)),
            other => panic!("key {i}: {other:?}"),
        }
    }
    let journal = EmbeddedJournal::new(store.database(), &path, 1_000).unwrap();
    let mut listed: Vec<_> = journal.list().await.unwrap();
    listed.sort_by_key(|(id, _)| *id);
    assert_eq!(listed.len(), N);
    assert_eq!(listed[3].1, entry(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_leaves_the_rest_of_its_batch_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let store = EmbeddedStore::open(&path, 10).unwrap();
        let file = store.database();
        // Room for N entries; the (N+1)th of the same batch finds the journal full.
        let journal = EmbeddedJournal::new(file.clone(), &path, N).unwrap();
        let (release, held) = hold(&file);
        let puts: Vec<_> = (0..=N).map(|i| put(&journal, i)).collect();
        release.send(()).unwrap();
        held.await.unwrap();
        let mut results = Vec::new();
        for put in puts {
            results.push(put.await);
        }
        assert!(results[..N].iter().all(|r| matches!(r, Ok(Some(_)))));
        assert!(matches!(results[N], Err(JournalError::Full(n)) if n == N));
    }
    let store = EmbeddedStore::open(&path, 10).unwrap();
    let journal = EmbeddedJournal::new(store.database(), &path, N).unwrap();
    assert_eq!(journal.list().await.unwrap().len(), N);
}

#[tokio::test]
async fn nothing_queued_together_commits_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb"), 10).unwrap();
    let file = store.database();
    let before = file.commits();
    for i in 0..3 {
        let k = key(i);
        assert_eq!(store.claim(claim(&k, 1)).await.unwrap(), Claim::Claimed);
        assert!(store.complete(&k, 1, response(i), u64::MAX).await.unwrap());
    }
    // One after another, each waits for the last: a commit per completion (claims stay in
    // memory).
    assert_eq!(file.commits() - before, 3);
}
