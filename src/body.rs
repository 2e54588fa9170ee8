//! The body type every response payguard returns, and the headers payguard adds to them.
//!
//! Its own module because three layers make responses: the error mapping (`error`), the
//! idempotency layer's replays and the proxy's relayed answers. Each imports this leaf; none
//! imports another for it.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// The body of every response payguard returns: the provider's streamed through, or its own.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Header on every response: how many upstream attempts the request took (0 when payguard
/// answered without sending anything: a refusal or a replay).
/// (Names built once: inserted under a `&str`, a header name is parsed and allocated on
/// every response.)
pub const PAYGUARD_ATTEMPTS: HeaderName = HeaderName::from_static("payguard-attempts");
/// Header on responses to requests whose idempotency key payguard chose.
pub const PAYGUARD_IDEMPOTENCY_KEY: HeaderName =
    HeaderName::from_static("payguard-idempotency-key");

/// The value of [`PAYGUARD_ATTEMPTS`]. Counts up to 9, nearly every request, are static
/// values; `HeaderValue::from(u32)` formats into a fresh allocation each time.
pub fn attempts_value(attempts: u32) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match SMALL.get(attempts as usize) {
        Some(&digit) => HeaderValue::from_static(digit),
        None => HeaderValue::from(attempts),
    }
}

/// A body payguard holds in full (its own errors, a stored or peeked response) as a
/// [`ProxyBody`].
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}
