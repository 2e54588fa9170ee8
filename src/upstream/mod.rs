//! The connection to the provider: a pooled hyper-util client speaking TLS through rustls.
//!
//! One client per upstream, built once and shared, so keep-alive connections (and the TLS
//! handshakes they cost) are reused across requests. Trust comes from the webpki roots plus an
//! optional extra CA file, which lets tests and private deployments use their own CA without
//! turning verification off. A plain `http://` upstream is allowed for local doubles and
//! benchmarks; production configs point at `https://`.
//!
//! [`Upstream::send`] also answers the question retries depend on: did the request leave?
//! A connect failure (DNS, TCP, TLS) means it never did. Otherwise the request body is watched:
//! if the connection failed before the body was handed to it (and the body is then barred from
//! being handed over late), the provider cannot have received a complete request, so it cannot
//! have acted on it. The body is a buffered one (every retry sends the same bytes again) or a
//! streamed upload, relayed frame by frame as it arrives, which can only be sent once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;

use crate::breaker::BreakerSpec;
use crate::profile::Profile;
use crate::ratelimit::LimitSpec;
use crate::retry::AttemptError;

/// The name routes use for `[upstream]`; named upstreams may not take it.
pub const DEFAULT_UPSTREAM: &str = "default";

/// One validated upstream: where its requests go, how connections behave, whose rules apply.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSpec {
    /// `default` for `[upstream]`, else the table's name.
    pub name: String,
    pub scheme: Scheme,
    pub authority: Authority,
    /// Extra trust anchors beside the webpki roots, for private or test upstreams.
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    pub profile: &'static Profile,
    /// How long the provider keeps idempotency keys (the profile's unless set).
    pub key_window: Duration,
    pub rate_limit: Option<LimitSpec>,
    pub breaker: Option<BreakerSpec>,
}

impl UpstreamSpec {
    /// Whether two specs would build the same connection pool (reloads keep it then).
    pub fn same_connection(&self, other: &UpstreamSpec) -> bool {
        (
            &self.scheme,
            &self.authority,
            &self.extra_roots,
            self.connect_timeout,
        ) == (
            &other.scheme,
            &other.authority,
            &other.extra_roots,
            other.connect_timeout,
        ) && (self.pool_idle_timeout, self.pool_max_idle_per_host)
            == (other.pool_idle_timeout, other.pool_max_idle_per_host)
    }

    /// The name of its limiter and breaker in metrics: `upstream` for the default (as before
    /// there were several), `upstream:<name>` for the others, which no route name can equal.
    pub fn gate_name(&self) -> String {
        match self.name.as_str() {
            DEFAULT_UPSTREAM => "upstream".to_owned(),
            name => format!("upstream:{name}"),
        }
    }
}

/// A shared, pooled client for one upstream origin.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, WatchedBody>,
    scheme: Scheme,
    authority: Authority,
}

impl Upstream {
    pub fn new(spec: &UpstreamSpec) -> Result<Upstream, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for cert in &spec.extra_roots {
            roots.add(cert.clone())?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();

        let mut http = HttpConnector::new();
        // The https connector below wraps this one; it must accept https:// URIs too.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(spec.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));

        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(spec.pool_idle_timeout)
            .pool_max_idle_per_host(spec.pool_max_idle_per_host)
            .build(connector);
        Ok(Upstream {
            client,
            scheme: spec.scheme.clone(),
            authority: spec.authority.clone(),
        })
    }

    /// The upstream URI for a request's path and query. Only the configured origin is ever
    /// used: whatever authority the app's request named has been checked and dropped by then.
    pub fn uri_for(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        // The app's path and query, already parsed by hyper, are shared rather than parsed
        // and copied again (the builder's way cost ~900 instructions per request).
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Ok(Uri::from_parts(parts)?)
    }

    /// Sends one attempt and waits up to `timeout` for the response head (a streamed upload's
    /// body is sent within it too). The response body streams afterwards, outside that
    /// timeout, so large replies are not cut short.
    pub async fn send<B: OutBody>(
        &self,
        request: Request<B>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, AttemptError> {
        let (parts, body) = request.into_parts();
        let has_body = !body.is_end_stream();
        let handover = Arc::new(AtomicU8::new(PENDING));
        let body = WatchedBody {
            inner: body
                .map_err(|e| std::io::Error::other(e.into()))
                .boxed_unsync(),
            handover: handover.clone(),
        };
        let request = self.client.request(Request::from_parts(parts, body));
        let error = match tokio::time::timeout(timeout, request).await {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(e)) => Some(e),
            Err(_) => None,
        };
        // Settle the race with the connection task: either the body was already handed over
        // (the request may have been sent), or it never will be, because the body now refuses
        // to yield. Only in the second case is "not sent" certain.
        let abandoned = has_body
            && handover
                .compare_exchange(PENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
        match error {
            Some(e) if e.is_connect() || abandoned => Err(AttemptError::NotSent(error_chain(&e))),
            Some(e) => Err(AttemptError::Lost(error_chain(&e))),
            // No response head within the timeout.
            None if abandoned => Err(AttemptError::NotSent(format!(
                "not sent within {timeout:?}"
            ))),
            None => Err(AttemptError::TimedOut(timeout)),
        }
    }
}

/// A request body the client can send: a buffered one, or a streamed upload.
pub trait OutBody:
    Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<B> OutBody for B where
    B: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// The handover states of a request body.
const PENDING: u8 = 0;
const SENT: u8 = 1;
const ABANDONED: u8 = 2;

/// A request body that records when it was first handed to the connection, and refuses to be
/// handed over once its attempt has been judged "not sent".
struct WatchedBody {
    inner: UnsyncBoxBody<Bytes, std::io::Error>,
    handover: Arc<AtomicU8>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // The first poll hands the request over: a buffered body is one frame, and a streamed
        // one's first frame may already be on its way out.
        let claimed =
            self.handover
                .compare_exchange(PENDING, SENT, Ordering::AcqRel, Ordering::Acquire);
        if claimed == Err(ABANDONED) {
            return Poll::Ready(Some(Err(std::io::Error::other(
                "attempt abandoned before sending",
            ))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error and its causes on one line. Client errors carry no headers or bodies, so this
/// is safe to log and to return to the app.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
