//! The resolver with the Redis store: the journal is in Redis too, shared by every replica.
//! A lost charge is resolved and its answer replayed from Redis; an entry a replica left
//! behind is resolved by another once the first is gone (a rolling deploy, a crash); any
//! replica lists it and gives it up; and a resolver leaves alone an entry another replica's
//! resolver holds. The journal backend itself is tested in `journal_redis.rs`.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use payguard::config::Config;
use payguard::journal::Journal;
use payguard::journal::redis::RedisJournal;
use payguard::journal::seal::Sealer;
use payguard::proxy::ProxyState;
use payguard_double::{self as double, DoubleConfig, EffectKind, Fault};
use support::redis::RedisServer;
use support::resolver::{FAST, RESENDS, payment, wait_for};
use support::*;

/// `[redis]` on `redis` under `prefix`, and the Redis store with a duplicate window across
/// keys, so the resolver re-sends keyed payments on the default route.
fn on_redis(redis: &RedisServer, prefix: &str) -> String {
    format!(
        "[redis]\nurl = \"{}\"\nkey_prefix = \"{prefix}\"\n[idempotency]\nstore = \"redis\"\n{RESENDS}",
        redis.url()
    )
}

/// [`FAST`], but the resolver looks once, at startup, then sleeps an hour: a replica that
/// leaves its unresolved entries to others.
fn idle() -> String {
    let idle = FAST.replace("interval = \"20ms\"", "interval = \"1h\"");
    assert_ne!(idle, FAST, "FAST sets the interval");
    idle
}

/// A provider whose next two answers are lost after it has executed the request: with two
/// attempts, payguard ends in doubt and journals the payment as pending.
async fn losing_provider() -> double::DoubleHandle {
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::ResetAfterProcessing);
    provider.faults().push(Fault::ResetAfterProcessing);
    provider
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_redis_store_a_lost_charge_is_resolved_and_replayed() {
    let redis = RedisServer::start().await;
    let provider = losing_provider().await;
    let extra = format!("{FAST}{}", on_redis(&redis, "resolver:"));
    let proxy = start_proxy(&config_toml(&provider.url(), &extra)).await;
    let url = proxy.url("/v1/payment_intents");
    let form = "amount=4100&currency=usd";
    assert_eq!(send(payment(&url, "redis-lost", form)).await.status, 502);

    let row = wait_for(&proxy.admin.to_string(), "redis-lost", "resolved").await;
    assert_eq!(row["outcome"], "200");
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
    let seen = provider.requests_seen();
    let retry = send(payment(&url, "redis-lost", form)).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.headers["payguard-attempts"], "0");
    assert_eq!(provider.requests_seen(), seen, "replayed from Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_a_replica_left_behind_is_resolved_by_another_once_it_is_gone() {
    let redis = RedisServer::start().await;
    let provider = losing_provider().await;
    let shared = on_redis(&redis, "handover:");
    let a = start_proxy(&config_toml(
        &provider.url(),
        &format!("{}{shared}", idle()),
    ))
    .await;
    let form = "amount=4300&currency=usd";
    let lost = send(payment(&a.url("/v1/payment_intents"), "handover", form)).await;
    assert_outcome_unknown(&lost, &[502]);
    wait_for(&a.admin.to_string(), "handover", "pending").await;
    assert_eq!(provider.ledger().count(EffectKind::PaymentIntentCreated), 1);
    // Replica A goes away (a rolling deploy) with the payment unresolved.
    a.begin_shutdown().await.unwrap().unwrap();

    let b = start_proxy(&config_toml(&provider.url(), &format!("{FAST}{shared}"))).await;
    let row = wait_for(&b.admin.to_string(), "handover", "resolved").await;
    assert_eq!(row["outcome"], "200");
    let ledger = provider.ledger();
    assert_eq!(
        ledger.count(EffectKind::PaymentIntentCreated),
        1,
        "one effect"
    );
    assert!(ledger.duplicates().is_empty(), "{:?}", ledger.duplicates());
    // The app's retry, through B, is the resolved answer, replayed.
    let seen = provider.requests_seen();
    let retry = send(payment(&b.url("/v1/payment_intents"), "handover", form)).await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.headers["payguard-attempts"], "0");
    assert_eq!(provider.requests_seen(), seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_replica_lists_an_entry_another_left_and_gives_it_up() {
    let redis = RedisServer::start().await;
    let provider = losing_provider().await;
    let config = config_toml(
        &provider.url(),
        &format!("{}{}", idle(), on_redis(&redis, "giveup:")),
    );
    let (a, b) = (start_proxy(&config).await, start_proxy(&config).await);
    let lost = send(payment(
        &a.url("/v1/payment_intents"),
        "given-up",
        "amount=1",
    ))
    .await;
    assert_outcome_unknown(&lost, &[502]);

    let row = wait_for(&b.admin.to_string(), "given-up", "pending").await;
    let id = row["id"].as_str().unwrap();
    let give_up = http::Request::post(b.admin_url(&format!("/unresolved/{id}/give-up")))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = send(give_up).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let row = wait_for(&a.admin.to_string(), "given-up", "gave_up").await;
    assert_eq!(row["outcome"], "operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_leaves_alone_an_entry_another_replicas_resolver_holds() {
    let redis = RedisServer::start().await;
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    let toml = config_toml(
        &provider.url(),
        &format!("{FAST}{}", on_redis(&redis, "held:")),
    );
    let b = ProxyState::new(&Config::parse(&toml, "test config", None).unwrap()).unwrap();
    // Replica A's journal: another pool and lease holder on the same Redis.
    let a = Journal::new(
        Arc::new(RedisJournal::new(redis.pool("held:"), 100)),
        Sealer::new(None),
    );
    // A pending payment, as a request through A leaves it.
    support::resolver::a_held_entry_is_left_alone(&provider, &b, a).await;
}
