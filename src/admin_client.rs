//! Talking to a running sidecar's admin listener: what `payguard stats`, `payguard
//! unresolved` and the demo use to read its reports, and `payguard unresolved give-up` to
//! write, with the admin token. One small client, so every command names the address the same
//! way and fails the same way when the sidecar is not there.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A sidecar on the same machine answers in milliseconds; a hung one must not hang the command.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The URL of `path` on the admin listener given as `host:port` or as a URL.
pub fn url(admin: &str, path: &str) -> String {
    let base = admin.trim_end_matches('/');
    match base.contains("://") {
        true => format!("{base}{path}"),
        false => format!("http://{base}{path}"),
    }
}

/// Sends `method path` to the admin listener and returns the body of a 2xx answer.
pub async fn call(admin: &str, method: http::Method, path: &str) -> anyhow::Result<Bytes> {
    call_with_token(admin, method, path, None).await
}

/// [`call`], with `Authorization: Bearer <token>` when a token is given: what the admin
/// listener's writes need (`[admin]` in the sidecar's config).
pub async fn call_with_token(
    admin: &str,
    method: http::Method,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<Bytes> {
    let url = url(admin, path);
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("bad admin address {admin:?}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Empty::new())?;
    if let Some(token) = token {
        // The error says nothing of the value: it is a secret.
        let mut value = http::HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| anyhow::anyhow!("the admin token holds characters a header cannot"))?;
        value.set_sensitive(true);
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {TIMEOUT:?}"))
        .and_then(|r| r)
        .with_context(|| format!("cannot reach {url}"))?;
    if !status.is_success() {
        anyhow::bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    Ok(body)
}
