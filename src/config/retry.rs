//! The `[retry]`, `[retry_budget]` and `[route.retry]` tables: raw forms, defaults, merging of a
//! route's overrides onto the defaults, and the checks that keep a policy sane.

use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::retry::{Backoff, RetryPolicy};

/// The official SDKs give up on a request after 80 s and may then resend it themselves. A
/// deadline at or past that would have payguard retrying something the app already abandoned.
pub const SDK_TIMEOUT: Duration = Duration::from_secs(80);

/// A retry table; every key optional so a route can override just one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub max_attempts: Option<u32>,
    #[serde(default, with = "duration::option")]
    pub base_delay: Option<Duration>,
    #[serde(default, with = "duration::option")]
    pub max_delay: Option<Duration>,
    #[serde(default, with = "duration::option")]
    pub attempt_timeout: Option<Duration>,
    #[serde(default, with = "duration::option")]
    pub deadline: Option<Duration>,
    /// Only in the top-level table: seeds the jitter for reproducible runs.
    pub jitter_seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    #[serde(default = "default_ratio")]
    pub ratio: f32,
    #[serde(default = "default_min_per_second")]
    pub min_per_second: u32,
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
}

impl Default for RawBudget {
    fn default() -> Self {
        RawBudget {
            ratio: default_ratio(),
            min_per_second: default_min_per_second(),
            window: default_window(),
        }
    }
}

/// A 30% transient fault mix needs 0.43 retries per request (1 / 0.7 - 1): half leaves room
/// for it, and the breaker, not the budget, is what stops an outage's retries.
fn default_ratio() -> f32 {
    0.5
}
fn default_min_per_second() -> u32 {
    5
}
fn default_window() -> Duration {
    Duration::from_secs(10)
}

/// The upstream's retry budget: retries may add at most `ratio` of the requests seen in the
/// last `window`, plus `min_per_second` so a quiet sidecar can still retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetSpec {
    pub ratio: f32,
    pub min_per_second: u32,
    pub window: Duration,
}

/// The built-in policy, used for what `[retry]` leaves out.
pub fn builtin_policy() -> RetryPolicy {
    RetryPolicy {
        // At 30% independent transient failures, n attempts leave 0.3^n of requests failed:
        // 4 leave 0.8%, 7 leave 0.02%. The budget and the breaker bound the load they add.
        max_attempts: 7,
        backoff: Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
        },
        attempt_timeout: Duration::from_secs(20),
        deadline: Duration::from_secs(45),
    }
}

/// `raw` laid over `base`; the problems found go to `issue` under the key prefix `at`.
pub(super) fn policy(
    base: &RetryPolicy,
    raw: &RawRetry,
    at: &str,
    issue: &mut impl FnMut(String, String),
) -> RetryPolicy {
    let p = RetryPolicy {
        max_attempts: raw.max_attempts.unwrap_or(base.max_attempts),
        backoff: Backoff {
            base: raw.base_delay.unwrap_or(base.backoff.base),
            max: raw.max_delay.unwrap_or(base.backoff.max),
        },
        attempt_timeout: raw.attempt_timeout.unwrap_or(base.attempt_timeout),
        deadline: raw.deadline.unwrap_or(base.deadline),
    };
    if !(1..=10).contains(&p.max_attempts) {
        issue(format!("{at}.max_attempts"), "must be from 1 to 10".into());
    }
    if p.backoff.base.is_zero() {
        issue(format!("{at}.base_delay"), "must be greater than 0".into());
    }
    if p.backoff.max < p.backoff.base {
        issue(
            format!("{at}.max_delay"),
            "must be at least base_delay".into(),
        );
    }
    if p.attempt_timeout.is_zero() {
        issue(
            format!("{at}.attempt_timeout"),
            "must be greater than 0".into(),
        );
    }
    if p.attempt_timeout > p.deadline {
        issue(
            format!("{at}.attempt_timeout"),
            "must not exceed the deadline".into(),
        );
    }
    if p.deadline >= SDK_TIMEOUT {
        issue(
            format!("{at}.deadline"),
            "must stay below the Stripe SDKs' 80s timeout, or the app gives up and resends while payguard still retries".into(),
        );
    }
    p
}

pub(super) fn budget(raw: &RawBudget, issue: &mut impl FnMut(String, String)) -> BudgetSpec {
    // tower's TpsBudget accepts these ranges; checking here turns its panics into messages.
    if !(0.0..=10.0).contains(&raw.ratio) || raw.ratio.is_nan() {
        issue(
            "retry_budget.ratio".into(),
            "must be from 0.0 to 10.0 (0.2 = retries add at most 20%)".into(),
        );
    }
    if raw.window < Duration::from_secs(1) || raw.window > Duration::from_secs(60) {
        issue(
            "retry_budget.window".into(),
            "must be from 1s to 60s".into(),
        );
    }
    if raw.min_per_second > 100_000 {
        issue(
            "retry_budget.min_per_second".into(),
            "must be at most 100000".into(),
        );
    }
    BudgetSpec {
        ratio: raw.ratio,
        min_per_second: raw.min_per_second,
        window: raw.window,
    }
}
