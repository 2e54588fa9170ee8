//! `payguard stats`: the retry report of a running sidecar, read from its admin listener.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use payguard::stats::Report;

#[derive(clap::Args)]
pub struct Args {
    /// The sidecar's admin listener (`listen.admin`), as host:port or URL.
    #[arg(long, env = "PAYGUARD_ADMIN", default_value = "127.0.0.1:9090")]
    admin: String,
    /// Print the report as JSON, as served on /stats.
    #[arg(long)]
    json: bool,
    /// Refresh the report every interval ("2s" when given without a value) until interrupted.
    #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s",
          value_parser = humantime::parse_duration)]
    watch: Option<Duration>,
}

pub fn run(args: Args) -> ExitCode {
    super::block_on(async {
        let Some(interval) = args.watch else {
            return match Report::fetch(&args.admin).await {
                Ok(report) => {
                    print!("{}", show(&report, args.json));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("payguard: {e:#}");
                    ExitCode::FAILURE
                }
            };
        };
        // Watching outlives a sidecar restart: an unreachable sidecar is shown, not fatal.
        loop {
            let frame = match Report::fetch(&args.admin).await {
                Ok(report) => show(&report, args.json),
                Err(e) => format!("payguard: {e:#}\n"),
            };
            let now = httpdate::fmt_http_date(std::time::SystemTime::now());
            // Clear the screen and home the cursor before each frame.
            print!(
                "\x1b[2J\x1b[H{} every {}, {now}\n\n{frame}",
                Report::url(&args.admin),
                humantime::format_duration(interval)
            );
            let _ = std::io::stdout().flush();
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            }
        }
    })
    .unwrap_or_else(|code| code)
}

fn show(report: &Report, json: bool) -> String {
    match json {
        // A report of plain numbers and strings always serialises.
        true => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        false => report.table(),
    }
}
