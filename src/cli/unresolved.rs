//! `payguard unresolved`: the requests a running sidecar could not settle, and giving up on
//! one, through its admin listener.

use std::process::ExitCode;

use anyhow::Context;
use payguard::admin_client;
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

pub fn run(args: Args) -> ExitCode {
    let result: anyhow::Result<String> = match super::block_on(async {
        match &args.action {
            None => {
                let body =
                    admin_client::call(&args.admin, http::Method::GET, "/unresolved").await?;
                let listing: Listing = serde_json::from_slice(&body)
                    .context("the admin listener did not return a payguard listing")?;
                Ok(show(&listing.entries, args.json, &listing))
            }
            Some(Action::GiveUp { id }) => {
                let path = format!("/unresolved/{id}/give-up");
                let body = admin_client::call(&args.admin, http::Method::POST, &path).await?;
                let rows: Vec<Row> = serde_json::from_slice(&body)
                    .context("the admin listener did not return the entry")?;
                let listing = Listing { entries: rows };
                Ok(show(&listing.entries, args.json, &listing))
            }
        }
    }) {
        Ok(result) => result,
        Err(code) => return code,
    };
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
