//! The attempt loop under paused time, driven by scripted outcomes: no sockets, no real waits.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::*;

/// Records what the loop reported.
#[derive(Default)]
struct Seen {
    attempts: RefCell<Vec<Instant>>,
    retries: RefCell<Vec<(RetryReason, Duration)>>,
    refused: RefCell<Vec<Stop>>,
}

impl Observer for Seen {
    fn attempt<B>(&self, _: &Result<Response<B>, AttemptError>, _: Duration) {
        self.attempts.borrow_mut().push(Instant::now());
    }
    fn retry(&self, reason: RetryReason, delay: Duration) {
        self.retries.borrow_mut().push((reason, delay));
    }
    fn refused(&self, stop: Stop) {
        self.refused.borrow_mut().push(stop);
    }
}

fn policy(max_attempts: u32, deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        },
        attempt_timeout: Duration::from_secs(1),
        deadline,
    }
}

fn status(code: u16, headers: &[(&str, &str)]) -> Result<Response<()>, AttemptError> {
    let mut builder = Response::builder().status(code);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Ok(builder.body(()).unwrap())
}

fn generous_budget() -> TpsBudget {
    TpsBudget::new(Duration::from_secs(10), 1000, 10.0)
}

/// `run` with a `policy(max_attempts, deadline)` and a budget that never refuses.
async fn run_plain(
    max_attempts: u32,
    deadline: Duration,
    replay_safe: bool,
    script: Vec<Result<Response<()>, AttemptError>>,
) -> (Finished<()>, Seen) {
    run(
        &policy(max_attempts, deadline),
        replay_safe,
        &generous_budget(),
        script,
    )
    .await
}

/// Runs the loop over a script of outcomes; an exhausted script answers 200.
async fn run(
    policy: &RetryPolicy,
    replay_safe: bool,
    budget: &TpsBudget,
    script: Vec<Result<Response<()>, AttemptError>>,
) -> (Finished<()>, Seen) {
    let facts = RequestFacts {
        replay_safe,
        keyed: false,
        profile: &crate::profile::STRIPE,
    };
    run_with(policy, facts, budget, script).await
}

/// `run` for a request carrying an idempotency key.
async fn run_keyed(
    max_attempts: u32,
    script: Vec<Result<Response<()>, AttemptError>>,
) -> (Finished<()>, Seen) {
    let facts = RequestFacts {
        replay_safe: true,
        keyed: true,
        profile: &crate::profile::STRIPE,
    };
    let policy = policy(max_attempts, Duration::from_secs(60));
    run_with(&policy, facts, &generous_budget(), script).await
}

async fn run_with(
    policy: &RetryPolicy,
    facts: RequestFacts<'_>,
    budget: &TpsBudget,
    script: Vec<Result<Response<()>, AttemptError>>,
) -> (Finished<()>, Seen) {
    let seen = Seen::default();
    let script = RefCell::new(VecDeque::from(script));
    let finished = send_with_retries(
        policy,
        Instant::now() + policy.deadline,
        facts,
        budget,
        &Jitter::None,
        &seen,
        |timeout| {
            let next = script.borrow_mut().pop_front();
            async move {
                match next {
                    Some(Err(AttemptError::TimedOut(_))) => {
                        tokio::time::sleep(timeout).await;
                        Err(AttemptError::TimedOut(timeout))
                    }
                    Some(outcome) => outcome,
                    None => status(200, &[]),
                }
            }
        },
    )
    .await;
    (finished, seen)
}

#[tokio::test(start_paused = true)]
async fn a_retry_loop_always_ends_at_max_attempts() {
    let always_500 = (0..100).map(|_| status(500, &[])).collect();
    let (done, seen) = run_plain(4, Duration::from_secs(60), true, always_500).await;
    assert_eq!(done.attempts, 4);
    assert_eq!(done.stop, Stop::AttemptsExhausted);
    assert_eq!(
        done.outcome.unwrap().status(),
        500,
        "the last provider response is returned"
    );
    // Exponential spacing without jitter: 100, 200, 400 ms.
    let delays: Vec<u128> = seen
        .retries
        .borrow()
        .iter()
        .map(|(_, d)| d.as_millis())
        .collect();
    assert_eq!(delays, [100, 200, 400]);
}

