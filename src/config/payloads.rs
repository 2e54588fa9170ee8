//! When a config keeps request payloads at rest, and the rule that they are then sealed.
//!
//! The resolver keeps a request's payload (its headers, the API key in `Authorization`
//! included, and its body) only for an entry it may re-send, and drops it when the entry
//! finishes ([`crate::journal::open`]). Whether a route may re-send is decided from the
//! config by [`ResolverSpec::resends`], the function the request path uses too:
//!
//! - a route's `[route.resolver] enabled`, when set, decides alone: `true` re-sends (and keeps
//!   payloads) even under `[resolver] enabled = false`, `false` never does;
//! - otherwise the route re-sends when `[resolver] enabled` is true and the route has a
//!   duplicate window across keys (`dedup_window` with `dedup_across_keys`, its own or
//!   `[idempotency]`'s);
//! - and only requests of a method its upstream's profile keys (POST for Stripe) are journaled
//!   at all, so a route that matches only other methods (`GET /v1/*`) keeps nothing.
//!
//! The default route (requests no route matches) counts like any, with `[idempotency]`'s
//! window. What only a request can tell (whether it has a key and credentials, whether its
//! body has `dedup_when_param`) can only narrow this: a route that "may" keep payloads is one
//! where some request would, so the rule errs towards asking for a key, never away from it.
//!
//! Where the payloads would sit: with the embedded store, in its file, for as long as an entry
//! is unresolved, and in every backup or copy of that volume; with the Redis store, in Redis
//! (its memory, its append-only file and their backups), readable by every client of that
//! server; with the PostgreSQL store, in its `journal` table (the database's files, WAL,
//! replicas and backups). Only the memory store keeps them nowhere but in the process, beside the requests it
//! is serving anyway, where a key held by the same process would protect nothing: it needs no
//! key.
//!
//! Such a config must set `resolver.encryption_key_file` (AES-256-GCM, [`crate::journal::seal`])
//! or accept clear payloads with `resolver.allow_plaintext_journal = true`; otherwise it is
//! invalid, and the problem names `resolver.encryption_key_file`.

use http::Method;

use super::resolver::RawResolver;
use super::{ResolverSpec, StoreKind};
use crate::idempotency::RoutePolicy;
use crate::profile::{Profile, STRIPE};
use crate::route::{DEFAULT_ROUTE, RouteSpec};
use crate::upstream::UpstreamSpec;

/// What the rule needs to know about one route.
struct Route<'a> {
    name: &'a str,
    /// The method its pattern matches; `None`: any.
    method: Option<&'a Method>,
    profile: &'static Profile,
    policy: &'a RoutePolicy,
}

impl Route<'_> {
    /// Whether some request of this route may leave a payload in the journal.
    fn may_keep_payloads(&self, spec: &ResolverSpec) -> bool {
        let journaled = match self.method {
            Some(method) => self.profile.keys(method),
            None => !self.profile.key_methods.is_empty(),
        };
        let windowed = self.policy.dedup_window.is_some() && self.policy.dedup_across_keys;
        journaled && spec.resends(self.name, windowed)
    }
}

/// Whether payloads kept by this store's journal are at rest (see the module docs).
fn at_rest(store: &StoreKind) -> bool {
    match store {
        StoreKind::Embedded(_) | StoreKind::Redis | StoreKind::Postgres => true,
        StoreKind::Memory => false,
    }
}

/// The rule, for one config's `[resolver]` and store.
pub(super) struct Rule<'a> {
    raw: &'a RawResolver,
    spec: &'a ResolverSpec,
    store: &'a StoreKind,
}

impl<'a> Rule<'a> {
    pub fn new(raw: &'a RawResolver, spec: &'a ResolverSpec, store: &'a StoreKind) -> Self {
        Rule { raw, spec, store }
    }

