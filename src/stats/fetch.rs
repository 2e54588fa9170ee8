//! Fetching the report from a running sidecar's admin listener, for `payguard stats`.

use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Report;

/// A scrape of a sidecar on the same machine answers in milliseconds; a hung one must not
/// hang the command.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The admin address as given (`host:port` or a URL) turned into the `/stats` URL.
pub fn stats_url(admin: &str) -> String {
    let base = admin.trim_end_matches('/');
    match base.contains("://") {
        true => format!("{base}/stats"),
        false => format!("http://{base}/stats"),
    }
}

/// GETs `/stats` from the admin listener at `admin` and parses it.
pub async fn fetch(admin: &str) -> anyhow::Result<Report> {
    let url = stats_url(admin);
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("bad admin address {admin:?}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let exchange = async {
        let response = client.get(uri).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {TIMEOUT:?}"))
        .and_then(|r| r)
        .with_context(|| format!("cannot read {url}"))?;
    if !status.is_success() {
        anyhow::bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("{url} did not return a payguard report"))
}
