//! Three real payguard processes sharing one `redis-server` and one provider double: the
//! "done when" of several replicas with one truth. Duplicates spread over the replicas give
//! one effect; Redis killed and restarted mid-run gives no duplicate and payguard serves
//! again; a replica killed mid-request is taken over by another under the same key. The
//! scenarios are `support::replica_scenarios`, which PostgreSQL runs too.
//! (The shared rate limit's test is in `redis_rate.rs`, which runs alone.)

mod support;

use tokio::sync::Mutex;

use support::redis::RedisServer;
use support::replica_scenarios::{self as scenario, Started};
use support::replicas::start_replicas;

/// Starts three replicas on the Redis at `url`.
fn on(url: String) -> impl AsyncFnOnce(String, &str, &str) -> Started {
    async move |provider: String, idempotency: &str, extra: &str| {
        start_replicas(3, &provider, &url, idempotency, extra).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_duplicates_over_three_replicas_take_effect_once() {
    let redis = RedisServer::start().await;
    scenario::duplicates_take_effect_once(on(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_mid_run_gives_no_duplicate_and_payguard_serves_again() {
    let redis = Mutex::new(RedisServer::start().await);
    let start = on(redis.lock().await.url());
    let stop = async || redis.lock().await.kill9().await;
    let restart = async || redis.lock().await.restart().await;
    scenario::outage_gives_no_duplicate(start, stop, restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_request_is_taken_over_by_another_under_the_same_key() {
    let redis = RedisServer::start().await;
    scenario::a_killed_replicas_request_is_taken_over(on(redis.url())).await;
}
