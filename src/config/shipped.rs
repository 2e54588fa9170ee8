//! The shipped `config.toml` as the demo and the tests run it: pointed at a test upstream,
//! its store file in a scratch place, and nothing else changed ([`Config::shipped`]); and time
//! compression of a validated config ([`Config::time_compressed`]): every delay, timeout and
//! window divided by a factor, every rate multiplied by it, so minutes of behaviour run in
//! seconds without changing a single policy. Compression is the only change they may make.
//!
//! What is not compressed, and why: the provider's key window and the replay TTL (a day; no
//! run lasts that long, so they never act either way), the summaries' `keep_finished`, idle
//! pool timeouts, the header read timeout and the reload poll (housekeeping, not policy), and
//! the adaptive limiter's evidence windows (at least 1 s; they count sends, which compression
//! multiplies, so they close sooner anyway). The retry budget's window cannot go below tower's
//! 1 s floor; its `min_per_second` is multiplied like any rate.

use std::path::Path;
use std::time::Duration;

use super::{Config, ConfigError, ConfigIssue};
use crate::breaker::BreakerSpec;
use crate::ratelimit::LimitSpec;
use crate::retry::RetryPolicy;
use crate::route::RouteSpec;

/// The shipped config file.
pub const SHIPPED: &str = include_str!("../../config.toml");

impl Config {
    /// The shipped `config.toml` with its default upstream at `upstream` and its embedded
    /// store's file at `store`: what a user runs, against a test double.
    pub fn shipped(upstream: &str, store: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: "the shipped config.toml".into(),
            issues: vec![ConfigIssue {
                key: String::new(),
                line: None,
                message,
            }],
        };
        let mut table: toml::Table = toml::from_str(SHIPPED).map_err(|e| invalid(e.to_string()))?;
        for (section, key, value) in [
            ("upstream", "url", upstream.to_owned()),
            ("idempotency", "path", store.display().to_string()),
        ] {
            if let Some(toml::Value::Table(t)) = table.get_mut(section) {
                t.insert(key.to_owned(), value.into());
            }
        }
        let text = toml::to_string(&table).map_err(|e| invalid(e.to_string()))?;
        Config::parse(&text, "the shipped config.toml", None)
    }

    /// This config with time running `factor` times faster (`factor` at least 1).
    pub fn time_compressed(mut self, factor: f64) -> Config {
        let k = factor.max(1.0);
        let d = |d: Duration| d.div_f64(k);
        for upstream in &mut self.upstreams {
            upstream.connect_timeout = d(upstream.connect_timeout);
            limits(&mut upstream.rate_limit, &mut upstream.breaker, k);
        }
        for route in &mut self.routes {
            compress_route(route, k);
        }
        retry(&mut self.default_retry, k);
        let window = &mut self.default_idempotency.dedup_window;
        *window = window.map(d);
        let budget = &mut self.retry_budget;
        budget.min_per_second = (f64::from(budget.min_per_second) * k).round() as u32;
        budget.window = d(budget.window).max(Duration::from_secs(1));
        let settings = &mut self.idempotency.settings;
        settings.coalesce_wait = d(settings.coalesce_wait);
        self.idempotency.prune_interval = d(self.idempotency.prune_interval);
        let resolver = &mut self.resolver;
        resolver.interval = d(resolver.interval);
        resolver.base_delay = d(resolver.base_delay);
        resolver.max_delay = d(resolver.max_delay);
        self.drain_timeout = d(self.drain_timeout);
        self
    }
}

fn compress_route(route: &mut RouteSpec, k: f64) {
    retry(&mut route.retry, k);
    let window = &mut route.idempotency.dedup_window;
    *window = window.map(|w| w.div_f64(k));
    limits(&mut route.rate_limit, &mut route.breaker, k);
}

fn retry(policy: &mut RetryPolicy, k: f64) {
    policy.backoff.base = policy.backoff.base.div_f64(k);
    policy.backoff.max = policy.backoff.max.div_f64(k);
    policy.attempt_timeout = policy.attempt_timeout.div_f64(k);
    policy.deadline = policy.deadline.div_f64(k);
}

fn limits(limit: &mut Option<LimitSpec>, breaker: &mut Option<BreakerSpec>, k: f64) {
    if let Some(l) = limit {
        l.rate *= k;
        l.min_rate *= k;
        l.max_wait = l.max_wait.map(|w| w.div_f64(k));
        if let Some(shared) = &mut l.shared {
            shared.fallback_rate *= k;
        }
    }
    if let Some(b) = breaker {
        b.window = b.window.div_f64(k);
        b.break_duration = b.break_duration.div_f64(k);
        b.max_wait_open = b.max_wait_open.div_f64(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_config_compressed_keeps_its_policies() {
        let shipped = Config::parse(SHIPPED, "config.toml", None).unwrap();
        let fast = shipped.clone().time_compressed(50.0);
        assert_eq!(
            fast.default_retry.max_attempts,
            shipped.default_retry.max_attempts
        );
        assert_eq!(
            fast.default_retry.deadline,
            shipped.default_retry.deadline / 50
        );
        let (limit, fast_limit) = (
            shipped.upstreams[0].rate_limit.unwrap(),
            fast.upstreams[0].rate_limit.unwrap(),
        );
        assert!((fast_limit.rate - limit.rate * 50.0).abs() < 1e-9);
        assert_eq!(fast_limit.burst, limit.burst);
        assert_eq!(fast.retry_budget.ratio, shipped.retry_budget.ratio);
        let breaker = fast.upstreams[0].breaker.unwrap();
        assert_eq!(breaker.break_duration, Duration::from_millis(100));
        let refunds = fast
            .routes
            .iter()
            .find(|r| r.name == "create_refund")
            .unwrap();
        assert_eq!(
            refunds.idempotency.dedup_window,
            Some(Duration::from_secs(12))
        );
    }
}
