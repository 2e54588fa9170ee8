//! From raw serde types to the typed [`Config`]: every check that types alone cannot express.
//!
//! Validation collects all problems instead of stopping at the first, so one run of
//! `payguard check` shows everything that needs fixing.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::admin::{self, AdminSpec};
use super::idempotency::{self as idem, IdempotencySpec};
use super::postgres;
use super::redis;
use super::resolver::{self as resolver_config, ResolverSpec};
use super::retry::{self, BudgetSpec};
use super::{ConfigIssue, RawConfig, payloads};
use super::{routes, upstreams};
use crate::idempotency::RoutePolicy;
use crate::idempotency::postgres::PostgresSpec;
use crate::load::LoadSpec;
use crate::retry::RetryPolicy;
use crate::route::{DEFAULT_ROUTE, RoutePattern, RouteSpec};
use crate::shared::RedisSpec;
use crate::telemetry::LogFormat;
use crate::upstream::UpstreamSpec;

/// A validated configuration. Everything in it has been checked; the request path trusts it.
#[derive(Debug, Clone)]
pub struct Config {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub admin: AdminSpec,
    /// Every upstream, `[upstream]` first; routes point into it by index. Each carries its
    /// own limiter and breaker (`[upstream]`'s are the top-level `[rate_limit]`, `[breaker]`).
    pub upstreams: Vec<UpstreamSpec>,
    pub max_request_body: usize,
    pub drain_timeout: Duration,
    /// Runtime worker threads; 0 means one per CPU core.
    pub worker_threads: usize,
    /// How often the config file is re-read for changes; zero turns polling off.
    pub reload_poll_interval: Duration,
    /// How long a client may take to send a request head, and a new connection its first.
    pub header_read_timeout: Duration,
    /// The bound on connections, requests in flight and buffered bytes.
    pub load: LoadSpec,
    pub log_format: LogFormat,
    pub log_level: String,
    pub routes: Vec<RouteSpec>,
    /// The policy of the default route, and the base every route's overrides apply to.
    pub default_retry: RetryPolicy,
    pub retry_budget: BudgetSpec,
    /// Seeds the backoff jitter when set; unset in production so replicas do not retry in step.
    pub jitter_seed: Option<u64>,
    pub idempotency: IdempotencySpec,
    /// The default route's idempotency policy, and the base of every route's overrides.
    pub default_idempotency: RoutePolicy,
    /// The resolver of unresolved requests, with every route's override.
    pub resolver: ResolverSpec,
    /// The Redis shared by replicas, when the store or a limiter uses it.
    pub redis: Option<RedisSpec>,
    /// The PostgreSQL database of the store and journal, with `store = "postgres"`.
    pub postgres: Option<PostgresSpec>,
}

impl Config {
    /// The route of requests no configured route matches: the default policies, on
    /// `[upstream]`, under its limiter and breaker only.
    pub fn default_route(&self) -> RouteSpec {
        let upstream = &self.upstreams[0];
        RouteSpec {
            name: DEFAULT_ROUTE.to_owned(),
            pattern: RoutePattern::any(),
            retry: self.default_retry.clone(),
            idempotency: self.default_idempotency.clone(),
            rate_limit: None,
            breaker: None,
            upstream: 0,
            profile: upstream.profile,
            key_window: upstream.key_window,
            max_upload: None,
        }
    }
}

