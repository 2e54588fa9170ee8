//! `bench-resilience`: what each way of retrying a payment does to orders when the provider
//! fails often, measured side by side against the same seeded faults.
//!
//! It exists because payguard's claim is a comparison: the seed article's hand-written retry
//! loop raises completion (71.3% -> 98.6% at 1.4 attempts per order) but makes a fresh
//! idempotency key on every attempt, so an attempt whose reply is lost after the charge
//! happened is charged again by the next one. A completion rate alone hides that; this
//! benchmark reads the provider double's ledger of side effects, which sees every charge
//! whether or not its reply arrived, and counts per strategy:
//!
//! - orders completed (the client finally saw a `200` with a succeeded payment intent);
//! - orders charged more than once (duplicate charges);
//! - orders charged but reported failed to the client (the shop does not know it has the money);
//! - attempts per order and client-side latency.
//!
//! Strategies, each against a fresh double with the same seeded transient fault profile (resets
//! before and after processing, 500, 503, 429 without `Retry-After`, equal weights):
//!
//! - `none`: one attempt straight at the double;
//! - `seed-article`: the article's loop (1 s base doubling, up to 1 s added jitter, 30 s cap,
//!   5 attempts; retries network errors, 5xx and 429, never 4xx) with a fresh key per attempt,
//!   as its readers wrote it;
//! - `payguard`: one attempt with a key per order through an in-process payguard, its rate
//!   limiter and circuit breaker off (as in `tests/seed_experiment.rs`): retries and
//!   idempotency alone;
//! - `payguard+breaker`: the same with the default circuit breaker on, its window and break
//!   scaled (to the config's floors): what the shipped default does at this failure rate;
//! - `stripe-node`: the official SDK (`maxNetworkRetries: 2`) run by `node/run.mjs`.
//!
//! Every sleep this program or payguard makes is multiplied by `--time-scale` (default 0.01, so
//! 1 s becomes 10 ms) to keep the run short; stripe-node's own delays cannot be scaled. With
//! C orders in flight, which request meets which fault depends on arrival order, so numbers
//! vary a little from run to run even with a fixed seed.
//!
//! ```sh
//! bash bench/resilience/run.sh        # installs stripe-node, builds, runs, writes bench/out/
//! cargo run --release --example bench-resilience -- --orders 1000 --only none,payguard
//! ```
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use payguard::config::Config;
use payguard::double::{self, DoubleConfig, DuplicateBy, EffectKind, Ledger, Profile};
use payguard::server::Server;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

/// One HTTP attempt may take this long (real time, not scaled) before it counts as a network
/// error. Far above anything the double or payguard (45 s deadline) should take: it only keeps
/// a hung connection from hanging the benchmark.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// The whole stripe-node run may take this long before the child is killed.
const NODE_TIMEOUT: Duration = Duration::from_secs(600);

/// The seed article's algorithm, as it describes it.
const ARTICLE_MAX_ATTEMPTS: u32 = 5;
const ARTICLE_BASE_MS: f64 = 1000.0;
const ARTICLE_JITTER_MS: f64 = 1000.0;
const ARTICLE_CAP_MS: f64 = 30_000.0;

/// payguard's built-in backoff, scaled by `--time-scale` for the run.
const PAYGUARD_BASE_MS: f64 = 200.0;
const PAYGUARD_MAX_MS: f64 = 5000.0;
const PAYGUARD_MAX_ATTEMPTS: u32 = 5;

/// stripe-node's own settings for the run.
const STRIPE_MAX_NETWORK_RETRIES: u32 = 2;

const API_KEY: &str = "Bearer sk_test_bench";

