//! The `[[route]]` tables: each route's name, pattern, upstream, and its policies, the
//! top-level ones with the route's overrides applied.

use std::collections::{BTreeMap, HashSet};

use super::resolver;
use super::upstreams::{self, RawUpstream};
use super::{RawRoute, ResolverSpec, idempotency as idem, limits, retry};
use crate::idempotency::RoutePolicy;
use crate::profile::STRIPE;
use crate::retry::RetryPolicy;
use crate::route::{DEFAULT_ROUTE, RoutePattern, RouteSpec};

use crate::shared::RedisSpec;
use crate::upstream::UpstreamSpec;

/// The largest streamed upload a route may allow: 4 GiB.
const MAX_UPLOAD: usize = 4 << 30;

/// What every route starts from and points into.
pub(super) struct Defaults<'a> {
    pub retry: &'a RetryPolicy,
    pub idempotency: &'a RoutePolicy,
    /// Every upstream, `None` for one that failed validation.
    pub upstreams: &'a [Option<UpstreamSpec>],
    pub named: &'a BTreeMap<String, RawUpstream>,
    pub max_body: usize,
    pub redis: Option<&'a RedisSpec>,
}

/// The valid routes, in file order; each route's resolver override goes into `resolver`.
pub(super) fn routes(
    raw: &[RawRoute],
    d: &Defaults<'_>,
    resolver: &mut ResolverSpec,
    issue: &mut impl FnMut(String, String),
) -> Vec<RouteSpec> {
    let mut routes = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        check_name(i, &r.name, &mut names, issue);
        if r.retry.jitter_seed.is_some() {
            issue(
                format!("route[{i}].retry.jitter_seed"),
                "may only be set in the top-level [retry]".into(),
            );
        }
        let policy = retry::policy(d.retry, &r.retry, &format!("route[{i}].retry"), issue);
        let idempotency = idem::route_policy(
            d.idempotency,
            &r.idempotency,
            &format!("route[{i}].idempotency"),
            issue,
        );
        let at = format!("route[{i}]");
        resolver::route_override(resolver, &r.name, &r.resolver);
        let upstream = upstreams::index(r.upstream.as_deref(), d.named, &at, issue);
        let (profile, key_window) = d
            .upstreams
            .get(upstream)
            .and_then(Option::as_ref)
            .map_or((&STRIPE, STRIPE.key_window), |u| (u.profile, u.key_window));
        let max_body = d.max_body;
        if r.max_upload_bytes
            .is_some_and(|m| m <= max_body || m > MAX_UPLOAD)
        {
            issue(
                format!("{at}.max_upload_bytes"),
                format!(
                    "must be above server.max_request_body_bytes ({max_body}) and at most {MAX_UPLOAD}"
                ),
            );
        }
        let route_limit = r
            .rate_limit
            .as_ref()
            .and_then(|l| limits::limit(l, &format!("{at}.rate_limit"), profile, d.redis, issue));
        let route_breaker = r
            .breaker
            .as_ref()
            .and_then(|b| limits::breaker(b, &format!("{at}.breaker"), issue));
        match RoutePattern::parse(&r.pattern) {
            Ok(pattern) => routes.push(RouteSpec {
                name: r.name.clone(),
                pattern,
                retry: policy,
                idempotency,
                rate_limit: route_limit,
                breaker: route_breaker,
                upstream,
                profile,
                key_window,
                max_upload: r.max_upload_bytes,
            }),
            Err(e) => issue(format!("route[{i}].match"), e),
        }
    }
    routes
}

/// A route's name becomes a metric label and a key of resolver overrides: it must be a
/// label, not reserved, and unique.
fn check_name(
    i: usize,
    name: &str,
    names: &mut HashSet<String>,
    issue: &mut impl FnMut(String, String),
) {
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid_name {
        issue(
            format!("route[{i}].name"),
            "must be 1-64 characters of a-z, 0-9 and _ (it becomes a metric label)".into(),
        );
    } else if name == DEFAULT_ROUTE || name == "upstream" {
        issue(
            format!("route[{i}].name"),
            format!(
                "{:?} is reserved (unmatched requests, upstream-wide limits)",
                name
            ),
        );
    } else if !names.insert(name.to_owned()) {
        issue(
            format!("route[{i}].name"),
            format!("route name {:?} is used twice", name),
        );
    }
}
