//! Three real payguard processes sharing one PostgreSQL database and one provider double: the
//! "done when" of issue 18. Duplicates spread over the replicas give one effect; PostgreSQL
//! restarted mid-run (a cluster of the test's own, so the shared server is never touched)
//! gives no duplicate and payguard serves again; a replica `kill -9`ed mid-request is taken
//! over by another under the same key. The scenarios are `support::replica_scenarios`, which
//! Redis runs too.

mod support;

use std::sync::Arc;

use support::postgres::{PgCluster, TestDb, start_replicas};
use support::replica_scenarios::{self as scenario, Started};

/// Starts three replicas on the database at `url`.
fn on(url: String) -> impl AsyncFnOnce(String, &str, &str) -> Started {
    async move |provider: String, idempotency: &str, extra: &str| {
        start_replicas(3, &provider, &url, idempotency, extra).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_duplicates_over_three_replicas_take_effect_once() {
    let db = TestDb::create();
    scenario::duplicates_take_effect_once(on(db.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_mid_run_gives_no_duplicate_and_payguard_serves_again() {
    let cluster = Arc::new(PgCluster::start());
    let db = TestDb::on(cluster.port);
    let (stopping, starting) = (cluster.clone(), cluster.clone());
    // pg_ctl blocks until the server is down or up: off the runtime's threads.
    let stop = async move || {
        tokio::task::spawn_blocking(move || stopping.stop())
            .await
            .unwrap()
    };
    let restart = async move || {
        tokio::task::spawn_blocking(move || starting.restart())
            .await
            .unwrap()
    };
    scenario::outage_gives_no_duplicate(on(db.url()), stop, restart).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_request_is_taken_over_by_another_under_the_same_key() {
    let db = TestDb::create();
    scenario::a_killed_replicas_request_is_taken_over(on(db.url())).await;
}
