//! The `payguard` command: run the sidecar, check a config file without running it, print a
//! running sidecar's retry report, or run the demo.
#![forbid(unsafe_code)]

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use payguard::config::{Config, ConfigError};
use payguard::server::Server;

/// mimalloc instead of glibc's malloc. callgrind put glibc's malloc and free at ~3,300
/// instructions of a pass-through GET (7.7%): ~20 allocations a request, and the boxed
/// request future (6 KiB) and hyper's read buffers are past glibc's per-thread cache, so each
/// takes its slower, locked path. The binary only: the library leaves the choice to its users.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Print the retry report of a running sidecar: per route, attempts, success rate,
    /// retries, latency, top errors and idempotency replays, then its limiters and breakers.
    Stats(cli::stats::Args),
    /// List the requests a running sidecar sent without a definitive answer (pending) and
    /// those recently resolved or given up; `give-up <id>` stops re-sending one.
    Unresolved(cli::unresolved::Args),
    /// Show what payguard does, with no account and no network: the same order workload sent
    /// straight to a flaky provider double and through payguard, compared side by side.
    Demo(cli::demo::Args),
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
        Command::Stats(args) => cli::stats::run(args),
        Command::Unresolved(args) => cli::unresolved::run(args),
        Command::Demo(args) => cli::demo::run(args),
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
    #[cfg(feature = "failpoints")]
    payguard::crashpoints::arm_from_env().map_err(anyhow::Error::msg)?;
    // One worker needs no work stealing: the current-thread scheduler does the same job with
    // less synchronisation. Blocking work (the embedded store) still goes to the blocking pool.
    // `0` is one worker per core the process may use: `available_parallelism` counts the CPU
    // affinity mask and the cgroup's CPU quota, so a sidecar limited to one core gets the
    // current-thread scheduler too.
    let workers = match config.worker_threads {
        0 => std::thread::available_parallelism().map_or(0, usize::from),
        n => n,
    };
    let mut runtime = match workers {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = runtime.enable_all().build()?;
    // Request lines leave in batches while the runtime runs (a write per line was a syscall
    // per request). Declared after the runtime, so dropped first: whatever way `run` ends,
    // what is pending is written before the runtime goes.
    let _batching = {
        let _in_runtime = runtime.enter();
        payguard::telemetry::batch()
    };
    runtime.block_on(async {
        let server = Server::bind(&config).await?.watch_config(path, &config);
        server.run(shutdown_signal()).await
    })
}

/// Installs the SIGTERM and SIGINT handlers now (before payguard reports itself up, so an
/// early signal drains instead of killing), and resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(stream) => Some(stream),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for {name}");
            None
        }
    };
    let mut term = install(SignalKind::terminate(), "SIGTERM");
    let mut int = install(SignalKind::interrupt(), "SIGINT");
    async move {
        tokio::select! {
            () = recv_or_never(int.as_mut()) => tracing::info!("SIGINT received"),
            () = recv_or_never(term.as_mut()) => tracing::info!("SIGTERM received"),
        }
    }
}

async fn recv_or_never(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
