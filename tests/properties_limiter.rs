//! The rate limiter's promise, over arbitrary arrival sequences under paused time: in any
//! window of `T` seconds it grants at most `burst + rate * T` sends, whatever the arrivals, the
//! waits they accept, the waiters that leave before their turn, and the provider's 429s (which
//! only ever lower the adaptive rate).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use payguard::ratelimit::{LimitSpec, Limiter};
use proptest::prelude::*;
use tokio::time::Instant;

#[derive(Debug, Clone)]
struct Arrival {
    /// Time since the previous arrival.
    gap: Duration,
    /// How much of its deadline is left (the limiter waits at most this, and `max_wait`).
    deadline_left: Duration,
    /// Whether the provider answered this send with a 429.
    throttled: bool,
    /// The app hangs up after this long, giving its turn back if it has not come yet.
    leaves_after: Option<Duration>,
}

fn arrival() -> impl Strategy<Value = Arrival> {
    (
        prop_oneof![Just(0u64), 0u64..=50, 0u64..=3_000],
        0u64..=5_000,
        proptest::bool::weighted(0.1),
        proptest::option::weighted(0.2, 0u64..=2_000),
    )
        .prop_map(|(gap, left, throttled, leaves)| Arrival {
            gap: Duration::from_millis(gap),
            deadline_left: Duration::from_millis(left),
            throttled,
            leaves_after: leaves.map(Duration::from_millis),
        })
}

fn spec() -> impl Strategy<Value = LimitSpec> {
    (
        1u32..=1_000,
        1u32..=20,
        proptest::option::of(0u64..=3_000),
        any::<bool>(),
    )
        .prop_map(|(centi_rate, burst, wait, adaptive)| {
            let rate = f64::from(centi_rate) / 10.0;
            LimitSpec {
                rate,
                burst,
                // None: only the deadline bounds the wait, the shipped default.
                max_wait: wait.map(Duration::from_millis),
                adaptive,
                min_rate: rate / 4.0,
                // The local limiter: the shared one's window is Redis's, tested in redis_rate.rs.
                shared: None,
            }
        })
}

/// A runtime on tokio's paused clock: time moves only when every task waits.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

/// Every grant's send time, in the order granted.
fn run(spec: LimitSpec, arrivals: Vec<Arrival>) -> Vec<Duration> {
    paused_runtime().block_on(async move {
        let origin = Instant::now();
        let limiter = Arc::new(Limiter::new(spec));
        let grants = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for arrival in arrivals {
            tokio::time::sleep(arrival.gap).await;
            let (limiter, grants) = (limiter.clone(), grants.clone());
            tasks.push(tokio::spawn(async move {
                let asked = Instant::now();
                let acquire = limiter.acquire(arrival.deadline_left);
                let granted = match arrival.leaves_after {
                    // A waiter that leaves gives its turn back, for a later arrival to take.
                    Some(after) => tokio::time::timeout(after, acquire).await.ok(),
                    None => Some(acquire.await),
                };
                if let Some(Ok(waited)) = granted {
                    // The reserved send time itself; the timer may wake a little later.
                    grants.lock().unwrap().push(asked + waited - origin);
                    if arrival.throttled {
                        limiter.throttled();
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut grants = grants.lock().unwrap().clone();
        grants.sort();
        grants
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn no_window_holds_more_than_burst_plus_rate_times_its_length(
        spec in spec(),
        arrivals in proptest::collection::vec(arrival(), 1..200),
    ) {
        let grants = run(spec, arrivals);
        // The tightest window holding grants i..=j is [t_i, t_j]; checking every such pair
        // checks every window.
        for i in 0..grants.len() {
            for j in i..grants.len() {
                let count = (j - i + 1) as f64;
                let span = (grants[j] - grants[i]).as_secs_f64();
                let allowed = f64::from(spec.burst) + spec.rate * span;
                // A nanosecond of rounding per interval is not a burst.
                prop_assert!(
                    count <= allowed + 1e-6 * count,
                    "{} grants in {span}s, at most {allowed} allowed ({spec:?})",
                    j - i + 1
                );
            }
        }
    }

    #[test]
    fn nobody_waits_longer_than_they_may(
        spec in spec(),
        arrivals in proptest::collection::vec(arrival(), 1..100),
    ) {
        paused_runtime().block_on(async move {
            let limiter = Limiter::new(spec);
            for arrival in arrivals {
                tokio::time::advance(arrival.gap).await;
                if let Ok(waited) = limiter.acquire(arrival.deadline_left).await {
                    let may = spec
                        .max_wait
                        .map_or(arrival.deadline_left, |w| w.min(arrival.deadline_left));
                    assert!(waited <= may);
                }
            }
        });
    }
}
