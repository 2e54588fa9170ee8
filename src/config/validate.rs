//! From raw serde types to the typed [`Config`]: every check that types alone cannot express.
//!
//! Validation collects all problems instead of stopping at the first, so one run of
//! `payguard check` shows everything that needs fixing.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::idempotency::{self as idem, IdempotencySpec};
use super::limits;
use super::redis::{self, RedisSpec};
use super::resolver::{self as resolver_config, ResolverSpec};
use super::retry::{self, BudgetSpec};
use super::{ConfigIssue, RawConfig, RawUpstream};
use crate::breaker::BreakerSpec;
use crate::idempotency::RoutePolicy;
use crate::ratelimit::LimitSpec;
use crate::retry::RetryPolicy;
use crate::route::RoutePattern;

/// A validated configuration. Everything in it has been checked; the request path trusts it.
#[derive(Debug, Clone)]
pub struct Config {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub upstream: UpstreamSpec,
    pub max_request_body: usize,
    pub drain_timeout: Duration,
    /// Runtime worker threads; 0 means one per CPU core.
    pub worker_threads: usize,
    /// How often the config file is re-read for changes; zero turns polling off.
    pub reload_poll_interval: Duration,
    /// How long a client may take to send a request head, and a new connection its first.
    pub header_read_timeout: Duration,
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
    /// The upstream-wide limiter and breaker; `None` when disabled.
    pub rate_limit: Option<LimitSpec>,
    pub breaker: Option<BreakerSpec>,
    /// The resolver of unresolved requests, with every route's override.
    pub resolver: ResolverSpec,
    /// The Redis shared by replicas, when the store or a limiter uses it.
    pub redis: Option<RedisSpec>,
}

/// Where requests go and how connections to it behave.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSpec {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Extra trust anchors beside the webpki roots, for private or test upstreams.
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// A named route: which requests it covers. Policies attach to it in later layers.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub name: String,
    pub pattern: RoutePattern,
    pub retry: RetryPolicy,
    pub idempotency: RoutePolicy,
    /// A limiter and breaker of the route's own, on top of the upstream's.
    pub rate_limit: Option<LimitSpec>,
    pub breaker: Option<BreakerSpec>,
}

/// The name under which requests that match no route are counted.
pub const DEFAULT_ROUTE: &str = "default";

