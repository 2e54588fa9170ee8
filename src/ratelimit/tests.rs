//! The limiter under paused time: accuracy, utilisation, fairness, refusal, adaptation.

use std::sync::Arc;

use super::*;

fn spec(rate: f64, burst: u32, max_wait: Duration) -> LimitSpec {
    LimitSpec {
        rate,
        burst,
        max_wait: Some(max_wait),
        adaptive: true,
        min_rate: 1.0,
        shared: None,
    }
}

/// Offers `per_second` attempts for `seconds`, evenly spaced; returns (arrival index, grant
/// time since start) for each granted attempt and the number refused.
async fn offer(
    limiter: Arc<Limiter>,
    per_second: u32,
    seconds: u32,
) -> (Vec<(usize, Duration)>, usize) {
    let start = Instant::now();
    let gap = Duration::from_secs(1) / per_second;
    let mut tasks = Vec::new();
    for i in 0..(per_second * seconds) as usize {
        tokio::time::sleep_until(start + gap * i as u32).await;
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move {
            limiter
                .acquire(Duration::from_secs(3600))
                .await
                .map(|_| (i, start.elapsed()))
        }));
    }
    let (mut granted, mut refused) = (Vec::new(), 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(grant) => granted.push(grant),
            Err(_) => refused += 1,
        }
    }
    (granted, refused)
}

/// The most grants in any half-open window `[t, t + 1s)`.
fn busiest_second(grants: &[(usize, Duration)]) -> usize {
    let mut times: Vec<Duration> = grants.iter().map(|g| g.1).collect();
    times.sort();
    payguard_double::busiest_window(&times, Duration::from_secs(1))
}

#[tokio::test(start_paused = true)]
async fn fifty_per_second_offered_never_exceed_ten_in_any_second() {
    let limiter = Arc::new(Limiter::new(spec(10.0, 1, Duration::from_secs(600))));
    let (granted, refused) = offer(limiter, 50, 10).await;
    assert_eq!(refused, 0);
    assert!(
        busiest_second(&granted) <= 10,
        "busiest second: {}",
        busiest_second(&granted)
    );
    // Under saturation the limit is used: at least 95% of 10/s over the first 10 seconds.
    let in_ten = granted
        .iter()
        .filter(|g| g.1 < Duration::from_secs(10))
        .count();
    assert!(in_ten >= 95, "{in_ten} sends in 10 s");
}

#[tokio::test(start_paused = true)]
async fn the_queue_is_served_in_arrival_order() {
    let limiter = Arc::new(Limiter::new(spec(10.0, 1, Duration::from_secs(600))));
    let (mut granted, _) = offer(limiter, 50, 2).await;
    granted.sort_by_key(|g| g.1);
    let order: Vec<usize> = granted.iter().map(|g| g.0).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "grants follow arrivals");
}

