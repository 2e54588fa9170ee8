//! The `[rate_limit]` and `[breaker]` tables, upstream-wide, and their optional per-route
//! twins `[route.rate_limit]` and `[route.breaker]`, which add a limiter or breaker of the
//! route's own on top of the upstream's.

use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::breaker::BreakerSpec;
use crate::profile::Profile;
use crate::ratelimit::{LimitSpec, SharedSpec};
use crate::shared::RedisSpec;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Unset: the upstream profile's default.
    pub rate: Option<f64>,
    pub burst: Option<u32>,
    /// Unset: an attempt waits as long as its request's deadline allows.
    #[serde(default, with = "duration::option")]
    pub max_wait: Option<Duration>,
    #[serde(default = "yes")]
    pub adaptive: bool,
    /// Unset: half the rate.
    pub min_rate: Option<f64>,
    /// "local" (this process only) or "redis" (one limit shared by every replica).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// With the redis backend: the local rate used while Redis cannot be reached.
    pub fallback_rate: Option<f64>,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        RawRateLimit {
            enabled: true,
            rate: None,
            burst: None,
            max_wait: None,
            adaptive: true,
            min_rate: None,
            backend: default_backend(),
            fallback_rate: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_failure_rate")]
    pub failure_rate: f64,
    #[serde(default = "default_min_calls")]
    pub min_calls: u32,
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
    #[serde(default = "default_consecutive")]
    pub consecutive_failures: u32,
    #[serde(default = "default_break", with = "duration")]
    pub break_duration: Duration,
    #[serde(default = "default_probes")]
    pub half_open_probes: u32,
    #[serde(default, with = "duration::option")]
    pub max_wait_open: Option<Duration>,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            enabled: true,
            failure_rate: default_failure_rate(),
            min_calls: default_min_calls(),
            window: default_window(),
            consecutive_failures: default_consecutive(),
            break_duration: default_break(),
            half_open_probes: default_probes(),
            max_wait_open: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_backend() -> String {
    "local".into()
}
/// At a 30% transient fault mix a quarter of calls fail (429s do not count): with 20 calls in
/// the window, half failing happens about 1% of the time, three quarters about once in a
/// million. An outage fails them all.
fn default_failure_rate() -> f64 {
    0.75
}
fn default_min_calls() -> u32 {
    20
}
fn default_window() -> Duration {
    Duration::from_secs(10)
}
/// Twelve in a row: at a 30% transient fault mix (a quarter of calls failing), a run of twelve
/// comes once in about 17 million calls, while a provider that is really down produces
/// twelve within a couple of seconds of traffic.
fn default_consecutive() -> u32 {
    12
}
fn default_break() -> Duration {
    Duration::from_secs(5)
}
/// One probe per open period: in an outage each probe is one more call to a provider that is
/// down, and after it recovers one success is enough (with two, a transient failure of either
/// keeps it open another period).
fn default_probes() -> u32 {
    1
}

/// A limiter from `raw`; `rate` and `burst` default to `profile`'s.
pub(super) fn limit(
    raw: &RawRateLimit,
    at: &str,
    profile: &Profile,
    redis: Option<&RedisSpec>,
    issue: &mut impl FnMut(String, String),
) -> Option<LimitSpec> {
    let rate = raw.rate.unwrap_or(profile.rate);
    let burst = raw.burst.unwrap_or(profile.burst);
    if !(0.01..=100_000.0).contains(&rate) {
        issue(
            format!("{at}.rate"),
            "must be from 0.01 to 100000 per second".into(),
        );
    }
    if burst == 0 {
        issue(format!("{at}.burst"), "must be at least 1".into());
    }
    if raw.max_wait.is_some_and(|w| w > Duration::from_secs(60)) {
        issue(format!("{at}.max_wait"), "must be at most 60s".into());
    }
    // The floor is tied to the rate: a run of 429s can take it no lower than this.
    let min_rate = raw.min_rate.unwrap_or(rate / 2.0);
    // A floor keeps the send interval (1 / rate) a sane duration.
    if min_rate.is_nan() || min_rate < 0.01 || min_rate > rate {
        issue(
            format!("{at}.min_rate"),
            "must be at least 0.01 and at most rate".into(),
        );
    }
    let shared = shared(raw, rate, at, redis, issue);
    raw.enabled.then_some(LimitSpec {
        rate,
        burst,
        max_wait: raw.max_wait,
        adaptive: raw.adaptive,
        min_rate,
        shared,
    })
}

/// The shared part of a limiter: `backend = "redis"` needs a `[redis]` table; its fallback
/// is a local share of the rate, `rate / redis.replicas` unless `fallback_rate` says otherwise.
fn shared(
    raw: &RawRateLimit,
    rate: f64,
    at: &str,
    redis: Option<&RedisSpec>,
    issue: &mut impl FnMut(String, String),
) -> Option<SharedSpec> {
    match (raw.backend.as_str(), redis) {
        ("local", _) => {
            if raw.fallback_rate.is_some() {
                issue(
                    format!("{at}.fallback_rate"),
                    "only applies with backend = \"redis\"".into(),
                );
            }
            None
        }
        ("redis", None) => {
            issue(
                format!("{at}.backend"),
                "\"redis\" needs a [redis] table with the server's url".into(),
            );
            None
        }
        ("redis", Some(redis)) => {
            let fallback = raw
                .fallback_rate
                .unwrap_or(rate / f64::from(redis.replicas.max(1)));
            if fallback.is_nan() || fallback < 0.01 || fallback > rate {
                issue(
                    format!("{at}.fallback_rate"),
                    "must be at least 0.01 and at most rate".into(),
                );
            }
            Some(SharedSpec {
                fallback_rate: fallback.clamp(0.01, rate.max(0.01)),
            })
        }
        (other, _) => {
            issue(
                format!("{at}.backend"),
                format!("expected \"local\" or \"redis\", got {other:?}"),
            );
            None
        }
    }
}

pub(super) fn breaker(
    raw: &RawBreaker,
    at: &str,
    issue: &mut impl FnMut(String, String),
) -> Option<BreakerSpec> {
    if !(raw.failure_rate > 0.0 && raw.failure_rate <= 1.0) {
        issue(
            format!("{at}.failure_rate"),
            "must be greater than 0 and at most 1".into(),
        );
    }
    for (key, value) in [
        ("min_calls", raw.min_calls),
        ("consecutive_failures", raw.consecutive_failures),
        ("half_open_probes", raw.half_open_probes),
    ] {
        if value == 0 {
            issue(format!("{at}.{key}"), "must be at least 1".into());
        }
    }
    if raw.window < Duration::from_secs(1) || raw.window > Duration::from_secs(300) {
        issue(format!("{at}.window"), "must be from 1s to 300s".into());
    }
    if raw.break_duration < Duration::from_millis(100)
        || raw.break_duration > Duration::from_secs(600)
    {
        issue(
            format!("{at}.break_duration"),
            "must be from 100ms to 10m".into(),
        );
    }
    raw.enabled.then_some(BreakerSpec {
        failure_rate: raw.failure_rate,
        min_calls: raw.min_calls,
        window: raw.window,
        consecutive_failures: raw.consecutive_failures,
        break_duration: raw.break_duration,
        half_open_probes: raw.half_open_probes,
        max_wait_open: raw.max_wait_open.unwrap_or_default(),
    })
}
