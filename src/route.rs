//! Matching a request to a named route by method and path pattern.
//!
//! Routes are what operators reason about ("confirming a payment intent", "creating a refund"),
//! so metrics and, later, retry policies hang off their names. A pattern is a method (or `*`)
//! and a path whose segments are literals or `*`:
//!
//! - `*` in the middle of a path stands for exactly one segment, so
//!   `POST /v1/payment_intents/*/confirm` matches any payment intent id;
//! - `*` as the last segment stands for the rest of the path (one or more segments), so
//!   `GET /v1/*` covers every read.
//!
//! The first matching route wins, in file order; a request that matches none falls to the
//! default route. Matching is a linear scan over a handful of routes, which is cheaper than any
//! index at the sizes a sidecar config has.

use std::time::Duration;

use http::Method;

use crate::breaker::BreakerSpec;
use crate::idempotency::{KeyedRoute, RoutePolicy};
use crate::profile::Profile;
use crate::ratelimit::LimitSpec;
use crate::retry::RetryPolicy;

/// The name under which requests that match no route are counted.
pub const DEFAULT_ROUTE: &str = "default";

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
    /// Index of its upstream in the config's upstreams, and that upstream's profile.
    pub upstream: usize,
    pub profile: &'static Profile,
    /// How long the provider keeps keys for this route's upstream.
    pub key_window: Duration,
    /// Bodies over the replay buffer and up to this size stream through unbuffered, with a
    /// single attempt; `None` refuses them with 413.
    pub max_upload: Option<usize>,
}

impl RouteSpec {
    /// What the idempotency layer and the journal need of the route: they sit below routing
    /// and see only this view.
    pub fn keyed(&self) -> KeyedRoute<'_> {
        KeyedRoute {
            name: &self.name,
            profile: self.profile,
            policy: &self.idempotency,
            key_window: self.key_window,
        }
    }
}

/// A parsed `METHOD /path/pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    method: Option<Method>,
    segments: Vec<Segment>,
    /// True when the last segment is `*`, which then swallows the rest of the path.
    open_ended: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Any,
}

impl RoutePattern {
    /// Parses `"POST /v1/refunds"`; the error says what is wrong in words fit for `payguard check`.
    pub fn parse(text: &str) -> Result<RoutePattern, String> {
        let mut parts = text.split_whitespace();
        let (Some(method), Some(path), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("expected \"METHOD /path\", got {text:?}"));
        };
        let method = match method {
            "*" => None,
            m if m.chars().all(|c| c.is_ascii_uppercase()) => {
                Some(Method::from_bytes(m.as_bytes()).map_err(|_| format!("bad method {m:?}"))?)
            }
            m => return Err(format!("method {m:?} must be upper case, or * for any")),
        };
        let Some(rest) = path.strip_prefix('/') else {
            return Err(format!("path {path:?} must start with /"));
        };
        let mut segments: Vec<Segment> = Vec::new();
        for seg in rest.split('/').filter(|s| !s.is_empty()) {
            segments.push(match seg {
                "*" => Segment::Any,
                s if s.contains('*') => {
                    return Err(format!("segment {s:?}: * must stand alone in a segment"));
                }
                s => Segment::Literal(s.to_owned()),
            });
        }
        let open_ended = segments.last() == Some(&Segment::Any);
        if open_ended {
            segments.pop();
        }
        Ok(RoutePattern {
            method,
            segments,
            open_ended,
        })
    }

    /// Every method and path: the default route's pattern.
    pub fn any() -> RoutePattern {
        RoutePattern {
            method: None,
            segments: Vec::new(),
            open_ended: true,
        }
    }

    /// The method it matches; `None` for any (`*`).
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    pub fn matches(&self, method: &Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        // Split as bytes: `/` is ASCII, so no segment boundary falls inside a character, and
        // a byte comparison is what string equality does. (`str::split` searches with
        // `memchr`, a call per segment; this runs once per configured route per request.)
        let mut parts = path
            .as_bytes()
            .split(|b| *b == b'/')
            .filter(|s| !s.is_empty());
        for seg in &self.segments {
            match (seg, parts.next()) {
                (_, None) => return false,
                (Segment::Any, Some(_)) => {}
                (Segment::Literal(lit), Some(part)) if lit.as_bytes() == part => {}
                _ => return false,
            }
        }
        // An open end needs at least one more segment; a closed pattern needs none.
        parts.next().is_some() == self.open_ended
    }
}

