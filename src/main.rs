//! The `payguard` command: run the sidecar, or check a config file without running it.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use payguard::config::{Config, ConfigError};
use payguard::server::Server;

/// A sidecar that makes calls to a payment API (Stripe first) safe to retry.
///
/// Point your app's Stripe base URL at payguard's proxy listener (http://127.0.0.1:8080 by
/// default); payguard forwards every call to the upstream named in the config over TLS.
#[derive(Parser)]
#[command(name = "payguard", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the sidecar: the proxy listener for the app and the admin listener for probes and
    /// metrics. Reloads the config on SIGHUP and when the file changes. Stops on SIGTERM or
    /// SIGINT after draining in-flight requests.
    Run {
        /// The configuration file.
        #[arg(long, short, env = "PAYGUARD_CONFIG", default_value = "config.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and exit: 0 when it is valid, 1 with each problem's key
    /// and line otherwise.
    Check {
        /// The configuration file.
        #[arg(long, short, env = "PAYGUARD_CONFIG", default_value = "config.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => report(&e),
        },
        Command::Run { config } => {
            let path = config;
            let config = match Config::load(&path) {
                Ok(config) => config,
                Err(e) => return report(&e),
            };
            match run(config, path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("payguard: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn report(e: &ConfigError) -> ExitCode {
    eprintln!("payguard: {e}");
    ExitCode::FAILURE
}

fn run(config: Config, path: PathBuf) -> anyhow::Result<()> {
    payguard::telemetry::init(config.log_format, &config.log_level)?;
    // One worker needs no work stealing: the current-thread scheduler does the same job with
    // less synchronisation. Blocking work (the embedded store) still goes to the blocking pool.
    let mut runtime = match config.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = runtime.enable_all().build()?;
    runtime.block_on(async {
        let server = Server::bind(&config).await?.watch_config(path, &config);
        server.run(shutdown_signal()).await
    })
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
