//! `bench-load`: a fixed number of requests over a fixed number of keep-alive connections,
//! and their latencies.
//!
//! oha (the timed figures in `run.sh`) runs for a duration and cannot give every request its
//! own header, which two measurements here need:
//!
//! - instructions per request under callgrind (`instructions.sh`) divide by a request count,
//!   so the count must be exact and the same for every proxy;
//! - keyed POSTs must each carry a fresh `Idempotency-Key`, or every request after the first
//!   would be a replay and the store would never be written (`keyed.sh`).
//!
//! Each connection is one task sending its next request as soon as the previous answer's body
//! has arrived, so `--connections` is the number of requests in flight. It prints one JSON
//! object: the count, errors, non-2xx answers, wall time, and latency percentiles in ms.
//!
//! ```sh
//! cargo run --release --example bench-load -- --url http://127.0.0.1:8080/v1/refunds \
//!     --requests 20000 --connections 32 --method POST --keyed
//! ```
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::{Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(name = "bench-load")]
struct Args {
    /// Target URL, http:// only.
    #[arg(long)]
    url: Uri,
    /// Requests to send in all.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[arg(long, default_value = "GET")]
    method: Method,
    /// A fresh Idempotency-Key on every request (unique to this run).
    #[arg(long)]
    keyed: bool,
    /// Sent as `Authorization` (a realistic request carries an API key).
    #[arg(long, default_value = "Bearer sk_test_bench_not_a_real_key")]
    authorization: String,
}

/// A form body like a small Stripe create call.
const FORM: &[u8] = b"amount=2000&currency=usd&payment_method=pm_card_visa";

fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    // One thread: the load generator is pinned to one core beside the upstream.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Arc<Args>) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    // Unique per run, so keys never collide with an earlier run's records in the same file.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.connections.max(1) {
        let (args, next) = (args.clone(), next.clone());
        tasks.push(tokio::spawn(connection(args, next, run_id)));
    }
    let mut latencies = Vec::with_capacity(args.requests);
    let (mut errors, mut non_2xx) = (0usize, 0usize);
    for task in tasks {
        let report = task.await??;
        latencies.extend(report.latencies);
        errors += report.errors;
        non_2xx += report.non_2xx;
    }
    let wall = started.elapsed();
    latencies.sort();
    let ms = |p: f64| percentile(&latencies, p).as_secs_f64() * 1000.0;
    println!(
        "{{\"requests\":{},\"errors\":{errors},\"non_2xx\":{non_2xx},\"wall_s\":{:.3},\"rps\":{:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
        latencies.len(),
        wall.as_secs_f64(),
        latencies.len() as f64 / wall.as_secs_f64(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(1.0),
    );
    Ok(())
}

#[derive(Default)]
struct Report {
    latencies: Vec<Duration>,
    errors: usize,
    non_2xx: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One keep-alive connection: requests until the shared count runs out. A failed request
/// counts as an error and the connection is opened again.
async fn connection(
    args: Arc<Args>,
    next: Arc<AtomicUsize>,
    run_id: u128,
) -> anyhow::Result<Report> {
    let authority = args
        .url
        .authority()
        .ok_or_else(|| anyhow::anyhow!("--url needs a host and port"))?
        .clone();
    let mut report = Report::default();
    let mut sender = None;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= args.requests {
            return Ok(report);
        }
        if sender.is_none() {
            let stream = TcpStream::connect(authority.as_str()).await?;
            stream.set_nodelay(true)?;
            let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender = Some(send);
        }
        let Some(send) = sender.as_mut() else {
            continue;
        };
        let body = match args.method {
            Method::POST => Bytes::from_static(FORM),
            _ => Bytes::new(),
        };
        let mut request = Request::builder()
            .method(args.method.clone())
            .uri(args.url.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, authority.as_str())
            .header(header::AUTHORIZATION, args.authorization.as_str());
        if args.method == Method::POST {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if args.keyed {
            request = request.header("idempotency-key", format!("bench-{run_id}-{i}"));
        }
        let request = request.body(Full::new(body))?;
        let sent = Instant::now();
        let answered = async {
            let response = send.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        };
        match answered.await {
            Ok(status) => {
                report.latencies.push(sent.elapsed());
                if !status.is_success() {
                    report.non_2xx += 1;
                }
            }
            Err(_) => {
                report.errors += 1;
                sender = None;
            }
        }
    }
}