/// The routes of a config, in the order they are tried.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<RouteSpec>,
    default: RouteSpec,
}

impl RouteTable {
    /// The configured routes, in order, and the route of requests none of them match.
    pub fn new(routes: Vec<RouteSpec>, default: RouteSpec) -> RouteTable {
        RouteTable { routes, default }
    }

    /// The first route that matches and its place in [`Self::routes`], or the default route
    /// and `None`.
    pub fn lookup(&self, method: &Method, path: &str) -> (Option<usize>, &RouteSpec) {
        let found = self
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.pattern.matches(method, path));
        match found {
            Some((at, route)) => (Some(at), route),
            None => (None, &self.default),
        }
    }

    /// The configured routes, in the order they are tried.
    pub fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    /// The route of requests no configured route matches.
    pub fn default_route(&self) -> &RouteSpec {
        &self.default
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryPolicy;

    fn m(pattern: &str, method: Method, path: &str) -> bool {
        RoutePattern::parse(pattern).unwrap().matches(&method, path)
    }

    #[test]
    fn literal_and_single_segment_wildcards() {
        let p = "POST /v1/payment_intents/*/confirm";
        assert!(m(p, Method::POST, "/v1/payment_intents/pi_123/confirm"));
        assert!(!m(p, Method::GET, "/v1/payment_intents/pi_123/confirm"));
        assert!(!m(p, Method::POST, "/v1/payment_intents/pi_123"));
        assert!(!m(p, Method::POST, "/v1/payment_intents/pi_123/confirm/x"));
        assert!(m("POST /v1/refunds", Method::POST, "/v1/refunds"));
        assert!(!m("POST /v1/refunds", Method::POST, "/v1/refunds/re_1"));
    }

    #[test]
    fn trailing_wildcard_takes_the_rest() {
        assert!(m("GET /v1/*", Method::GET, "/v1/payment_intents"));
        assert!(m("GET /v1/*", Method::GET, "/v1/payment_intents/pi_1"));
        assert!(!m("GET /v1/*", Method::GET, "/v1"));
        assert!(m("* /*", Method::DELETE, "/anything/at/all"));
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert!(
            RoutePattern::parse("/v1/refunds")
                .unwrap_err()
                .contains("METHOD /path")
        );
        assert!(
            RoutePattern::parse("post /v1")
                .unwrap_err()
                .contains("upper case")
        );
        assert!(
            RoutePattern::parse("GET v1")
                .unwrap_err()
                .contains("start with /")
        );
        assert!(
            RoutePattern::parse("GET /v1/pi_*")
                .unwrap_err()
                .contains("stand alone")
        );
    }

    #[test]
    fn first_match_wins_and_unmatched_falls_to_default() {
        let policy = crate::config::builtin_policy();
        let spec = |name: &str, p: &str, retry: RetryPolicy| RouteSpec {
            name: name.into(),
            pattern: RoutePattern::parse(p).unwrap(),
            retry,
            idempotency: crate::config::builtin_route_policy(),
            rate_limit: None,
            breaker: None,
            upstream: 0,
            profile: &crate::profile::STRIPE,
            key_window: crate::profile::STRIPE.key_window,
            max_upload: None,
        };
        let twice = RetryPolicy {
            max_attempts: 2,
            ..policy.clone()
        };
        let routes = vec![
            spec(
                "confirm",
                "POST /v1/payment_intents/*/confirm",
                twice.clone(),
            ),
            spec("writes", "POST /*", twice),
        ];
        let table = RouteTable::new(routes, spec(DEFAULT_ROUTE, "* /*", policy.clone()));
        let name = |m, p| table.lookup(&m, p).1.name.as_str();
        assert_eq!(
            name(Method::POST, "/v1/payment_intents/pi_1/confirm"),
            "confirm"
        );
        assert_eq!(name(Method::POST, "/v1/refunds"), "writes");
        assert_eq!(name(Method::GET, "/v1/refunds"), DEFAULT_ROUTE);
        assert_eq!(
            table
                .lookup(&Method::POST, "/v1/refunds")
                .1
                .retry
                .max_attempts,
            2
        );
        assert_eq!(
            table.lookup(&Method::GET, "/").1.retry,
            policy,
            "default policy"
        );
        assert_eq!(table.lookup(&Method::POST, "/v1/refunds").0, Some(1));
        assert_eq!(table.lookup(&Method::GET, "/").0, None, "the default route");
    }
}
