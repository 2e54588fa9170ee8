//! `payguard-provider`: the Stripe test double as a process, for benchmarks and demos.
//! `--provider ietf|paypal` makes it speak another provider's dialect of idempotency and errors
//! (the endpoints stay Stripe's), to exercise payguard's matching provider profile.
//!
//! Its defaults model the seed article's provider: a 10 requests/s limiter with a burst of 10.
//! `--fail-rate` adds the faults of a flaky network and provider (`--fault-mix` picks which),
//! drawn from a seeded generator so a run can be repeated. While it runs, `/_double/faults`
//! changes the faults (an outage, contention on one object) and `/_double/ledger` reports the
//! ledger and the answers per `metadata[order_id]` as JSON (`src/control.rs`). On SIGINT or SIGTERM it drains and prints what the ledger saw,
//! duplicates included: the number a benchmark of payguard wants to be zero.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use payguard_double::{self as double, DoubleConfig, FaultPlan, Profile, Provider, RateLimit};
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "A Stripe API test double with a ledger of side effects and injected faults"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:12111")]
    listen: String,
    /// Requests per second the provider's own limiter allows; 0 turns it off.
    #[arg(long, default_value_t = 10.0)]
    rate_limit: f64,
    /// Requests the limiter lets through at once after a quiet period.
    #[arg(long, default_value_t = 10)]
    burst: u32,
    /// Share of requests, from 0 to 1, that meet a fault drawn from --fault-mix.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// The faults --fail-rate draws from, in proportion to their weights: `transient` (resets
    /// before and after processing, 500, 503 and 429 without hints, in equal parts),
    /// `transient-retry-after` (the same, the 429 with `Retry-After: 1`), or a list such as
    /// `reset-before,503*2,429-retry-after=1` (see the double's `spec.rs`).
    #[arg(long, default_value = "transient")]
    fault_mix: String,
    /// Seed of the fault generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Added to every reply, e.g. `20ms`.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// How long idempotency keys are kept, e.g. `24h`.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    idempotency_window: Duration,
    /// Whose dialect of idempotency keys, scopes and error bodies to speak: stripe, ietf
    /// (draft-ietf-httpapi-idempotency-key-header) or paypal.
    #[arg(long, default_value = "stripe", value_parser = Provider::parse)]
    provider: Provider,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let faults = FaultPlan::default();
    faults
        .set_profile(Profile {
            rate: args.fail_rate,
            mix: double::parse_mix(&args.fault_mix)
                .map_err(anyhow::Error::msg)
                .context("--fault-mix")?,
            seed: args.seed,
        })
        .context("--fail-rate")?;
    let rate_limit = (args.rate_limit > 0.0).then_some(RateLimit {
        per_second: args.rate_limit,
        burst: args.burst,
    });
    let cfg = DoubleConfig {
        rate_limit,
        faults,
        latency: args.latency,
        idempotency_window: args.idempotency_window,
        provider: args.provider,
        // A benchmark sends millions of requests; the process only reports counts.
        record_requests: false,
        ..DoubleConfig::default()
    };

    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    // Scripts read the first stdout line as the address, so the dialect goes to stderr.
    println!("listening on http://{}", listener.local_addr()?);
    eprintln!("speaking the {} dialect", args.provider.name());
    let summary = double::serve(listener, cfg, stop_signal())
        .await
        .context("serving")?;
    println!("{summary}");
    Ok(())
}

/// Completes on SIGINT or SIGTERM. If a handler cannot be installed, that signal is simply not
/// awaited: the process can still be stopped the other way, or killed.
async fn stop_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => eprintln!("SIGINT received, draining"),
        () = terminate => eprintln!("SIGTERM received, draining"),
    }
}
