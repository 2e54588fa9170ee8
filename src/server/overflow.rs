//! A connection past `server.max_connections`: served just long enough to answer its first
//! request 503 `payguard_overloaded` (with `Retry-After` and the profile's retry header, so
//! the SDK retries on a fresh connection) and closed. Bounded in time, so a client that sends
//! nothing cannot hold one of these either.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::connection_builder;
use crate::error::ProxyError;
use crate::load::Bound;
use crate::profile::STRIPE;
use crate::proxy::ProxyState;

/// The longest a refused connection is kept.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

pub(super) async fn refuse(stream: TcpStream, state: Arc<ProxyState>) {
    let builder = connection_builder(REFUSAL_TIME);
    let service = hyper::service::service_fn(move |_request| {
        state.metrics().limits.overloaded(Bound::Connections);
        // No route is known yet: Stripe's, the default profile's, error shape.
        let mut response = ProxyError::Overloaded(Bound::Connections).into_response(&STRIPE);
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(REFUSAL_TIME, connection).await;
}
