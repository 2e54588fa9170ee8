//! Properties of backoff and the attempt loop, over arbitrary policies, seeds and provider
//! answers, under paused time: every wait lies in `[0, min(max, base * 2^(n-1))]`, and no
//! attempt, wait or answer ever crosses the request's deadline.

use std::sync::Mutex;
use std::time::Duration;

use http::Response;
use payguard::profile::STRIPE;
use payguard::retry::{
    AttemptError, Backoff, Jitter, Observer, RequestFacts, RetryPolicy, RetryReason, Stop,
    send_with_retries,
};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::retry::budget::TpsBudget;

/// The documented ceiling, computed independently in wide integers.
fn ceiling(base: Duration, max: Duration, retry: u32) -> Duration {
    let doubled = base
        .as_nanos()
        .saturating_mul(1u128 << (retry - 1).min(100));
    Duration::from_nanos(u64::try_from(doubled.min(max.as_nanos())).unwrap_or(u64::MAX))
}

fn millis(range: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = Duration> {
    range.prop_map(Duration::from_millis)
}

proptest! {
    #[test]
    fn every_delay_lies_within_zero_and_the_capped_ceiling(
        base in millis(1..=10_000),
        extra in millis(0..=60_000),
        retry in 1u32..200,
        seed: u64,
    ) {
        let backoff = Backoff { base, max: base + extra };
        let bound = ceiling(base, base + extra, retry);
        prop_assert_eq!(backoff.ceiling(retry), bound);
        let jitter = Jitter::seeded(seed);
        for _ in 0..8 {
            prop_assert!(backoff.delay(retry, &jitter) <= bound);
        }
        prop_assert_eq!(backoff.delay(retry, &Jitter::None), bound);
    }
}

/// One scripted attempt: how long the provider takes, and what it answers.
#[derive(Debug, Clone)]
enum Answer {
    /// A 503 after this long, asking to wait `retry_after` seconds when set.
    Unavailable(Duration, Option<u64>),
    /// No answer at all: the attempt runs into its timeout.
    Silence,
    /// Never sent (connection refused) after this long.
    Refused(Duration),
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        (millis(0..=3_000), proptest::option::of(0u64..=20))
            .prop_map(|(d, r)| Answer::Unavailable(d, r)),
        Just(Answer::Silence),
        millis(0..=500).prop_map(Answer::Refused),
    ]
}

#[derive(Default)]
struct Recorder {
    waits: Mutex<Vec<Duration>>,
}

impl Observer for Recorder {
    fn attempt<B>(&self, _: &Result<Response<B>, AttemptError>, _: Duration) {}
    fn retry(&self, _: RetryReason, delay: Duration) {
        self.waits.lock().unwrap().push(delay);
    }
    fn refused(&self, _: Stop) {}
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn the_deadline_is_never_exceeded(
        max_attempts in 1u32..=10,
        base in millis(1..=2_000),
        extra in millis(0..=10_000),
        attempt_timeout in millis(1..=5_000),
        slack in millis(0..=20_000),
        answers in proptest::collection::vec(answer(), 10),
        seed: u64,
    ) {
        let policy = RetryPolicy {
            max_attempts,
            backoff: Backoff { base, max: base + extra },
            attempt_timeout,
            deadline: attempt_timeout + slack,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (attempts, starts, ended, deadline, waits) = runtime.block_on(async {
            let started = Instant::now();
            let deadline = started + policy.deadline;
            let budget = TpsBudget::new(Duration::from_secs(10), 1_000, 10.0);
            let recorder = Recorder::default();
            let starts = Mutex::new(Vec::new());
            let mut script = answers.iter().cycle();
            let finished = send_with_retries(&policy, deadline, RequestFacts { replay_safe: true, keyed: true, profile: &STRIPE }, &budget, &Jitter::seeded(seed), &recorder, |timeout| {
                let now = Instant::now();
                starts.lock().unwrap().push((now, timeout));
                let answer = script.next().cloned().unwrap();
                async move {
                    // The sender applies the timeout it is given, as payguard's does.
                    let work = match &answer {
                        Answer::Unavailable(d, _) | Answer::Refused(d) => *d,
                        Answer::Silence => Duration::MAX,
                    };
                    if work > timeout {
                        tokio::time::sleep(timeout).await;
                        return Err(AttemptError::TimedOut(timeout));
                    }
                    tokio::time::sleep(work).await;
                    match answer {
                        Answer::Unavailable(_, retry_after) => {
                            let mut response = Response::builder().status(503);
                            if let Some(s) = retry_after {
                                response = response.header("retry-after", s.to_string());
                            }
                            Ok(response.body(()).unwrap())
                        }
                        _ => Err(AttemptError::NotSent("connection refused".into())),
                    }
                }
            })
            .await;
            let starts = starts.into_inner().unwrap();
            let waits = recorder.waits.into_inner().unwrap();
            (finished.attempts, starts, Instant::now(), deadline, waits)
        });
        prop_assert!(attempts >= 1 && attempts <= max_attempts);
        prop_assert_eq!(starts.len() as u32, attempts);
        prop_assert!(ended <= deadline, "finished {:?} past the deadline", ended - deadline);
        for (at, timeout) in &starts {
            prop_assert!(*at < deadline || starts.len() == 1);
            prop_assert!(*at + *timeout <= deadline, "an attempt's timeout reaches past the deadline");
            prop_assert!(*timeout <= attempt_timeout);
        }
        for (n, wait) in waits.iter().enumerate() {
            // At least the backoff draw's floor (zero), at most the larger of the ceiling and
            // what the provider asked for (at most 20s here).
            let bound = ceiling(base, base + extra, n as u32 + 1).max(Duration::from_secs(20));
            prop_assert!(*wait <= bound);
        }
    }
}
