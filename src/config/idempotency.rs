//! The `[idempotency]` table (the store and the defaults of every route) and the
//! `[route.idempotency]` overrides.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::idempotency::{FailMode, RoutePolicy, Settings};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdempotency {
    #[serde(default = "default_store")]
    pub store: String,
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// Unset: each upstream's key window.
    #[serde(default, with = "duration::option")]
    pub ttl: Option<Duration>,
    #[serde(default = "default_max_records")]
    pub max_records: usize,
    #[serde(default = "default_max_stored_body")]
    pub max_stored_body_bytes: usize,
    #[serde(default = "default_coalesce_wait", with = "duration")]
    pub coalesce_wait: Duration,
    #[serde(default = "default_prune_interval", with = "duration")]
    pub prune_interval: Duration,
    // The defaults of every route's policy. Written out rather than flattened from
    // RawRoutePolicy: serde's flatten would silently disable deny_unknown_fields.
    pub inject_keys: Option<bool>,
    #[serde(default, with = "duration::option")]
    pub dedup_window: Option<Duration>,
    pub dedup_across_keys: Option<bool>,
    pub dedup_when_param: Option<String>,
    pub on_store_error: Option<String>,
}

impl RawIdempotency {
    pub fn route_defaults(&self) -> RawRoutePolicy {
        RawRoutePolicy {
            inject_keys: self.inject_keys,
            dedup_window: self.dedup_window,
            dedup_across_keys: self.dedup_across_keys,
            dedup_when_param: self.dedup_when_param.clone(),
            on_store_error: self.on_store_error.clone(),
        }
    }
}

impl Default for RawIdempotency {
    fn default() -> Self {
        RawIdempotency {
            store: default_store(),
            path: default_path(),
            ttl: None,
            max_records: default_max_records(),
            max_stored_body_bytes: default_max_stored_body(),
            coalesce_wait: default_coalesce_wait(),
            prune_interval: default_prune_interval(),
            inject_keys: None,
            dedup_window: None,
            dedup_across_keys: None,
            dedup_when_param: None,
            on_store_error: None,
        }
    }
}

/// Keys a route may override; all optional so a route names only what differs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoutePolicy {
    pub inject_keys: Option<bool>,
    #[serde(default, with = "duration::option")]
    pub dedup_window: Option<Duration>,
    pub dedup_across_keys: Option<bool>,
    pub dedup_when_param: Option<String>,
    pub on_store_error: Option<String>,
}

fn default_store() -> String {
    "embedded".into()
}
fn default_path() -> PathBuf {
    PathBuf::from("data/idempotency.redb")
}
fn default_max_records() -> usize {
    1_000_000
}
fn default_max_stored_body() -> usize {
    64 * 1024
}
fn default_coalesce_wait() -> Duration {
    Duration::from_secs(10)
}
fn default_prune_interval() -> Duration {
    Duration::from_secs(60)
}

/// Where records live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    /// A redb file; relative paths were resolved against the config file's directory.
    Embedded(PathBuf),
    /// The `[redis]` server, shared by every replica.
    Redis,
    /// The `[postgres]` database, shared by every replica; the journal is there too.
    Postgres,
}

/// Which shared backends the config has a table for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shared {
    pub redis: bool,
    pub postgres: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencySpec {
    pub store: StoreKind,
    pub max_records: usize,
    pub prune_interval: Duration,
    pub settings: Settings,
}

pub(super) fn spec(
    raw: &RawIdempotency,
    base_dir: &Path,
    shared: Shared,
    issue: &mut impl FnMut(String, String),
) -> IdempotencySpec {
    let store = store(raw, base_dir, shared, issue);
    let within = |key: &str,
                  d: Duration,
                  min: Duration,
                  max: Duration,
                  issue: &mut dyn FnMut(String, String)| {
        if d < min || d > max {
            issue(
                format!("idempotency.{key}"),
                format!("must be from {min:?} to {max:?}"),
            );
        }
    };
    within(
        "ttl",
        raw.ttl.unwrap_or(Duration::from_secs(1)),
        Duration::from_secs(1),
        Duration::from_secs(7 * 24 * 3600),
        issue,
    );
    within(
        "coalesce_wait",
        raw.coalesce_wait,
        Duration::from_millis(1),
        Duration::from_secs(60),
        issue,
    );
    within(
        "prune_interval",
        raw.prune_interval,
        Duration::from_secs(1),
        Duration::from_secs(3600),
        issue,
    );
    if raw.max_records == 0 {
        issue(
            "idempotency.max_records".into(),
            "must be greater than 0".into(),
        );
    }
    if raw.max_stored_body_bytes < 1024 {
        issue(
            "idempotency.max_stored_body_bytes".into(),
            "must be at least 1024".into(),
        );
    }
    IdempotencySpec {
        store,
        max_records: raw.max_records,
        prune_interval: raw.prune_interval,
        settings: Settings {
            ttl: raw.ttl,
            coalesce_wait: raw.coalesce_wait,
            max_stored_body: raw.max_stored_body_bytes,
        },
    }
}

