//! Retries: the policy for a route, and the attempt loop that applies it.
//!
//! The policy parts are plain types, each testable alone: [`classify`] says whether an outcome
//! may be retried, [`backoff`] how long to wait, and tower's `TpsBudget` whether the upstream
//! can afford another retry. [`send_with_retries`] is the readable async loop that puts them
//! together; it knows nothing of sockets, so its tests drive it with scripted outcomes under
//! paused time.
//!
//! Three things bound every request, whichever comes first: `max_attempts`, the total
//! `deadline` (no attempt and no backoff sleep may cross it), and the retry budget, shared by
//! all requests to the upstream, which caps retries at a fraction of recent requests plus a
//! small floor per second. Bounded attempts stop one request from looping; the budget stops an
//! outage from turning every request into several (why budgets and not only max attempts:
//! three attempts per request triples the load on a provider that is already failing).

pub mod backoff;
pub mod classify;
pub mod outcome;

use std::future::Future;
use std::time::Duration;

use http::Response;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};

pub use backoff::{Backoff, Jitter};
pub use classify::{
    AttemptError, ProviderErrorCode, Refusal, RequestFacts, RetryReason, Verdict, classify,
};
pub use outcome::{Doubt, settled};

use outcome::Doubts;

/// How one route retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// The longest one attempt may wait for a response head.
    pub attempt_timeout: Duration,
    /// The longest the whole request may take, attempts and waits together.
    pub deadline: Duration,
}

/// Why the loop stopped; a metric label and a log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The outcome was final (success, or a failure a retry cannot fix).
    Final,
    /// Retryable, but `max_attempts` were used.
    AttemptsExhausted,
    /// Retryable, but the next attempt could not start before the deadline.
    Deadline,
    /// Retryable, but the upstream's retry budget is spent.
    Budget,
}

impl Stop {
    pub fn label(self) -> &'static str {
        match self {
            Stop::Final => "final",
            Stop::AttemptsExhausted => "attempts_exhausted",
            Stop::Deadline => "deadline",
            Stop::Budget => "budget",
        }
    }
}

/// What the loop reports to its caller, for metrics and logs.
pub trait Observer {
    fn attempt<B>(&self, outcome: &Result<Response<B>, AttemptError>, elapsed: Duration);
    fn retry(&self, reason: RetryReason, delay: Duration);
    fn refused(&self, stop: Stop);
}

/// The result of a request after all its attempts.
#[derive(Debug)]
pub struct Finished<B> {
    pub outcome: Result<Response<B>, AttemptError>,
    pub attempts: u32,
    pub stop: Stop,
}

/// Runs `send` until its outcome is final or a bound is reached, all before `deadline` (the
/// request's, fixed when it arrived: time spent before the first attempt, such as waiting for
/// a duplicate, counts against it). `send` gets the timeout for the attempt (the policy's,
/// shortened to what the deadline leaves) and must apply it.
pub async fn send_with_retries<B, F, Fut>(
    policy: &RetryPolicy,
    deadline: Instant,
    facts: RequestFacts<'_>,
    budget: &TpsBudget,
    jitter: &Jitter,
    observer: &impl Observer,
    mut send: F,
) -> Finished<B>
where
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<Response<B>, AttemptError>>,
{
    budget.deposit();
    let mut attempts = 0;
    // The last real outcome, kept through the backoff sleep: if the next attempt is refused
    // locally (breaker open, limiter queue full), the app gets this instead, since a local
    // refusal would wrongly suggest nothing was ever sent.
    let mut previous: Option<Result<Response<B>, AttemptError>> = None;
    // What earlier attempts leave in doubt; every exit goes through it, so the app never
    // reads "nothing happened" when something may have.
    let mut doubts = Doubts::default();
    loop {
        attempts += 1;
        let started = Instant::now();
        let timeout = policy
            .attempt_timeout
            .min(deadline.saturating_duration_since(started));
        let outcome = send(timeout).await;
        observer.attempt(&outcome, started.elapsed());
        let end = |outcome, attempts, stop, doubts: Doubts| {
            finished(doubts.last(outcome, facts), attempts, stop)
        };

        let (reason, not_before) = match classify(&outcome, facts) {
            Verdict::Final => {
                // A refused attempt never left: it does not count as one.
                if matches!(outcome, Err(AttemptError::Refused(_))) {
                    attempts -= 1;
                    if let Some(previous) = previous {
                        return end(previous, attempts, Stop::Final, doubts);
                    }
                }
                return end(outcome, attempts, Stop::Final, doubts);
            }
            Verdict::Retry { reason, not_before } => (reason, not_before),
        };
        doubts.note(&outcome, facts);
        if attempts >= policy.max_attempts {
            return end(outcome, attempts, Stop::AttemptsExhausted, doubts);
        }
        let delay = policy
            .backoff
            .delay(attempts, jitter)
            .max(not_before.unwrap_or_default());
        // A wait that ends at the deadline leaves no time to attempt anything: stop now and
        // return what we have rather than sleep into a certain timeout. (A provider may send
        // an absurd Retry-After; checked_add keeps that from overflowing.)
        if Instant::now()
            .checked_add(delay)
            .is_none_or(|at| at >= deadline)
        {
            observer.refused(Stop::Deadline);
            return end(outcome, attempts, Stop::Deadline, doubts);
        }
        if !budget.withdraw() {
            observer.refused(Stop::Budget);
            return end(outcome, attempts, Stop::Budget, doubts);
        }
        observer.retry(reason, delay);
        tokio::time::sleep(delay).await;
        // The timer may wake late (it ticks in whole milliseconds, and a busy runtime adds
        // more), so a wait that was to end before the deadline can end on it: then no time
        // is left for an attempt either (the retry property test found this).
        if Instant::now() >= deadline {
            observer.refused(Stop::Deadline);
            return end(outcome, attempts, Stop::Deadline, doubts);
        }
        previous = Some(outcome);
    }
}

fn finished<B>(
    outcome: Result<Response<B>, AttemptError>,
    attempts: u32,
    stop: Stop,
) -> Finished<B> {
    Finished {
        outcome,
        attempts,
        stop,
    }
}

#[cfg(test)]
mod tests;
