//! Record names and fingerprints: deterministic, and no two different inputs share a name
//! because of how their parts were framed (which would let one request replay another's
//! response, or one tenant reach another's records).
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use payguard::idempotency::fingerprint::{self, binding_key, fingerprint, record_key};
use payguard::profile::STRIPE;

/// Scopes as the Stripe profile draws them: credentials plus `Stripe-Account`.
fn scope(headers: &HeaderMap) -> Option<fingerprint::Digest> {
    fingerprint::scope(headers, STRIPE.scope_headers)
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: &'a [u8],
    path: &'a str,
    body: &'a [u8],
    /// Where to cut `path ++ body` differently.
    split: usize,
    auth: &'a [u8],
    other_auth: &'a [u8],
    account: Option<&'a [u8]>,
    key: &'a [u8],
}

fn headers(auth: &[u8], account: Option<&[u8]>) -> Option<HeaderMap> {
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_bytes(auth).ok()?);
    if let Some(account) = account {
        h.insert("stripe-account", HeaderValue::from_bytes(account).ok()?);
    }
    Some(h)
}

fuzz_target!(|input: Input<'_>| {
    let Ok(method) = Method::from_bytes(input.method) else {
        return;
    };
    let print = fingerprint(&method, input.path, input.body);
    assert_eq!(print, fingerprint(&method, input.path, input.body));

    // The same bytes cut at another place between path and body are another request.
    let joined = [input.path.as_bytes(), input.body].concat();
    let cut = input.split % (joined.len() + 1);
    if cut != input.path.len() {
        if let Ok(path) = std::str::from_utf8(&joined[..cut]) {
            assert_ne!(print, fingerprint(&method, path, &joined[cut..]));
        }
    }

    assert_eq!(scope(&HeaderMap::new()), None, "no credentials, no scope");
    let Some(mine) = headers(input.auth, input.account).as_ref().map(scope) else {
        return;
    };
    let mine = mine.expect("credentials give a scope");
    if let Some(theirs) = headers(input.other_auth, input.account) {
        let theirs = scope(&theirs).expect("credentials give a scope");
        assert_eq!(mine == theirs, input.auth == input.other_auth);
        if input.auth != input.other_auth {
            assert_ne!(record_key(&mine, input.key), record_key(&theirs, input.key));
        }
    }
    if input.account.is_some_and(|a| !a.is_empty()) {
        let unconnected = headers(input.auth, None).and_then(|h| scope(&h));
        assert_ne!(
            Some(mine),
            unconnected,
            "a connected account is its own tenant"
        );
    }
    // Keys and bindings live in separate namespaces even for identical bytes.
    assert_ne!(record_key(&mine, &print), binding_key(&mine, &print));
});