#[derive(Parser, Debug)]
#[command(
    name = "bench-resilience",
    about = "Completion, duplicate charges and attempts per order for retry strategies against a faulty provider double"
)]
struct Args {
    /// Orders per strategy (stripe-node: see --stripe-orders).
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    orders: u64,
    /// Orders in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    concurrency: u64,
    /// Share of requests the double fails transiently, 0.0 to 1.0.
    #[arg(long, default_value_t = 0.3)]
    fail_rate: f64,
    /// Seeds the double's fault draws, payguard's jitter and the article loop's jitter.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Multiplies every delay of every strategy that sleeps (not stripe-node's, which cannot be
    /// changed): 0.01 turns 1 s into 10 ms.
    #[arg(long, default_value_t = 0.01)]
    time_scale: f64,
    /// Orders for stripe-node, whose real-time retry delays make it slow; default --orders.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    stripe_orders: Option<u64>,
    /// Run only these strategies (comma-separated): none, seed-article, payguard, stripe-node.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Strategy>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// payguard's idempotency store: `embedded` (the default kind, a redb file in a fresh
    /// temporary directory) or `memory`.
    #[arg(long, value_enum, default_value_t = StoreChoice::Embedded)]
    payguard_store: StoreChoice,
    /// Where run.mjs and its node_modules live.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/resilience/node"))]
    node_dir: PathBuf,
    /// The node executable.
    #[arg(long, default_value = "node")]
    node: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreChoice {
    Embedded,
    Memory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Strategy {
    /// One attempt, no retry.
    #[value(name = "none")]
    Bare,
    SeedArticle,
    /// payguard's retries and idempotency; its rate limiter and breaker off.
    Payguard,
    /// The same with payguard's default circuit breaker on.
    #[value(name = "payguard+breaker")]
    PayguardBreaker,
    StripeNode,
}

impl Strategy {
    const ALL: [Strategy; 5] = [
        Strategy::Bare,
        Strategy::SeedArticle,
        Strategy::Payguard,
        Strategy::PayguardBreaker,
        Strategy::StripeNode,
    ];

    fn name(self) -> &'static str {
        match self {
            Strategy::Bare => "none",
            Strategy::SeedArticle => "seed-article",
            Strategy::Payguard => "payguard",
            Strategy::PayguardBreaker => "payguard+breaker",
            Strategy::StripeNode => "stripe-node",
        }
    }
}

/// What the client saw for one order.
#[derive(Clone, Debug)]
struct OrderResult {
    completed: bool,
    /// HTTP attempts, where the client can know them: `None` for stripe-node (counted at the
    /// double instead) and for a payguard answer without `Payguard-Attempts`.
    attempts: Option<u32>,
    latency: Duration,
    /// The final outcome, short: `200`, `503`, `429 rate_limit`, `network: connection lost`...
    outcome: String,
}

/// One HTTP attempt's outcome.
enum Attempt {
    /// A response head and a complete body.
    Reply {
        status: u16,
        succeeded: bool,
        payguard_attempts: Option<u32>,
        payguard_error: Option<String>,
    },
    /// No complete response: reset, refused, timed out, body lost.
    Network(String),
}

impl Attempt {
    fn label(&self) -> String {
        match self {
            Attempt::Reply {
                status: 200,
                succeeded: true,
                ..
            } => "200".to_owned(),
            Attempt::Reply {
                status: 200,
                succeeded: false,
                ..
            } => "200 not succeeded".to_owned(),
            Attempt::Reply {
                status,
                payguard_error: Some(code),
                ..
            } => format!("{status} {code}"),
            Attempt::Reply { status, .. } => status.to_string(),
            Attempt::Network(why) => format!("network: {why}"),
        }
    }

