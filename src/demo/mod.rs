//! `payguard demo`: the value of payguard in a minute, with no account and no network.
//!
//! It starts the provider double with a transient fault profile like the seed article's
//! (resets before and after the charge, 500, 503, 429), and sends the same order workload
//! twice: once straight at the provider, as a shop's app does today, and once through an
//! in-process payguard. The app is deliberately naive in both runs: no idempotency key and no
//! retries of its own (`naive_retries` makes it retry the way the article's loop did, with a
//! fresh request each time, to show where duplicate charges come from).
//!
//! Everything runs on ephemeral loopback ports. Backoff is scaled down from the shipped
//! defaults (milliseconds instead of hundreds of milliseconds) so the run takes seconds; the
//! settings used are printed with the results.

mod render;
mod workload;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::double::{self, DoubleConfig, Profile};
use crate::server::Server;
use crate::stats::Report;
pub use workload::Outcome;

/// What the demo runs; the command's flags.
#[derive(Debug, Clone)]
pub struct Options {
    pub orders: usize,
    /// Share of requests the provider fails transiently, 0.0 to 1.0.
    pub fault_rate: f64,
    pub seed: u64,
    /// Orders in flight at once.
    pub concurrency: usize,
    /// Extra attempts the app makes on its own in the direct run, each a fresh request.
    pub naive_retries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            orders: 1000,
            fault_rate: 0.3,
            seed: 11,
            concurrency: 8,
            naive_retries: 0,
        }
    }
}

/// Which run a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Direct,
    Payguard,
}

/// Both runs' outcomes and payguard's retry report.
#[derive(Debug, Clone)]
pub struct Results {
    pub options: Options,
    pub direct: Outcome,
    pub payguard: Outcome,
    pub report: Report,
}

impl Results {
    /// The side-by-side comparison and the retry report, as printed by the command.
    pub fn render(&self) -> String {
        render::render(self)
    }
}

/// The retry settings of the payguard run: the shipped policy's times divided by 20, two more
/// attempts (at 30% independent faults, four attempts all fail for about 0.8% of orders, six
/// for under 0.1%), and a budget wide enough for a fault rate this high (the shipped 20% is
/// meant to stop retry storms in an outage, which is what 30% failures would look like).
fn config_toml(upstream: &str, seed: u64) -> String {
    format!(
        "[upstream]\nurl = \"{upstream}\"\n\
         [log]\nlevel = \"off\"\n\
         [idempotency]\nstore = \"memory\"\n\
         [retry]\nmax_attempts = 6\nbase_delay = \"10ms\"\nmax_delay = \"250ms\"\njitter_seed = {seed}\n\
         [retry_budget]\nratio = 0.6\n\
         [rate_limit]\nenabled = false\n"
    )
}

/// A one-line summary of [`config_toml`]'s settings, printed beside the results.
pub const SETTINGS: &str = "payguard settings: 6 attempts, full-jitter backoff 10ms..250ms, \
     retry budget 60%, breaker on, limiter off (the double has no rate limit)";

/// Runs both workloads; `progress(stage, done, total)` is called as orders finish.
pub async fn run(
    options: Options,
    progress: impl Fn(Stage, usize, usize) + Send + Sync + 'static,
) -> anyhow::Result<Results> {
    anyhow::ensure!(options.orders > 0, "--orders must be at least 1");
    anyhow::ensure!(options.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&options.fault_rate),
        "--fault-rate must be between 0 and 1, got {}",
        options.fault_rate
    );
    let progress = std::sync::Arc::new(progress);
    let profile = Profile::transient(options.fault_rate, options.seed);

    let provider = provider_with(profile.clone()).await?;
    let report = progress.clone();
    let mut direct = workload::run(
        &provider.url(),
        &options,
        options.naive_retries,
        move |d, t| report(Stage::Direct, d, t),
    )
    .await;
    direct.record(&provider.ledger());
    provider.shutdown().await;

    let provider = provider_with(profile).await?;
    let config = Config::parse(
        &config_toml(&provider.url(), options.seed),
        "demo config",
        None,
    )
    .context("the demo's own config")?;
    let server = Server::with_listeners(
        &config,
        TcpListener::bind("127.0.0.1:0").await?,
        TcpListener::bind("127.0.0.1:0").await?,
    )?;
    let (proxy, admin) = (server.proxy_addr(), server.admin_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let report = progress.clone();
    let mut guarded = workload::run(&format!("http://{proxy}"), &options, 0, move |d, t| {
        report(Stage::Payguard, d, t)
    })
    .await;
    guarded.record(&provider.ledger());
    let report = Report::fetch(&admin.to_string()).await?;
    let _ = stop.send(());
    serving.await??;
    provider.shutdown().await;
    Ok(Results {
        options,
        direct,
        payguard: guarded,
        report,
    })
}

/// A fresh double with the fault profile, so both runs meet the same seeded fault sequence.
async fn provider_with(profile: Profile) -> anyhow::Result<double::DoubleHandle> {
    let provider = double::spawn(DoubleConfig {
        // Thousands of requests: the demo reads the ledger, not the request log.
        record_requests: false,
        ..DoubleConfig::default()
    })
    .await
    .context("starting the provider double")?;
    provider.faults().set_profile(profile)?;
    Ok(provider)
}
