//! `payguard unresolved`: the requests a running sidecar could not settle, and giving up on
//! one, through its admin listener.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use payguard::resolver::report::{Listing, Row};

#[derive(clap::Args)]
pub struct Args {
    /// The sidecar's admin listener (`listen.admin`), as host:port or URL.
    #[arg(
        long,
        env = "PAYGUARD_ADMIN",
        default_value = "127.0.0.1:9090",
        global = true
    )]
    admin: String,
    /// Print JSON, as served on /unresolved.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Stop re-sending an unresolved request: a human settles it with the provider.
    GiveUp {
        /// The entry's id as listed (at least 4 characters of it).
        id: String,
    },
}

const TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("payguard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<String> = runtime.block_on(async {
        match &args.action {
            None => {
                let body = call(&args.admin, http::Method::GET, "/unresolved").await?;
                let listing: Listing = serde_json::from_slice(&body)
                    .context("the admin listener did not return a payguard listing")?;
                Ok(show(&listing.entries, args.json, &listing))
            }
            Some(Action::GiveUp { id }) => {
                let path = format!("/unresolved/{id}/give-up");
                let body = call(&args.admin, http::Method::POST, &path).await?;
                let rows: Vec<Row> = serde_json::from_slice(&body)
                    .context("the admin listener did not return the entry")?;
                let listing = Listing { entries: rows };
                Ok(show(&listing.entries, args.json, &listing))
            }
        }
    });
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("payguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn show(rows: &[Row], json: bool, listing: &Listing) -> String {
    match json {
        true => serde_json::to_string_pretty(rows).unwrap_or_default() + "\n",
        false => listing.table(),
    }
}

/// Sends `method path` to the admin listener and returns the body of a 2xx answer.
async fn call(admin: &str, method: http::Method, path: &str) -> anyhow::Result<Bytes> {
    let base = admin.trim_end_matches('/');
    let url = match base.contains("://") {
        true => format!("{base}{path}"),
        false => format!("http://{base}{path}"),
    };
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("bad admin address {admin:?}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Empty::new())?;
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
