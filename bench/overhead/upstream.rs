//! `bench-upstream`: the fast local upstream behind every path of the overhead benchmark.
//!
//! `bench/overhead/run.sh` measures what a proxy adds to a request, so the thing behind the
//! proxy must cost as little as possible and cost the same for every path: the direct path,
//! payguard, nginx and HAProxy all reach this one process. It answers every request, whatever
//! its method or path, with `200 OK` and a fixed JSON body shaped like a Stripe payment intent,
//! over HTTP/1.1 with keep-alive. It reads and drops any request body, so POSTs work too.
//!
//! It is not a Stripe double (that is `payguard-provider`): it keeps no state and checks
//! nothing, because any work here would be counted against every proxy alike and blur the
//! differences the benchmark exists to show.
//!
//! ```sh
//! cargo run --release --example bench-upstream -- --port 18000 --threads 1
//! ```
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A Stripe-shaped payment intent, about 300 bytes: the size of a typical small API answer.
const BODY: &[u8] = br#"{"id":"pi_3PbenchUpstream0001","object":"payment_intent","amount":2000,"amount_received":2000,"capture_method":"automatic","client_secret":"pi_3PbenchUpstream0001_secret_bench","confirmation_method":"automatic","created":1700000000,"currency":"usd","livemode":false,"metadata":{},"payment_method_types":["card"],"status":"succeeded"}"#;

/// A tiny HTTP/1.1 upstream that answers every request with 200 and a fixed JSON body.
#[derive(Parser)]
#[command(name = "bench-upstream")]
struct Args {
    /// TCP port to listen on, on 127.0.0.1 only.
    #[arg(long)]
    port: u16,
    /// Runtime threads: 1 runs a current-thread runtime, more a multi-thread one.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: u16,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(args.threads))
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))))
}

async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("bench-upstream listening on {}", listener.local_addr()?);
    let body = Bytes::from_static(BODY);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Running out of file descriptors or a reset before accept: keep serving.
            Err(e) => {
                eprintln!("bench-upstream: accept: {e}");
                continue;
            }
        };
        // Small responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, body.clone()));
            // Errors here are clients going away mid-connection; nothing to do about them.
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Drain the request body so the connection can be reused; its content does not matter.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from(BODY.len()),
    );
    Ok(response)
}
