//! The resolver's re-send of a pending entry: its stored request rebuilt and handed to the
//! request path's one entry point for re-sends ([`ProxyState::resend`]), which runs the
//! idempotency layer, gates and retries but not the journal: the resolver keeps the entry.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};

use crate::journal::{Payload, Verdict};
use crate::proxy::ProxyState;

/// Re-sends a journaled request through the whole request path (idempotency layer,
/// gates, retries), without journaling it again. Returns its verdict and attempts.
pub async fn resend(
    proxy: &ProxyState,
    method: Method,
    target: &str,
    payload: Payload,
) -> (Verdict, u32) {
    let mut request = Request::new(());
    *request.method_mut() = method;
    match target.parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(e) => return (Verdict::Unknown(format!("bad stored target: {e}")), 0),
    }
    let mut headers = HeaderMap::new();
    for (name, value) in payload.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(name, value);
        }
    }
    *request.headers_mut() = headers;
    let (parts, ()) = request.into_parts();
    let route = proxy.route(&parts.method, parts.uri.path());
    // A re-send gets the route's whole deadline, as a request arriving now would.
    let deadline = tokio::time::Instant::now() + route.retry.deadline;
    proxy
        .resend(parts, Bytes::from(payload.body), route, deadline)
        .await
}
