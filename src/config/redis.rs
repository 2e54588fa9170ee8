//! The `[redis]` table: where the shared state of several replicas lives (the idempotency
//! store with `[idempotency] store = "redis"`, and limiters with `backend = "redis"`).
//!
//! The URL may carry a password (`redis://:secret@host:6379/0`, or `rediss://` for TLS); the
//! typed [`RedisSpec`] keeps it in a [`RedisUrl`] whose `Debug` hides it, so a logged config
//! never shows it. In Kubernetes, `password_env` names an environment variable (filled from a
//! Secret) instead, so the ConfigMap holds no secret at all.

use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::shared::{RedisSpec, RedisUrl};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    pub url: String,
    pub password_env: Option<String>,
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    #[serde(default = "default_command_timeout", with = "duration")]
    pub command_timeout: Duration,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    #[serde(default = "default_replicas")]
    pub replicas: u32,
}

fn default_prefix() -> String {
    "payguard:".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(1)
}
/// A local Redis answers in well under a millisecond; a command that takes this long means
/// Redis is in trouble, and the request should take its failure policy instead of waiting.
fn default_command_timeout() -> Duration {
    Duration::from_millis(250)
}
fn default_pool_size() -> usize {
    2
}
fn default_replicas() -> u32 {
    1
}

pub(super) fn spec(raw: &RawRedis, issue: &mut impl FnMut(String, String)) -> RedisSpec {
    if let Err(e) = check_url(&raw.url) {
        issue("redis.url".into(), e);
    }
    if raw.password_env.as_deref().is_some_and(str::is_empty) {
        issue("redis.password_env".into(), "must not be empty".into());
    }
    let prefix_ok = !raw.key_prefix.is_empty()
        && raw.key_prefix.len() <= 64
        && raw.key_prefix.chars().all(|c| c.is_ascii_graphic());
    if !prefix_ok {
        issue(
            "redis.key_prefix".into(),
            "must be 1-64 printable ASCII characters without spaces".into(),
        );
    }
    let timeouts = [
        (
            "connect_timeout",
            raw.connect_timeout,
            Duration::from_secs(30),
        ),
        (
            "command_timeout",
            raw.command_timeout,
            Duration::from_secs(10),
        ),
    ];
    duration::check_timeouts("redis", &timeouts, issue);
    if raw.pool_size == 0 || raw.pool_size > 64 {
        issue("redis.pool_size".into(), "must be from 1 to 64".into());
    }
    if raw.replicas == 0 || raw.replicas > 1000 {
        issue("redis.replicas".into(), "must be from 1 to 1000".into());
    }
    RedisSpec {
        url: RedisUrl(raw.url.clone()),
        password_env: raw.password_env.clone(),
        key_prefix: raw.key_prefix.clone(),
        connect_timeout: raw.connect_timeout,
        command_timeout: raw.command_timeout,
        pool_size: raw.pool_size,
        replicas: raw.replicas,
    }
}

/// Accepts one server: `redis://` or `rediss://` (TLS). Redis Cluster is refused where the
/// URL shows it (several hosts, a cluster scheme); see the README for why.
fn check_url(url: &str) -> Result<(), String> {
    let scheme = url.split("://").next().unwrap_or_default();
    if url.contains(',') || scheme.contains("cluster") {
        return Err("Redis Cluster is not supported: name one server (see the README)".into());
    }
    if scheme != "redis" && scheme != "rediss" {
        return Err(format!("scheme must be redis or rediss, got {scheme:?}"));
    }
    // The client's own parser decides the rest; its message never repeats the URL.
    redis::Client::open(url)
        .map(drop)
        .map_err(|e| format!("not a valid Redis URL ({})", e.category()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_cluster_refused() {
        assert!(check_url("redis://127.0.0.1:6379/0").is_ok());
        assert!(check_url("rediss://:pw@redis.example:6380").is_ok());
        assert!(check_url("http://x").unwrap_err().contains("scheme"));
        assert!(
            check_url("redis://a:1,b:2")
                .unwrap_err()
                .contains("Cluster")
        );
        assert!(
            check_url("redis+cluster://a:1")
                .unwrap_err()
                .contains("Cluster")
        );
    }

    #[test]
    fn problems_name_the_key_and_line() {
        let text = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[redis]\nurl = \"http://x\"\n\
                    pool_size = 0\n[idempotency]\nstore = \"redis\"\n[rate_limit]\n\
                    backend = \"redis\"\nfallback_rate = 100.0\n";
        let err = crate::config::Config::parse(text, "t", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4: `redis.url`: scheme"), "{err}");
        assert!(err.contains("line 5: `redis.pool_size`"), "{err}");
        assert!(err.contains("line 10: `rate_limit.fallback_rate`"), "{err}");
        let no_table =
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[idempotency]\nstore = \"redis\"\n";
        let err = crate::config::Config::parse(no_table, "t", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 4: `idempotency.store`: \"redis\" needs a [redis]"),
            "{err}"
        );
        let unknown = "[upstream]\nurl = \"http://127.0.0.1:1\"\n[redis]\nurl = \"redis://h\"\nhost = \"h\"\n";
        let err = crate::config::Config::parse(unknown, "t", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 5") && err.contains("unknown field"),
            "{err}"
        );
    }

    #[test]
    fn the_password_is_not_shown() {
        let url = RedisUrl("rediss://user:hunter2@redis:6380/1".into());
        let shown = format!("{url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "rediss://***@redis:6380/1");
    }
}
