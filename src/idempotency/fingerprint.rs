//! Names for records, derived by hashing so that nothing secret is ever stored or compared in
//! clear: the API key only ever exists here as part of a SHA-256 input.
//!
//! - The **scope** is the tenant: the `Authorization` header (which carries the API key) plus
//!   the profile's account headers (Stripe: `Stripe-Account` and `Stripe-Context`). Records
//!   of one scope can never be reached from another, because the
//!   scope is part of every record key.
//! - The **record key** names one idempotency key within a scope.
//! - The **fingerprint** is what the key was first used for: method, path with query, body.
//!   The same key with another fingerprint is a mismatch, as the provider would judge it.
//!
//! Each input is length-prefixed before hashing so that no two different tuples can produce
//! the same byte stream (`("ab","c")` and `("a","bc")` hash differently).

use http::HeaderMap;
use ring::digest::{Context, SHA256};

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The tenant a request belongs to; `None` when it carries no credentials (the provider will
/// refuse it, so there is nothing to deduplicate).
/// `accounts` are the provider's headers naming a tenant within the credentials.
pub fn scope(headers: &HeaderMap, accounts: &[&str]) -> Option<Digest> {
    let auth = headers.get(http::header::AUTHORIZATION)?;
    let mut parts: Vec<&[u8]> = vec![b"scope", auth.as_bytes()];
    for name in accounts {
        parts.push(headers.get(*name).map_or(&b""[..], |v| v.as_bytes()));
    }
    Some(hash(&parts))
}

/// The store key for idempotency key `key` within `scope`.
pub fn record_key(scope: &Digest, key: &[u8]) -> Digest {
    hash(&[b"key", scope, key])
}

/// The store key binding a keyless request's content to the key payguard injected for it.
pub fn binding_key(scope: &Digest, fingerprint: &Digest) -> Digest {
    hash(&[b"binding", scope, fingerprint])
}

/// What a request asks for: method, path and query, body.
pub fn fingerprint(method: &http::Method, path_and_query: &str, body: &[u8]) -> Digest {
    hash(&[
        b"request",
        method.as_str().as_bytes(),
        path_and_query.as_bytes(),
        body,
    ])
}

fn hash(parts: &[&[u8]]) -> Digest {
    let mut ctx = Context::new(&SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Method};

    fn scope_of(h: &HeaderMap) -> Option<Digest> {
        scope(h, crate::profile::STRIPE.scope_headers)
    }

    fn headers(auth: &'static str, account: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static(auth));
        if let Some(a) = account {
            h.insert("stripe-account", HeaderValue::from_static(a));
        }
        h
    }

    #[test]
    fn scopes_separate_keys_and_accounts() {
        let a = scope_of(&headers("Bearer sk_a", None)).unwrap();
        let b = scope_of(&headers("Bearer sk_b", None)).unwrap();
        let a_connected = scope_of(&headers("Bearer sk_a", Some("acct_1"))).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, a_connected);
        assert_eq!(a, scope_of(&headers("Bearer sk_a", None)).unwrap());
        assert_eq!(scope_of(&HeaderMap::new()), None);
        assert_ne!(record_key(&a, b"k1"), record_key(&b, b"k1"));
    }

    #[test]
    fn fingerprints_see_method_path_and_body_without_ambiguity() {
        let f = |m: Method, p: &str, b: &[u8]| fingerprint(&m, p, b);
        assert_eq!(
            f(Method::POST, "/v1/refunds", b"a=1"),
            f(Method::POST, "/v1/refunds", b"a=1")
        );
        assert_ne!(
            f(Method::POST, "/v1/refunds", b"a=1"),
            f(Method::POST, "/v1/refunds", b"a=2")
        );
        assert_ne!(
            f(Method::POST, "/v1/refunds", b""),
            f(Method::PUT, "/v1/refunds", b"")
        );
        assert_ne!(
            f(Method::POST, "/v1/ab", b"c"),
            f(Method::POST, "/v1/a", b"bc")
        );
    }
}