    fn completed(&self) -> bool {
        matches!(
            self,
            Attempt::Reply {
                status: 200,
                succeeded: true,
                ..
            }
        )
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn order_form(order: u64) -> String {
    format!("amount=1999&currency=usd&confirm=true&metadata[order_id]=order-{order}")
}

/// Sends one order's `POST /v1/payment_intents` with this idempotency key and reads the reply.
async fn attempt(
    client: &HttpClient,
    base: &str,
    order: u64,
    key: &str,
) -> anyhow::Result<Attempt> {
    let request = Request::post(format!("{base}/v1/payment_intents"))
        .header("authorization", API_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(order_form(order))))
        .context("building the request")?;
    let exchange = async {
        let response = match client.request(request).await {
            Ok(response) => response,
            Err(err) if err.is_connect() => return Attempt::Network("connect failed".into()),
            Err(_) => return Attempt::Network("connection lost".into()),
        };
        let (parts, body) = response.into_parts();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let payguard_attempts = header("payguard-attempts").and_then(|v| v.parse().ok());
        let payguard_error = header("payguard-error");
        let Ok(body) = body.collect().await else {
            return Attempt::Network("body lost".into());
        };
        let status = parts.status.as_u16();
        let succeeded = status == 200
            && serde_json::from_slice::<serde_json::Value>(&body.to_bytes())
                .is_ok_and(|json| json["status"] == "succeeded");
        Attempt::Reply {
            status,
            succeeded,
            payguard_attempts,
            payguard_error,
        }
    };
    Ok(tokio::time::timeout(ATTEMPT_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Attempt::Network("timed out".into())))
}

/// `none`: one attempt, a key per order.
async fn order_bare(client: &HttpClient, base: &str, order: u64) -> anyhow::Result<OrderResult> {
    let started = Instant::now();
    let reply = attempt(client, base, order, &format!("order-{order}")).await?;
    Ok(OrderResult {
        completed: reply.completed(),
        attempts: Some(1),
        latency: started.elapsed(),
        outcome: reply.label(),
    })
}

/// The article's `calculateDelay(attempt)`: `min(1s * 2^(attempt-1) + random(0..1s), 30s)`.
fn article_delay(attempt: u32, rng: &mut StdRng, time_scale: f64) -> Duration {
    let exponential = ARTICLE_BASE_MS * 2f64.powi(attempt.saturating_sub(1) as i32);
    let jitter = rng.random::<f64>() * ARTICLE_JITTER_MS;
    let ms = (exponential + jitter).min(ARTICLE_CAP_MS);
    Duration::from_secs_f64(ms * time_scale / 1000.0)
}

/// The article's `isRetryable`: network errors and unknown failures, 5xx and 429; never 4xx.
fn article_retryable(reply: &Attempt) -> bool {
    match reply {
        Attempt::Network(_) => true,
        Attempt::Reply { status, .. } => *status >= 500 || *status == 429,
    }
}

/// `seed-article`: the article's `executeWithRetry` around an operation that makes a fresh
/// idempotency key each time it runs (its `refund_${orderId}_${Date.now()}`), as its readers
/// did: a reply lost after the charge leads to a second charge under a new key.
async fn order_seed_article(
    client: &HttpClient,
    base: &str,
    order: u64,
    seed: u64,
    time_scale: f64,
) -> anyhow::Result<OrderResult> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed ^ order.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut attempts = 0;
    let mut last = Attempt::Network("not attempted".into());
    for n in 1..=ARTICLE_MAX_ATTEMPTS {
        attempts = n;
        // A fresh key per attempt: the flaw being measured.
        last = attempt(client, base, order, &format!("order-{order}-attempt-{n}")).await?;
        if last.completed() || !article_retryable(&last) || n == ARTICLE_MAX_ATTEMPTS {
            break;
        }
        tokio::time::sleep(article_delay(n, &mut rng, time_scale)).await;
    }
    Ok(OrderResult {
        completed: last.completed(),
        attempts: Some(attempts),
        latency: started.elapsed(),
        outcome: last.label(),
    })
}

/// `payguard`: one attempt, a key per order, through the proxy; attempts from its header.
async fn order_payguard(
    client: &HttpClient,
    base: &str,
    order: u64,
) -> anyhow::Result<OrderResult> {
    let started = Instant::now();
    let reply = attempt(client, base, order, &format!("order-{order}")).await?;
    // No header: payguard did not answer (counted as an anomaly by the caller). Zero: payguard
    // refused the request before sending anything.
    let attempts = match &reply {
        Attempt::Reply {
            payguard_attempts, ..
        } => *payguard_attempts,
        Attempt::Network(_) => None,
    };
    Ok(OrderResult {
        completed: reply.completed(),
        attempts,
        latency: started.elapsed(),
        outcome: reply.label(),
    })
}

/// Runs `orders` orders, at most `concurrency` at a time, and returns them in order number
/// order with the wall time. Each worker takes the next order number until none is left.
async fn run_orders<F, Fut>(
    orders: u64,
    concurrency: u64,
    one: F,
) -> anyhow::Result<(Vec<OrderResult>, Duration)>
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<OrderResult>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(orders) {
        let (next, one) = (Arc::clone(&next), one.clone());
        workers.spawn(async move {
            let mut done = Vec::new();
            loop {
                let order = next.fetch_add(1, Ordering::Relaxed) as u64;
                if order >= orders {
                    break;
                }
                done.push((order, one(order).await?));
            }
            anyhow::Ok(done)
        });
    }
    let mut all = Vec::with_capacity(usize::try_from(orders).unwrap_or(0));
    while let Some(joined) = workers.join_next().await {
        all.extend(joined.context("an order worker panicked")??);
    }
    let wall = started.elapsed();
    all.sort_by_key(|(order, _)| *order);
    Ok((all.into_iter().map(|(_, result)| result).collect(), wall))
}

/// A delay of payguard's, scaled and written for its config: whole milliseconds, at least 1.
fn scaled_ms(ms: f64, time_scale: f64) -> u64 {
    ((ms * time_scale).round() as u64).max(1)
}

/// payguard's breaker defaults, scaled for the `payguard+breaker` row.
const BREAKER_WINDOW_MS: f64 = 10_000.0;
const BREAKER_BREAK_MS: f64 = 5000.0;
/// The config's floors for them.
const BREAKER_WINDOW_MIN_MS: u64 = 1000;
const BREAKER_BREAK_MIN_MS: u64 = 100;