/// Where the records live: `store` read against the tables the config has.
fn store(
    raw: &RawIdempotency,
    base_dir: &Path,
    shared: Shared,
    issue: &mut impl FnMut(String, String),
) -> StoreKind {
    match raw.store.as_str() {
        "memory" => StoreKind::Memory,
        "embedded" => StoreKind::Embedded(base_dir.join(&raw.path)),
        "redis" if shared.redis => StoreKind::Redis,
        "redis" => {
            issue(
                "idempotency.store".into(),
                "\"redis\" needs a [redis] table with the server's url".into(),
            );
            StoreKind::Memory
        }
        "postgres" if shared.postgres => StoreKind::Postgres,
        "postgres" => {
            issue(
                "idempotency.store".into(),
                "\"postgres\" needs a [postgres] table with the database's url".into(),
            );
            StoreKind::Memory
        }
        other => {
            issue(
                "idempotency.store".into(),
                format!(
                    "expected \"embedded\", \"memory\", \"redis\" or \"postgres\", got {other:?}"
                ),
            );
            StoreKind::Memory
        }
    }
}

/// The built-in route policy: inject keys, no keyless dedup, fail open.
pub fn builtin_route_policy() -> RoutePolicy {
    RoutePolicy {
        inject: true,
        dedup_window: None,
        dedup_across_keys: false,
        dedup_when_param: None,
        on_store_error: FailMode::Open,
    }
}

/// `raw` laid over `base`; problems go to `issue` under the key prefix `at`.
pub(super) fn route_policy(
    base: &RoutePolicy,
    raw: &RawRoutePolicy,
    at: &str,
    issue: &mut impl FnMut(String, String),
) -> RoutePolicy {
    let on_store_error = match raw.on_store_error.as_deref() {
        None => base.on_store_error,
        Some("open") => FailMode::Open,
        Some("closed") => FailMode::Closed,
        Some(other) => {
            issue(
                format!("{at}.on_store_error"),
                format!("expected \"open\" or \"closed\", got {other:?}"),
            );
            base.on_store_error
        }
    };
    if raw
        .dedup_window
        .is_some_and(|w| w.is_zero() || w > Duration::from_secs(24 * 3600))
    {
        issue(
            format!("{at}.dedup_window"),
            "must be from 1ms to 24h".into(),
        );
    }
    let policy = RoutePolicy {
        inject: raw.inject_keys.unwrap_or(base.inject),
        dedup_window: raw.dedup_window.or(base.dedup_window),
        dedup_across_keys: raw.dedup_across_keys.unwrap_or(base.dedup_across_keys),
        dedup_when_param: raw
            .dedup_when_param
            .clone()
            .or_else(|| base.dedup_when_param.clone()),
        on_store_error,
    };
    if policy.dedup_window.is_none() {
        for (key, set) in [
            ("dedup_across_keys", raw.dedup_across_keys == Some(true)),
            ("dedup_when_param", raw.dedup_when_param.is_some()),
        ] {
            if set {
                issue(format!("{at}.{key}"), "needs a dedup_window".into());
            }
        }
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if raw
        .dedup_when_param
        .as_ref()
        .is_some_and(|p| p.is_empty() || !p.chars().all(plain))
    {
        issue(
            format!("{at}.dedup_when_param"),
            "must be a form parameter name of letters, digits and _ (e.g. \"metadata\")".into(),
        );
    }
    policy
}
