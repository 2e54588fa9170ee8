//! The resolver with the Redis idempotency store: the journal stays local (in memory), the
//! resolved answer is stored in Redis, so the app's retry is replayed from there.

mod support;

use payguard::double::{self, DoubleConfig, EffectKind, Fault};
use support::redis::RedisServer;
use support::resolver::{FAST, RESENDS, payment, wait_for};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_redis_store_a_lost_charge_is_resolved_and_replayed() {
    let redis = RedisServer::start().await;
    let provider = double::spawn(DoubleConfig::default()).await.unwrap();
    provider.faults().push(Fault::ResetAfterProcessing);
    provider.faults().push(Fault::ResetAfterProcessing);
    let extra = format!(
        "{FAST}[redis]\nurl = \"{}\"\nkey_prefix = \"resolver:\"\n[idempotency]\nstore = \"redis\"\n{RESENDS}",
        redis.url()
    );
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
