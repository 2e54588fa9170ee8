//! `payguard demo`: the value of payguard in a minute, with no account and no network.
//!
//! It starts the provider double with a transient fault profile like the seed article's
//! (resets before and after the charge, 500, 503, 429), and sends the same order workload
//! twice: once straight at the provider, as a shop's app does today, and once through an
//! in-process payguard. The app is deliberately naive in both runs: no idempotency key and no
//! retries of its own (`naive_retries` makes it retry the way the article's loop did, with a
//! fresh request each time, to show where duplicate charges come from).
//!
//! Everything runs on ephemeral loopback ports. payguard runs the shipped `config.toml`, with
//! only its upstream pointed at the double and its store file in a scratch directory, and
//! time compressed ([`Config::time_compressed`]): every delay divided and every rate
//! multiplied by [`TIME_COMPRESSION`], so a run of minutes takes seconds with the same
//! policies a user gets.

mod render;
mod workload;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::server::Server;
use crate::stats::Report;
use payguard_double::{self as double, DoubleConfig, Profile};
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

/// How much faster than real time the payguard run goes: 9.8 sends per second become 490, a
/// 200 ms backoff 4 ms.
pub const TIME_COMPRESSION: f64 = 50.0;

/// A one-line summary of the payguard run's settings, printed beside the results.
pub const SETTINGS: &str = "payguard settings: the shipped config.toml, time compressed 50x \
     (every delay /50, every rate x50; 7 attempts, budget 50%, limiter 9.8/s -> 490/s, breaker on)";

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
    let scratch = Scratch::new()?;
    let store = scratch.0.join("idempotency.redb");
    let config = Config::shipped(&provider.url(), &store)?.time_compressed(TIME_COMPRESSION);
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

/// A directory of the demo's own for the embedded store, removed when the demo ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let name = format!(
            "payguard-demo-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).context("creating the demo's scratch directory")?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
