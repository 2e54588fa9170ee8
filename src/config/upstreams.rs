//! The `[upstream]` table and the named `[upstreams.<name>]` tables: where requests go.
//!
//! A provider may serve from more than one host (Stripe takes file uploads on
//! files.stripe.com and Connect OAuth on connect.stripe.com), and an app may call more than one
//! provider. `[upstream]` is the default, for routes that name none and for requests no route
//! matches; its limiter and breaker are the top-level `[rate_limit]` and `[breaker]`, as they
//! were when it was the only one. Each named upstream has its own origin, TLS trust, pool,
//! profile, and its own limiter and breaker (`[upstreams.<name>.rate_limit]`, `.breaker`),
//! built from its profile's defaults when the tables are left out. Nothing is shared between
//! upstreams but the idempotency store: one host's outage or rate limit never holds back
//! another's requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::duration;
use super::limits::{self, RawBreaker, RawRateLimit};
use crate::profile::{self, Profile};
use crate::shared::RedisSpec;
use crate::upstream::{DEFAULT_UPSTREAM, UpstreamSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub url: String,
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    #[serde(default = "default_pool_idle_timeout", with = "duration")]
    pub pool_idle_timeout: Duration,
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle_per_host: usize,
    pub profile: Option<String>,
    #[serde(default, with = "duration::option")]
    pub key_window: Option<Duration>,
    // Only in [upstreams.<name>]: [upstream]'s are the top-level tables.
    pub rate_limit: Option<RawRateLimit>,
    pub breaker: Option<RawBreaker>,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(90)
}
fn default_pool_max_idle() -> usize {
    32
}

/// Every upstream, `[upstream]` first; `None` in the list for one that failed validation.
pub(super) fn upstreams(
    default: &RawUpstream,
    named: &BTreeMap<String, RawUpstream>,
    top_limits: (&RawRateLimit, &RawBreaker),
    base_dir: &Path,
    redis: Option<&RedisSpec>,
    issue: &mut impl FnMut(String, String),
) -> Vec<Option<UpstreamSpec>> {
    for key in ["rate_limit", "breaker"] {
        let set = match key {
            "rate_limit" => default.rate_limit.is_some(),
            _ => default.breaker.is_some(),
        };
        if set {
            issue(
                format!("upstream.{key}"),
                format!("[upstream]'s {key} is the top-level [{key}] table"),
            );
        }
    }
    let mut specs = vec![one(
        DEFAULT_UPSTREAM,
        "upstream",
        default,
        top_limits,
        base_dir,
        redis,
        issue,
    )];
    let (limit_defaults, breaker_defaults) = (RawRateLimit::default(), RawBreaker::default());
    for (name, raw) in named {
        let at = format!("upstreams.{name}");
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid || name == DEFAULT_UPSTREAM {
            issue(
                at,
                "upstream names are 1-32 characters of a-z, 0-9 and _, and not \"default\"".into(),
            );
            specs.push(None);
            continue;
        }
        let rate_limit = raw.rate_limit.as_ref().unwrap_or(&limit_defaults);
        let breaker = raw.breaker.as_ref().unwrap_or(&breaker_defaults);
        specs.push(one(
            name,
            &at,
            raw,
            (rate_limit, breaker),
            base_dir,
            redis,
            issue,
        ));
    }
    specs
}

/// The index in the upstream list of the one a route at `at` names (`None`: the default).
pub(super) fn index(
    name: Option<&str>,
    named: &BTreeMap<String, RawUpstream>,
    at: &str,
    issue: &mut impl FnMut(String, String),
) -> usize {
    let Some(name) = name.filter(|n| *n != DEFAULT_UPSTREAM) else {
        return 0;
    };
    // The list holds [upstream] first, then the named ones in the map's order.
    if let Some(i) = named.keys().position(|n| n == name) {
        return i + 1;
    }
    let known: Vec<&str> = named.keys().map(String::as_str).collect();
    let known = match known.is_empty() {
        true => "none".to_owned(),
        false => known.join(", "),
    };
    issue(
        format!("{at}.upstream"),
        format!("no [upstreams.{name}] table; named upstreams: {known}"),
    );
    0
}

fn one(
    name: &str,
    at: &str,
    raw: &RawUpstream,
    (rate_limit, breaker): (&RawRateLimit, &RawBreaker),
    base_dir: &Path,
    redis: Option<&RedisSpec>,
    issue: &mut impl FnMut(String, String),
) -> Option<UpstreamSpec> {
    let mut ok = true;
    if raw.connect_timeout.is_zero() {
        issue(
            format!("{at}.connect_timeout"),
            "must be greater than 0".into(),
        );
        ok = false;
    }
    let profile = match raw.profile.as_deref() {
        None => &profile::STRIPE,
        Some(name) => profile::named(name).unwrap_or_else(|| {
            let known: Vec<&str> = profile::BUILTIN.iter().map(|p| p.name).collect();
            issue(
                format!("{at}.profile"),
                format!("unknown profile {name:?}; built in: {}", known.join(", ")),
            );
            ok = false;
            &profile::STRIPE
        }),
    };
    let key_window = key_window(raw, profile, at, issue);
    // Top-level tables keep their historical names in messages.
    let (limit_at, breaker_at) = match name {
        DEFAULT_UPSTREAM => ("rate_limit".to_owned(), "breaker".to_owned()),
        _ => (format!("{at}.rate_limit"), format!("{at}.breaker")),
    };
    let rate_limit = limits::limit(rate_limit, &limit_at, profile, redis, issue);
    let breaker = limits::breaker(breaker, &breaker_at, issue);
    let extra_roots = match &raw.ca_file {
        None => Vec::new(),
        Some(file) => read_ca_file(&base_dir.join(file)).unwrap_or_else(|e| {
            issue(format!("{at}.ca_file"), e);
            ok = false;
            Vec::new()
        }),
    };
    let (scheme, authority) = match parse_origin(&raw.url) {
        Ok(origin) => origin,
        Err(e) => {
            issue(format!("{at}.url"), e);
            return None;
        }
    };
    ok.then(|| UpstreamSpec {
        name: name.to_owned(),
        scheme,
        authority,
        extra_roots,
        connect_timeout: raw.connect_timeout,
        pool_idle_timeout: raw.pool_idle_timeout,
        pool_max_idle_per_host: raw.pool_max_idle_per_host,
        profile,
        key_window,
        rate_limit,
        breaker,
    })
}

/// How long the upstream's provider keeps keys: the profile's unless set, and never longer
/// than the provider is known to keep them.
fn key_window(
    raw: &RawUpstream,
    profile: &Profile,
    at: &str,
    issue: &mut impl FnMut(String, String),
) -> Duration {
    let key_window = raw.key_window.unwrap_or(profile.key_window);
    if key_window < Duration::from_secs(1) || key_window > Duration::from_secs(90 * 24 * 3600) {
        issue(
            format!("{at}.key_window"),
            "must be from 1s to 90 days".into(),
        );
    } else if key_window > profile.longest_key_window {
        issue(
            format!("{at}.key_window"),
            format!(
                "must not exceed how long {} keeps keys ({}): a re-send after that could execute the request again",
                profile.name,
                humantime::format_duration(profile.longest_key_window)
            ),
        );
    }
    key_window
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