    /// Reports a config that would keep payloads at rest in clear without saying so. `routes`
    /// are the configured ones; the default route has `[upstream]` (when valid) and `policy`.
    pub fn check(
        &self,
        routes: &[RouteSpec],
        upstream: Option<&Option<UpstreamSpec>>,
        policy: &RoutePolicy,
        issue: &mut impl FnMut(String, String),
    ) {
        let Rule { raw, spec, store } = *self;
        // A key file that cannot be read is reported as such by the resolver's own checks.
        if raw.encryption_key_file.is_some() || raw.allow_plaintext_journal || !at_rest(store) {
            return;
        }
        let upstream = upstream.and_then(Option::as_ref);
        let default = Route {
            name: DEFAULT_ROUTE,
            method: None,
            profile: upstream.map_or(&STRIPE, |u| u.profile),
            policy,
        };
        let configured = routes.iter().map(|r| Route {
            name: &r.name,
            method: r.pattern.method(),
            profile: r.profile,
            policy: &r.idempotency,
        });
        let keeping: Vec<&str> = configured
            .chain([default])
            .filter(|r| r.may_keep_payloads(spec))
            .map(|r| r.name)
            .collect();
        if keeping.is_empty() {
            return;
        }
        let place = match store {
            StoreKind::Embedded(path) => format!("the store file {}", path.display()),
            _ => "the journal".to_owned(),
        };
        issue(
            "resolver.encryption_key_file".into(),
            format!(
                "unset, yet routes {} may re-send, so the payloads kept for that (headers, the API \
                 key included, and bodies) would be stored in clear in {place}. Set it to a file of \
                 64 hex digits (`openssl rand -hex 32`), or set resolver.allow_plaintext_journal = \
                 true to accept that",
                keeping.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const WINDOW: &str = "[route.idempotency]\ndedup_window = \"10m\"\ndedup_across_keys = true\n";

    fn parse(store: &str, resolver: &str, routes: &str) -> Result<Config, String> {
        let text = format!(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\n[idempotency]\n{store}\n\
             [resolver]\n{resolver}\n{routes}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("journal-key"), "ab".repeat(32)).unwrap();
        Config::parse(&text, "test", Some(dir.path())).map_err(|e| e.to_string())
    }

    fn route(name: &str, pattern: &str, extra: &str) -> String {
        format!("[[route]]\nname = \"{name}\"\nmatch = \"{pattern}\"\n{extra}")
    }

    #[test]
    fn a_route_that_may_resend_needs_a_key_or_consent() {
        let refunds = route("refunds", "POST /v1/refunds", WINDOW);
        let err = parse("path = \"s.redb\"", "", &refunds).unwrap_err();
        assert!(
            err.contains("line 5: `resolver.encryption_key_file`"),
            "{err}"
        );
        assert!(err.contains("routes refunds may re-send"), "{err}");
        assert!(
            err.contains("s.redb") && err.contains("allow_plaintext_journal"),
            "{err}"
        );
        let sealed = parse("", "encryption_key_file = \"journal-key\"", &refunds).unwrap();
        assert!(sealed.resolver.encryption_key.is_some());
        parse("", "allow_plaintext_journal = true", &refunds).unwrap();
        // An unreadable key file is its own problem, not this one.
        let err = parse("", "encryption_key_file = \"nope\"", &refunds).unwrap_err();
        assert!(
            err.contains("cannot read") && !err.contains("may re-send"),
            "{err}"
        );
        // The Redis store counts; the memory store keeps nothing at rest.
        let redis = "store = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:1\"";
        assert!(parse(redis, "", &refunds).is_err());
        parse("store = \"memory\"", "", &refunds).unwrap();
    }

    #[test]
    fn only_routes_that_resend_keyed_requests_keep_payloads() {
        let ok = |resolver: &str, routes: &str| parse("", resolver, routes).map(|_| ());
        // A window without dedup_across_keys, or none: report only.
        let same_key = "[route.idempotency]\ndedup_window = \"10m\"\n";
        ok("", &route("refunds", "POST /v1/refunds", same_key)).unwrap();
        ok("", &route("intents", "POST /v1/payment_intents", "")).unwrap();
        // Re-sending off everywhere, or on a route that has the window.
        ok(
            "enabled = false",
            &route("refunds", "POST /v1/refunds", WINDOW),
        )
        .unwrap();
        let off = format!("{WINDOW}[route.resolver]\nenabled = false\n");
        ok("", &route("refunds", "POST /v1/refunds", &off)).unwrap();
        // A route's `enabled = true` re-sends without a window, even with the resolver off.
        let on = "[route.resolver]\nenabled = true\n";
        let err = ok("enabled = false", &route("intents", "POST /v1/*", on)).unwrap_err();
        assert!(err.contains("routes intents may re-send"), "{err}");
        // Only keyed methods are journaled: GET routes keep nothing; `*` may be a POST.
        ok("", &route("reads", "GET /v1/*", on)).unwrap();
        assert!(ok("", &route("any", "* /v1/*", on)).is_err());
        // The default route, through [idempotency]'s window.
        let defaults = "path = \"s.redb\"\ndedup_window = \"1h\"\ndedup_across_keys = true";
        let err = parse(defaults, "", "").unwrap_err();
        assert!(err.contains("routes default may re-send"), "{err}");
    }
}
