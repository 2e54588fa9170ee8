//! What a keyed request is, computed once when it arrives and handed to the idempotency layer
//! and the journal, which both key on it: its tenant, what it asks for, and whether its route's
//! duplicate window covers it.

use http::request::Parts;

use super::KeyedRoute;
use super::fingerprint::{self, Digest};

/// The identity of a request whose method its route's profile keys (POST, for Stripe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIdentity {
    /// The tenant: the API key and every account header, hashed. `None` without credentials:
    /// the provider will refuse the request, so there is nothing to deduplicate.
    pub scope: Option<Digest>,
    /// Method, path with query, and body, hashed.
    pub fingerprint: Digest,
    /// Whether the route's `dedup_window` applies to this request (its body carries the
    /// route's `dedup_when_param`, when it names one).
    pub windowed: bool,
}

impl RequestIdentity {
    /// The identity of a request on `route`, or `None` for a method the profile does not key.
    pub fn of(route: KeyedRoute<'_>, parts: &Parts, body: &[u8]) -> Option<RequestIdentity> {
        if !route.profile.keys(&parts.method) {
            return None;
        }
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let policy = route.policy;
        let windowed = policy.dedup_window.is_some()
            && policy
                .dedup_when_param
                .as_deref()
                .is_none_or(|name| has_param(body, name));
        Some(RequestIdentity {
            scope: fingerprint::scope(&parts.headers, route.profile.scope_headers),
            fingerprint: fingerprint::fingerprint(&parts.method, target, body),
            windowed,
        })
    }
}

/// Whether a form body has the parameter `name`, plain (`name=`) or nested (`name[...]=`),
/// as the SDKs encode `metadata[order_id]`, brackets percent-encoded or not.
fn has_param(body: &[u8], name: &str) -> bool {
    form_urlencoded::parse(body).any(|(key, _)| {
        key.strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('['))
    })
}

#[cfg(test)]
mod tests {
    use super::has_param;

    #[test]
    fn finds_plain_and_nested_parameters_however_encoded() {
        assert!(has_param(b"amount=1&metadata[order_id]=o1", "metadata"));
        assert!(has_param(b"metadata%5Border_id%5D=o1&amount=1", "metadata"));
        assert!(has_param(b"metadata=", "metadata"));
        assert!(!has_param(b"amount=1&metadatax=2", "metadata"));
        assert!(!has_param(b"amount=1&x[metadata]=2", "metadata"));
        assert!(!has_param(b"", "metadata"));
    }
}
