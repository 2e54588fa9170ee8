//! Three payguard replicas on one `redis-server` (records, bindings and the journal shared
//! there) take a stream of payments while a random replica is killed with SIGKILL every
//! second or so and started again. The provider double fails 30% of attempts and answers
//! slowly enough for kills to land mid-request. The apps retry each payment under its key
//! through whichever replica is up, until it is answered. At the end: every payment charged
//! exactly once (none twice, none lost), and every entry the journal holds settled or listed
//! by `payguard unresolved` on a surviving replica, none stuck in flight.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use payguard_double::{self as double, DoubleConfig, EffectKind, Profile};
use rand::Rng;
use support::process::{Process, spawn_payguard};
use support::redis::RedisServer;
use support::resolver::{RESENDS, rows};

const PAYMENTS: usize = 200;
const WORKERS: usize = 3;

/// One payment under its key through the replica at `proxy`: the status, or `None` when the
/// connection died (the replica was killed).
async fn pay(proxy: &str, order: usize) -> Option<u16> {
    let form = format!(
        "amount={}&currency=usd&metadata[order_id]=chaos-{order}",
        100 + order
    );
    let request = http::Request::post(format!("http://{proxy}/v1/payment_intents"))
        .header("authorization", "Bearer sk_test_chaos")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("idempotency-key", format!("chaos-key-{order}"))
        .body(Full::new(Bytes::from(form)))
        .unwrap();
    let call = support::client().request(request);
    let response = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .ok()?
        .ok()?;
    let status = response.status().as_u16();
    response.into_body().collect().await.ok()?;
    Some(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_killed_at_random_charge_every_payment_exactly_once() {
    let redis = RedisServer::start().await;
    let provider = double::spawn(DoubleConfig {
        latency: Duration::from_millis(50),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    provider
        .faults()
        .set_profile(Profile::transient(0.3, 5))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    // Its throwaway test payloads may sit in this Redis in clear (allow_plaintext_journal).
    let toml = format!(
        "[listen]\nproxy = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [upstream]\nurl = \"{}\"\n[log]\nlevel = \"info\"\n\
         [redis]\nurl = \"{}\"\nkey_prefix = \"chaos:\"\nreplicas = 3\n\
         [idempotency]\nstore = \"redis\"\ncoalesce_wait = \"500ms\"\n{RESENDS}\
         [resolver]\ninterval = \"100ms\"\nbase_delay = \"300ms\"\nmax_delay = \"1s\"\n\
         allow_plaintext_journal = true\n\
         [retry]\ndeadline = \"3s\"\nattempt_timeout = \"1s\"\nbase_delay = \"20ms\"\nmax_delay = \"200ms\"\n\
         [rate_limit]\nrate = 200.0\n",
        provider.url(),
        redis.url()
    );
    std::fs::write(&file, &toml).unwrap();
    let mut started = Vec::new();
    for _ in 0..3 {
        started.push(Some(spawn_payguard(&file).await));
    }
    // A slot is empty while its replica restarts.
    let replicas: Arc<Mutex<Vec<Option<Process>>>> = Arc::new(Mutex::new(started));

    // The apps: each payment retried under its key, through any replica, until answered 200.
    let next = Arc::new(Mutex::new(0usize));
    let attempts: Arc<Mutex<HashMap<usize, u32>>> = Arc::default();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (next, replicas, attempts) = (next.clone(), replicas.clone(), attempts.clone());
            tokio::spawn(async move {
                loop {
                    let order = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    if order >= PAYMENTS {
                        return;
                    }
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let all = live(&replicas);
                        let proxy = all[rand::rng().random_range(0..all.len())].clone();
                        *attempts.lock().unwrap().entry(order).or_default() += 1;
                        if pay(&proxy, order).await == Some(200) {
                            break;
                        }
                        assert!(Instant::now() < deadline, "payment {order} never completed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect();

    // The chaos: a random replica killed with SIGKILL about every second, and restarted.
    let mut kills = 0;
    while !workers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(600..1400))).await;
        let victim = rand::rng().random_range(0..3);
        let dead = replicas.lock().unwrap()[victim].take();
        if let Some(mut dead) = dead {
            dead.child.kill().await.unwrap();
            kills += 1;
        }
        let fresh = spawn_payguard(&file).await;
        replicas.lock().unwrap()[victim] = Some(fresh);
    }
    for worker in workers {
        worker.await.unwrap();
    }
    assert!(kills >= 3, "only {kills} kills");

    // Every payment charged exactly once: none twice, none lost.
    let ledger = provider.ledger();
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());
    for order in 0..PAYMENTS {
        let effects = ledger.effects_for_order(&format!("chaos-{order}"));
        let created = effects
            .iter()
            .filter(|e| e.kind == EffectKind::PaymentIntentCreated)
            .count();
        assert_eq!(created, 1, "payment {order}: {effects:?}");
    }
    // The journal, as a surviving replica lists it: nothing stuck in flight once the leases
    // of the killed replicas have run out (3 s deadline + 2 s), the rest settled or listed.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let admin = replicas.lock().unwrap()[0].as_ref().unwrap().admin.clone();
    let listed = rows(&admin).await;
    for row in &listed {
        let state = row["state"].as_str().unwrap();
        assert!(matches!(state, "resolved" | "pending" | "gave_up"), "{row}");
    }
    eprintln!(
        "{PAYMENTS} payments, {kills} kills, {} app attempts, {} provider requests, journal: {} listed",
        attempts.lock().unwrap().values().sum::<u32>(),
        provider.requests_seen(),
        listed.len()
    );
}

/// The proxy addresses of the replicas up now.
fn live(replicas: &Mutex<Vec<Option<Process>>>) -> Vec<String> {
    let all = replicas.lock().unwrap();
    all.iter().flatten().map(|p| p.proxy.clone()).collect()
}