#[tokio::test(start_paused = true)]
async fn a_400_is_never_retried() {
    let script = vec![status(400, &[])];
    let (done, seen) = run_plain(5, Duration::from_secs(60), true, script).await;
    assert_eq!((done.attempts, done.stop), (1, Stop::Final));
    assert!(seen.retries.borrow().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_not_hammered() {
    let script = vec![
        status(429, &[("retry-after", "3")]),
        status(429, &[("retry-after", "3")]),
    ];
    let (done, seen) = run_plain(5, Duration::from_secs(60), false, script).await;
    assert_eq!(done.outcome.unwrap().status(), 200);
    assert_eq!(done.attempts, 3);
    let at = seen.attempts.borrow();
    for pair in at.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_secs(3),
            "spacing {:?}",
            pair[1] - pair[0]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_deadline_returns_the_response_at_once() {
    let started = Instant::now();
    let script = vec![status(503, &[("retry-after", "120")])];
    let (done, seen) = run_plain(5, Duration::from_secs(20), true, script).await;
    assert_eq!((done.attempts, done.stop), (1, Stop::Deadline));
    assert_eq!(done.outcome.unwrap().status(), 503);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no sleep that would cross the deadline"
    );
    assert_eq!(*seen.refused.borrow(), [Stop::Deadline]);
}

#[tokio::test(start_paused = true)]
async fn no_attempt_or_sleep_crosses_the_deadline() {
    let started = Instant::now();
    let script = (0..10)
        .map(|_| Err(AttemptError::TimedOut(Duration::ZERO)))
        .collect();
    let deadline = Duration::from_millis(2500);
    let (done, _) = run_plain(10, deadline, true, script).await;
    assert!(
        started.elapsed() <= deadline,
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(done.outcome, Err(AttemptError::TimedOut(_))));
    assert_eq!(done.stop, Stop::Deadline);
}

#[tokio::test(start_paused = true)]
async fn a_500_marked_should_retry_false_is_not_retried() {
    let script = vec![status(500, &[("stripe-should-retry", "false")])];
    let (done, _) = run_plain(5, Duration::from_secs(60), true, script).await;
    assert_eq!((done.attempts, done.stop), (1, Stop::Final));
}

#[tokio::test(start_paused = true)]
async fn a_post_without_a_key_is_retried_only_when_never_sent() {
    let lost = vec![Err(AttemptError::Lost("reset".into()))];
    let (done, _) = run_plain(5, Duration::from_secs(60), false, lost).await;
    assert_eq!((done.attempts, done.stop), (1, Stop::Final));

    let refused = vec![Err(AttemptError::NotSent("refused".into()))];
    let (done, _) = run_plain(5, Duration::from_secs(60), false, refused).await;
    assert_eq!(done.attempts, 2);
    assert_eq!(done.outcome.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_stops_retries() {
    // No floor and no percentage: not a single retry is affordable.
    let empty = TpsBudget::new(Duration::from_secs(10), 0, 0.0);
    let (done, seen) = run(
        &policy(5, Duration::from_secs(60)),
        true,
        &empty,
        vec![status(502, &[])],
    )
    .await;
    assert_eq!((done.attempts, done.stop), (1, Stop::Budget));
    assert_eq!(*seen.refused.borrow(), [Stop::Budget]);
}

#[tokio::test(start_paused = true)]
async fn an_absurd_retry_after_ends_the_loop_instead_of_overflowing() {
    let script = vec![status(503, &[("retry-after", "18446744073709551615")])];
    let (done, _) = run_plain(5, Duration::from_secs(20), true, script).await;
    assert_eq!((done.attempts, done.stop), (1, Stop::Deadline));
    assert_eq!(done.outcome.unwrap().status(), 503);
}

#[tokio::test(start_paused = true)]
async fn a_local_refusal_on_a_retry_returns_the_providers_last_answer() {
    let refused = Err(AttemptError::Refused(Refusal::CircuitOpen(
        Duration::from_secs(5),
    )));
    let script = vec![status(503, &[]), refused];
    let (done, _) = run_plain(5, Duration::from_secs(60), true, script).await;
    assert_eq!(
        done.outcome.unwrap().status(),
        503,
        "not payguard's refusal"
    );
    assert_eq!(done.attempts, 1, "the refused attempt never left");
}

#[tokio::test(start_paused = true)]
async fn attempts_ending_on_a_429_after_a_lost_attempt_report_the_uncertainty() {
    let script = vec![
        Err(AttemptError::Lost("reset".into())),
        status(429, &[]),
        status(429, &[]),
    ];
    let (done, _) = run_plain(3, Duration::from_secs(60), true, script).await;
    assert_eq!(done.stop, Stop::AttemptsExhausted);
    assert!(
        matches!(done.outcome, Err(AttemptError::Lost(_))),
        "not a 429 that says nothing happened"
    );
}

fn unknown(done: &Finished<()>) -> &str {
    match &done.outcome {
        Err(AttemptError::Unknown { detail, .. }) => detail,
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_keyed_request_ending_on_5xx_is_an_unknown_outcome() {
    // Four 503s: each may have executed (Stripe saves 500s, a 503 says nothing); the app is
    // told "outcome unknown", never a plain 503 it could read as "failed".
    let script = (0..4).map(|_| status(503, &[])).collect();
    let (done, _) = run_keyed(4, script).await;
    assert!(unknown(&done).contains("503"));
}

#[tokio::test(start_paused = true)]
async fn a_local_refusal_after_a_5xx_does_not_read_as_nothing_executed() {
    let refused = Err(AttemptError::Refused(Refusal::CircuitOpen(
        Duration::from_secs(5),
    )));
    let (done, _) = run_keyed(4, vec![status(500, &[]), refused]).await;
    assert!(unknown(&done).contains("500"), "{:?}", done.outcome);
    assert_eq!(done.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn no_429_reaches_the_app_plain_after_a_maybe_executed_attempt() {
    let lost = Err(AttemptError::Lost("reset".into()));
    // Stripe-Should-Retry: false makes the 429 final at once; the lost attempt still stands.
    let final_429 = status(429, &[("stripe-should-retry", "false")]);
    let (done, _) = run_keyed(4, vec![lost.clone(), final_429]).await;
    assert!(unknown(&done).contains("reset"));
    // Retries spent on 429s after it: the same.
    let script = vec![lost, status(429, &[]), status(429, &[])];
    let (done, _) = run_keyed(3, script).await;
    assert!(unknown(&done).contains("reset"));
}

#[tokio::test(start_paused = true)]
async fn connect_failures_after_a_lost_attempt_are_not_never_sent() {
    let lost = Err(AttemptError::Lost("reset after sending".into()));
    let refused = || Err(AttemptError::NotSent("connection refused".into()));
    let (done, _) = run_keyed(3, vec![lost, refused(), refused()]).await;
    assert!(unknown(&done).contains("reset after sending"));
}

#[tokio::test(start_paused = true)]
async fn what_executed_nothing_stays_as_it_is() {
    // A first 429 the provider says not to retry: nothing happened, and the app may say so.
    let (done, _) = run_keyed(4, vec![status(429, &[("stripe-should-retry", "false")])]).await;
    assert_eq!(done.outcome.unwrap().status(), 429);
    // A final answer after doubt settles it: the provider spoke.
    let lost = Err(AttemptError::Lost("reset".into()));
    let (done, _) = run_keyed(4, vec![lost, status(402, &[])]).await;
    assert_eq!(done.outcome.unwrap().status(), 402);
    // Never sent at all: nothing to doubt.
    let refused = || Err(AttemptError::NotSent("connection refused".into()));
    let (done, _) = run_keyed(2, vec![refused(), refused()]).await;
    assert!(matches!(done.outcome, Err(AttemptError::NotSent(_))));
}

/// A wait planned to end just before the deadline can wake on it or past it (the timer ticks
/// in whole milliseconds): the loop then stops instead of starting an attempt with no time.
#[tokio::test(start_paused = true)]
async fn a_backoff_that_wakes_past_the_deadline_ends_the_loop() {
    // Off the timer's millisecond grid, so the 1 s wait below ends 0.7 ms late.
    tokio::time::advance(Duration::from_micros(300)).await;
    let policy = RetryPolicy {
        deadline: Duration::from_micros(1_000_500),
        ..policy(3, Duration::ZERO)
    };
    let script = vec![status(503, &[("retry-after", "1")])];
    let (finished, seen) = run(&policy, true, &generous_budget(), script).await;
    assert_eq!(seen.attempts.borrow().len(), 1);
    assert_eq!(finished.attempts, 1);
    assert_eq!(finished.stop, Stop::Deadline);
    assert_eq!(finished.outcome.unwrap().status(), 503);
}
