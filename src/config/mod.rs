//! The sidecar's configuration: one TOML file, typed and validated when it is loaded.
//!
//! Loading has two stages. Serde turns the text into the raw types below; `deny_unknown_fields`
//! makes a misspelt key an error instead of a silently ignored default. Then [`validate`] checks
//! what types alone cannot (a URL's scheme, a route pattern, unique names) and turns the raw types
//! into the [`Config`] the rest of payguard uses. Every problem is reported with the dotted key
//! and the line it sits on, so `payguard check` can point at the exact spot in the file.

mod admin;
mod duration;
mod idempotency;
mod limits;
mod load;
mod location;
mod payloads;
mod postgres;
mod redis;
mod resolver;
mod retry;
mod routes;
mod shipped;
mod upstreams;
mod validate;
mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use admin::{AdminSpec, AdminToken, MIN_TOKEN_LEN};
pub use idempotency::{IdempotencySpec, StoreKind, builtin_route_policy};
pub use resolver::ResolverSpec;
pub use retry::{BudgetSpec, SDK_TIMEOUT, builtin_policy};
pub use shipped::SHIPPED;
pub use validate::Config;

use admin::RawAdmin;
use idempotency::{RawIdempotency, RawRoutePolicy};
use limits::{RawBreaker, RawRateLimit};
use postgres::RawPostgres;
use redis::RawRedis;
use resolver::{RawResolver, RawRouteResolver};
use retry::{RawBudget, RawRetry};
use upstreams::RawUpstream;

/// A problem in a configuration file, located by key and line where that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The dotted path of the offending key, e.g. `route[2].match`; empty for syntax errors.
    pub key: String,
    /// The 1-based line in the file, when the key could be found there.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.key.is_empty()) {
            (Some(line), false) => write!(f, "line {line}: `{}`: {}", self.key, self.message),
            (Some(line), true) => write!(f, "line {line}: {}", self.message),
            (None, false) => write!(f, "`{}`: {}", self.key, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} problem(s) in {origin}:\n{}", issues.len(), render(issues))]
    Invalid {
        origin: String,
        issues: Vec<ConfigIssue>,
    },
}

fn render(issues: &[ConfigIssue]) -> String {
    let lines: Vec<String> = issues.iter().map(|i| format!("  - {i}")).collect();
    lines.join("\n")
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string(), path.parent())
    }

    /// Parses and validates `text`. `origin` names the source in messages; relative file paths
    /// in the config (such as a CA file) are resolved against `base_dir`.
    pub fn parse(text: &str, origin: &str, base_dir: Option<&Path>) -> Result<Config, ConfigError> {
        let invalid = |issues| ConfigError::Invalid {
            origin: origin.to_owned(),
            issues,
        };
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| invalid(vec![syntax_issue(text, &e)]))?;
        validate::validate(raw, base_dir.unwrap_or(Path::new("."))).map_err(|mut issues| {
            issues = location::locate(text, issues);
            issues.sort_by_key(|i| i.line);
            invalid(issues)
        })
    }
}

/// Turns a serde/TOML error into an issue, naming the key found at the error's span.
fn syntax_issue(text: &str, err: &toml::de::Error) -> ConfigIssue {
    let span = err.span();
    let key = span
        .clone()
        .and_then(|s| location::path_at(text, s.start))
        .unwrap_or_default();
    ConfigIssue {
        key,
        line: span.map(|s| location::line_of(text, s.start)),
        message: err.message().trim().to_owned(),
    }
}

/// The file as serde sees it. Every table refuses keys it does not know.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub listen: RawListen,
    #[serde(default)]
    pub admin: RawAdmin,
    pub upstream: RawUpstream,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub retry_budget: RawBudget,
    #[serde(default)]
    pub idempotency: RawIdempotency,
    #[serde(default)]
    pub rate_limit: RawRateLimit,
    #[serde(default)]
    pub breaker: RawBreaker,
    #[serde(default)]
    pub resolver: RawResolver,
    #[serde(default, rename = "route")]
    pub routes: Vec<RawRoute>,
    pub redis: Option<RawRedis>,
    pub postgres: Option<RawPostgres>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    #[serde(default = "defaults::proxy_addr")]
    pub proxy: SocketAddr,
    #[serde(default = "defaults::admin_addr")]
    pub admin: SocketAddr,
}

impl Default for RawListen {
    fn default() -> Self {
        RawListen {
            proxy: defaults::proxy_addr(),
            admin: defaults::admin_addr(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    #[serde(default = "defaults::max_request_body")]
    pub max_request_body_bytes: usize,
    #[serde(default = "defaults::drain_timeout", with = "duration")]
    pub drain_timeout: Duration,
    #[serde(default)]
    pub worker_threads: usize,
    #[serde(default = "defaults::reload_poll", with = "duration")]
    pub reload_poll_interval: Duration,
    #[serde(default = "defaults::header_read_timeout", with = "duration")]
    pub header_read_timeout: Duration,
    #[serde(default = "load::default_max_connections")]
    pub max_connections: usize,
    #[serde(default = "load::default_max_requests_in_flight")]
    pub max_requests_in_flight: usize,
    #[serde(default = "load::default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            max_request_body_bytes: defaults::max_request_body(),
            drain_timeout: defaults::drain_timeout(),
            worker_threads: 0,
            reload_poll_interval: defaults::reload_poll(),
            header_read_timeout: defaults::header_read_timeout(),
            max_connections: load::default_max_connections(),
            max_requests_in_flight: load::default_max_requests_in_flight(),
            max_buffered_bytes: load::default_max_buffered_bytes(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    #[serde(default = "defaults::log_format")]
    pub format: String,
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: defaults::log_format(),
            level: defaults::log_level(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: String,
    #[serde(rename = "match")]
    pub pattern: String,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub idempotency: RawRoutePolicy,
    pub rate_limit: Option<RawRateLimit>,
    pub breaker: Option<RawBreaker>,
    #[serde(default)]
    pub resolver: RawRouteResolver,
    /// The name of an `[upstreams.<name>]` table; unset means `[upstream]`.
    pub upstream: Option<String>,
    /// Bodies over the replay buffer and up to this size stream through, unbuffered.
    pub max_upload_bytes: Option<usize>,
}

/// Defaults, in one place so the documented values in `config.toml` have a single source.
mod defaults {
    use std::net::SocketAddr;
    use std::time::Duration;

    pub fn proxy_addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn admin_addr() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 9090))
    }
    pub fn max_request_body() -> usize {
        1024 * 1024
    }
    pub fn reload_poll() -> Duration {
        Duration::from_secs(5)
    }
    /// Long enough for any real client on any network; short enough that a client trickling
    /// its head (slowloris) gives its connection back within half a minute.
    pub fn header_read_timeout() -> Duration {
        Duration::from_secs(30)
    }
    /// Longer than the default retry deadline (45 s), so a request still retrying at
    /// shutdown can finish.
    pub fn drain_timeout() -> Duration {
        Duration::from_secs(50)
    }
    pub fn log_format() -> String {
        "human".into()
    }
    pub fn log_level() -> String {
        "info".into()
    }
}
