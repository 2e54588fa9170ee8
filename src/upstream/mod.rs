//! The connection to the provider: pooled hyper connections speaking TLS through rustls.
//!
//! One pool per upstream ([`pool`]), built once and shared, so keep-alive connections (and the
//! TLS handshakes they cost) are reused across requests. Trust comes from the webpki roots plus an
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::client::conn::TrySendError;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;

use crate::breaker::BreakerSpec;
use crate::profile::Profile;
use crate::ratelimit::LimitSpec;
use crate::retry::AttemptError;

mod body;
mod pool;

use body::{ABANDONED, PENDING, WatchedBody};
pub use body::{OutBody, UpstreamBody};
use pool::{Conn, Pool};

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

/// A shared pool of connections to one upstream origin.
#[derive(Clone)]
pub struct Upstream {
    pool: Arc<Pool>,
    scheme: Scheme,
    authority: Authority,
    /// The `Host` of every HTTP/1 request (the app's named payguard, and was dropped).
    host: HeaderValue,
}

/// Why an exchange failed: no connection (nothing was sent), or the exchange itself.
enum SendError {
    Connect(String),
    Http(hyper::Error),
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
        let origin = Uri::from_parts({
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(spec.scheme.clone());
            parts.authority = Some(spec.authority.clone());
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
            parts
        })
        .map_err(|e| rustls::Error::General(format!("upstream origin: {e}")))?;
        let host = HeaderValue::from_str(spec.authority.as_str())
            .map_err(|e| rustls::Error::General(format!("upstream host: {e}")))?;
        let pool = Pool::new(
            connector,
            origin,
            spec.pool_max_idle_per_host,
            spec.pool_idle_timeout,
        );
        Ok(Upstream {
            pool: Arc::new(pool),
            scheme: spec.scheme.clone(),
            authority: spec.authority.clone(),
            host,
        })
    }

    /// The absolute URI of `path_and_query` at this upstream's origin (HTTP/2 names the origin
    /// in the URI; HTTP/1 in `Host`).
    fn absolute(&self, path_and_query: PathAndQuery) -> Result<Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Ok(Uri::from_parts(parts)?)
    }

    /// Sends one attempt and waits up to `timeout` for the response head (a streamed upload's
    /// body is sent within it too). The response body streams afterwards, outside that
    /// timeout, so large replies are not cut short.
    ///
    /// Only the request URI's path and query are sent: the origin is always this upstream's,
    /// whatever scheme or authority the URI names (the app's request has been checked to name
    /// payguard itself by then).
    pub async fn send<B: OutBody>(
        &self,
        request: Request<B>,
        timeout: Duration,
    ) -> Result<Response<UpstreamBody>, AttemptError> {
        let (mut parts, body) = request.into_parts();
        // The hyper-parsed path and query are shared (a `Bytes` clone), never parsed again.
        parts.uri = Uri::from(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        let has_body = !body.is_end_stream();
        let handover = Arc::new(AtomicU8::new(PENDING));
        let body = WatchedBody {
            inner: body
                .map_err(|e| std::io::Error::other(e.into()))
                .boxed_unsync(),
            handover: handover.clone(),
        };
        let exchange = self.exchange(Request::from_parts(parts, body));
        let error = match tokio::time::timeout(timeout, exchange).await {
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
            Some(SendError::Connect(e)) => Err(AttemptError::NotSent(e)),
            Some(SendError::Http(e)) if abandoned => Err(AttemptError::NotSent(error_chain(&e))),
            Some(SendError::Http(e)) => Err(AttemptError::Lost(error_chain(&e))),
            // No response head within the timeout.
            None if abandoned => Err(AttemptError::NotSent(format!(
                "not sent within {timeout:?}"
            ))),
            None => Err(AttemptError::TimedOut(timeout)),
        }
    }

    /// One exchange on a pooled connection. A kept-alive connection the provider closed just
    /// as the request was given to it hands the request back unsent (hyper says so only when
    /// nothing of it was written); that request is sent once more, on a new connection.
    async fn exchange(
        &self,
        request: Request<WatchedBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let connect = |e: pool::ConnectError| SendError::Connect(e.0);
        let conn = self.pool.checkout().await.map_err(connect)?;
        let reused = matches!(conn, Conn::H1 { reused: true, .. });
        match self.exchange_on(conn, request).await {
            Ok(response) => Ok(response),
            Err(mut e) if reused => match e.take_message() {
                Some(request) => {
                    let conn = Box::pin(self.pool.connect()).await.map_err(connect)?;
                    let retried = self.exchange_on(conn, request).await;
                    retried.map_err(|e| SendError::Http(e.into_error()))
                }
                None => Err(SendError::Http(e.into_error())),
            },
            Err(e) => Err(SendError::Http(e.into_error())),
        }
    }

    async fn exchange_on(
        &self,
        conn: Conn,
        mut request: Request<WatchedBody>,
    ) -> Result<Response<UpstreamBody>, TrySendError<Request<WatchedBody>>> {
        match conn {
            Conn::H1 { mut sender, .. } => {
                // HTTP/1 names the origin in `Host`; the URI is the path alone (origin-form).
                let headers = request.headers_mut();
                headers.insert(http::header::HOST, self.host.clone());
                let response = sender.try_send_request(request).await;
                let pool = self.pool.clone();
                response.map(|r| r.map(|body| UpstreamBody::new(body, Some((sender, pool)))))
            }
            Conn::H2(mut sender) => {
                // HTTP/2 takes the origin from the absolute URI (`:authority`).
                request.headers_mut().remove(http::header::HOST);
                if let Some(path) = request.uri().path_and_query().cloned()
                    && let Ok(uri) = self.absolute(path)
                {
                    *request.uri_mut() = uri;
                }
                let response = sender.try_send_request(request).await;
                response.map(|r| r.map(|body| UpstreamBody::new(body, None)))
            }
        }
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

#[cfg(test)]
mod tests;
