//! Every transition of the breaker, under paused time.

use super::*;

fn spec() -> BreakerSpec {
    BreakerSpec {
        failure_rate: 0.5,
        min_calls: 10,
        window: Duration::from_secs(10),
        consecutive_failures: 5,
        break_duration: Duration::from_secs(30),
        half_open_probes: 2,
        max_wait_open: Duration::ZERO,
    }
}

/// Runs one call through the breaker with the given outcome; returns the transition, if any.
fn call(b: &Breaker, outcome: Outcome) -> Option<State> {
    let now = Instant::now();
    let (ticket, _) = b.admit(now);
    b.record(ticket.expect("admitted"), outcome, now)
}

/// Opens the breaker with five failures in a row (the spec's consecutive trip).
fn trip(b: &Breaker) {
    for _ in 0..5 {
        call(b, Outcome::Failure);
    }
}

/// Opens the breaker and waits out its break, so the next call is a probe.
async fn open_until_half_open(b: &Breaker) {
    trip(b);
    tokio::time::advance(spec().break_duration).await;
}

#[tokio::test(start_paused = true)]
async fn opens_on_failure_rate_only_with_enough_calls() {
    let b = Breaker::new(spec());
    // Alternate so no run of consecutive failures trips it: 4 of 9 calls failed.
    for i in 0..9 {
        let outcome = if i % 2 == 1 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        assert_eq!(call(&b, outcome), None, "call {i}");
    }
    // The 10th call brings the window to min_calls at a 50% failure rate.
    assert_eq!(call(&b, Outcome::Failure), Some(State::Open));
    assert_eq!(b.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn opens_on_consecutive_failures_at_low_traffic() {
    let b = Breaker::new(spec());
    for _ in 0..4 {
        assert_eq!(call(&b, Outcome::Failure), None);
    }
    assert_eq!(call(&b, Outcome::Failure), Some(State::Open));
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_rate_limits_never_trip_it() {
    let b = Breaker::new(spec());
    // 4xx count as successes (the provider answered); 429s are ignored.
    for _ in 0..100 {
        assert_eq!(call(&b, Outcome::Success), None);
        assert_eq!(call(&b, Outcome::Ignored), None);
    }
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn old_failures_slide_out_of_the_window() {
    let b = Breaker::new(spec());
    for _ in 0..4 {
        call(&b, Outcome::Failure);
        call(&b, Outcome::Success);
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..9 {
        call(&b, Outcome::Success);
    }
    assert_eq!(
        call(&b, Outcome::Failure),
        None,
        "1 failure in 10 calls now"
    );
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_refuses_with_the_time_left_then_half_opens() {
    let b = Breaker::new(spec());
    trip(&b);
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        b.admit(Instant::now()),
        (Err(Duration::from_secs(20)), None)
    );
    tokio::time::advance(Duration::from_secs(20)).await;
    let (first, transition) = b.admit(Instant::now());
    assert!(first.is_ok());
    assert_eq!(transition, Some(State::HalfOpen));
    let (second, _) = b.admit(Instant::now());
    assert!(second.is_ok(), "two probes allowed");
    let (third, _) = b.admit(Instant::now());
    assert!(third.is_err(), "no more than the configured probes");
}

#[tokio::test(start_paused = true)]
async fn probes_that_succeed_close_it() {
    let b = Breaker::new(spec());
    open_until_half_open(&b).await;
    let now = Instant::now();
    let (p1, _) = b.admit(now);
    let (p2, _) = b.admit(now);
    assert_eq!(b.record(p1.unwrap(), Outcome::Success, now), None);
    assert_eq!(
        b.record(p2.unwrap(), Outcome::Success, now),
        Some(State::Closed)
    );
    // Closed with a fresh window: the old failures are forgotten.
    assert_eq!(call(&b, Outcome::Failure), None);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_it() {
    let b = Breaker::new(spec());
    open_until_half_open(&b).await;
    let now = Instant::now();
    let (p1, _) = b.admit(now);
    assert_eq!(
        b.record(p1.unwrap(), Outcome::Failure, now),
        Some(State::Open)
    );
    assert_eq!(b.admit(now).0, Err(Duration::from_secs(30)));
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_probe_frees_its_place() {
    let b = Breaker::new(BreakerSpec {
        half_open_probes: 1,
        ..spec()
    });
    open_until_half_open(&b).await;
    let now = Instant::now();
    let (probe, _) = b.admit(now);
    assert!(b.admit(now).0.is_err());
    assert_eq!(b.record(probe.unwrap(), Outcome::Ignored, now), None);
    assert!(b.admit(now).0.is_ok(), "the place is free again");
}

#[tokio::test(start_paused = true)]
async fn a_probe_from_an_earlier_round_does_not_count_in_the_next() {
    let b = Breaker::new(spec());
    open_until_half_open(&b).await;
    let now = Instant::now();
    let (a, _) = b.admit(now);
    let (slow, _) = b.admit(now);
    assert_eq!(
        b.record(a.unwrap(), Outcome::Failure, now),
        Some(State::Open)
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    let now = Instant::now();
    let (fresh, _) = b.admit(now);
    // The slow probe of the first round succeeds now: it must not help close the breaker.
    assert_eq!(b.record(slow.unwrap(), Outcome::Success, now), None);
    assert_eq!(
        b.record(fresh.unwrap(), Outcome::Success, now),
        None,
        "one of two probes"
    );
    assert_eq!(b.state(), State::HalfOpen);
}