#[tokio::test(start_paused = true)]
async fn past_max_wait_an_attempt_is_refused_with_a_hint() {
    let limiter = Arc::new(Limiter::new(spec(10.0, 1, Duration::from_millis(250))));
    let (granted, refused) = offer(limiter.clone(), 50, 2).await;
    assert!(refused > 0);
    assert!(busiest_second(&granted) <= 10);
    // The queue holds at most max_wait's worth: the next free slot is within reach again soon.
    let refusal = limiter.reserve(Instant::now(), Duration::ZERO).unwrap_err();
    assert!(
        refusal.retry_after <= Duration::from_millis(350),
        "{refusal:?}"
    );
    // The deadline bounds the wait too.
    assert!(limiter.acquire(Duration::ZERO).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_burst_goes_out_at_once_after_a_quiet_period() {
    let limiter = Limiter::new(spec(10.0, 3, Duration::from_secs(10)));
    for _ in 0..3 {
        assert_eq!(
            limiter.acquire(Duration::from_secs(10)).await,
            Ok(Duration::ZERO)
        );
    }
    assert_eq!(
        limiter.acquire(Duration::from_secs(10)).await,
        Ok(Duration::from_millis(100))
    );
}

/// Lowers the limiter's adaptive rate to `share` of what it is, as two windows of evidence
/// would (the rule itself is tested in `adaptive_tests.rs`).
fn lower(limiter: &Limiter, share: f64) {
    let mut state = limiter.state.lock().unwrap();
    state.adaptive.lower_for_test(share);
}

#[tokio::test(start_paused = true)]
async fn a_lowered_rate_spaces_sends_and_quiet_brings_it_back() {
    let limiter = Limiter::new(spec(10.0, 1, Duration::from_secs(10)));
    lower(&limiter, 0.5);
    assert_eq!(limiter.effective_rate(), 5.0);
    limiter.acquire(Duration::from_secs(10)).await.unwrap();
    let waited = limiter.acquire(Duration::from_secs(10)).await.unwrap();
    assert!(
        (waited.as_secs_f64() - 0.2).abs() < 0.001,
        "spacing follows the lowered rate: {waited:?}"
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(limiter.effective_rate(), 10.0);
}

#[tokio::test(start_paused = true)]
async fn only_the_profiles_rate_limit_answer_is_evidence() {
    // Many 429s reported through `throttled` lower the rate; none do when they are not
    // reported (the gate reports only the profile's rate-limit answer, never lock_timeout).
    let limiter = Limiter::new(spec(10.0, 1, Duration::from_secs(60)));
    for _ in 0..60 {
        limiter.acquire(Duration::from_secs(60)).await.unwrap();
        limiter.throttled();
    }
    assert!(limiter.effective_rate() < 10.0);
    let untouched = Limiter::new(spec(10.0, 1, Duration::from_secs(60)));
    for _ in 0..60 {
        untouched.acquire(Duration::from_secs(60)).await.unwrap();
    }
    assert_eq!(untouched.effective_rate(), 10.0);
}

/// Found by the `properties_limiter` property test: a 429 halved the rate, which doubled the
/// burst tolerance measured in time, and a third send went out at once with a burst of two.
#[tokio::test(start_paused = true)]
async fn a_lowered_rate_never_widens_the_burst() {
    let limiter = Limiter::new(spec(5.9, 2, Duration::from_millis(110)));
    assert_eq!(limiter.acquire(Duration::ZERO).await, Ok(Duration::ZERO));
    assert_eq!(limiter.acquire(Duration::ZERO).await, Ok(Duration::ZERO));
    lower(&limiter, 0.5);
    let refused = limiter.acquire(Duration::ZERO).await.unwrap_err();
    // Two sends owed at 2.95/s, one of them covered by the burst: one interval to wait.
    let interval = 1.0 / 2.95;
    assert!(
        (refused.retry_after.as_secs_f64() - interval).abs() < 1e-6,
        "{refused:?}"
    );
    // The rescaled backlog outlives the refusal: the next attempt is refused alike.
    assert_eq!(limiter.acquire(Duration::ZERO).await.unwrap_err(), refused);
}

#[tokio::test(start_paused = true)]
async fn without_max_wait_only_the_deadline_bounds_the_queue() {
    let mut open = spec(10.0, 1, Duration::ZERO);
    open.max_wait = None;
    let limiter = Arc::new(Limiter::new(open));
    // 30 arrive at once: each waits its turn, up to 2.9 s, none refused within a 5 s deadline.
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire(Duration::from_secs(5)).await })
        })
        .collect();
    let mut waits = Vec::new();
    for task in tasks {
        waits.push(task.await.unwrap().expect("queued, not refused"));
    }
    assert_eq!(waits.iter().max(), Some(&Duration::from_millis(2900)));
    // One whose turn would come after its deadline is refused, with when it could go.
    let refused = limiter
        .acquire(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(refused.retry_after > Duration::from_millis(50));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_leaves_gives_its_turn_to_the_next_arrival() {
    let limiter = Arc::new(Limiter::new(spec(10.0, 1, Duration::from_secs(60))));
    limiter.acquire(Duration::from_secs(60)).await.unwrap();
    // Ten waiters queue (turns at 100 ms .. 1 s) and their apps hang up after 50 ms.
    for _ in 0..10 {
        let limiter = limiter.clone();
        let waiter = tokio::spawn(async move { limiter.acquire(Duration::from_secs(60)).await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        waiter.abort();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The next arrival takes the first turn they left (100 ms after the first send), not the
    // one after all ten.
    let waited = limiter.acquire(Duration::from_secs(60)).await.unwrap();
    assert!(waited <= Duration::from_millis(60), "waited {waited:?}");
}