pub(super) fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<ConfigIssue>> {
    let mut issues = Vec::new();
    let mut issue = |key: String, message: String| {
        issues.push(ConfigIssue {
            key,
            line: None,
            message,
        })
    };

    let upstream = upstream(&raw.upstream, base_dir, &mut issue);

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

    let default_retry = retry::policy(&retry::builtin_policy(), &raw.retry, "retry", &mut issue);
    let retry_budget = retry::budget(&raw.retry_budget, &mut issue);
    let redis = raw.redis.as_ref().map(|r| redis::spec(r, &mut issue));
    let idempotency = idem::spec(&raw.idempotency, base_dir, redis.is_some(), &mut issue);
    let rate_limit = limits::limit(&raw.rate_limit, "rate_limit", redis.as_ref(), &mut issue);
    let breaker = limits::breaker(&raw.breaker, "breaker", &mut issue);
    let mut resolver = resolver_config::spec(&raw.resolver, base_dir, &mut issue);
    let default_idempotency = idem::route_policy(
        &idem::builtin_route_policy(),
        &raw.idempotency.route_defaults(),
        "idempotency",
        &mut issue,
    );

    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut names = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let valid_name = !r.name.is_empty()
            && r.name.len() <= 64
            && r.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_name {
            issue(
                format!("route[{i}].name"),
                "must be 1-64 characters of a-z, 0-9 and _ (it becomes a metric label)".into(),
            );
        } else if r.name == DEFAULT_ROUTE || r.name == "upstream" {
            issue(
                format!("route[{i}].name"),
                format!(
                    "{:?} is reserved (unmatched requests, upstream-wide limits)",
                    r.name
                ),
            );
        } else if !names.insert(r.name.clone()) {
            issue(
                format!("route[{i}].name"),
                format!("route name {:?} is used twice", r.name),
            );
        }
        if r.retry.jitter_seed.is_some() {
            issue(
                format!("route[{i}].retry.jitter_seed"),
                "may only be set in the top-level [retry]".into(),
            );
        }
        let policy = retry::policy(
            &default_retry,
            &r.retry,
            &format!("route[{i}].retry"),
            &mut issue,
        );
        let idempotency = idem::route_policy(
            &default_idempotency,
            &r.idempotency,
            &format!("route[{i}].idempotency"),
            &mut issue,
        );
        let at = format!("route[{i}]");
        resolver_config::route_override(&mut resolver, &r.name, &r.resolver);
        let route_limit = r.rate_limit.as_ref().and_then(|l| {
            limits::limit(l, &format!("{at}.rate_limit"), redis.as_ref(), &mut issue)
        });
        let route_breaker = r
            .breaker
            .as_ref()
            .and_then(|b| limits::breaker(b, &format!("{at}.breaker"), &mut issue));
        match RoutePattern::parse(&r.pattern) {
            Ok(pattern) => routes.push(RouteSpec {
                name: r.name.clone(),
                pattern,
                retry: policy,
                idempotency,
                rate_limit: route_limit,
                breaker: route_breaker,
            }),
            Err(e) => issue(format!("route[{i}].match"), e),
        }
    }

    match upstream {
        Some(upstream) if issues.is_empty() => Ok(Config {
            proxy_addr: raw.listen.proxy,
            admin_addr: raw.listen.admin,
            upstream,
            max_request_body: raw.server.max_request_body_bytes,
            drain_timeout: raw.server.drain_timeout,
            worker_threads: raw.server.worker_threads,
            reload_poll_interval: raw.server.reload_poll_interval,
            header_read_timeout: raw.server.header_read_timeout,
            log_format,
            log_level: raw.log.level,
            routes,
            default_retry,
            retry_budget,
            jitter_seed: raw.retry.jitter_seed,
            idempotency,
            default_idempotency,
            rate_limit,
            breaker,
            resolver,
            redis,
        }),
        _ => Err(issues),
    }
}

fn upstream(
    raw: &RawUpstream,
    base_dir: &Path,
    issue: &mut impl FnMut(String, String),
) -> Option<UpstreamSpec> {
    let mut ok = true;
    let mut check_positive = |key: &str, d: Duration| {
        if d.is_zero() {
            issue(format!("upstream.{key}"), "must be greater than 0".into());
            ok = false;
        }
    };
    check_positive("connect_timeout", raw.connect_timeout);

    let extra_roots = match &raw.ca_file {
        None => Vec::new(),
        Some(file) => match read_ca_file(&base_dir.join(file)) {
            Ok(certs) => certs,
            Err(e) => {
                issue("upstream.ca_file".into(), e);
                ok = false;
                Vec::new()
            }
        },
    };

    let (scheme, authority) = match parse_origin(&raw.url) {
        Ok(origin) => origin,
        Err(e) => {
            issue("upstream.url".into(), e);
            return None;
        }
    };
    ok.then_some(UpstreamSpec {
        scheme,
        authority,
        extra_roots,
        connect_timeout: raw.connect_timeout,
        pool_idle_timeout: raw.pool_idle_timeout,
        pool_max_idle_per_host: raw.pool_max_idle_per_host,
    })
}

/// The upstream is an origin: scheme and authority, nothing else. payguard keeps the request's
/// own path, so a path here would silently change every URL; it is refused instead.
fn parse_origin(url: &str) -> Result<(Scheme, Authority), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or("needs a scheme, https:// or http://")?;
    if scheme != Scheme::HTTPS && scheme != Scheme::HTTP {
        return Err(format!("scheme must be https or http, got {scheme}"));
    }
    let authority = uri.authority().cloned().ok_or("needs a host")?;
    if authority.as_str().contains('@') {
        return Err("must not carry credentials".into());
    }
    match uri.path_and_query().map(|p| p.as_str()) {
        None | Some("/") | Some("") => Ok((scheme, authority)),
        Some(other) => Err(format!(
            "must be an origin without a path or query, got {other:?}"
        )),
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no CERTIFICATE block", path.display()));
    }
    Ok(certs)
}
