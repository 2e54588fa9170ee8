//! `payguard demo`: runs the order workload with and without payguard and prints the result.

use std::process::ExitCode;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use payguard::demo::{self, Options, Stage};

#[derive(clap::Args)]
pub struct Args {
    /// Orders to send in each run.
    #[arg(long, default_value_t = Options::default().orders)]
    orders: usize,
    /// Share of requests the provider fails transiently, from 0 to 1.
    #[arg(long, default_value_t = Options::default().fault_rate)]
    fault_rate: f64,
    /// Seed of the provider's fault sequence.
    #[arg(long, default_value_t = Options::default().seed)]
    seed: u64,
    /// Orders in flight at once.
    #[arg(long, default_value_t = Options::default().concurrency)]
    concurrency: usize,
    /// In the direct run, let the app retry failures itself this many times, each with a fresh
    /// request, as the seed article's loop did: it completes more orders and charges some twice.
    #[arg(long, default_value_t = 0)]
    naive_retries: u32,
}

pub fn run(args: Args) -> ExitCode {
    let options = Options {
        orders: args.orders,
        fault_rate: args.fault_rate,
        seed: args.seed,
        concurrency: args.concurrency,
        naive_retries: args.naive_retries,
    };
    let bars = Bars::new(options.orders as u64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let results = runtime.map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(demo::run(options, move |stage, done, _| {
            bars.show(stage, done)
        }))
    });
    match results {
        Ok(results) => {
            println!("\n{}", results.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("payguard demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One progress bar per run, drawn on stderr (hidden when it is not a terminal).
struct Bars {
    direct: ProgressBar,
    payguard: ProgressBar,
}

impl Bars {
    fn new(orders: u64) -> Bars {
        let style = ProgressStyle::with_template("{prefix:>22} [{bar:40}] {pos}/{len} orders")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let all = MultiProgress::new();
        let bar = |prefix: &'static str| {
            all.add(
                ProgressBar::new(orders)
                    .with_style(style.clone())
                    .with_prefix(prefix),
            )
        };
        Bars {
            direct: bar("straight to provider"),
            payguard: bar("through payguard"),
        }
    }

    fn show(&self, stage: Stage, done: usize) {
        let bar = match stage {
            Stage::Direct => &self.direct,
            Stage::Payguard => &self.payguard,
        };
        bar.set_position(done as u64);
        if Some(done as u64) == bar.length() {
            bar.finish();
        }
    }
}