pub(super) fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<ConfigIssue>> {
    let mut issues = Vec::new();
    let mut issue = |key: String, message: String| {
        issues.push(ConfigIssue {
            key,
            line: None,
            message,
        })
    };

    let (load, log_format) = server(&raw, &mut issue);

    let default_retry = retry::policy(&retry::builtin_policy(), &raw.retry, "retry", &mut issue);
    let retry_budget = retry::budget(&raw.retry_budget, &mut issue);
    let redis = raw.redis.as_ref().map(|r| redis::spec(r, &mut issue));
    let upstreams = upstreams::upstreams(
        &raw.upstream,
        &raw.upstreams,
        (&raw.rate_limit, &raw.breaker),
        base_dir,
        redis.as_ref(),
        &mut issue,
    );
    let admin = admin::spec(&raw.admin, base_dir, &mut issue);
    let postgres = raw.postgres.as_ref().map(|p| postgres::spec(p, &mut issue));
    let shared = idem::Shared {
        redis: redis.is_some(),
        postgres: postgres.is_some(),
    };
    let idempotency = idem::spec(&raw.idempotency, base_dir, shared, &mut issue);
    let mut resolver = resolver_config::spec(&raw.resolver, base_dir, &mut issue);
    check_resolver_window(&resolver, &upstreams, &mut issue);
    let default_idempotency = idem::route_policy(
        &idem::builtin_route_policy(),
        &raw.idempotency.route_defaults(),
        "idempotency",
        &mut issue,
    );

    let defaults = routes::Defaults {
        retry: &default_retry,
        idempotency: &default_idempotency,
        upstreams: &upstreams,
        named: &raw.upstreams,
        max_body: raw.server.max_request_body_bytes,
        redis: redis.as_ref(),
    };
    let routes = routes::routes(&raw.routes, &defaults, &mut resolver, &mut issue);

    let rule = payloads::Rule::new(&raw.resolver, &resolver, &idempotency.store);
    rule.check(&routes, upstreams.first(), &default_idempotency, &mut issue);

    let upstreams: Option<Vec<UpstreamSpec>> = upstreams.into_iter().collect();
    match upstreams {
        Some(upstreams) if issues.is_empty() => Ok(Config {
            proxy_addr: raw.listen.proxy,
            admin_addr: raw.listen.admin,
            admin,
            upstreams,
            max_request_body: raw.server.max_request_body_bytes,
            drain_timeout: raw.server.drain_timeout,
            worker_threads: raw.server.worker_threads,
            reload_poll_interval: raw.server.reload_poll_interval,
            header_read_timeout: raw.server.header_read_timeout,
            load,
            log_format,
            log_level: raw.log.level,
            routes,
            default_retry,
            retry_budget,
            jitter_seed: raw.retry.jitter_seed,
            idempotency,
            default_idempotency,
            resolver,
            redis,
            postgres,
        }),
        _ => Err(issues),
    }
}

/// `[listen]`, `[server]` and `[log]`: the process's own settings.
fn server(raw: &RawConfig, issue: &mut impl FnMut(String, String)) -> (LoadSpec, LogFormat) {
    if raw.server.max_request_body_bytes == 0 {
        issue(
            "server.max_request_body_bytes".into(),
            "must be greater than 0".into(),
        );
    }
    if raw.server.header_read_timeout < Duration::from_millis(10)
        || raw.server.header_read_timeout > Duration::from_secs(600)
    {
        issue(
            "server.header_read_timeout".into(),
            "must be from 10ms to 10m".into(),
        );
    }
    let load = super::load::load(&raw.server, issue);
    // Port 0 asks the OS for a free port, so two of them never collide.
    if raw.listen.proxy == raw.listen.admin && raw.listen.proxy.port() != 0 {
        issue(
            "listen.admin".into(),
            "must differ from listen.proxy".into(),
        );
    }
    let log_format = match raw.log.format.as_str() {
        "human" => LogFormat::Human,
        "json" => LogFormat::Json,
        other => {
            issue(
                "log.format".into(),
                format!("expected \"human\" or \"json\", got {other:?}"),
            );
            LogFormat::Human
        }
    };
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.log.level) {
        issue("log.level".into(), format!("not a valid filter: {e}"));
    }
    (load, log_format)
}

/// The resolver's window applies to every upstream's requests: longer than the shortest key
/// window, it would re-send after that provider forgot the key.
fn check_resolver_window(
    resolver: &ResolverSpec,
    upstreams: &[Option<UpstreamSpec>],
    issue: &mut impl FnMut(String, String),
) {
    let shortest = upstreams.iter().flatten().map(|u| u.key_window).min();
    if let (Some(window), Some(shortest)) = (resolver.key_window, shortest)
        && window > shortest
    {
        issue(
            "resolver.key_window".into(),
            format!(
                "must not exceed the shortest upstream key window ({})",
                humantime::format_duration(shortest)
            ),
        );
    }
}