/// The `[breaker]` durations for the `payguard+breaker` row: defaults times the time scale,
/// raised to the config's floors.
fn breaker_durations(time_scale: f64) -> (u64, u64) {
    (
        scaled_ms(BREAKER_WINDOW_MS, time_scale).max(BREAKER_WINDOW_MIN_MS),
        scaled_ms(BREAKER_BREAK_MS, time_scale).max(BREAKER_BREAK_MIN_MS),
    )
}

/// payguard's config for the run.
///
/// The rate limiter is off: the double has no rate limit to stay under, and the benchmark's
/// offered load (as fast as C clients can go) has no real-world rate under the time scale, so
/// the default 8/s would measure load shedding, not retries. The breaker is off for `payguard`
/// (as in tests/seed_experiment.rs: this row measures retries and idempotency) and at its
/// defaults, durations scaled, for `payguard+breaker`.
///
/// The idempotency store keeps its default kind (`embedded`, a redb file) but lives in
/// `store_dir`, fresh per run: the default path under the working directory would keep this
/// run's `order-<i>` keys for 24 hours, and the next run would get their stored replies back
/// instead of charging.
fn payguard_config(upstream: &str, store_dir: &Path, args: &Args, breaker: bool) -> String {
    let base = scaled_ms(PAYGUARD_BASE_MS, args.time_scale);
    let max = scaled_ms(PAYGUARD_MAX_MS, args.time_scale).max(base);
    let store = match args.payguard_store {
        StoreChoice::Embedded => format!(
            "store = \"embedded\"\npath = {}",
            toml_string(&store_dir.join("idempotency.redb").to_string_lossy())
        ),
        StoreChoice::Memory => "store = \"memory\"".to_owned(),
    };
    let breaker = if breaker {
        let (window, break_ms) = breaker_durations(args.time_scale);
        format!("window = \"{window}ms\"\nbreak_duration = \"{break_ms}ms\"")
    } else {
        "enabled = false".to_owned()
    };
    format!(
        "[upstream]\nurl = \"{upstream}\"\n\n[log]\nlevel = \"warn\"\n\n\
         [retry]\nmax_attempts = {PAYGUARD_MAX_ATTEMPTS}\nbase_delay = \"{base}ms\"\n\
         max_delay = \"{max}ms\"\njitter_seed = {seed}\n\n[retry_budget]\nratio = 1.0\n\n\
         [idempotency]\n{store}\n\n[rate_limit]\nenabled = false\n\n[breaker]\n{breaker}\n",
        seed = args.seed,
    )
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An in-process payguard on loopback ephemeral ports.
struct Proxy {
    addr: SocketAddr,
    admin: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_payguard(config_text: &str) -> anyhow::Result<Proxy> {
    let config = Config::parse(config_text, "bench-resilience config", None)
        .map_err(|e| anyhow!("payguard config refused: {e}"))?;
    let proxy = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let admin = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let server = Server::with_listeners(&config, proxy, admin)?;
    let (addr, admin) = (server.proxy_addr(), server.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok(Proxy {
        addr,
        admin,
        stop,
        task,
    })
}

/// The metric families worth keeping next to a payguard row: refusals of every kind.
const SCRAPED_FAMILIES: [&str; 4] = [
    "payguard_breaker_transitions_total",
    "payguard_breaker_refused_total",
    "payguard_retries_refused_total",
    "payguard_ratelimit_rejected_total",
];

impl Proxy {
    /// The series of [`SCRAPED_FAMILIES`] from the admin listener's `/metrics`.
    async fn scrape(&self, client: &HttpClient) -> anyhow::Result<BTreeMap<String, f64>> {
        let request = Request::get(format!("http://{}/metrics", self.admin))
            .body(Full::default())
            .context("building the metrics request")?;
        let response = tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request))
            .await
            .context("payguard's /metrics timed out")?
            .context("payguard's /metrics")?;
        let body = response
            .into_body()
            .collect()
            .await
            .context("reading payguard's /metrics")?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        let series = text
            .lines()
            .filter(|line| SCRAPED_FAMILIES.iter().any(|f| line.starts_with(f)))
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect();
        Ok(series)
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("payguard task panicked")?
    }
}

/// What run.mjs prints.
#[derive(Deserialize)]
struct NodeRun {
    stripe_version: String,
    node_version: String,
    /// From the first order to the last, as node measured it (process start-up excluded).
    wall_ms: f64,
    orders: Vec<NodeOrder>,
}

#[derive(Deserialize)]
struct NodeOrder {
    ok: bool,
    ms: f64,
    outcome: String,
}

async fn run_stripe_node(
    args: &Args,
    port: u16,
    orders: u64,
) -> anyhow::Result<(Vec<OrderResult>, NodeRun)> {
    let script = args.node_dir.join("run.mjs");
    let installed = args.node_dir.join("node_modules/stripe/package.json");
    if !installed.is_file() {
        bail!(
            "stripe-node is not installed in {}: run bench/resilience/run.sh, or `npm install` there, or leave it out with --only",
            args.node_dir.display()
        );
    }
    let child = tokio::process::Command::new(&args.node)
        .arg(&script)
        .args(["--port", &port.to_string()])
        .args(["--orders", &orders.to_string()])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args([
            "--max-network-retries",
            &STRIPE_MAX_NETWORK_RETRIES.to_string(),
        ])
        .current_dir(&args.node_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", args.node.display()))?;
    let output = tokio::time::timeout(NODE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("stripe-node run took over {NODE_TIMEOUT:?}; killed"))??;
    if !output.status.success() {
        bail!("run.mjs failed: {}", output.status);
    }
    let run: NodeRun = serde_json::from_slice(&output.stdout)
        .context("run.mjs printed something other than its JSON")?;
    if run.orders.len() as u64 != orders {
        bail!(
            "run.mjs reported {} orders, expected {orders}",
            run.orders.len()
        );
    }
    let results = run
        .orders
        .iter()
        .map(|o| OrderResult {
            completed: o.ok,
            attempts: None,
            latency: Duration::from_secs_f64(o.ms.max(0.0) / 1000.0),
            outcome: o.outcome.clone(),
        })
        .collect();
    Ok((results, run))
}

#[derive(Serialize)]
struct Latency {
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

/// One strategy's row, as printed and as written to JSON.
#[derive(Serialize)]
struct Report {
    strategy: &'static str,
    orders: u64,
    completed: usize,
    completion_pct: f64,
    /// Orders with at least one charge in the ledger.
    orders_charged: usize,
    /// Charges in the ledger.
    charges: usize,
    /// Orders charged more than once (from `Ledger::duplicates`, by order id).
    duplicate_charged_orders: usize,
    /// Charges beyond the first per order.
    extra_charges: usize,
    /// Orders charged at least once whose client saw a failure: the shop does not know.
    charged_but_reported_failed: usize,
    mean_attempts: f64,
    attempts_source: &'static str,
    /// Requests the double received, faulted ones included.
    requests_seen: u64,
    faults_injected: u64,
    /// Client-side, per order, all orders (completed or not), in ms at the run's time scale.
    latency_ms: Latency,
    wall_s: f64,
    /// Final outcome of orders that did not complete, by kind.
    failures: BTreeMap<String, usize>,
    /// The same for the orders among them that were charged: what the client was told while
    /// the money had moved.
    charged_failures: BTreeMap<String, usize>,
    /// Attempts made for orders that did not complete (number of attempts -> orders), where
    /// the client knows them; a payguard failure under 5 attempts means a refused retry.
    failed_by_attempts: BTreeMap<String, usize>,
    /// For payguard rows: its refusal counters from `/metrics` at the end of the run.
    payguard_metrics: BTreeMap<String, f64>,
    /// Things that should not happen whatever the strategy (e.g. a completed order never
    /// charged); empty on a healthy run.
    anomalies: Vec<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn latency(results: &[OrderResult]) -> Latency {
    let mut ms: Vec<f64> = results
        .iter()
        .map(|r| r.latency.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    Latency {
        p50: percentile(&ms, 0.50),
        p99: percentile(&ms, 0.99),
        max: ms.last().copied().unwrap_or(0.0),
        mean,
    }
}

struct DoubleCounts {
    requests_seen: u64,
    faults_injected: u64,
}

fn report(
    strategy: Strategy,
    results: &[OrderResult],
    wall: Duration,
    ledger: &Ledger,
    counts: &DoubleCounts,
) -> Report {
    let orders = results.len() as u64;
    let mut anomalies = Vec::new();
    let mut charges_per_order: HashMap<String, usize> = HashMap::new();
    let mut charges = 0;
    for effect in ledger.entries() {
        if effect.kind != EffectKind::Charge {
            continue;
        }
        charges += 1;
        match effect.order_id {
            Some(order) => *charges_per_order.entry(order).or_default() += 1,
            None => anomalies.push(format!("charge {} has no order id", effect.object_id)),
        }
    }
    let duplicates = ledger.duplicates();
    let duplicate_charged_orders = duplicates
        .iter()
        .filter(|d| d.kind == EffectKind::Charge && matches!(d.by, DuplicateBy::Order(_)))
        .count();
    let objects_charged_twice = duplicates
        .iter()
        .filter(|d| d.kind == EffectKind::Charge && matches!(d.by, DuplicateBy::Object(_)))
        .count();
    if objects_charged_twice > 0 {
        anomalies.push(format!(
            "{objects_charged_twice} payment intents charged twice"
        ));
    }
    let counted_twice = charges_per_order.values().filter(|&&n| n > 1).count();
    if counted_twice != duplicate_charged_orders {
        anomalies.push(format!(
            "ledger duplicates() names {duplicate_charged_orders} orders charged twice, the charges name {counted_twice}"
        ));
    }
    let orders_charged = charges_per_order.len();
    let extra_charges = charges_per_order.values().map(|n| n - 1).sum();

    let mut completed = 0;
    let mut charged_but_reported_failed = 0;
    let mut failures = BTreeMap::new();
    let mut charged_failures = BTreeMap::new();
    let mut failed_by_attempts = BTreeMap::new();
    let mut completed_uncharged = 0;
    for (order, result) in results.iter().enumerate() {
        let charged = charges_per_order.contains_key(&format!("order-{order}"));
        if result.completed {
            completed += 1;
            completed_uncharged += usize::from(!charged);
        } else {
            charged_but_reported_failed += usize::from(charged);
            *failures.entry(result.outcome.clone()).or_insert(0) += 1;
            if charged {
                *charged_failures.entry(result.outcome.clone()).or_insert(0) += 1;
            }
            if let Some(n) = result.attempts {
                *failed_by_attempts.entry(n.to_string()).or_insert(0) += 1;
            }
        }
    }
    if completed_uncharged > 0 {
        anomalies.push(format!(
            "{completed_uncharged} orders reported completed with no charge in the ledger"
        ));
    }

    let client_attempts: u64 = results
        .iter()
        .map(|r| u64::from(r.attempts.unwrap_or(0)))
        .sum();
    let (mean_attempts, attempts_source) = match strategy {
        Strategy::Bare => (1.0, "one attempt per order"),
        Strategy::SeedArticle => (
            client_attempts as f64 / orders as f64,
            "the loop's own count",
        ),
        Strategy::Payguard | Strategy::PayguardBreaker => {
            let missing = results.iter().filter(|r| r.attempts.is_none()).count();
            if missing > 0 {
                anomalies.push(format!("{missing} responses without Payguard-Attempts"));
            }
            (
                client_attempts as f64 / orders as f64,
                "Payguard-Attempts headers",
            )
        }
        Strategy::StripeNode => (
            counts.requests_seen as f64 / orders as f64,
            "requests the double saw / orders",
        ),
    };
    // The double sees every attempt of the Rust-side strategies: the two counts must agree.
    if matches!(
        strategy,
        Strategy::SeedArticle | Strategy::Payguard | Strategy::PayguardBreaker
    ) && client_attempts != counts.requests_seen
    {
        anomalies.push(format!(
            "client counted {client_attempts} attempts, the double saw {} requests",
            counts.requests_seen
        ));
    }

    Report {
        strategy: strategy.name(),
        orders,
        completed,
        completion_pct: 100.0 * completed as f64 / orders as f64,
        orders_charged,
        charges,
        duplicate_charged_orders,
        extra_charges,
        charged_but_reported_failed,
        mean_attempts,
        attempts_source,
        requests_seen: counts.requests_seen,
        faults_injected: counts.faults_injected,
        latency_ms: latency(results),
        wall_s: wall.as_secs_f64(),
        failures,
        charged_failures,
        failed_by_attempts,
        payguard_metrics: BTreeMap::new(),
        anomalies,
    }
}

/// Facts about the run that belong next to the numbers.
#[derive(Default, Serialize)]
struct RunInfo {
    /// By strategy name.
    payguard_configs: BTreeMap<&'static str, String>,
    stripe_version: Option<String>,
    node_version: Option<String>,
}

async fn run_strategy(
    strategy: Strategy,
    args: &Args,
    info: &mut RunInfo,
) -> anyhow::Result<Report> {
    let double = double::spawn(DoubleConfig {
        record_requests: false,
        ..DoubleConfig::default()
    })
    .await
    .context("starting the provider double")?;
    double
        .faults()
        .set_profile(Profile::transient(args.fail_rate, args.seed))
        .map_err(|e| anyhow!("fault profile refused: {e}"))?;
    let ledger = double.ledger();
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::try_from(args.concurrency).unwrap_or(usize::MAX))
        .build_http();
    let url = double.url();
    let (orders, concurrency) = (args.orders, args.concurrency);

    let mut payguard_metrics = BTreeMap::new();
    let (results, wall) = match strategy {
        Strategy::Bare => {
            let base: Arc<str> = url.into();
            run_orders(orders, concurrency, move |order| {
                let (client, base) = (client.clone(), Arc::clone(&base));
                async move { order_bare(&client, &base, order).await }
            })
            .await?
        }
        Strategy::SeedArticle => {
            let base: Arc<str> = url.into();
            let (seed, scale) = (args.seed, args.time_scale);
            run_orders(orders, concurrency, move |order| {
                let (client, base) = (client.clone(), Arc::clone(&base));
                async move { order_seed_article(&client, &base, order, seed, scale).await }
            })
            .await?
        }
        Strategy::Payguard | Strategy::PayguardBreaker => {
            let store_dir = tempfile::Builder::new()
                .prefix("bench-resilience-")
                .tempdir()
                .context("creating a directory for payguard's idempotency store")?;
            let breaker = strategy == Strategy::PayguardBreaker;
            let config = payguard_config(&url, store_dir.path(), args, breaker);
            let proxy = start_payguard(&config).await?;
            info.payguard_configs.insert(strategy.name(), config);
            let base: Arc<str> = format!("http://{}", proxy.addr).into();
            let orders_client = client.clone();
            let run = run_orders(orders, concurrency, move |order| {
                let (client, base) = (orders_client.clone(), Arc::clone(&base));
                async move { order_payguard(&client, &base, order).await }
            })
            .await;
            payguard_metrics = proxy.scrape(&client).await?;
            proxy.stop().await?;
            store_dir
                .close()
                .context("removing payguard's idempotency store")?;
            run?
        }
        Strategy::StripeNode => {
            let stripe_orders = args.stripe_orders.unwrap_or(orders);
            let (results, run) = run_stripe_node(args, double.addr().port(), stripe_orders).await?;
            info.stripe_version = Some(run.stripe_version);
            info.node_version = Some(run.node_version);
            (
                results,
                Duration::from_secs_f64(run.wall_ms.max(0.0) / 1000.0),
            )
        }
    };

    let counts = DoubleCounts {
        requests_seen: double.requests_seen(),
        faults_injected: double.faults().injected(),
    };
    // Let anything still executing finish before the ledger is read.
    double.shutdown().await;
    let mut report = report(strategy, &results, wall, &ledger, &counts);
    report.payguard_metrics = payguard_metrics;
    Ok(report)
}

fn markdown_table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| strategy | orders | completed | duplicate charges (orders) | charged, reported failed | attempts / order | p50 ms | p99 ms |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in reports {
        let marker = if r.strategy == "stripe-node" {
            " *"
        } else {
            ""
        };
        out.push_str(&format!(
            "| {} | {} | {:.2}% ({}) | {} | {} | {:.3}{marker} | {:.1} | {:.1} |\n",
            r.strategy,
            r.orders,
            r.completion_pct,
            r.completed,
            r.duplicate_charged_orders,
            r.charged_but_reported_failed,
            r.mean_attempts,
            r.latency_ms.p50,
            r.latency_ms.p99,
        ));
    }
    out
}

fn notes(args: &Args, reports: &[Report], info: &RunInfo) -> Vec<String> {
    let mut notes = vec![format!(
        "time scale {}: every delay of none/seed-article/payguard is multiplied by it (1 s -> {} ms); latencies are real at that scale",
        args.time_scale,
        args.time_scale * 1000.0
    )];
    let payguard_rows = reports
        .iter()
        .filter(|r| r.strategy.starts_with("payguard"));
    if payguard_rows.clone().next().is_some() {
        notes.push(format!(
            "payguard: max_attempts {PAYGUARD_MAX_ATTEMPTS}, base_delay {}ms, max_delay {}ms (defaults 200ms/5s x time scale, at least 1ms), jitter_seed {}",
            scaled_ms(PAYGUARD_BASE_MS, args.time_scale),
            scaled_ms(PAYGUARD_MAX_MS, args.time_scale).max(scaled_ms(PAYGUARD_BASE_MS, args.time_scale)),
            args.seed
        ));
        notes.push(match args.payguard_store {
            StoreChoice::Embedded => "payguard: idempotency store embedded (redb, the default kind) in a fresh temporary directory, removed after the run".into(),
            StoreChoice::Memory => "payguard: idempotency store in memory (--payguard-store memory; the default is embedded)".into(),
        });
        notes.push(
            "payguard: retry budget widened to ratio 1.0 (default 0.2): a 30% failure rate needs about 0.43 retries per request, above the default, which would (correctly) refuse retries in a real outage".into(),
        );
        notes.push(
            "payguard: rate limiter off (the double has no rate limit, and the default 8/s against this unpaced load would measure load shedding); breaker off in the payguard row, as in tests/seed_experiment.rs".into(),
        );
    }
    if reports.iter().any(|r| r.strategy == "payguard+breaker") {
        let (window, break_ms) = breaker_durations(args.time_scale);
        notes.push(format!(
            "payguard+breaker: the default breaker (failure_rate 0.5 over min_calls 20, or 10 consecutive failures), window {window}ms and break_duration {break_ms}ms (10s/5s x time scale, raised to the config's 1s/100ms floors)"
        ));
    }
    for r in payguard_rows {
        let sum = |family: &str, filter: &str| -> f64 {
            r.payguard_metrics
                .iter()
                .filter(|(name, _)| name.starts_with(family) && name.contains(filter))
                .fold(0.0, |sum, (_, v)| sum + v)
        };
        notes.push(format!(
            "{}: breaker opened {} times and refused {} attempts; retries refused (budget or deadline) {}; failed orders by attempts made {:?}",
            r.strategy,
            sum("payguard_breaker_transitions_total", "to=\"open\""),
            sum("payguard_breaker_refused_total", ""),
            sum("payguard_retries_refused_total", ""),
            r.failed_by_attempts,
        ));
    }
    if reports.iter().any(|r| r.strategy == "stripe-node") {
        notes.push(format!(
            "* stripe-node {} (node {}), maxNetworkRetries {STRIPE_MAX_NETWORK_RETRIES}, its own unscaled delays (0.5 s start, 5 s cap); attempts / order = requests the double saw / orders",
            info.stripe_version.as_deref().unwrap_or("?"),
            info.node_version.as_deref().unwrap_or("?"),
        ));
    }
    for r in reports {
        if !r.anomalies.is_empty() {
            notes.push(format!(
                "ANOMALY {}: {}",
                r.strategy,
                r.anomalies.join("; ")
            ));
        }
    }
    notes
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.fail_rate) {
        bail!(
            "--fail-rate must be from 0.0 to 1.0, got {}",
            args.fail_rate
        );
    }
    if !(args.time_scale > 0.0 && args.time_scale <= 1.0) {
        bail!(
            "--time-scale must be above 0 and at most 1, got {}",
            args.time_scale
        );
    }
    let strategies: Vec<Strategy> = Strategy::ALL
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.contains(s))
        .collect();

    let mut info = RunInfo::default();
    let mut reports = Vec::new();
    for strategy in strategies {
        eprintln!("[resilience] {} ...", strategy.name());
        let report = run_strategy(strategy, &args, &mut info)
            .await
            .with_context(|| format!("strategy {}", strategy.name()))?;
        eprintln!(
            "[resilience] {}: {:.2}% completed, {} orders charged twice, {} charged but failed, {:.3} attempts/order, {:.1} s",
            report.strategy,
            report.completion_pct,
            report.duplicate_charged_orders,
            report.charged_but_reported_failed,
            report.mean_attempts,
            report.wall_s
        );
        reports.push(report);
    }

    let notes = notes(&args, &reports, &info);
    println!("{}", markdown_table(&reports));
    for note in &notes {
        println!("{note}");
    }

    if let Some(path) = &args.json {
        write_json(path, &args, &reports, &info, &notes)?;
        eprintln!("[resilience] wrote {}", path.display());
    }
    Ok(())
}

fn write_json(
    path: &Path,
    args: &Args,
    reports: &[Report],
    info: &RunInfo,
    notes: &[String],
) -> anyhow::Result<()> {
    let doc = serde_json::json!({
        "params": {
            "orders": args.orders,
            "stripe_orders": args.stripe_orders.unwrap_or(args.orders),
            "concurrency": args.concurrency,
            "fail_rate": args.fail_rate,
            "seed": args.seed,
            "time_scale": args.time_scale,
            "fault_mix": "reset before processing, reset after processing, 500, 503, 429 without Retry-After; equal weights",
            "article": {
                "max_attempts": ARTICLE_MAX_ATTEMPTS,
                "base_delay_ms": ARTICLE_BASE_MS,
                "jitter_ms": ARTICLE_JITTER_MS,
                "cap_ms": ARTICLE_CAP_MS,
                "idempotency_key": "fresh per attempt",
            },
            "stripe_max_network_retries": STRIPE_MAX_NETWORK_RETRIES,
            "payguard_store": match args.payguard_store {
                StoreChoice::Embedded => "embedded",
                StoreChoice::Memory => "memory",
            },
        },
        "run": info,
        "strategies": reports,
        "notes": notes,
    });
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
