//! `payguard unresolved`: the requests a running sidecar could not settle, and giving up on
//! one, through its admin listener. Listing needs nothing; giving up is the listener's one
//! write, so it sends the admin token (`[admin]` in the sidecar's config) when given one:
//! from `--token-file`, else `PAYGUARD_ADMIN_TOKEN`. A sidecar whose admin listener is on
//! loopback and has no token configured takes it without one.

use std::path::{Path, PathBuf};
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
        /// A file holding the sidecar's admin token ([admin] token_file there), sent as
        /// `Authorization: Bearer`.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
        /// The admin token itself, when there is no --token-file. Prefer the variable or a
        /// file: a command line is visible to every user of the machine.
        #[arg(long, env = "PAYGUARD_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
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
            Some(Action::GiveUp {
                id,
                token_file,
                token,
            }) => {
                let token = match token_file {
                    Some(file) => Some(read_token(file)?),
                    None => token
                        .as_deref()
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned),
                };
                let path = format!("/unresolved/{id}/give-up");
                let (admin, post) = (&args.admin, http::Method::POST);
                let body =
                    admin_client::call_with_token(admin, post, &path, token.as_deref()).await?;
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

/// The token in `file`, trimmed as the sidecar trims its own.
fn read_token(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the token file {}", file.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "the token file {} is empty",
        file.display()
    );
    Ok(token.to_owned())
}

fn show(rows: &[Row], json: bool, listing: &Listing) -> String {
    match json {
        true => serde_json::to_string_pretty(rows).unwrap_or_default() + "\n",
        false => listing.table(),
    }
}
