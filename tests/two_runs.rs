//! The same orders paid twice, the second time under new keys, through one sidecar running
//! the shipped config (time compressed 10x): the sequence that once charged an order twice.
//! The first run, stripe-python with its own retries on, meets an outage at its start, so
//! some orders end "outcome unknown" and stay in payguard's journal; the second run sends the
//! same orders again as a fresh app would, each under a new key the SDK makes. The resolver
//! runs meanwhile. Every order must be charged at most once: a second-run request under a new
//! key for a payment the journal holds joins that entry (the duplicate window), so the
//! resolver's re-send and the app's new attempt can never both execute.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use payguard_double::{EffectKind, Fault};
use support::sdk::Sdk;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_again_under_new_keys_never_charges_twice() {
    let (provider, proxy, _dir) = shipped_sidecar(0.3, 7).await;
    // An outage as the first run starts: its first orders exhaust every attempt.
    for _ in 0..16 {
        provider.faults().push(Fault::Status(503));
    }
    let port = proxy.addr.port();

    let first = Sdk::Python
        .run(port, &["orders", "2", "100", "two-runs", "4"])
        .await;
    let told_failed: Vec<_> = first.iter().filter(|l| l["ok"] != true).collect();
    let second = Sdk::Python
        .run(port, &["orders", "2", "100", "two-runs", "4"])
        .await;
    // Time for the resolver (every 0.5 s, first re-send after 3 s, compressed) to act.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let ledger = provider.ledger();
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());
    let mut per_order: HashMap<String, usize> = HashMap::new();
    for effect in ledger.entries() {
        if effect.kind == EffectKind::PaymentIntentCreated {
            *per_order
                .entry(effect.order_id.unwrap_or_default())
                .or_default() += 1;
        }
    }
    assert!(per_order.values().all(|&n| n == 1), "{per_order:?}");
    let completed = second.iter().filter(|l| l["ok"] == true).count();
    eprintln!(
        "first run: {} told failed; second run: {completed} of 100 completed; {} orders charged",
        told_failed.len(),
        per_order.len()
    );
    assert!(
        !told_failed.is_empty(),
        "the outage left some orders in doubt"
    );
    assert!(completed >= 99, "{completed}: {second:?}");
}
