//! The scenarios of several replicas sharing one store, run against each shared backend
//! (`tests/redis_replicas.rs`, `tests/postgres_replicas.rs`): each takes how to start three
//! replicas on that backend, so the promise is written once and held by both.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use payguard_double::{self as double, DoubleConfig, EffectKind, Fault};

use super::process::Process;
use super::replicas::{admin, metric, post, wait_ready};
use super::until_settled;

/// Three replicas and the directory of their config.
pub type Started = (Vec<Process>, tempfile::TempDir);

/// 100 concurrent duplicates spread over three replicas: one effect, one provider request.
pub async fn duplicates_take_effect_once(start: impl AsyncFnOnce(String, &str, &str) -> Started) {
    // Slow enough that all duplicates arrive while the first is still at the provider.
    let provider = double::spawn(DoubleConfig {
        latency: Duration::from_millis(500),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    let (replicas, _dir) = start(
        provider.url(),
        "coalesce_wait = \"20s\"",
        "[retry]\ndeadline = \"30s\"",
    )
    .await;
    let replicas = Arc::new(replicas);
    let form = "amount=4200&currency=usd&metadata[order_id]=dup-1";
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let replicas = replicas.clone();
            tokio::spawn(async move { post(&replicas[i % 3], Some("dup-key-1"), form).await })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        ids.insert(reply.json()["id"].as_str().unwrap().to_owned());
    }
    let ledger = provider.ledger();
    assert_eq!(ledger.count(EffectKind::PaymentIntentCreated), 1);
    assert_eq!(ids.len(), 1, "every duplicate got the one payment intent");
    assert_eq!(
        provider.requests_seen(),
        1,
        "the replicas deduplicated among themselves; the provider saw one request"
    );
    // Each replica answered some of them, and replayed or joined rather than forwarded.
    for replica in replicas.iter() {
        let (_, text) = admin(replica, "/metrics").await;
        let replays = metric(
            &text,
            "payguard_idempotency_replays_total{route=\"default\"}",
        );
        let attempts: f64 = text
            .lines()
            .filter(|l| l.starts_with("payguard_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(
            attempts >= 30.0,
            "each replica served its third: {attempts}"
        );
        assert!(replays >= 1.0, "{text}");
    }
}

/// One logical payment, retried with its key (through the next replica each time) until it
/// succeeds, as an SDK with retries would. Returns the statuses seen on the way.
pub async fn pay_until_done(replicas: &[Process], n: usize, deadline: Instant) -> Vec<u16> {
    let key = format!("order-key-{n}");
    let form = format!("amount=1000&currency=usd&confirm=true&metadata[order_id]=order-{n}");
    let mut statuses = Vec::new();
    for attempt in 0.. {
        let reply = post(&replicas[(n + attempt) % replicas.len()], Some(&key), &form).await;
        statuses.push(reply.status.as_u16());
        if reply.status == 200 || Instant::now() > deadline {
            return statuses;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

/// 40 payments through three replicas while the shared store goes away (`stop`) and comes
/// back (`restart`): no duplicate, every replica ready and serving again, the outage logged
/// once per change rather than once per refusal.
pub async fn outage_gives_no_duplicate(
    start: impl AsyncFnOnce(String, &str, &str) -> Started,
    stop: impl AsyncFnOnce(),
    restart: impl AsyncFnOnce(),
) {
    let provider = double::spawn(DoubleConfig {
        latency: Duration::from_millis(100),
        ..DoubleConfig::default()
    })
    .await
    .unwrap();
    // Fail closed: during the outage payguard refuses (503) rather than forwards, so the
    // outage is visible to the app and the retries after it must not double anything.
    let (mut replicas, _dir) = start(
        provider.url(),
        "on_store_error = \"closed\"\ncoalesce_wait = \"2s\"",
        "[retry]\ndeadline = \"5s\"\nattempt_timeout = \"4s\"",
    )
    .await;
    let shared = Arc::new(std::mem::take(&mut replicas));
    let deadline = Instant::now() + Duration::from_secs(40);
    let payments: Vec<_> = (0..40)
        .map(|n| {
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50 * n as u64)).await;
                pay_until_done(&shared, n, deadline).await
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(700)).await;
    stop().await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, body) = admin(&shared[0], "/readyz").await;
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: idempotency store failing\n"),
        "a replica whose routes fail closed reports the outage"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    restart().await;

    let mut outage_refusals = 0;
    for payment in payments {
        let statuses = payment.await.unwrap();
        assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
        outage_refusals += statuses.iter().filter(|s| **s == 503).count();
    }
    assert!(outage_refusals > 0, "the run met the outage");
    let ledger = provider.ledger();
    assert_eq!(ledger.count(EffectKind::PaymentIntentCreated), 40);
    assert_eq!(ledger.count(EffectKind::Charge), 40);
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());

    // Every replica is ready again, and serves a new payment through the restarted store.
    for (i, replica) in shared.iter().enumerate() {
        assert_eq!(
            wait_ready(replica, Duration::from_secs(10)).await,
            (200, "ready\n".into())
        );
        let reply = post(
            replica,
            Some(&format!("after-{i}")),
            "amount=5&currency=usd",
        )
        .await;
        assert_eq!(reply.status, 200);
        let (_, text) = admin(replica, "/metrics").await;
        assert_eq!(metric(&text, "payguard_idempotency_store_healthy"), 1.0);
    }
    assert_eq!(ledger.count(EffectKind::PaymentIntentCreated), 43);

    // Each replica logged the outage when it began and ended, not once per refused request.
    let mut replicas = Arc::try_unwrap(shared)
        .ok()
        .expect("no task holds the replicas");
    for replica in &mut replicas {
        replica.child.kill().await.unwrap();
    }
    for replica in replicas {
        let log = replica.log.await.unwrap();
        let failing = log
            .iter()
            .filter(|l| l.contains("idempotency store failing"))
            .count();
        let back = log
            .iter()
            .filter(|l| l.contains("idempotency store answers again"))
            .count();
        assert!(
            (1..=3).contains(&failing) && back >= 1,
            "failing {failing}, back {back}"
        );
    }
}

/// A replica `kill -9`ed while its request is at the provider: another replica, retried
/// under the same key, gets the one effect, and a third replays it.
pub async fn a_killed_replicas_request_is_taken_over(
    start: impl AsyncFnOnce(String, &str, &str) -> Started,
) {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    // The first request hangs at the provider (its key claimed there) while its replica dies.
    provider.faults().push(Fault::Stall(Duration::from_secs(2)));
    let (mut replicas, _dir) = start(
        provider.url(),
        "coalesce_wait = \"1s\"",
        "[retry]\ndeadline = \"3s\"\nattempt_timeout = \"3s\"\nbase_delay = \"50ms\"",
    )
    .await;
    let form = "amount=7000&currency=usd&confirm=true&metadata[order_id]=kill-1";
    let first = {
        let proxy = replicas[0].proxy.clone();
        tokio::spawn(async move {
            let url = format!("http://{proxy}/v1/payment_intents");
            let request = http::Request::post(url)
                .header("authorization", "Bearer sk_test_replicas")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("idempotency-key", "kill-key-1")
                .body(http_body_util::Full::new(bytes::Bytes::from(form)))
                .unwrap();
            super::client().request(request).await
        })
    };
    while provider.requests_seen() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    replicas[0].child.kill().await.unwrap(); // SIGKILL: the claim in the store stays behind
    assert!(
        first.await.unwrap().is_err(),
        "the app saw the connection die"
    );

    let reply = until_settled(|| post(&replicas[1], Some("kill-key-1"), form)).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let ledger = provider.ledger();
    assert_eq!(ledger.count(EffectKind::PaymentIntentCreated), 1);
    assert_eq!(ledger.count(EffectKind::Charge), 1);
    assert!(ledger.duplicates().is_empty());
    assert_eq!(
        reply.json()["id"].as_str(),
        Some(ledger.entries()[0].object_id.as_str())
    );
    // A third replica now replays it from the store without asking the provider.
    let seen = provider.requests_seen();
    let replay = post(&replicas[2], Some("kill-key-1"), form).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(provider.requests_seen(), seen);
}
