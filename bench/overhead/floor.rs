//! `bench-floor`: the least a proxy built on payguard's stack can spend per request.
//!
//! payguard is built on hyper and tokio (the design card fixes them), so its instruction count
//! per request has a floor that no change inside payguard can go below: what hyper's HTTP/1
//! server, hyper's HTTP/1 client and tokio's scheduler cost to relay one request. This program
//! measures that floor with nothing else: it accepts HTTP/1 on one port and relays every
//! request, unchanged but for its URI, to one upstream, with no routing, no headers added or
//! removed, no logging, no metrics, no limits, no error handling beyond a 502.
//!
//! Two ways to reach the upstream, as `--mode`:
//! - `pool`: hyper-util's legacy client, the pooled client payguard uses;
//! - `conn`: one upstream connection per downstream connection (hyper's `client::conn`), so
//!   no pool at all, which is how nginx's upstream keep-alive behaves per worker.
//!
//! It is a measuring stick for `bench/overhead/instructions.sh`, not a proxy anyone should run:
//! it forwards hop-by-hop headers and trusts whatever it is sent.
//!
//! ```sh
//! cargo run --release --example bench-floor -- --port 18001 --upstream 127.0.0.1:18000
//! ```
#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddr};

use clap::{Parser, ValueEnum};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Pool,
    Conn,
}

#[derive(Parser)]
#[command(name = "bench-floor")]
struct Args {
    /// Port to listen on, on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// The upstream's address, host:port, plain HTTP/1.1.
    #[arg(long)]
    upstream: SocketAddr,
    #[arg(long, value_enum, default_value_t = Mode::Pool)]
    mode: Mode,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    // One thread, as payguard runs with one core (and nginx with one worker).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(http);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let upstream = args.upstream;
        let client = client.clone();
        tokio::spawn(async move {
            let io = TokioIo::new(stream);
            let served = match args.mode {
                Mode::Pool => {
                    let service = service_fn(move |request| {
                        let client = client.clone();
                        async move { Ok::<_, hyper::Error>(pooled(&client, upstream, request).await) }
                    });
                    http1::Builder::new().serve_connection(io, service).await
                }
                Mode::Conn => match dedicated(upstream).await {
                    Ok(sender) => {
                        let sender = std::sync::Arc::new(tokio::sync::Mutex::new(sender));
                        let service = service_fn(move |request| {
                            let sender = sender.clone();
                            async move {
                                let mut sender = sender.lock().await;
                                Ok::<_, hyper::Error>(answer(sender.send_request(request).await))
                            }
                        });
                        http1::Builder::new().serve_connection(io, service).await
                    }
                    Err(_) => return,
                },
            };
            drop(served);
        });
    }
}

async fn pooled(
    client: &Client<HttpConnector, Incoming>,
    upstream: SocketAddr,
    mut request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    match format!("http://{upstream}{path}").parse::<Uri>() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return bad_gateway(),
    }
    match client.request(request).await {
        Ok(response) => response.map(BodyExt::boxed_unsync),
        Err(_) => bad_gateway(),
    }
}

async fn dedicated(
    upstream: SocketAddr,
) -> Result<
    hyper::client::conn::http1::SendRequest<Incoming>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

fn answer(result: Result<Response<Incoming>, hyper::Error>) -> Response<Body> {
    match result {
        Ok(response) => response.map(BodyExt::boxed_unsync),
        Err(_) => bad_gateway(),
    }
}

fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
