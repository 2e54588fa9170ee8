//! The shipped `config.toml`, unchanged but for its upstream and store file (and time, run 10x
//! faster), against the provider double failing 30% of attempts with the seed article's fault
//! mix: the official stripe-python SDK, its own retries off, sends 300 payment-intent orders
//! from 4 workers. payguard must complete at least 99% of them and charge none twice. The full
//! comparison with every client and scenario, in real time, is `bench/scenarios`.

mod support;

use payguard_double::EffectKind;
use support::sdk::Sdk;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_config_completes_a_30_percent_fault_mix_without_double_charges() {
    let (provider, proxy, _dir) = shipped_sidecar(0.3, 16).await;

    let lines = Sdk::Python
        .run(proxy.addr.port(), &["orders", "0", "300", "shipped", "4"])
        .await;
    assert_eq!(lines.len(), 300);
    let completed = lines.iter().filter(|l| l["ok"] == true).count();
    let ledger = provider.ledger();
    let charged = ledger.count(EffectKind::PaymentIntentCreated);
    let failures: Vec<_> = lines.iter().filter(|l| l["ok"] != true).collect();
    assert!(
        completed >= 297,
        "{completed} of 300 completed; failures: {failures:?}"
    );
    eprintln!("{completed} of 300 completed, {charged} charged");
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());
    // Every order the app saw succeed was charged once; none was charged behind its back.
    assert!(charged >= completed && charged <= 300, "{charged} charges");
}
